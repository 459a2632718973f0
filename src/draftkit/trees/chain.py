"""The simplest tree: one candidate, as a chain."""

from __future__ import annotations

import numpy as np

from ..types import Draft, TokenTree

__all__ = ["ChainBuilder"]


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
