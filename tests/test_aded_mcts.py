"""ADED's MCTS drafts: Numba and reference agree exactly; every drafted tree is valid.

Under ``NUMBA_DISABLE_JIT=1`` both sides run as Python, with fewer iterations.
"""

from __future__ import annotations

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from draftkit import DraftRequest, TokenTree
from draftkit.sources.aded import AdaptConfig, AdaptiveTable, Aded, MctsConfig, build_matrix
from draftkit.sources.aded.reference import ReferenceTable
from draftkit.trees import TrieBuilder

JIT = not numba.config.DISABLE_JIT
ITERATIONS = 150 if JIT else 40


def run_draft(table, a, b, eos, limit, max_len, max_nodes, cfg, seed):
    width = cfg.max_path_len
    paths = np.full((cfg.num_paths, width), -7, np.int64)
    lens = np.zeros(cfg.num_paths, np.int64)
    weights = np.zeros(cfg.num_paths, np.float64)
    n = table.draft(a, b, np.asarray(sorted(eos), np.int64), limit, max_len, max_nodes, cfg, seed,
                    paths, lens, weights)
    return [(paths[i, : lens[i]].tolist(), float(weights[i])) for i in range(n)]


def trie_size(paths):
    nodes = set()
    for p in paths:
        for j in range(1, len(p) + 1):
            nodes.add(tuple(p[:j]))
    return len(nodes)


case = st.integers(3, 25).flatmap(
    lambda vocab: st.tuples(
        st.just(vocab),
        st.lists(st.lists(st.integers(0, vocab - 1), min_size=3, max_size=60), min_size=1, max_size=8),
        st.lists(st.lists(st.integers(0, vocab - 1), max_size=16), max_size=4),  # adaptive updates
        st.sets(st.integers(0, vocab - 1), max_size=2),  # eos
        st.integers(0, 2**32),  # seed
    )
)
knobs = st.fixed_dictionaries({
    "rollout_depth": st.integers(2, 5),
    "num_paths": st.integers(1, 24),
    "greedy_extension": st.integers(0, 2),
    "normalize": st.booleans(),
    "top_k": st.integers(1, 12),
    "max_len": st.integers(1, 6),
    "max_nodes": st.integers(1, 64),
    "limit_cut": st.integers(0, 2),
})


