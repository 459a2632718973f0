"""Several sources drafting into one tree, nodes ranked by calibrated acceptance.

Different sources win on different inputs: retrieval on text like its corpus,
prompt lookup on text that quotes its context, an adaptive n-gram table on the
request's own style. A :class:`Composite` asks every member, merges their
candidates into one draft, and weighs every drafted token by an estimate of
the chance that it is accepted: for each member and each depth ``d``, the
recent rate at which the member's candidates matched at least ``d`` of the
tokens the target actually emitted. Those rates are measured on every step
whether or not the member's nodes were verified (the emitted tokens are known
either way), so a member whose nodes were pruned can still win its budget
back. Token weights make the tree builder keep the likeliest nodes across all
members, rather than the whole of the heaviest member's candidate; where
members agree, their weights add up.

A member's success also depends on what it just did: prompt lookup that
matched on the last step is likely copying a passage and matches again; after
a miss it is usually drafting from an unrelated match. So the rates are kept
per member *and* per context (the request's first step, or the member's
matched length on the previous step: 0, 1-2, 3+) *and* per the evidence the
member gave for this draft (``Draft.evidence``: prompt lookup's 3-gram match
beats its 1-gram match by an order of magnitude); a cell borrows the member's
pooled rate until it has its own observations. The merged draft carries the
evidence of the member expected to match longest.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import step_context
from ..checks import is_integer
from ..engine.draft_checks import blaming_source, require_draft, require_source
from ..errors import IncompatiblePartsError, InvalidInputError
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


#: Pseudo-observations of the prior (in units of the moving average's total weight, which tends to 1).
_PRIOR_STRENGTH = 0.1


@dataclass
class Composite:
    """Merge the drafts of ``members``; weigh their tokens by each member's recent acceptance per depth.

    ``decay`` is the weight of the past in the moving averages (0.95: roughly
    the last 20 steps count). Until a member has been observed, its chance of
    matching ``d`` tokens is taken as ``0.5 ** d``. ``max_depth`` bounds the
    depths tracked; deeper tokens share the deepest estimate.
    ``by_context=False`` keeps one rate per member and depth (no split by
    context or evidence; the merged draft still carries its members' evidence).
    """

    members: Sequence[DraftSource]
    decay: float = 0.95
    max_depth: int = 64
    by_context: bool = True
    _hits: np.ndarray = field(init=False, repr=False)  # [member, context * EVIDENCE_LEVELS + evidence, depth]
    _tries: np.ndarray = field(init=False, repr=False)
    _context: np.ndarray = field(init=False, repr=False)  # each member's context in the current request
    _evidence: np.ndarray = field(init=False, repr=False)  # each member's evidence class on this step
    _last: list[tuple[np.ndarray, ...]] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.members:
            raise IncompatiblePartsError("a Composite source needs at least one member")
        named = [m for m in self.members if isinstance(m, str)]
        if named:
            raise IncompatiblePartsError(
                f"Composite takes source objects, got the name(s) {', '.join(map(repr, named))}: pass names to "
                "SpeculativeDecoder(source=[...]), which builds them, or build each with registry.source(name)"
            )
        for i, member in enumerate(self.members):
            nested = " (lists of sources do not nest)" if isinstance(member, (list, tuple)) else ""
            require_source(member, f"Composite member {i}, {member!r:.80},{nested}")
        if not (isinstance(self.decay, numbers.Real) and 0.0 <= self.decay < 1.0):  # 1 would never learn
            raise InvalidInputError(f"Composite decay must be in [0, 1) (the weight of the past), got {self.decay!r}")
        if not is_integer(self.max_depth) or self.max_depth < 1:
            raise InvalidInputError(f"Composite max_depth must be an integer >= 1, got {self.max_depth!r}")
        kinds = {m.capabilities.draft_kind for m in self.members}
        if DraftKind.STOCHASTIC in kinds:
            raise IncompatiblePartsError(
                "a Composite source can only merge deterministic sources: merged stochastic proposals "
                "have no single proposal law to verify against"
            )
        self.members = list(self.members)
        self._reset_statistics()

    def _reset_statistics(self) -> None:
        cells = step_context.N_CONTEXTS * step_context.EVIDENCE_LEVELS
        self._hits = np.zeros((len(self.members), cells, self.max_depth))
        self._tries = np.zeros((len(self.members), cells, self.max_depth))
        self._context = np.full(len(self.members), step_context.START)
        self._evidence = np.zeros(len(self.members), dtype=np.int64)
        self._last = []

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

    def acceptance(self, contexts: np.ndarray | None = None, evidence: np.ndarray | None = None) -> np.ndarray:
        """float [members, max_depth]: estimated chance that member m matches at least d+1 tokens.

        In each member's current context and evidence class (or the given
        ones); non-increasing along depth by construction (matching d+1
        tokens implies matching d).
        """
        ctx = self._context if contexts is None else np.asarray(contexts)
        ev = self._evidence if evidence is None else np.asarray(evidence)
        cells = ctx * step_context.EVIDENCE_LEVELS + ev
        prior = 0.5 ** np.arange(1, self.max_depth + 1)
        pooled = (self._hits.sum(axis=1) + _PRIOR_STRENGTH * prior) / (self._tries.sum(axis=1) + _PRIOR_STRENGTH)
        rows = np.arange(len(self.members))
        hits, tries = self._hits[rows, cells], self._tries[rows, cells]
        rate = (hits + _PRIOR_STRENGTH * pooled) / (tries + _PRIOR_STRENGTH)
        return np.minimum.accumulate(rate, axis=1)

    def shares(self) -> np.ndarray:
        """Each member's part of the expected matched length (sums to 1); for reports."""
        expected = self.acceptance().sum(axis=1)
        return expected / expected.sum()

    def prepare(self, model: Any, tokenizer: Any = None) -> None:
        """Let every member that checks the model and tokenizer (the optional ``prepare``) do so."""
        for m in self.members:
            prepare = getattr(m, "prepare", None)
            if callable(prepare):
                prepare(model, tokenizer)

    def begin(self, prompt: np.ndarray) -> None:
        self._context[:] = step_context.START
        for m in self.members:
            with blaming_source(m.name, "begin", member_of=self.name):
                m.begin(prompt)

    def _propose(self, member: DraftSource, request: DraftRequest) -> Draft:
        with blaming_source(member.name, "propose", member_of=self.name):
            return require_draft(member.propose(request), member.name, member_of=self.name)

    def propose(self, request: DraftRequest) -> Draft:
        drafts = [self._propose(member, request) for member in self.members]
        claimed = [step_context.evidence_class(d.evidence) for d in drafts]
        self._evidence = np.asarray(claimed if self.by_context else [0] * len(drafts), dtype=np.int64)
        rates = self.acceptance()
        sequences: list[np.ndarray] = []
        weights: list[float] = []
        token_weights: list[np.ndarray] = []
        self._last = []
        evidence, strongest = 0, -1.0
        for m, draft in enumerate(drafts):
            seqs = tuple(np.asarray(s, dtype=np.int64) for s in draft.sequences if len(s))
            self._last.append(seqs)
            if not seqs:
                continue
            w = np.asarray([draft.weights[i] for i, s in enumerate(draft.sequences) if len(s)], dtype=float)
            w = np.maximum(w, 0.0)
            total = w.sum()
            # The member's own ranking splits its chance among its candidates.
            w = w / total if total > 0 else np.full(len(seqs), 1.0 / len(seqs))
            # The member's expected matched length (to its longest candidate) picks the evidence passed on.
            expected = float(rates[m, : min(max(seq.size for seq in seqs), self.max_depth)].sum())
            if expected > strongest:
                strongest, evidence = expected, claimed[m]
            for seq, share in zip(seqs, w, strict=True):
                depth_index = np.minimum(np.arange(seq.size), self.max_depth - 1)
                per_token = share * rates[m, depth_index]
                sequences.append(seq)
                token_weights.append(per_token)
                weights.append(float(per_token.sum()))  # expected matched length, for chain builders
        if not sequences:
            return Draft.empty()
        return Draft(tuple(sequences), tuple(weights), token_weights=tuple(token_weights), evidence=evidence)

    def observe(self, feedback: StepFeedback) -> None:
        # Only a step that asked the members counts (the engine may skip drafting on a step).
        if self._last and len(self._last) == len(self.members):
            self._update_statistics(feedback.emitted)
        self._last = []
        for m in self.members:
            with blaming_source(m.name, "observe", member_of=self.name):
                m.observe(feedback)

    def _update_statistics(self, emitted: np.ndarray) -> None:
        """Count, per member and depth, whether its candidates matched that deep.

        Depth d is observed when the member matched d tokens, or when it
        mismatched at a position the target emitted; beyond the emitted tokens
        a full match says nothing about deeper tokens (censored), so those
        depths are not counted.
        """
        horizon = int(emitted.size)
        for m, seqs in enumerate(self._last):
            if not seqs:
                continue
            longest = min(max(s.size for s in seqs), self.max_depth)
            matched = matched_prefix(seqs, emitted)
            observed = longest if matched < horizon else min(longest, horizon)
            if observed == 0:
                continue
            hit = (np.arange(1, observed + 1) <= matched).astype(float)
            c = self._context[m] * step_context.EVIDENCE_LEVELS + self._evidence[m]
            self._hits[m, c, :observed] = self.decay * self._hits[m, c, :observed] + (1 - self.decay) * hit
            self._tries[m, c, :observed] = self.decay * self._tries[m, c, :observed] + (1 - self.decay)
            if self.by_context:
                self._context[m] = step_context.context_after(matched)

    def reset(self) -> None:
        self._reset_statistics()
        for m in self.members:
            m.reset()
