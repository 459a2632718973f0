"""The static tree template of Token Recycling, and its instantiation from the matrix.

A template is a tree of *ranks*: node ``[0, 1]`` means "the best candidate after
the root, then the second-best candidate after that". Drafting walks the
template breadth-first from the last context token, reading each node's token
from the adjacency matrix row of its parent's token.

Which shape? Call ``q[r]`` the chance that the target's next token is the
rank-``r`` candidate of the row. These events are disjoint, so ``sum(q) <= 1``,
and a node's prior acceptance probability is the product of ``q`` along its rank
path. :func:`build_template` keeps the ``size`` most probable nodes (best-first
search), which is the template of that size with the largest expected number of
accepted tokens under this model. It comes out wide near the root and thin
below, with longer chains under better ranks; the default ``q`` gives, for 80
nodes, 8 / 21 / 25 / 18 / 6 / 1 / 1 nodes per level, close to the hand-made
80-node template of the paper (8 / 21 / 25 / 15 / 8 / 3).

Nodes are stored in *priority order*: most probable first, so parents always
precede children and every prefix of the template is a connected tree. Cutting
a template to a budget of ``m`` nodes therefore just keeps its first ``m``.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from draftkit import InvalidInputError

from .matrix import UNKNOWN

__all__ = [
    "DEFAULT_RANK_PROBS",
    "Template",
    "Expansion",
    "build_template",
    "default_rank_probs",
    "estimate_rank_probs",
    "expand",
]

#: Prior chance that the target's next token is the rank-r candidate (r = 0..7).
#: Chosen so that the 80-node template has the level widths of the paper's
#: hand-made one; ``Recycling.rank_frequencies`` measures a workload's own values.
#: Only the *shape* of the template depends on it, never the output.
DEFAULT_RANK_PROBS: tuple[float, ...] = (0.5, 0.14, 0.07, 0.045, 0.03, 0.022, 0.017, 0.013)


def default_rank_probs(k: int) -> tuple[float, ...]:
    """:data:`DEFAULT_RANK_PROBS` cut or extended (geometrically, sum stays < 1) to ``k`` ranks."""
    probs = list(DEFAULT_RANK_PROBS[:k])
    while len(probs) < k:
        probs.append(probs[-1] * 0.75)
    return tuple(probs)


def estimate_rank_probs(counts: np.ndarray, prior: Sequence[float], prior_weight: float) -> tuple[float, ...]:
    """Rank probabilities from observed rank hits, shrunk towards ``prior``.

    ``counts`` is int ``[k + 1]`` as returned by
    :func:`draftkit_recycling.matrix.rank_hits` (the last entry counts misses).
    The estimate is the posterior mean under a Dirichlet prior with mean
    ``(prior, 1 - sum(prior))`` worth ``prior_weight`` observations: with no
    counts it is ``prior``, with many it approaches the observed frequencies.
    Every entry stays in (0, 1) and the sum below 1 as long as the prior's do.
    """
    k = len(prior)
    hits = np.asarray(counts, dtype=np.float64).reshape(-1)
    if hits.size != k + 1:
        raise ValueError(f"estimate_rank_probs: counts must have k + 1 = {k + 1} entries, got {hits.size}")
    mean = np.asarray(prior, dtype=np.float64)
    total = hits.sum() + prior_weight
    return tuple(((hits[:k] + prior_weight * mean) / total).tolist())


@dataclass(frozen=True, eq=False)
class Template:
    """A static tree of candidate ranks in priority order (``n`` nodes, root excluded)."""

    parents: np.ndarray  #: int64 [n]; -1 for the root's children, else an earlier index
    ranks: np.ndarray  #: int64 [n]; which candidate of the parent's matrix row
    depths: np.ndarray  #: int64 [n]; 1 for the root's children
    #: float64 [n]; prior acceptance probability (product of rank probabilities on
    #: the path), strictly decreasing from parent to child.
    scores: np.ndarray

    #: int64 index arrays of the nodes at depth 1, 2, ... (derived, for breadth-first expansion)
    levels: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        top = int(self.depths.max()) if self.depths.size else 0
        levels = tuple(np.nonzero(self.depths == d)[0] for d in range(1, top + 1))
        object.__setattr__(self, "levels", levels)

    @property
    def size(self) -> int:
        return int(self.parents.size)

    @property
    def max_depth(self) -> int:
        return len(self.levels)

    @property
    def max_fanout(self) -> int:
        """The largest rank used plus one: the matrix needs at least this many columns."""
        return int(self.ranks.max()) + 1 if self.ranks.size else 0

    def paths(self) -> list[tuple[int, ...]]:
        """Each node as its rank path from the root, e.g. ``(0, 1)``."""
        out: list[tuple[int, ...]] = []
        for p, r in zip(self.parents.tolist(), self.ranks.tolist(), strict=True):
            out.append((out[p] if p >= 0 else ()) + (r,))
        return out

    @classmethod
    def from_paths(
        cls, paths: Sequence[Sequence[int]], rank_probs: Sequence[float] = DEFAULT_RANK_PROBS
    ) -> Template:
        """A template of hand-picked rank paths, e.g. ``[(0,), (1,), (0, 0)]``.

        Every prefix of a path must be a path too. The nodes are put in priority
        order by their prior (``rank_probs``), so budget cuts keep the likeliest.
        """
        probs = _check_rank_probs(rank_probs)
        unique = {tuple(int(r) for r in p) for p in paths}
        for path in unique:
            if not path:
                raise InvalidInputError("Template.from_paths: an empty path is the root; list only nodes")
            if path[:-1] and path[:-1] not in unique:
                raise InvalidInputError(
                    f"Template.from_paths: path {list(path)} has no parent {list(path[:-1])}; "
                    "add every prefix of every path"
                )
            if min(path) < 0 or max(path) >= len(probs):
                raise InvalidInputError(
                    f"Template.from_paths: path {list(path)} uses a rank outside [0, {len(probs)}); "
                    "pass rank_probs with one probability per rank used"
                )

        ordered = sorted(unique, key=lambda p: (-_prior(p, probs), len(p), p))
        return _from_ordered(ordered, probs)


def _check_rank_probs(rank_probs: Sequence[float]) -> tuple[float, ...]:
    probs = tuple(float(q) for q in rank_probs)
    if not probs:
        raise InvalidInputError("rank_probs must list at least one probability")
    if any(not (0.0 < q < 1.0) for q in probs) or sum(probs) > 1.0 + 1e-9:
        raise InvalidInputError(
            f"rank_probs must be probabilities in (0, 1) of disjoint events (sum <= 1), got {list(probs)}"
        )
    return probs


def _prior(path: Sequence[int], probs: Sequence[float]) -> float:
    """Product of the rank probabilities along ``path``, multiplied root-first
    (the same rounding as the best-first search, so equal priors compare equal)."""
    score = 1.0
    for rank in path:
        score *= probs[rank]
    return score


def _from_ordered(ordered: Sequence[tuple[int, ...]], probs: Sequence[float]) -> Template:
    index = {path: i for i, path in enumerate(ordered)}
    n = len(ordered)
    parents = np.array([index[p[:-1]] if len(p) > 1 else -1 for p in ordered], dtype=np.int64).reshape(n)
    ranks = np.array([p[-1] for p in ordered], dtype=np.int64).reshape(n)
    depths = np.array([len(p) for p in ordered], dtype=np.int64).reshape(n)
    scores = np.array([_prior(p, probs) for p in ordered], dtype=np.float64).reshape(n)
    return Template(parents, ranks, depths, scores)


def build_template(
    size: int, rank_probs: Sequence[float] = DEFAULT_RANK_PROBS, max_depth: int | None = None
) -> Template:
    """The ``size`` nodes with the highest prior acceptance probability, in priority order.

    Best-first search from the root: pop the likeliest frontier node, push its
    children (one per rank). Ties are broken by depth, then by discovery order,
    so the template is a deterministic function of the arguments.
    """
    if size < 1:
        raise InvalidInputError(f"the tree template needs at least one node, got size={size}")
    if max_depth is not None and max_depth < 1:
        raise InvalidInputError(f"max_depth must be >= 1 or None, got {max_depth}")
    probs = _check_rank_probs(rank_probs)
    counter = 0
    frontier: list[tuple[float, int, int, tuple[int, ...]]] = [(-1.0, 0, counter, ())]
    ordered: list[tuple[int, ...]] = []
    while frontier and len(ordered) < size + 1:  # +1: the root is popped first
        neg_score, depth, _, path = heapq.heappop(frontier)
        ordered.append(path)
        if max_depth is not None and depth >= max_depth:
            continue
        for rank, q in enumerate(probs):
            counter += 1
            heapq.heappush(frontier, (neg_score * q, depth + 1, counter, path + (rank,)))
    return _from_ordered(ordered[1:], probs)


@dataclass(frozen=True, eq=False)
class Expansion:
    """A template instantiated from the matrix: a draft tree in priority order (``m`` nodes)."""

    tokens: np.ndarray  #: int64 [m] drafted token ids
    parents: np.ndarray  #: int64 [m] -1 or an earlier index
    scores: np.ndarray  #: float64 [m] the template prior of each node
    template_nodes: np.ndarray  #: int64 [m] which template node each one instantiates

    @property
    def size(self) -> int:
        return int(self.tokens.size)


def expand(
    template: Template,
    matrix: np.ndarray,
    root_token: int,
    *,
    vocab_size: int,
    max_nodes: int,
    max_depth: int,
    stop_tokens: Collection[int] = frozenset(),
) -> Expansion:
    """Fill the template breadth-first from ``root_token`` with candidates from ``matrix``.

    A template node is drafted when its parent was (or is the root), the
    parent's token is not a stop token and has a known matrix row, and the
    candidate at the node's rank is a token id below ``vocab_size``. Because
    these conditions pass down the tree and the template is in priority order,
    the first ``max_nodes`` drafted nodes within ``max_depth`` form a connected
    tree: the budget cut keeps the likeliest nodes. Siblings read different
    columns of one row, so their tokens are distinct.
    """
    n = template.size
    rows, cols = matrix.shape
    stops = [int(t) for t in stop_tokens]
    root = int(root_token)
    if n == 0 or max_nodes < 1 or root in stops or not (0 <= root < rows) or matrix[root, 0] < 0:
        none = np.empty(0, dtype=np.int64)
        return Expansion(none, none.copy(), np.empty(0, dtype=np.float64), none.copy())
    # tokens[i] = UNKNOWN marks a node that is not drafted; the root sits at index n.
    tokens = np.full(n + 1, UNKNOWN, dtype=np.int64)
    tokens[n] = root
    parents = np.where(template.parents >= 0, template.parents, n)
    for level in template.levels[:max_depth]:
        parent_tok = tokens[parents[level]]
        ok = (parent_tok >= 0) & (parent_tok < rows)  # parent drafted (UNKNOWN < 0) and inside the matrix
        for stop in stops:
            ok &= parent_tok != stop
        rank = template.ranks[level]
        ok &= rank < cols
        cand = matrix[np.where(ok, parent_tok, 0), np.where(ok, rank, 0)].astype(np.int64)
        ok &= (cand >= 0) & (cand < vocab_size)  # an unknown row holds UNKNOWN everywhere
        tokens[level] = np.where(ok, cand, UNKNOWN)
    keep = np.nonzero(tokens[:n] >= 0)[0][:max_nodes]
    position = np.full(n, -1, dtype=np.int64)
    position[keep] = np.arange(keep.size)
    old_parents = template.parents[keep]
    parents = np.where(old_parents >= 0, position[np.maximum(old_parents, 0)], -1)
    return Expansion(tokens[keep], parents.astype(np.int64), template.scores[keep].copy(), keep)
