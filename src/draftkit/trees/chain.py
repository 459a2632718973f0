"""The simplest tree: one candidate, as a chain."""

from __future__ import annotations

import numpy as np
import torch

from ..types import Draft, TokenTree

__all__ = ["ChainBuilder", "best_path", "is_chain", "preferred_next_rows"]


def preferred_next_rows(tree: TokenTree) -> np.ndarray:
    """For each logits row (0 = root, ``i + 1`` = node ``i``), the row of the child the
    tree ranks first (highest score, else lowest index), or -1 at a leaf."""
    nxt = np.full(tree.size + 1, -1, dtype=np.int64)
    if tree.size == 0:
        return nxt
    scores = tree.scores if tree.scores is not None and tree.scores.shape == (tree.size,) else np.zeros(tree.size)
    parents = np.asarray(tree.parents, dtype=np.int64)
    order = np.lexsort((np.arange(tree.size), -scores, parents))  # by parent, best child first
    _, first = np.unique(parents[order], return_index=True)
    best = order[first]
    nxt[parents[best] + 1] = best + 1
    return nxt


def is_chain(tree: TokenTree) -> bool:
    """Whether every node's parent is the node before it (one path, no branches)."""
    return bool(np.array_equal(tree.parents, np.arange(-1, tree.size - 1)))


def best_path(tree: TokenTree) -> TokenTree:
    """The tree cut to one path: from the root, the child the tree ranks first at each level.

    "First" is the highest score (``tree.scores``, the builder's estimate), then
    the lowest index, as the lazy LM head ranks children. For a model that
    verifies chains only, this is the path most likely to be accepted.
    """
    if tree.size == 0 or is_chain(tree):
        return tree
    nxt = preferred_next_rows(tree)
    rows = [int(nxt[0])]
    while nxt[rows[-1]] >= 0:
        rows.append(int(nxt[rows[-1]]))
    keep = np.asarray(rows, dtype=np.int64) - 1  # logits row i + 1 is node i
    return TokenTree.from_parents(
        tree.tokens[keep], np.arange(-1, keep.size - 1, dtype=np.int64),
        probs=None if tree.probs is None else tree.probs[torch.from_numpy(keep)],
        scores=tree.scores[keep] if tree.scores is not None and tree.scores.shape == (tree.size,) else None,
    )


class ChainBuilder:
    """Keeps the best-weighted candidate, cut to the budget and the depth limit.

    A chain is what classic speculative decoding verifies; it is also the right
    shape when verification of many tokens is expensive (large models on a CPU).
    """

    name = "chain"

    def build(self, draft: Draft, max_nodes: int, max_depth: int) -> TokenTree:
        limit = min(max_nodes, max_depth)
        if draft.is_empty or limit < 1:
            return TokenTree.empty()
        best = max(range(len(draft.sequences)), key=lambda i: (draft.weights[i], -i))
        tokens = np.asarray(draft.sequences[best], dtype=np.int64)[:limit]
        if tokens.size == 0:
            return TokenTree.empty()
        parents = np.arange(-1, tokens.size - 1, dtype=np.int64)
        probs = None
        if draft.probs is not None:
            probs = draft.probs[best][: tokens.size]
        return TokenTree.from_parents(tokens, parents, probs=probs)
