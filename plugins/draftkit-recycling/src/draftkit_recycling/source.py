"""The ``recycling`` draft source: Token Recycling (Luo et al., arXiv 2408.08696).

Per step: :meth:`Recycling.propose` instantiates the static template from the
adjacency matrix, starting at the last context token; after verification,
:meth:`Recycling.observe` writes the target's top-k predictions at the root and
at every tree node back into the matrix. The matrix is learnt from the target
alone: no draft model, no datastore, no training.

**State carries over between requests** (``persist=True``, the default): a
matrix learnt while answering one prompt keeps helping on the next, which is
where most of the method's speed comes from on repetitive workloads. Call
:meth:`Recycling.reset` to forget, or build the source with ``persist=False`` to
start every ``generate()`` from an empty matrix. The matrix has a fixed size
(``int32 [V, k]``: 1 MB for 32k tokens and ``k = 8``) and never grows. It is
tied to one vocabulary: observing logits of another width starts a new matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from draftkit import InvalidInputError
from draftkit.types import Draft, DraftRequest, SourceCapabilities, StepFeedback

from .matrix import empty_matrix, rank_hits, record, rows_to_record, top_candidates
from .template import Expansion, Template, build_template, default_rank_probs, estimate_rank_probs, expand

__all__ = ["Recycling", "draft_from_expansion"]


def draft_from_expansion(expansion: Expansion) -> Draft:
    """One candidate per node (its root path), weighted so a trie rebuilds the tree.

    The ``trie`` builder scores a node by the total weight of the candidates
    through it. Giving node ``i``'s own path the weight ``s_i - sum(s_child)``
    (``s`` = template prior) makes that total exactly ``s_i``: the trie
    reproduces the expanded tree node for node, in the same order, and if it has
    to cut (a smaller budget, a composite of sources) it keeps the nodes with
    the highest prior first. Priors of siblings sum to at most their parent's
    (the ranks are disjoint events), so weights are never negative.
    """
    m = expansion.size
    if m == 0:
        return Draft.empty()
    own = expansion.scores.astype(np.float64).copy()
    children = np.nonzero(expansion.parents >= 0)[0]
    np.subtract.at(own, expansion.parents[children], expansion.scores[children])
    own = np.maximum(own, 0.0)  # rounding only; exact priors never go below zero
    paths: list[list[int]] = []
    for token, parent in zip(expansion.tokens.tolist(), expansion.parents.tolist(), strict=True):
        paths.append((paths[parent] if parent >= 0 else []) + [token])
    return Draft(tuple(np.array(path, dtype=np.int64) for path in paths), tuple(own.tolist()))


@dataclass(eq=False)
class Recycling:
    """Draft source ``recycling``: drafts from the target's own recycled top-k candidates.

    Options (all keyword arguments of ``source_options``):

    * ``k``: candidates stored per token (matrix columns), default 8.
    * ``tree_size``: nodes of the static template, default 80; each step uses
      its first ``min(tree_size, budget)`` nodes.
    * ``rank_probs``: prior chance of each rank being right, which shapes the
      template (see :mod:`draftkit_recycling.template`); default tuned for ``k=8``.
    * ``template_paths``: an explicit template as rank paths instead.
    * ``adapt_template``: re-shape the template from the rank frequencies this
      source observes, every ``adapt_every`` observed token pairs, with
      ``rank_probs`` as a prior worth ``prior_weight`` observations. Default
      (``None``): adapt unless ``template_paths`` fixes the template; it
      accepted 23% more tokens per step than the paper's static template on
      draftkit's demo model (README). ``False`` is the paper's method.
    * ``persist``: keep the matrix across ``generate()`` calls (default True).
    """

    k: int = 8
    tree_size: int = 80
    rank_probs: Sequence[float] | None = None
    template_paths: Sequence[Sequence[int]] | None = None
    adapt_template: bool | None = None
    #: Observed (token, next token) pairs between two re-shapings of an adaptive template.
    adapt_every: int = 64
    #: How many observations the prior rank probabilities are worth when adapting.
    prior_weight: float = 32.0
    persist: bool = True

    name: ClassVar[str] = "recycling"
    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities(wants_node_logits=True, stateful=True)

    template: Template = field(init=False, repr=False)
    _matrix: np.ndarray | None = field(init=False, default=None, repr=False)
    _stop_tokens: frozenset[int] = field(init=False, default=frozenset(), repr=False)
    _rank_hits: np.ndarray = field(init=False, repr=False)
    _prior: tuple[float, ...] = field(init=False, repr=False)
    _adapted_at: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise InvalidInputError(f"recycling: k must be a positive integer, got {self.k!r}")
        probs = tuple(self.rank_probs) if self.rank_probs is not None else default_rank_probs(self.k)
        if len(probs) > self.k:
            raise InvalidInputError(
                f"recycling: rank_probs has {len(probs)} ranks but only k={self.k} candidates are stored; "
                f"pass at most {self.k} probabilities or raise k"
            )
        if self.adapt_every < 1 or not self.prior_weight > 0:
            raise InvalidInputError(
                f"recycling: adapt_every must be >= 1 and prior_weight > 0, got {self.adapt_every} "
                f"and {self.prior_weight}"
            )
        for flag in ("persist", "adapt_template"):  # "no" from a command line must not read as True
            value = getattr(self, flag)
            if not isinstance(value, bool) and not (flag == "adapt_template" and value is None):
                raise InvalidInputError(f"recycling: {flag} must be true or false, got {value!r}")
        if self.template_paths is not None and self.adapt_template:
            raise InvalidInputError(
                "recycling: template_paths fixes the template, so it cannot be combined with "
                "adapt_template=True; drop one of them"
            )
        if self.adapt_template is None:
            self.adapt_template = self.template_paths is None
        self._prior = probs
        self._initial_template()

    def _initial_template(self) -> None:
        if self.template_paths is not None:
            self.template = Template.from_paths(self.template_paths, self._prior)
        else:
            self.template = build_template(self.tree_size, self._prior)
        self._rank_hits = np.zeros(self.k + 1, dtype=np.int64)
        self._adapted_at = 0

    # -- DraftSource -----------------------------------------------------------------------

    def begin(self, prompt: np.ndarray) -> None:
        self._stop_tokens = frozenset()
        if not self.persist:
            self.reset()

    def propose(self, request: DraftRequest) -> Draft:
        self._stop_tokens = request.eos_token_ids
        if self._matrix is None:
            return Draft.empty()
        expansion = expand(
            self.template,
            self._matrix,
            int(request.context[-1]),
            vocab_size=request.vocab_size,
            max_nodes=request.max_nodes,
            max_depth=request.max_depth,
            stop_tokens=request.eos_token_ids,
        )
        return draft_from_expansion(expansion)

    def observe(self, feedback: StepFeedback) -> None:
        logits = feedback.node_logits
        if logits is None:
            # The engine withholds the logits of a request's final step (they may follow a
            # stop string it only detects in text): nothing to learn from this step.
            return
        vocab = int(logits.shape[-1])
        if self._matrix is None or self._matrix.shape[0] != vocab:
            self._matrix = empty_matrix(vocab, self.k)
        # Score the rows this step drafted from before they are overwritten.
        self._rank_hits += rank_hits(self._matrix, np.concatenate([feedback.context[-1:], feedback.emitted]))
        observed = int(self._rank_hits.sum())
        if self.adapt_template and observed - self._adapted_at >= self.adapt_every:
            used = len(self._prior)  # hits at ranks the template never uses count as misses
            counts = np.append(self._rank_hits[:used], self._rank_hits[used:].sum())
            probs = estimate_rank_probs(counts, self._prior, self.prior_weight)
            self.template = build_template(self.tree_size, probs)
            self._adapted_at = observed
        tokens, rows = rows_to_record(
            int(feedback.context[-1]),
            feedback.tree.tokens,
            feedback.tree.parents,
            feedback.verdict.accepted_nodes,
            # The engine sends the request's stop tokens with the feedback; a caller that
            # does not (a hand-made StepFeedback) gets those of this request's proposals.
            feedback.eos_token_ids or self._stop_tokens,
        )
        if tokens.size:
            # Most rows are recorded, so ranking all of them beats gathering the chosen ones first.
            record(self._matrix, tokens, top_candidates(logits.detach(), self.k)[rows])

    def reset(self) -> None:
        self._matrix = None
        self._initial_template()

    # -- inspection ------------------------------------------------------------------------

    @property
    def matrix(self) -> np.ndarray | None:
        """A read-only view of the adjacency matrix (``int32 [V, k]``), ``None`` before the first step."""
        if self._matrix is None:
            return None
        view = self._matrix.view()
        view.flags.writeable = False
        return view

    @property
    def known_tokens(self) -> int:
        """How many tokens have a recorded row."""
        return 0 if self._matrix is None else int(np.count_nonzero(self._matrix[:, 0] >= 0))

    @property
    def rank_frequencies(self) -> np.ndarray:
        """Observed chance that the next token was the rank-r candidate of a known row.

        float64 ``[k + 1]``: entries ``0..k-1`` per rank, entry ``k`` for "not in
        the row"; zeros before anything was observed. Entries ``0..k-1`` are what
        ``rank_probs`` models, so a workload's own values can shape the template:
        ``Recycling(rank_probs=tuple(source.rank_frequencies[:-1]))`` (all must be
        positive).
        """
        total = int(self._rank_hits.sum())
        return self._rank_hits / total if total else np.zeros(self.k + 1)
