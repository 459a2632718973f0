"""ADED's adaptive rule: +increment per trigram occurrence in the window, capped, inserting missing ones.

The Numba table is checked against a naive dictionary implementation of the
rule (order-insensitive) and against the reference table (same row order).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from draftkit.sources.aded import AdaptConfig, AdaptiveTable, MctsConfig, build_matrix
from draftkit.sources.aded.reference import ReferenceTable


def f32(x):
    return float(np.float32(x))


def naive_update(rows, tokens, vocab, eos, inc, cap):
    for i in range(len(tokens) - 2):
        a, b, c = (int(t) for t in tokens[i : i + 3])
        if min(a, b, c) < 0 or max(a, b, c) >= vocab or a in eos or b in eos:
            continue
        row = rows.setdefault((a, b), {})
        row[c] = f32(min(row.get(c, 0.0) + inc, cap))


def table_dict(table, vocab):
    out = {}
    for a, b, succ in table.to_matrix().rows():
        out[(a, b)] = dict(succ)
    return out


scenario = st.integers(3, 30).flatmap(
    lambda vocab: st.tuples(
        st.just(vocab),
        st.lists(st.lists(st.integers(0, vocab - 1), max_size=40), max_size=6),  # corpus
        st.lists(st.lists(st.integers(0, vocab + 1), max_size=20), max_size=12),  # windows (some ids >= vocab)
        st.sets(st.integers(0, vocab - 1), max_size=2),  # eos ids
    )
)


@settings(max_examples=30, deadline=None)
@given(scenario, st.sampled_from([(0.04, 3.0), (0.3, 0.5), (1.0, 1.0)]))
def test_updates_equal_naive_rule(case, rule):
    vocab, corpus, windows, eos = case
    inc, cap = rule
    matrix = build_matrix([np.asarray(d, np.int64) for d in corpus], vocab, top_k=3)
    cfg = AdaptConfig(increment=inc, max_weight=cap)
    table = AdaptiveTable(matrix, cfg, initial_capacity=4)  # forces the pool to grow
    ref = ReferenceTable(matrix, cfg)
    naive = {(a, b): dict(succ) for a, b, succ in matrix.rows()}
    eos_arr = np.asarray(sorted(eos), np.int64)
    for w in windows:
        tokens = np.asarray(w, np.int64)
        n_fast = table.update(tokens, eos_arr)
        n_ref = ref.update(tokens, eos_arr)
        naive_update(naive, w, vocab, eos, inc, cap)
        assert n_fast == n_ref
    assert table_dict(table, vocab) == naive
    assert list(table.to_matrix().rows()) == list(ref.to_matrix().rows())
    for a, b in list(naive)[:5]:
        assert table.successors(a, b) == ref.successors(a, b)


@settings(max_examples=15, deadline=None)
@given(scenario)
def test_reset_restores_corpus_state(case):
    vocab, corpus, windows, eos = case
    matrix = build_matrix([np.asarray(d, np.int64) for d in corpus], vocab, top_k=3)
    table = AdaptiveTable(matrix, AdaptConfig(), initial_capacity=4)
    for w in windows:
        table.update(np.asarray(w, np.int64), np.asarray(sorted(eos), np.int64))
    table.reset()
    assert list(table.to_matrix().rows()) == list(matrix.rows())
    assert table.num_inserted == 0


def test_reset_after_undo_log_overflow():
    rng = np.random.default_rng(1)
    corpus = [rng.integers(0, 6, 3000)]
    matrix = build_matrix(corpus, 6, top_k=6)
    table = AdaptiveTable(matrix, AdaptConfig())
    table._log = table._log[:3]  # a tiny undo log overflows at once: reset must copy all weights
    for _ in range(20):
        table.update(rng.integers(0, 6, 16), None)
    assert table._meta[4] == 1
    table.reset()
    assert list(table.to_matrix().rows()) == list(matrix.rows())


def test_same_trigram_is_reinforced_once_per_occurrence_and_capped():
    matrix = build_matrix([np.array([1, 2, 3])], 5)
    table = AdaptiveTable(matrix, AdaptConfig(increment=0.25, max_weight=1.6))
    table.update(np.array([1, 2, 3, 1, 2, 3, 1, 2, 4]))
    # (1,2,3) twice: 1.0 + 0.5; (1,2,4) inserted at 0.25; (2,3,1) and (3,1,2) inserted
    assert table.successors(1, 2) == [(3, 1.5), (4, 0.25)]
    table.update(np.array([1, 2, 3]))
    assert table.successors(1, 2) == [(3, f32(1.6)), (4, 0.25)]
    assert table.successors(2, 3) == [(1, 0.5)]


def test_memory_plateaus_with_a_bounded_pool():
    """Thousands of windows of fresh text: inserted entries never exceed the cap, survivors are the strongest."""
    vocab = 500
    cfg = AdaptConfig(max_inserted=1024)
    matrix = build_matrix([np.arange(100) % vocab], vocab)
    table = AdaptiveTable(matrix, cfg, initial_capacity=64)
    ref = ReferenceTable(matrix, cfg)
    rng = np.random.default_rng(0)
    sizes = []
    hot = np.array([7, 8, 9, 7, 8, 9], np.int64)
    for step in range(1500):
        w = rng.integers(0, vocab, 16)
        table.update(w)
        ref.update(w)
        if step % 3 == 0:
            table.update(hot)
            ref.update(hot)
        assert table.num_inserted <= cfg.max_inserted
        sizes.append(table.nbytes)
    assert sizes[-1] == sizes[len(sizes) // 2]  # no growth in the second half
    assert list(table.to_matrix().rows()) == list(ref.to_matrix().rows())
    # The often-reinforced trigrams survive every compaction.
    assert dict(table.successors(7, 8)).get(9, 0) > 1.0


def test_eos_and_out_of_vocabulary_tokens_are_not_learnt():
    table = AdaptiveTable(build_matrix([], 10), AdaptConfig())
    table.update(np.array([1, 2, 9, 3, 4, 12, 5]), np.array([9]))
    learnt = {(a, b): dict(s) for a, b, s in table.to_matrix().rows()}
    assert learnt == {(1, 2): {9: f32(0.04)}}


def test_learnt_successors_per_bigram_are_capped():
    """One bigram followed by thousands of distinct tokens (an indentation in code) keeps at most
    ``max_learnt_per_bigram`` learnt successors, so its row and the MCTS node pool stay small.

    Before the cap the row held every successor ever seen and ``propose`` allocated room for
    ``1 + iterations * row length`` nodes (tens of MB) on every call.
    """
    vocab = 8000
    rng = np.random.default_rng(0)
    matrix = build_matrix([rng.integers(0, vocab, 5000) for _ in range(4)] + [np.array([1, 2, 3, 1, 2, 4])],
                          vocab, top_k=12)
    base = len(matrix.successors_of(1, 2))
    assert base == 2
    cfg = AdaptConfig()  # max_learnt_per_bigram = 12
    mcts = MctsConfig()
    table = AdaptiveTable(matrix, cfg)
    ref = ReferenceTable(matrix, cfg)
    for c in range(5, 3000):
        window = np.array([1, 2, c, 1, 2, (c * 7) % vocab], np.int64)
        table.update(window)
        ref.update(window)
    row = table.successors(1, 2)
    assert len(row) == base + cfg.max_learnt_per_bigram
    assert row == ref.successors(1, 2)
    assert [c for c, _ in row[:base]] == [3, 4]  # the corpus successors are never dropped
    assert table.max_row_length <= 12 + cfg.max_learnt_per_bigram
    assert table.mcts_node_capacity(mcts) <= 1 + mcts.iterations * (12 + cfg.max_learnt_per_bigram)
    assert table.num_inserted == ref.num_inserted
    assert list(table.to_matrix().rows()) == list(ref.to_matrix().rows())


def test_a_full_row_drops_its_weakest_then_oldest_learnt_successor():
    matrix = build_matrix([], 20)
    cfg = AdaptConfig(increment=0.25, max_learnt_per_bigram=3)
    for table in (AdaptiveTable(matrix, cfg), ReferenceTable(matrix, cfg)):
        table.update(np.array([1, 2, 5, 1, 2, 6, 1, 2, 7], np.int64))  # row (1, 2): 5, 6, 7
        table.update(np.array([1, 2, 6], np.int64))  # 6 reinforced
        table.update(np.array([1, 2, 8], np.int64))  # full: 5 goes (weakest, oldest)
        assert table.successors(1, 2) == [(6, 0.5), (7, 0.25), (8, 0.25)]
        table.update(np.array([1, 2, 9], np.int64))  # then 7 (8 is as weak but newer)
        assert table.successors(1, 2) == [(6, 0.5), (8, 0.25), (9, 0.25)]
        assert table.num_inserted == 3 + 4  # (1,2,*) x3; (2,5,1), (5,1,2), (2,6,1), (6,1,2)


@pytest.mark.parametrize("max_learnt", [1, 2, 5])
def test_capped_rows_and_compaction_agree_with_the_reference(max_learnt):
    """Many dropped entries and pool compactions (dead slots reclaimed): both backends stay identical,
    also in the drafts they make from the learnt rows."""
    vocab = 40
    cfg = AdaptConfig(max_inserted=1024, max_learnt_per_bigram=max_learnt)
    rng = np.random.default_rng(max_learnt)
    matrix = build_matrix([rng.integers(0, vocab, 300)], vocab, top_k=3)
    table = AdaptiveTable(matrix, cfg, initial_capacity=64)
    ref = ReferenceTable(matrix, cfg)
    eos = np.array([0], np.int64)
    mcts = MctsConfig(iterations=40)
    width = mcts.max_path_len
    for step in range(400):
        w = rng.integers(0, vocab, 16)
        if step % 4 == 0:
            w[:3] = [1, 2, rng.integers(0, vocab)]  # keep the bigram (1, 2) busy
        assert table.update(w, eos) == ref.update(w, eos)
        assert table.num_inserted == ref.num_inserted <= cfg.max_inserted
        if step % 50 == 49:
            assert list(table.to_matrix().rows()) == list(ref.to_matrix().rows())
            outs = []
            for t in (table, ref):
                paths = np.zeros((mcts.num_paths, width), np.int64)
                lens = np.zeros(mcts.num_paths, np.int64)
                weights = np.zeros(mcts.num_paths, np.float64)
                n = t.draft(1, 2, eos, vocab, width, 64, mcts, step | 1, paths, lens, weights)
                outs.append([(paths[i, : lens[i]].tolist(), float(weights[i])) for i in range(n)])
            assert outs[0] == outs[1] and outs[0]
    # Corpus successors are never dropped, so a row's learnt successors are the rest of it.
    learnt = [len(succ) - len(matrix.successors_of(a, b)) for a, b, succ in table.to_matrix().rows()]
    assert max(learnt) == max_learnt
    assert table.max_row_length <= 3 + max_learnt
