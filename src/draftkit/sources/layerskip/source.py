"""Draft source ``layerskip``: the target drafts for itself with sub-layers skipped.

Draft & Verify (Zhang et al., ACL 2024): run the target with some attention and
MLP sub-blocks left out; it is cheaper than the full model and agrees with it
often enough that verifying its drafts in one full forward saves time. No extra
weights, no training: only a skip set (default: a middle band of layers, or one
found by :func:`~draftkit.sources.layerskip.search.search_skip_set`).

**KV cache.** The draft shares the engine's cache (``DraftRequest.target.cache``),
which holds every context token except the pending last one, for every layer.
Drafting feeds the pending token and then each drafted token, one at a time; the
kept attention sub-blocks read their layer's context entries (the target's own
keys and values, exactly what the paper shares) and append entries for the draft
tokens; skipped ones touch nothing. Before :meth:`LayerSkip.propose` returns,
every layer is cut back to the length it had, also when drafting raises: the
verification forward then sees the cache exactly as the engine left it. Sharing
avoids a second cache (memory) and recomputing the context for the kept layers;
the appended entries are computed from draft hidden states and must never be
kept, which the crop guarantees.

**Draft kinds.** ``drafting="greedy"`` proposes the draft's argmax at each step: a
deterministic draft that every verifier handles losslessly.
``drafting="sample"`` samples each token from the draft's processed distribution
``q`` (the request's temperature / top-k / top-p / min-p applied by
:class:`draftkit.logits.LogitsPipeline`, float64, the same processing the target's
``p`` gets) and reports ``q`` in ``Draft.probs``; the engine then picks a
rejection-sampling verifier for stochastic drafts by the declared
:class:`~draftkit.types.DraftKind`. Greedy requests are drafted greedily in both
modes.

**Exiting.** Drafting stops after a token whose draft top-1 probability is below
an adaptive threshold (:mod:`.exiting`), at ``max_draft`` tokens, at the
request's depth / node limits, or after an end-of-sequence token.

**Trees.** With ``branch_k > 1`` (greedy drafting only), every drafted position
whose top-1 probability is below ``branch_below`` also proposes the draft's next
``branch_k - 1`` tokens as one-token alternatives; the ``trie`` builder turns
these into sibling branches at the uncertain positions, ``chain`` keeps the main
line. The alternatives cost no extra draft forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ContractViolationError, InvalidInputError
from ...logits import LogitsPipeline, sample_from_probs
from ...types import Draft, DraftKind, DraftRequest, SourceCapabilities, StepFeedback
from ..switches import require_switch
from .discover import find_layout
from .exiting import ExitRule, ExitState, should_stop, update_threshold
from .forward import skip_forward
from .layers import ModelLayout
from .skipset import DEFAULT_BAND, SkipSet

__all__ = ["LayerSkip", "DEFAULT_MAX_DRAFT", "DEFAULT_THRESHOLDS"]

#: Longest draft per step (the paper uses 8-12).
DEFAULT_MAX_DRAFT = 10
#: Initial exit threshold per drafting mode (the paper's values).
DEFAULT_THRESHOLDS = {"greedy": 0.8, "sample": 0.5}


class LayerSkip:
    """Draft source ``layerskip``: self-speculative drafting with skipped sub-layers.

    ``skip_set``: a :class:`SkipSet`, a path to a skip-set JSON file (checked
    against the model at first use), or ``None`` for the middle band of
    ``band`` x the layers (attention and MLP skipped).
    ``max_draft``: longest draft; ``threshold``: initial exit threshold (0.8
    greedy, 0.5 sampled by default); ``adaptive``: adapt it after every step
    (the paper's rule) or keep it fixed. ``drafting``: ``"greedy"`` (deterministic
    draft) or ``"sample"`` (stochastic draft with ``Draft.probs``).
    ``branch_k`` / ``branch_below``: tree alternatives (see module docs).
    ``seed``: randomness of sampled drafts when the request has no seed.

    The exit threshold starts afresh for each ``generate()`` call (:meth:`begin`),
    so one request never changes how another is drafted.
    """

    name = "layerskip"

    def __init__(
        self,
        skip_set: SkipSet | str | Path | None = None,
        *,
        max_draft: int = DEFAULT_MAX_DRAFT,
        threshold: float | None = None,
        adaptive: bool = True,
        drafting: str = "greedy",
        branch_k: int = 1,
        branch_below: float = 0.9,
        band: float = DEFAULT_BAND,
        seed: int | None = None,
    ) -> None:
        if drafting not in DEFAULT_THRESHOLDS:
            raise InvalidInputError(f"drafting must be 'greedy' or 'sample', got {drafting!r}")
        if not isinstance(max_draft, int) or max_draft < 1:
            raise InvalidInputError(f"max_draft must be a positive integer, got {max_draft!r}")
        if not isinstance(branch_k, int) or branch_k < 1:
            raise InvalidInputError(f"branch_k must be a positive integer, got {branch_k!r}")
        if branch_k > 1 and drafting == "sample":
            raise InvalidInputError(
                "branch_k > 1 needs drafting='greedy': top-k alternatives are not samples of q, so "
                "rejection sampling could not verify them losslessly"
            )
        if threshold is None:
            threshold = DEFAULT_THRESHOLDS[drafting]
        if not 0.0 <= float(threshold) <= 1.0:
            raise InvalidInputError(f"threshold must be in [0, 1], got {threshold}")
        if isinstance(skip_set, (str, Path)):
            skip_set = SkipSet.load(skip_set)
        elif skip_set is not None and not isinstance(skip_set, SkipSet):
            raise InvalidInputError(
                f"skip_set must be a SkipSet, a path to a skip-set file or None, got {type(skip_set).__name__}"
            )
        self.skip_set: SkipSet | None = skip_set
        self.max_draft = max_draft
        self.initial_threshold = float(threshold)
        self.adaptive = require_switch("layerskip", "adaptive", adaptive)
        self.drafting = drafting
        self.branch_k = branch_k
        self.branch_below = float(branch_below)
        self.band = band
        self.seed = seed
        self.rule = ExitRule()
        kind = DraftKind.STOCHASTIC if drafting == "sample" else DraftKind.DETERMINISTIC
        self.capabilities = SourceCapabilities(draft_kind=kind, needs_target=True, stateful=True)
        self.state = ExitState(self.initial_threshold)
        self._rng = np.random.default_rng(seed)
        self._model: Any = None
        self._layout: ModelLayout | None = None
        self._active: SkipSet | None = None
        self._last_cap = max_draft

    # -- binding to a model ---------------------------------------------------------------------

    def prepare(self, model: Any, tokenizer: Any = None) -> SkipSet:
        """Resolve the model's layout and the skip set used for it; refuse what cannot run.

        Called by :meth:`propose` on first use; call it yourself to get
        :class:`~draftkit.errors.UnsupportedModelError` /
        :class:`~draftkit.errors.MismatchedDataFileError` before generating.
        """
        if self._model is model and self._active is not None:
            return self._active
        layout = find_layout(model)
        if self.skip_set is None:
            active = SkipSet.middle_band(layout.num_layers, self.band)
        else:
            self.skip_set.check(model)
            active = self.skip_set
        self._model, self._layout, self._active = model, layout, active
        return active

    # -- DraftSource ---------------------------------------------------------------------------

    def begin(self, prompt: np.ndarray) -> None:
        self.state = ExitState(self.initial_threshold)

    def reset(self) -> None:
        self.state = ExitState(self.initial_threshold)
        self._rng = np.random.default_rng(self.seed)

    def observe(self, feedback: StepFeedback) -> None:
        if not self.adaptive:
            return
        tree = feedback.tree
        # The drafted chain length: tree.size for a chain; with branching, alternatives
        # are not "drafted tokens" of the paper's rule, the depth is.
        drafted = tree.max_depth
        # Only what was emitted counts: nothing after an EOS may feed adaptive state.
        accepted = min(len(feedback.verdict.accepted_nodes), int(feedback.emitted.size))
        # "drafted == max" of the rule means the length cap, not the threshold, ended the
        # draft; the cap of the step is the one propose() applied (max_draft clamped to
        # the request's depth and node limits).
        self.state = update_threshold(self.state, accepted, drafted, self._last_cap, self.rule)

    def propose(self, request: DraftRequest) -> Draft:
        target = request.target
        if target is None:
            raise ContractViolationError(
                "the layerskip source needs the target model (DraftRequest.target); it declares "
                "needs_target=True, use it through draftkit.SpeculativeDecoder"
            )
        skip = self.prepare(target.model)
        layout = self._layout
        assert layout is not None
        max_len = min(self.max_draft, request.max_depth, request.max_nodes)
        self._last_cap = max_len
        if max_len < 1:
            return Draft.empty()
        context = request.context
        base = int(context.size) - 1
        cache = target.cache
        if cache is None or target.cache_len != base:
            raise ContractViolationError(
                f"layerskip expected the target's cache to hold {base} tokens (the context minus the "
                f"pending token) but it holds {target.cache_len}"
            )
        sampling = request.sampling
        sample = self.drafting == "sample" and sampling is not None and sampling.do_sample
        pipeline = LogitsPipeline(sampling, context) if sample else None
        rng = self._rng
        if sample and sampling.seed is not None:
            # Reproducible per request and position, independent of earlier requests.
            rng = np.random.default_rng([int(sampling.seed) & 0xFFFFFFFFFFFFFFFF, base, 0x5EED])
        device = target.device
        tokens: list[int] = []
        q_rows: list[torch.Tensor] = []
        alternatives: list[tuple[int, int, float]] = []  # (position, token, draft probability)
        token = int(context[-1])
        try:
            for step in range(max_len):
                ids = torch.tensor([[token]], dtype=torch.long, device=device)
                pos = torch.tensor([[base + step]], dtype=torch.long, device=device)
                logits = skip_forward(layout, skip, ids, pos, cache)
                if sample:
                    q = pipeline.probs(logits, [np.asarray(tokens, dtype=np.int64)])[0]
                    token = sample_from_probs(q, float(rng.random()))
                    confidence = float(q.max())
                    q_rows.append(q)
                else:
                    probs = torch.softmax(logits[0].to(torch.float64), dim=-1)
                    if self.branch_k > 1:
                        top = torch.topk(probs, min(self.branch_k, probs.shape[-1]))
                        token = int(top.indices[0])
                        confidence = float(top.values[0])
                        if confidence < self.branch_below:
                            for p, t in zip(top.values[1:].tolist(), top.indices[1:].tolist(), strict=True):
                                alternatives.append((step, int(t), float(p)))
                    else:
                        token = int(torch.argmax(probs))
                        confidence = float(probs[token])
                tokens.append(token)
                if token in request.eos_token_ids:
                    break
                if should_stop(confidence, self.state):
                    break
        finally:
            _crop_to(cache, base)
        main = np.asarray(tokens, dtype=np.int64)
        if sample:
            return Draft((main,), (1.0,), probs=(torch.stack(q_rows),))
        if not alternatives:
            return Draft((main,), (1.0,))
        sequences = [main]
        weights = [1.0]
        for position, tok, p in alternatives:
            sequences.append(np.append(main[:position], tok).astype(np.int64))
            weights.append(p)
        return Draft(tuple(sequences), tuple(weights))

    # -- introspection ------------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        """Current exit threshold."""
        return self.state.threshold

    def __repr__(self) -> str:
        skip = self._active or self.skip_set
        what = skip.describe() if skip is not None else f"middle band {self.band:.0%}"
        return f"LayerSkip({what}, drafting={self.drafting!r}, max_draft={self.max_draft})"


def _crop_to(cache: Any, length: int) -> None:
    """Cut every cache layer longer than ``length`` back to ``length`` entries."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)
