"""Merge candidate sequences into a prefix tree and keep the best nodes."""

from __future__ import annotations

import numpy as np

from ..types import Draft, TokenTree

__all__ = ["TrieBuilder"]


class TrieBuilder:
    """Prefix-merges the candidates; keeps the ``max_nodes`` highest-scoring nodes.

    A node's score is the total weight of the candidates that pass through it
    (with ``Draft.token_weights``, the total weight of their tokens at that node),
    so it is never higher than its parent's as long as token weights do not grow
    along a candidate: keeping the top nodes (ties broken by
    depth, then by first appearance) always yields a connected tree, which is the
    frequency-weighted trie of REST and the merged path set of ADED.
    """

    name = "trie"

    def build(self, draft: Draft, max_nodes: int, max_depth: int) -> TokenTree:
        if draft.is_empty or max_nodes < 1 or max_depth < 1:
            return TokenTree.empty()
        # children[(parent, token)] -> node index; node lists in creation order,
        # which is topological (a parent is created before its children).
        index: dict[tuple[int, int], int] = {}
        tokens: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        scores: list[float] = []
        prob_rows: list[tuple[int, int]] = []  # (sequence, position) giving the node's q row
        token_weights = draft.token_weights
        for s, (seq, weight) in enumerate(zip(draft.sequences, draft.weights, strict=True)):
            parent = -1
            # A running minimum keeps scores from growing with depth, so the kept nodes form a tree.
            per_token = (
                None
                if token_weights is None
                else np.minimum.accumulate(np.asarray(token_weights[s], dtype=float)).tolist()
            )
            for pos, tok in enumerate(np.asarray(seq, dtype=np.int64)[:max_depth].tolist()):
                if per_token is not None:
                    weight = per_token[pos]
                key = (parent, tok)
                node = index.get(key)
                if node is None:
                    node = len(tokens)
                    index[key] = node
                    tokens.append(tok)
                    parents.append(parent)
                    depths.append(pos + 1)
                    scores.append(0.0)
                    prob_rows.append((s, pos))
                scores[node] += float(weight)
                parent = node
        n = len(tokens)
        if n > max_nodes:
            order = sorted(range(n), key=lambda i: (-scores[i], depths[i], i))
            keep = sorted(order[:max_nodes])
        else:
            keep = list(range(n))
        remap = {old: new for new, old in enumerate(keep)}
        kept_parents = []
        for old in keep:
            p = parents[old]
            if p >= 0 and p not in remap:  # only possible with negative weights
                return self._fallback_chain(draft, max_nodes, max_depth)
            kept_parents.append(remap[p] if p >= 0 else -1)
        probs = None
        if draft.probs is not None:
            import torch

            probs = torch.stack([draft.probs[s][pos] for s, pos in (prob_rows[i] for i in keep)])
        return TokenTree.from_parents(
            np.asarray([tokens[i] for i in keep], dtype=np.int64),
            np.asarray(kept_parents, dtype=np.int64),
            probs=probs,
            scores=np.asarray([scores[i] for i in keep], dtype=np.float64),
        )

    def _fallback_chain(self, draft: Draft, max_nodes: int, max_depth: int) -> TokenTree:
        from .chain import ChainBuilder

        return ChainBuilder().build(draft, max_nodes, max_depth)
