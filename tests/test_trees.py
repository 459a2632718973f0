"""Tree builders: budget, depth and structure invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
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


def _preferred_by_sorting(tree):
    """Reference: order the nodes by parent, then best score, then index; the first child of each parent."""
    nxt = np.full(tree.size + 1, -1, dtype=np.int64)
    if tree.size == 0:
        return nxt
    scores = tree.scores if tree.scores is not None else np.zeros(tree.size)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((np.arange(tree.size), -scores, tree.parents))
    _, first = np.unique(tree.parents[order], return_index=True)
    best = order[first]
    nxt[tree.parents[best] + 1] = best + 1
    return nxt


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_preferred_child_is_the_best_scored_then_the_first(data):
    from draftkit.trees.chain import preferred_next_rows

    n = data.draw(st.integers(0, 24))
    parents = [data.draw(st.integers(-1, i - 1)) for i in range(n)]
    scores = data.draw(st.one_of(
        st.none(),
        st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, float("nan")]), min_size=n, max_size=n),
    ))
    tree = TokenTree.from_parents(np.arange(n), np.asarray(parents, dtype=np.int64),
                                  scores=None if scores is None else np.asarray(scores))
    assert preferred_next_rows(tree).tolist() == _preferred_by_sorting(tree).tolist()
