"""Draft sources that exercise the engine's corners.

* :class:`OracleSource` knows the reference output and always drafts it: every
  step must then emit ``min(budget, remaining) + 1`` tokens.
* :class:`RandomSource` drafts random tokens (adversarial: almost never right).
* :class:`EmptySource` never drafts (the decoder degenerates to plain decoding).
* :class:`ScriptedSource` returns drafts from a user function, for hand-built cases.
* :class:`RandomQSource` *samples* its drafts from a known proposal law q and
  reports it (``Draft.probs``): the stochastic source of the sampling tests.

All but the last are deterministic (a :class:`~draftkit.types.DraftKind.DETERMINISTIC`
source), which is what the greedy and sample-and-walk verifiers need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..types import Draft, DraftKind, DraftRequest, SamplingParams, SourceCapabilities, StepFeedback

if TYPE_CHECKING:
    import torch

__all__ = ["OracleSource", "RandomSource", "EmptySource", "ScriptedSource", "RandomQSource"]


class _Stateless:
    capabilities = SourceCapabilities()

    def begin(self, prompt: np.ndarray) -> None:
        return None

    def observe(self, feedback: StepFeedback) -> None:
        return None

    def reset(self) -> None:
        return None


@dataclass
class OracleSource(_Stateless):
    """Drafts the known continuation of the prompt (plus decoys in a tree).

    ``reference`` is the full expected sequence (prompt + output). With
    ``decoys > 0`` it also proposes wrong candidates that share a prefix with the
    truth, so trees have branches that must be rejected. They are listed
    *before* the truth, so the accepted path is not simply the first nodes of the
    tree (which would hide mask and cache-compaction bugs).
    """

    reference: Sequence[int]
    decoys: int = 0
    vocab_size: int | None = None
    name: str = "oracle"

    def propose(self, request: DraftRequest) -> Draft:
        ref = np.asarray(self.reference, dtype=np.int64)
        ctx = request.context
        if ctx.size >= ref.size or not np.array_equal(ref[: ctx.size], ctx):
            return Draft.empty()
        truth = ref[ctx.size : ctx.size + request.max_depth]
        seqs: list[np.ndarray] = []
        weights: list[float] = []
        vocab = self.vocab_size or request.vocab_size
        for k in range(self.decoys):
            wrong = truth.copy()
            j = (k * 7 + ctx.size) % truth.size  # where the decoy leaves the true path
            wrong[j] = (wrong[j] + 1 + k) % vocab
            if wrong[j] == truth[j]:
                continue
            seqs.append(wrong)
            weights.append(0.5)
        seqs.append(truth)
        weights.append(float(self.decoys + 1))
        return Draft(tuple(seqs), tuple(weights))


@dataclass
class RandomSource(_Stateless):
    """Adversarial drafts: random token sequences (a tree of ``width`` candidates)."""

    seed: int = 0
    width: int = 3
    length: int = 6
    name: str = "random"
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def begin(self, prompt: np.ndarray) -> None:
        self._rng = np.random.default_rng(self.seed)

    def propose(self, request: DraftRequest) -> Draft:
        n = min(self.length, request.max_depth)
        seqs = tuple(self._rng.integers(0, request.vocab_size, size=n) for _ in range(self.width))
        return Draft(seqs, tuple(float(self.width - i) for i in range(self.width)))


@dataclass
class EmptySource(_Stateless):
    """Never proposes anything."""

    name: str = "empty"

    def propose(self, request: DraftRequest) -> Draft:
        return Draft.empty()


@dataclass
class ScriptedSource(_Stateless):
    """Drafts whatever ``script(request)`` returns; records every request and feedback."""

    script: Callable[[DraftRequest], Draft]
    name: str = "scripted"
    requests: list[DraftRequest] = field(default_factory=list)
    feedback: list[StepFeedback] = field(default_factory=list)

    def propose(self, request: DraftRequest) -> Draft:
        self.requests.append(request)
        return self.script(request)

    def observe(self, feedback: StepFeedback) -> None:
        self.feedback.append(feedback)


#: Mixed into the seed of :class:`RandomQSource`'s stream so that its draws never
#: share a Philox key with the verifier's (seed, position) stream.
_DRAFT_SALT = 0x9E3779B97F4A7C15


@dataclass
class RandomQSource(_Stateless):
    """A stochastic source: ``width`` independent sequences sampled from a known law q.

    q after a prefix is ``softmax(process(table[last token]))``: a bigram table of
    draft logits (float64 [V, V]) put through the request's own logits processing
    (temperature, top-k, top-p, min-p), so q is a law "after the same processors
    as the target". Each token is drawn from q by the plain sampler's inverse CDF
    with a uniform from a Philox stream keyed by (salted request seed, context
    length), independent of the verifier's stream; without a request seed,
    ``seed`` is used. Identical prefixes get the identical q row, candidates have
    equal weights and at most ``max_nodes`` tokens are drawn in total: the
    contract of :func:`draftkit.verify.speculative.check_stochastic_draft`.
    """

    table: torch.Tensor
    width: int = 2
    length: int = 3
    seed: int = 0
    name: str = "random-q"
    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities(draft_kind=DraftKind.STOCHASTIC)

    @classmethod
    def random(cls, vocab_size: int, *, table_seed: int = 0, scale: float = 3.0, **options: object) -> RandomQSource:
        """A source with a random Gaussian bigram table (``scale`` = logit standard deviation)."""
        import torch

        gen = torch.Generator().manual_seed(table_seed)
        table = torch.randn((vocab_size, vocab_size), generator=gen, dtype=torch.float64) * scale
        return cls(table, **options)  # type: ignore[arg-type]

    def law(self, sequence: np.ndarray, sampling: SamplingParams | None) -> torch.Tensor:
        """The processed proposal law q (float64 [V]) after ``sequence``."""
        from ..logits import LogitsPipeline

        params = SamplingParams() if sampling is None else sampling
        params = replace(params, do_sample=True)
        row = self.table[int(sequence[-1])][None]
        return LogitsPipeline(params, sequence).probs(row, [np.empty(0, np.int64)])[0]

    def propose(self, request: DraftRequest) -> Draft:
        import torch

        from ..logits import sample_from_probs

        length = min(self.length, request.max_depth, request.max_nodes)
        if length < 1 or self.width < 1:
            return Draft.empty()
        width = max(1, min(self.width, request.max_nodes // length))
        sampling = request.sampling
        seed = sampling.seed if sampling is not None and sampling.seed is not None else self.seed
        key = np.array([(int(seed) ^ _DRAFT_SALT) & 0xFFFFFFFFFFFFFFFF, request.context.size], dtype=np.uint64)
        gen = np.random.Generator(np.random.Philox(key=key))
        laws: dict[tuple[int, ...], torch.Tensor] = {}
        sequences: list[np.ndarray] = []
        probs: list[torch.Tensor] = []
        for _ in range(width):
            prefix: list[int] = []
            rows: list[torch.Tensor] = []
            for _ in range(length):
                q = laws.get(tuple(prefix))
                if q is None:
                    q = self.law(np.concatenate([request.context, np.asarray(prefix, np.int64)]), sampling)
                    laws[tuple(prefix)] = q
                token = sample_from_probs(q, float(gen.random()))
                rows.append(q)
                prefix.append(token)
                if token in request.eos_token_ids:
                    break  # never draft past the end of the text
            sequences.append(np.asarray(prefix, dtype=np.int64))
            probs.append(torch.stack(rows))
        return Draft(tuple(sequences), tuple(1.0 for _ in sequences), probs=tuple(probs))
