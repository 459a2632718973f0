"""Tree builders: budget, depth and structure invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from draftkit.trees import ChainBuilder, TrieBuilder
from draftkit.types import Draft, TokenTree
from strategies import token_sequences

drafts = st.lists(st.tuples(token_sequences, st.floats(0.1, 10.0)), max_size=8).map(
    lambda items: Draft(tuple(np.array(s) for s, _ in items), tuple(w for _, w in items))
)


def check_invariants(tree: TokenTree, budget: int, depth: int) -> None:
    assert tree.size <= budget
    assert tree.max_depth <= depth
    assert np.all(tree.parents < np.arange(tree.size))
    for node in range(tree.size):  # siblings carry distinct tokens
        kids = tree.children(node)
        assert len(set(tree.tokens[kids].tolist())) == kids.size
    assert len(set(tree.tokens[tree.children(-1)].tolist())) == tree.children(-1).size


def root_paths(tree: TokenTree) -> set[tuple[int, ...]]:
    return {tuple(tree.path_tokens(i).tolist()) for i in range(tree.size)}


@given(draft=drafts, budget=st.integers(1, 40), depth=st.integers(1, 12))
def test_trie_keeps_best_prefixes_within_budget(draft, budget, depth):
    tree = TrieBuilder().build(draft, budget, depth)
    check_invariants(tree, budget, depth)
    # Every root path of the tree is a prefix of some candidate.
    prefixes = {tuple(s[:k].tolist()) for s in draft.sequences for k in range(1, min(len(s), depth) + 1)}
    assert root_paths(tree) <= prefixes
    # Nothing is dropped when everything fits.
    if len(prefixes) <= budget:
        assert root_paths(tree) == prefixes


@given(draft=drafts, budget=st.integers(1, 40), depth=st.integers(1, 12))
def test_trie_node_score_is_the_weight_through_it(draft, budget, depth):
    tree = TrieBuilder().build(draft, budget, depth)
    for i in range(tree.size):
        path = tuple(tree.path_tokens(i).tolist())
        want = sum(w for s, w in zip(draft.sequences, draft.weights, strict=True)
                   if tuple(s[: len(path)].tolist()) == path)
        assert abs(tree.scores[i] - want) < 1e-9


@given(draft=drafts, budget=st.integers(1, 40), depth=st.integers(1, 12))
def test_chain_is_the_best_candidate_cut_to_the_limits(draft, budget, depth):
    tree = ChainBuilder().build(draft, budget, depth)
    check_invariants(tree, budget, depth)
    if draft.is_empty:
        assert tree.size == 0
    else:
        best = max(range(len(draft.sequences)), key=lambda i: (draft.weights[i], -i))
        assert tree.tokens.tolist() == draft.sequences[best][: min(budget, depth)].tolist()