@settings(max_examples=25 if JIT else 8, deadline=None)
@given(case, knobs)
def test_numba_and_reference_drafts_are_identical(case, k):
    vocab, corpus, updates, eos, seed = case
    matrix = build_matrix([np.asarray(d, np.int64) for d in corpus], vocab, top_k=k["top_k"])
    adapt = AdaptConfig()
    fast = AdaptiveTable(matrix, adapt, initial_capacity=8)
    ref = ReferenceTable(matrix, adapt)
    eos_arr = np.asarray(sorted(eos), np.int64)
    for w in updates:
        fast.update(np.asarray(w, np.int64), eos_arr)
        ref.update(np.asarray(w, np.int64), eos_arr)
    cfg = MctsConfig(iterations=ITERATIONS, rollout_depth=k["rollout_depth"], num_paths=k["num_paths"],
                     greedy_extension=k["greedy_extension"], normalize=k["normalize"])
    limit = vocab - k["limit_cut"]
    doc = corpus[0]
    a, b = doc[len(doc) // 2 - 1], doc[len(doc) // 2]
    got = run_draft(fast, a, b, eos, limit, k["max_len"], k["max_nodes"], cfg, seed | 1)
    want = run_draft(ref, a, b, eos, limit, k["max_len"], k["max_nodes"], cfg, seed | 1)
    assert got == want
    # Invariants of the paths themselves.
    assert trie_size([p for p, _ in got]) <= k["max_nodes"]
    for path, weight in got:
        assert 1 <= len(path) <= min(k["max_len"], cfg.max_path_len)
        assert all(0 <= t < limit for t in path)
        assert all(t not in eos for t in path[:-1])  # nothing after an EOS
        assert weight >= 0
    assert len({tuple(p) for p, _ in got}) == len(got)


@settings(max_examples=20 if JIT else 6, deadline=None)
@given(case, st.integers(1, 40), st.integers(1, 6))
def test_drafted_trees_respect_budget_and_vocabulary(case, budget, depth):
    vocab, corpus, updates, eos, seed = case
    src = Aded.from_tokens([np.asarray(d, np.int64) for d in corpus], vocab, seed=seed,
                           iterations=ITERATIONS)
    context = np.asarray(corpus[0] + [u for w in updates for u in w], np.int64)
    request = DraftRequest(context=context, prompt_length=len(context), max_depth=depth, max_nodes=budget,
                           vocab_size=vocab - 1, eos_token_ids=frozenset(eos))
    src.begin(context)
    draft = src.propose(request)
    for seq in draft.sequences:
        assert seq.dtype == np.int64 and 1 <= seq.size <= depth
        assert np.all((seq >= 0) & (seq < vocab - 1))
        assert not any(int(t) in eos for t in seq[:-1])
    assert trie_size([s.tolist() for s in draft.sequences]) <= budget
    tree = TrieBuilder().build(draft, budget, depth)
    assert isinstance(tree, TokenTree)
    assert tree.size <= budget and tree.max_depth <= depth
    assert np.all(tree.parents < np.arange(tree.size))
    for i in range(tree.size):  # every root path is a drafted prefix
        path = tree.path_tokens(i).tolist()
        assert any(s[: len(path)].tolist() == path for s in draft.sequences)


def test_drafts_are_deterministic_and_seed_dependent():
    rng = np.random.default_rng(3)
    corpus = [rng.integers(0, 12, 400)]
    ctx = np.asarray(corpus[0][:50], np.int64)
    req = DraftRequest(context=ctx, prompt_length=50, max_depth=8, max_nodes=64, vocab_size=12)
    outs = []
    for seed in (0, 0, 1):
        src = Aded.from_tokens(corpus, 12, seed=seed, learn_prompt=False, iterations=ITERATIONS)
        src.begin(ctx)
        d = src.propose(req)
        outs.append([s.tolist() for s in d.sequences])
    assert outs[0] == outs[1]
    assert outs[0] and outs[0] != outs[2]


def test_no_draft_without_successors_or_after_eos():
    src = Aded.from_tokens([np.array([1, 2, 3, 4, 5])], 10, iterations=ITERATIONS, learn_prompt=False)
    mk = lambda ctx, eos=frozenset(): DraftRequest(  # noqa: E731
        context=np.asarray(ctx, np.int64), prompt_length=len(ctx), max_depth=5, max_nodes=8, vocab_size=10,
        eos_token_ids=eos)
    assert src.propose(mk([7, 8])).is_empty  # unknown bigram
    assert src.propose(mk([3])).is_empty  # no bigram yet
    d = src.propose(mk([0, 1, 2]))
    assert [s.tolist() for s in d.sequences] == [[3, 4], [3, 4, 5]]  # node [3] + greedy 4, node [3, 4] + 5
    d = src.propose(mk([0, 1, 2], frozenset({4})))
    assert [s.tolist() for s in d.sequences] == [[3, 4]]  # cut after the EOS
    assert src.propose(mk([1, 2], frozenset({2}))).is_empty  # the context ends with an EOS


def test_official_extraction_rule_on_a_known_table():
    """A chain corpus: the most visited path is the corpus continuation, extended greedily."""
    corpus = [np.array([0, 1, 2, 3, 4, 5, 6, 7] * 3)]
    src = Aded.from_tokens(corpus, 8, learn_prompt=False, iterations=ITERATIONS)
    req = DraftRequest(context=np.array([0, 1]), prompt_length=2, max_depth=10, max_nodes=64, vocab_size=8)
    d = src.propose(req)
    # A deterministic chain: each tree node (depth <= rollout_depth - 1) plus one greedy token,
    # most visited (shallowest) first; the union is one chain of rollout_depth tokens.
    assert [s.tolist() for s in d.sequences] == [[2, 3], [2, 3, 4], [2, 3, 4, 5]]
    assert list(d.weights) == [ITERATIONS, ITERATIONS - 1, ITERATIONS - 2]  # visit counts


def test_search_evidence_rises_with_the_best_paths_share_of_visits():
    from draftkit.sources.aded.config import MctsConfig, search_evidence

    mcts = MctsConfig(iterations=100)
    classes = [search_evidence(v, mcts) for v in (5, 34, 35, 59, 60, 100)]
    assert classes == [1, 1, 2, 2, 3, 3]
