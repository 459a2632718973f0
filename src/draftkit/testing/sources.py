"""Draft sources that exercise the engine's corners.

* :class:`OracleSource` knows the reference output and always drafts it: every
  step must then emit ``min(budget, remaining) + 1`` tokens.
* :class:`RandomSource` drafts random tokens (adversarial: almost never right).
* :class:`EmptySource` never drafts (the decoder degenerates to plain decoding).
* :class:`ScriptedSource` returns drafts from a user function, for hand-built cases.

All of them are deterministic (a :class:`~draftkit.types.DraftKind.DETERMINISTIC`
source), which is what the greedy and sample-and-walk verifiers need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..types import Draft, DraftRequest, SourceCapabilities, StepFeedback

__all__ = ["OracleSource", "RandomSource", "EmptySource", "ScriptedSource"]


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
    ``decoys > 0`` it also proposes wrong siblings so that trees have branches
    that must be rejected.
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
        seqs = [truth]
        weights = [float(self.decoys + 1)]
        vocab = self.vocab_size or request.vocab_size
        for k in range(self.decoys):
            wrong = truth.copy()
            j = k % truth.size
            wrong[j] = (wrong[j] + 1 + k) % vocab
            if wrong[j] == truth[j]:
                continue
            seqs.append(wrong)
            weights.append(0.5)
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
