"""What the sampling verifiers share: the target law p and the random draws they consume.

Both sampling verifiers are written as pure functions of ``(tree, p[, q], draws)``
where ``draws`` is a :class:`Draws`: the only two random primitives they use are a
Bernoulli test and a categorical draw. In production :class:`StreamDraws` answers
them from the position-keyed :class:`~draftkit.verify.random.RandomStream`; the
test-suite answers them by *exploring every branch with its probability*
(:func:`draftkit.verify.reference.exact_law`), which gives the exact output law of
the very code that runs in production, with no Monte Carlo.

Randomness layout (one output position = one tree level):

* the token emitted at output position ``t`` by a categorical draw uses
  ``random.token_uniform(t)``, exactly like the plain sampler;
* the accept/reject tests at output position ``t`` use
  ``random.extra_uniforms(t, k)[0..k-1]``, a stream independent of the token draw.

A step visits at most one node per level, and the next step starts at the first
output position not emitted yet, so no uniform is ever used twice.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..errors import IncompatiblePartsError
from ..interfaces import LogitsProcessorFn
from ..logits import sample_from_probs
from ..types import SamplingParams, TokenTree
from .greedy import node_paths
from .random import RandomStream

__all__ = ["Draws", "StreamDraws", "target_probs", "child_lists", "require_stream"]


class Draws(Protocol):
    """The random decisions a sampling verifier makes, keyed by tree level.

    ``level`` is the depth below the root of the position being decided: level
    ``l`` emits output position ``position + l``.
    """

    def accept(self, level: int, attempt: int, probability: float) -> bool:
        """A Bernoulli(``probability``) test; ``attempt`` numbers the tests of one level."""
        ...

    def choose(self, level: int, probs: torch.Tensor) -> int:
        """A draw from the (possibly unnormalised) float64 distribution ``probs`` [V]."""
        ...


class StreamDraws:
    """:class:`Draws` answered from a :class:`RandomStream` at output ``position``.

    ``accept`` is ``u < probability`` with ``u = extra_uniforms(position + level)[attempt]``
    (probability exactly ``probability`` for ``u ~ U[0, 1)``); ``choose`` is the
    plain sampler's inverse-CDF draw :func:`draftkit.logits.sample_from_probs`
    with ``token_uniform(position + level)``, so one uniform maps to the same token
    in both.
    """

    def __init__(self, random: RandomStream, position: int) -> None:
        self.random = random
        self.position = int(position)
        self._extra: dict[int, np.ndarray] = {}

    def accept(self, level: int, attempt: int, probability: float) -> bool:
        if probability >= 1.0:
            return True
        if probability <= 0.0:
            return False
        cached = self._extra.get(level)
        if cached is None or cached.size <= attempt:
            # The stream's draws are a prefix-stable sequence: asking for more keeps the first ones.
            cached = self.random.extra_uniforms(self.position + level, max(8, 2 * (attempt + 1)))
            self._extra[level] = cached
        return bool(cached[attempt] < probability)

    def choose(self, level: int, probs: torch.Tensor) -> int:
        return sample_from_probs(probs, self.random.token_uniform(self.position + level))


def require_stream(random: RandomStream | None, sampling: SamplingParams, verifier: str) -> RandomStream:
    """The request's random stream; refuses a sampling verifier on a greedy request."""
    if random is None or not sampling.do_sample:
        raise IncompatiblePartsError(
            f"verifier {verifier!r} samples and needs a random stream; call generate(do_sample=True) "
            "or use the greedy verifier"
        )
    return random


def target_probs(
    tree: TokenTree, logits: torch.Tensor, sampling: SamplingParams, process: LogitsProcessorFn
) -> torch.Tensor:
    """The target's sampling law at the root and at every node, float64 [n + 1, V].

    Row ``i + 1`` is processed with node ``i``'s own path, so path-dependent
    processors (repetition penalty) see exactly what plain sampling would have
    seen after emitting that path.
    """
    scores = process(logits, node_paths(tree, sampling))
    if scores.dtype != torch.float64:
        scores = scores.to(torch.float64)
    return scores.softmax(dim=-1)


class LazyTargetProbs:
    """``probs[row]`` of :func:`target_probs`, computed only for the rows a walk visits.

    A walk visits at most ``depth + 1`` of the ``n + 1`` rows; processing (a sort
    over the vocabulary for top-p) every row would cost far more than the walk.
    Rows are processed one at a time with exactly the operations of the batched
    path, so the law is the same.
    """

    def __init__(self, tree: TokenTree, logits: torch.Tensor, sampling: SamplingParams,
                 process: LogitsProcessorFn) -> None:
        self.tree = tree
        self.logits = logits
        self.sampling = sampling
        self.process = process
        self._rows: dict[int, torch.Tensor] = {}

    def __getitem__(self, row: int) -> torch.Tensor:
        cached = self._rows.get(row)
        if cached is None:
            if self.sampling.uses_context_processors and row > 0:
                path = [self.tree.path_tokens(row - 1)]
            else:
                path = [np.empty(0, np.int64)]
            scores = self.process(self.logits[row : row + 1], path)
            if scores.dtype != torch.float64:
                scores = scores.to(torch.float64)
            cached = self._rows[row] = scores.softmax(dim=-1)[0]
        return cached


def child_lists(tree: TokenTree) -> list[list[int]]:
    """``out[0]`` = children of the root, ``out[i + 1]`` = children of node ``i``, in node order."""
    out: list[list[int]] = [[] for _ in range(tree.size + 1)]
    for node, parent in enumerate(tree.parents.tolist()):
        out[parent + 1].append(node)
    return out
