"""Several sources drafting into one tree, budget shared by recent usefulness.

Different sources win on different inputs: retrieval on text like its corpus,
prompt lookup on text that quotes its context, an adaptive n-gram table on the
request's own style. A :class:`Composite` asks every member, merges their
candidates into one draft, and gives each member a share of the tree that
follows how many tokens its proposals would have had accepted recently, so the
budget flows to whichever source is right for the current request. Where
members agree, their weights add up and the shared prefix is kept first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import IncompatiblePartsError
from ..interfaces import DraftSource
from ..types import Draft, DraftKind, DraftRequest, SourceCapabilities, StepFeedback

__all__ = ["Composite", "matched_prefix"]


def matched_prefix(sequences: Sequence[np.ndarray], emitted: np.ndarray) -> int:
    """Longest prefix of ``emitted`` that one of ``sequences`` starts with."""
    best = 0
    for seq in sequences:
        n = min(seq.size, emitted.size)
        if n == 0:
            continue
        diff = np.nonzero(seq[:n] != emitted[:n])[0]
        best = max(best, int(diff[0]) if diff.size else n)
    return best


@dataclass
class Composite:
    """Merge the drafts of ``members``; share the budget by recent accepted length.

    ``decay`` is the weight of the past in the exponential moving average of each
    member's matched length; ``floor`` keeps a small share for every member so a
    source that was useless for a while can come back.
    """

    members: Sequence[DraftSource]
    decay: float = 0.8
    floor: float = 0.05
    _scores: np.ndarray = field(init=False, repr=False)
    _last: list[tuple[np.ndarray, ...]] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.members:
            raise IncompatiblePartsError("a Composite source needs at least one member")
        kinds = {m.capabilities.draft_kind for m in self.members}
        if DraftKind.STOCHASTIC in kinds:
            raise IncompatiblePartsError(
                "a Composite source can only merge deterministic sources: merged stochastic proposals "
                "have no single proposal law to verify against"
            )
        self._scores = np.ones(len(self.members))
        self.members = list(self.members)

    @property
    def name(self) -> str:
        return "+".join(m.name for m in self.members)

    @property
    def capabilities(self) -> SourceCapabilities:
        caps = [m.capabilities for m in self.members]
        return SourceCapabilities(
            draft_kind=DraftKind.DETERMINISTIC,
            needs_target=any(c.needs_target for c in caps),
            stateful=True,
            wants_node_logits=any(c.wants_node_logits for c in caps),
        )

    def shares(self) -> np.ndarray:
        """Current share of the budget of each member (sums to 1)."""
        s = np.maximum(self._scores, 0.0) + 1e-9
        s = s / s.sum()
        s = np.maximum(s, self.floor)
        return s / s.sum()

    def begin(self, prompt: np.ndarray) -> None:
        for m in self.members:
            m.begin(prompt)

    def propose(self, request: DraftRequest) -> Draft:
        shares = self.shares()
        sequences: list[np.ndarray] = []
        weights: list[float] = []
        self._last = []
        for member, share in zip(self.members, shares, strict=True):
            draft = member.propose(request)
            seqs = tuple(np.asarray(s, dtype=np.int64) for s in draft.sequences if len(s))
            self._last.append(seqs)
            if not seqs:
                continue
            w = np.asarray([draft.weights[i] for i, s in enumerate(draft.sequences) if len(s)], dtype=float)
            w = np.maximum(w, 0.0)
            total = w.sum()
            w = w / total * share if total > 0 else np.full(len(seqs), share / len(seqs))
            sequences.extend(seqs)
            weights.extend(w.tolist())
        return Draft(tuple(sequences), tuple(weights)) if sequences else Draft.empty()

    def observe(self, feedback: StepFeedback) -> None:
        if self._last and len(self._last) == len(self.members):
            gains = np.array([matched_prefix(seqs, feedback.emitted) for seqs in self._last], dtype=float)
            self._scores = self.decay * self._scores + (1 - self.decay) * gains
        for m in self.members:
            m.observe(feedback)

    def reset(self) -> None:
        self._scores = np.ones(len(self.members))
        self._last = []
        for m in self.members:
            m.reset()
