"""ADED tri-gram matrix construction: the sparse CSR matrix equals a naive count.

Tie-break documented in :func:`draftkit.sources.aded.build_matrix`: each bigram
keeps its ``top_k`` successors by count descending, then token id ascending; a
weight is count / (total count of the bigram over all its successors).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from draftkit.errors import InvalidInputError
from draftkit.sources.aded import build_matrix
from draftkit.sources.aded.reference import reference_build_matrix


def naive_matrix(docs, vocab, top_k, eos=()):
    """{(a, b): [(c, weight), ...]} by plain counting, successors in the documented order."""
    counts = Counter()
    for doc in docs:
        d = [int(t) for t in doc]
        for i in range(len(d) - 2):
            if d[i] in eos or d[i + 1] in eos:
                continue
            counts[(d[i], d[i + 1], d[i + 2])] += 1
    rows = {}
    for (a, b, c), n in counts.items():
        rows.setdefault((a, b), []).append((c, n))
    out = {}
    for key, succ in rows.items():
        total = sum(n for _, n in succ)
        ranked = sorted(succ, key=lambda cn: (-cn[1], cn[0]))[:top_k]
        out[key] = [(c, float(np.float32(n / total))) for c, n in ranked]
    return out


def as_dict(matrix):
    return {(a, b): succ for a, b, succ in matrix.rows()}


corpora = st.integers(2, 40).flatmap(
    lambda vocab: st.tuples(
        st.just(vocab),
        st.lists(st.lists(st.integers(0, vocab - 1), max_size=80), max_size=12),
    )
)


@settings(max_examples=30, deadline=None)
@given(corpora, st.integers(1, 6))
def test_matrix_equals_naive_count(corpus, top_k):
    vocab, docs = corpus
    matrix = build_matrix([np.asarray(d, np.int64) for d in docs], vocab, top_k=top_k)
    assert as_dict(matrix) == naive_matrix(docs, vocab, top_k)
    assert np.all(np.diff(matrix.keys) > 0)
    assert matrix.offsets[0] == 0 and matrix.offsets[-1] == matrix.num_entries
    assert matrix.tokens == sum(len(d) for d in docs)


@settings(max_examples=20, deadline=None)
@given(corpora, st.integers(1, 5), st.sets(st.integers(0, 5), max_size=2))
def test_numba_build_equals_reference_build(corpus, top_k, eos):
    vocab, docs = corpus
    arrays = [np.asarray(d, np.int64) for d in docs]
    fast = build_matrix(arrays, vocab, top_k=top_k, eos_token_ids=eos)
    ref = reference_build_matrix(arrays, vocab, top_k=top_k, eos_token_ids=eos)
    assert list(fast.rows()) == list(ref.rows())
    assert as_dict(fast) == naive_matrix(docs, vocab, top_k, eos)


@settings(max_examples=15, deadline=None)
@given(corpora, st.integers(0, 30))
def test_entry_cap_keeps_most_frequent(corpus, cap):
    vocab, docs = corpus
    arrays = [np.asarray(d, np.int64) for d in docs]
    full = build_matrix(arrays, vocab, top_k=4)
    capped = build_matrix(arrays, vocab, top_k=4, max_entries=cap)
    ref = reference_build_matrix(arrays, vocab, top_k=4, max_entries=cap)
    assert list(capped.rows()) == list(ref.rows())
    assert capped.num_entries == min(cap, full.num_entries)
    # Kept entries are a subset of the full matrix with unchanged weights and order.
    full_rows = as_dict(full)
    for key, succ in as_dict(capped).items():
        assert [s for s in full_rows[key] if s in succ] == succ


@settings(max_examples=10, deadline=None)
@given(corpora)
def test_chunked_counting_merges_exactly(corpus):
    vocab, docs = corpus
    arrays = [np.asarray(d, np.int64) for d in docs]
    whole = build_matrix(arrays, vocab, top_k=3)
    chunked = build_matrix(arrays, vocab, top_k=3, chunk_tokens=7)
    assert list(whole.rows()) == list(chunked.rows())


def test_no_trigram_spans_documents_or_eos():
    m = build_matrix([np.array([1, 2]), np.array([3, 4, 5]), np.array([6, 7, 9, 8])], 10, eos_token_ids=[9])
    # (1, 2) is a document of two tokens; (2, 3, 4) would span two documents;
    # (7, 9, 8) continues after an EOS. An EOS may be learnt as a successor.
    assert as_dict(m) == {(3, 4): [(5, 1.0)], (6, 7): [(9, 1.0)]}


def test_large_vocabulary_keys_fit():
    vocab = 152_064
    doc = np.array([vocab - 1, vocab - 2, vocab - 3, vocab - 1, vocab - 2, 0], np.int64)
    m = build_matrix([doc], vocab)
    rows = as_dict(m)
    assert rows[(vocab - 1, vocab - 2)] == [(0, 0.5), (vocab - 3, 0.5)]
    assert m.keys.dtype == np.int64 and m.nbytes < 1000  # sparse: nothing of size V^2


def test_rejects_ids_outside_vocabulary():
    with pytest.raises(InvalidInputError, match="outside"):
        build_matrix([np.array([1, 2, 50])], 10)
    with pytest.raises(InvalidInputError, match="vocab_size"):
        build_matrix([np.array([1, 2, 3])], 0)
    with pytest.raises(InvalidInputError, match="top_k"):
        build_matrix([np.array([1, 2, 3])], 10, top_k=0)
