"""Retrieval lookups of the ``rest`` source against obviously correct oracles.

* A naive scan of the documents gives the longest matching suffix, the number of
  its occurrences and the multiset of continuations; the suffix-array lookup
  must give exactly the same (and every continuation must really follow the
  query in the corpus).
* The Numba kernels and the plain-Python reference give identical results.
* The frequency-weighted trie keeps exactly the best nodes of the naive trie.
* Everything also works with the JIT disabled (``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from draftkit.sources.rest import Datastore, Rest, build_datastore, kernels, reference
from draftkit.sources.rest.suffix import RetrievalParams, find_occurrences, retrieve, suffix_array
from draftkit.trees import TrieBuilder
from draftkit.types import Draft, DraftRequest


@st.composite
def corpora(draw: st.DrawFn) -> tuple[list[list[int]], int]:
    """Documents over a small alphabet (so matches are frequent), sometimes with ids > 65535."""
    alphabet = draw(st.integers(2, 5))
    offset = draw(st.sampled_from([0, 0, 70_000]))
    vocab = offset + alphabet + draw(st.integers(0, 3))
    docs = draw(st.lists(st.lists(st.integers(0, alphabet - 1), min_size=0, max_size=30), min_size=1, max_size=8))
    docs = [[t + offset for t in d] for d in docs]
    if not any(docs):
        docs[0] = [offset]
    return docs, vocab


@st.composite
def queries(draw: st.DrawFn, docs: list[list[int]], vocab: int) -> list[int]:
    """A random query, a short one (many occurrences), or a corpus substring and a random tail."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        present = sorted({t for d in docs for t in d})
        return draw(st.lists(st.sampled_from(present), min_size=1, max_size=2))
    if kind == 1:
        doc = draw(st.sampled_from([d for d in docs if d]))
        a = draw(st.integers(0, len(doc) - 1))
        b = draw(st.integers(a + 1, len(doc)))
        q = doc[a:b]
    else:
        q = []
    tail = draw(st.lists(st.integers(min(min(d) for d in docs if d), vocab - 1), max_size=4))
    q = q + tail
    return q or [docs[0][0] if docs[0] else vocab - 1]


def pieces(docs, chunk_tokens):
    """Documents as the store holds them: one longer than a chunk is split (see datastore.py)."""
    out = []
    for doc in docs:
        for i in range(0, len(doc), chunk_tokens - 1):
            out.append(doc[i : i + chunk_tokens - 1])
    return out


def naive_lookup(docs, query, min_len, max_len, vocab, depth, stops):
    """Longest suffix (max_len..min_len) occurring in a document; all its continuations."""
    usable = 0
    while usable < min(len(query), max_len) and query[len(query) - 1 - usable] < vocab:
        usable += 1
    for m in range(usable, min_len - 1, -1):
        pattern = query[len(query) - m :]
        conts = []
        for doc in docs:
            for pos in range(len(doc) - m + 1):
                if doc[pos : pos + m] == pattern:
                    cont = []
                    for t in doc[pos + m : pos + m + depth]:
                        if t >= vocab:
                            break
                        cont.append(t)
                        if t in stops:
                            break
                    conts.append(tuple(cont))
        if conts:
            return m, conts
    return 0, []


def open_store(tmp: str, docs, vocab, chunk_tokens) -> Datastore:
    build_datastore(tmp, docs, vocab, chunk_tokens=chunk_tokens)
    return Datastore.open(tmp)


def lookup_rows(store: Datastore, query, min_len, max_len, vocab, depth, stops, impl):
    q = np.asarray(query, dtype=np.int64)
    found = [impl.longest_match(c.tokens, c.suffix_array, q, min_len, max_len, store.separator_id)
             for c in store.chunks]
    best = max(m for m, _, _ in found)
    rows = []
    for c, (m, lo, hi) in zip(store.chunks, found, strict=True):
        if m != best or best == 0 or hi == lo:
            continue
        n = hi - lo
        out = np.empty((n, depth), np.int64)
        lens = np.empty(n, np.int64)
        terms = np.empty(n, np.int64)
        got = impl.gather_rows(c.tokens, c.suffix_array, lo, hi, m, n, depth, store.separator_id, vocab,
                               np.asarray(sorted(stops), np.int64), out, lens, terms, 0)
        assert got == n
        rows.extend(tuple(int(t) for t in out[i, : lens[i]]) for i in range(n))
    return best, rows


@given(data=st.data(), corpus=corpora(), chunk_tokens=st.sampled_from([8, 30, 10_000]),
       depth=st.integers(1, 6), min_len=st.integers(1, 3), span=st.integers(0, 5))
def test_lookup_matches_naive_scan(data, corpus, chunk_tokens, depth, min_len, span):
    docs, vocab = corpus
    query = data.draw(queries(docs, vocab))
    stops = set(data.draw(st.lists(st.sampled_from(sorted({t for d in docs for t in d})), max_size=1)))
    max_len = min_len + span
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp, docs, vocab, chunk_tokens)
        m, conts = naive_lookup(pieces(docs, chunk_tokens), query, min_len, max_len, vocab, depth, stops)
        for impl in (kernels, reference):
            best, rows = lookup_rows(store, query, min_len, max_len, vocab, depth, stops, impl)
            assert best == m
            assert Counter(rows) == Counter(conts)
        # every continuation really follows the matched suffix in some document
        pattern = query[len(query) - m :] if m else []
        for row in set(conts):
            assert any(
                doc[p : p + m + len(row)] == pattern + list(row)
                for doc in pieces(docs, chunk_tokens)
                for p in range(len(doc))
            )


def naive_trie(conts, weights):
    scores: dict[tuple[int, ...], Fraction] = {}
    for row, w in zip(conts, weights, strict=True):
        for d in range(1, len(row) + 1):
            scores[row[:d]] = scores.get(row[:d], Fraction(0)) + w
    return scores


def tree_of(draft: Draft, max_nodes: int, depth: int) -> dict[tuple[int, ...], float]:
    tree = TrieBuilder().build(draft, max_nodes, depth)
    return {tuple(int(t) for t in tree.path_tokens(i)): float(tree.scores[i]) for i in range(tree.size)}


def naive_context_rows(context, m, depth, vocab, stops):
    rows = []
    n = len(context)
    for e in range(n - 2, m - 2, -1):
        if context[e - m + 1 : e + 1] == context[n - m :]:
            row = []
            for t in context[e + 1 : e + 1 + depth]:
                if t >= vocab:
                    break
                row.append(t)
                if t in stops:
                    break
            rows.append(tuple(row))
    return rows


@given(data=st.data(), corpus=corpora(), chunk_tokens=st.sampled_from([8, 30, 10_000]),
       depth=st.integers(1, 5), max_nodes=st.integers(1, 12), with_context=st.booleans())
def test_trie_keeps_the_best_nodes_of_the_naive_trie(data, corpus, chunk_tokens, depth, max_nodes, with_context):
    docs, vocab = corpus
    query = data.draw(queries(docs, vocab))
    params = RetrievalParams(min_len=1, max_len=6, max_matches=10**6, depth=depth, max_nodes=max_nodes,
                             include_context=with_context)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp, docs, vocab, chunk_tokens)
        chunks = [(c.tokens, c.suffix_array) for c in store.chunks]
        got = retrieve(chunks, np.asarray(query, np.int64), params, separator=store.separator_id,
                       vocab_limit=vocab, stops=np.empty(0, np.int64), max_depth=depth, max_nodes=max_nodes)
    m, conts = naive_lookup(pieces(docs, chunk_tokens), query, 1, 6, vocab, depth, set())
    assert got.match_length == m
    weights = [Fraction(1)] * len(conts)
    if with_context:
        m_ctx, ctx_rows = 0, []
        for k in range(min(6, len(query) - 1), 0, -1):
            ctx_rows = naive_context_rows(query, k, depth, vocab, set())
            if ctx_rows:
                m_ctx = k
                break
        assert got.context_match_length == m_ctx
        if conts and ctx_rows:  # both sides normalised to a mass equal to their match length
            weights = [Fraction(m, len(conts))] * len(conts) + [Fraction(m_ctx, len(ctx_rows))] * len(ctx_rows)
        else:
            weights = weights + [Fraction(1)] * len(ctx_rows)
        conts = conts + ctx_rows
    full = naive_trie(conts, weights)
    tree = tree_of(Draft(got.paths, got.weights), max_nodes, depth)
    assert len(tree) == min(max_nodes, len(full))
    for path, score in tree.items():
        assert score == pytest.approx(float(full[path]), rel=1e-9)
    if all(w == 1 for w in weights):  # integer scores: the exact ranking, ties included
        ranked = sorted(full, key=lambda p: (-full[p], len(p), p))[:max_nodes]
        assert tree == {p: float(full[p]) for p in ranked}
    else:  # fractional scores: no dropped node scores more than a kept one
        dropped = [full[p] for p in full if p not in tree]
        if dropped:
            assert min(full[p] for p in tree) >= max(dropped) * (1 - 1e-9)


@given(data=st.data(), corpus=corpora(), chunk_tokens=st.sampled_from([8, 30, 10_000]),
       max_matches=st.integers(1, 8), depth=st.integers(1, 5), max_nodes=st.integers(1, 10),
       with_context=st.booleans())
def test_kernels_equal_reference(data, corpus, chunk_tokens, max_matches, depth, max_nodes, with_context):
    docs, vocab = corpus
    query = data.draw(queries(docs, vocab))
    stops = np.asarray(data.draw(st.lists(st.sampled_from(sorted({t for d in docs for t in d})), max_size=2)),
                       np.int64)
    min_len = data.draw(st.integers(1, 2))
    params = RetrievalParams(min_len=min_len, max_len=data.draw(st.integers(min_len, 6)),
                             max_matches=max_matches, depth=depth, max_nodes=max_nodes,
                             include_context=with_context, context_weight=data.draw(st.sampled_from([1.0, 2.5])))
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp, docs, vocab, chunk_tokens)
        chunks = [(c.tokens, c.suffix_array) for c in store.chunks]
        results = [
            retrieve(chunks, np.asarray(query, np.int64), params, separator=store.separator_id,
                     vocab_limit=vocab, stops=stops, max_depth=depth, max_nodes=max_nodes, impl=impl)
            for impl in (kernels, reference)
        ]
    fast, slow = results
    counts = ("match_length", "context_match_length", "occurrences", "context_occurrences", "rows")
    assert [getattr(fast, c) for c in counts] == [getattr(slow, c) for c in counts]
    assert [p.tolist() for p in fast.paths] == [p.tolist() for p in slow.paths]
    assert fast.weights == slow.weights
    assert len(fast.paths) <= max_nodes
    assert all(1 <= len(p) <= depth for p in fast.paths)
    assert all(0 <= t < vocab for p in fast.paths for t in p.tolist())


@pytest.mark.parametrize("seed", range(6))
def test_kernels_equal_reference_when_occurrences_are_subsampled(seed):
    """Frequent patterns (more occurrences than max_matches) over several chunks: the
    evenly spaced subsample, the per-chunk shares and the merge must agree exactly."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, 3, size=rng.integers(5, 60)).tolist() for _ in range(12)]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp, docs, 4, int(rng.choice([50, 120, 10_000])))
        chunks = [(c.tokens, c.suffix_array) for c in store.chunks]
        subsampled = 0
        for _ in range(25):
            query = rng.integers(0, 3, size=rng.integers(1, 5)).astype(np.int64)
            params = RetrievalParams(min_len=1, max_len=4, max_matches=int(rng.integers(1, 12)), depth=4,
                                     max_nodes=int(rng.integers(1, 16)), include_context=bool(rng.integers(2)))
            fast, slow = (
                retrieve(chunks, query, params, separator=4, vocab_limit=4, stops=np.asarray([2]), max_depth=4,
                         max_nodes=params.max_nodes, impl=impl)
                for impl in (kernels, reference)
            )
            subsampled += fast.occurrences > params.max_matches
            assert [p.tolist() for p in fast.paths] == [p.tolist() for p in slow.paths]
            assert fast.weights == slow.weights
    assert subsampled > 5


@given(tokens=st.lists(st.integers(0, 300_000), max_size=40), small=st.booleans())
def test_suffix_array_equals_naive_sort(tokens, small):
    arr = np.asarray([t % 4 for t in tokens] if small else tokens, dtype=np.int64)
    assert suffix_array(arr).tolist() == reference.suffix_array(arr).tolist()


def test_subsampling_spreads_over_the_whole_range():
    """With more occurrences than max_matches, rows are spread evenly (not the first ones)."""
    docs = [[1, t] for t in range(2, 40)]  # "1" is followed by 38 different tokens
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp, docs, 50, 10_000)
        c = store.chunks[0]
        m, lo, hi = kernels.longest_match(c.tokens, c.suffix_array, np.asarray([1], np.int64), 1, 1, 50)
        assert hi - lo == 38
        rows = np.empty((5, 1), np.int64)
        lens, terms = np.empty(5, np.int64), np.empty(5, np.int64)
        kernels.gather_rows(c.tokens, c.suffix_array, lo, hi, m, 5, 1, 50, 50, np.empty(0, np.int64),
                            rows, lens, terms, 0)
    picked = rows[:, 0].tolist()
    assert picked == sorted(picked) and picked[0] == 2 and picked[-1] > 30


def test_large_vocabulary_ids_are_stored_and_drafted():
    """Vocab 200,000: ids above 65,535 are stored as uint32 and come back intact."""
    vocab = 200_000
    doc = [150_000, 199_999, 70_000, 5, 199_998, 131_072]
    with tempfile.TemporaryDirectory() as tmp:
        build_datastore(tmp, [doc, doc[:3]], vocab)
        store = Datastore.open(tmp)
        assert store.token_dtype == np.dtype("<u4")
        assert find_occurrences(store.chunks[0].tokens, store.chunks[0].suffix_array,
                                [150_000, 199_999]).size == 2
        source = Rest(store)
        draft = source.propose(DraftRequest(context=np.asarray([7, 150_000, 199_999], np.int64),
                                            prompt_length=3, max_depth=10, max_nodes=64, vocab_size=vocab))
    tree = tree_of(draft, 64, 10)
    assert (70_000,) in tree and tree[(70_000,)] == 2.0
    assert (70_000, 5, 199_998, 131_072) in tree  # the longer document continues past 70,000


def test_never_drafts_past_separator_stop_token_or_vocabulary():
    docs = [[1, 2, 3, 4, 5], [1, 2, 9, 9, 9], [1, 2, 6, 60, 7]]
    with tempfile.TemporaryDirectory() as tmp:
        build_datastore(tmp, docs, 100)
        store = Datastore.open(tmp)
        chunks = [(c.tokens, c.suffix_array) for c in store.chunks]
        got = retrieve(chunks, np.asarray([0, 1, 2], np.int64), RetrievalParams(), separator=100,
                       vocab_limit=50, stops=np.asarray([4]), max_depth=10, max_nodes=64)
    # 4 is a stop token: kept, nothing after it; 60 >= the vocabulary limit (50): cut before it;
    # at a document's end nothing of the next document follows.
    assert {tuple(p.tolist()) for p in got.paths} == {(3, 4), (9, 9, 9), (6,)}


def test_store_with_ids_beyond_the_model_vocabulary_is_refused():
    from draftkit.errors import MismatchedDataFileError

    with tempfile.TemporaryDirectory() as tmp:
        build_datastore(tmp, [[1, 2, 60]], 100)
        source = Rest.open(tmp)
        req = DraftRequest(context=np.asarray([1, 2], np.int64), prompt_length=2, max_depth=4, max_nodes=4,
                           vocab_size=50)
        with pytest.raises(MismatchedDataFileError, match="holds token id 60"):
            source.propose(req)


def test_a_store_is_judged_by_its_ids_when_the_decoder_prepares_it():
    """A store declared for a bigger vocabulary whose ids all fit the model works; one whose ids do
    not is refused naming its largest id and its declared vocabulary (the message once called the
    largest id + 1 the store's vocabulary)."""
    import draftkit
    from draftkit.errors import MismatchedDataFileError
    from helpers import cached_model

    model = cached_model("llama")  # 97 logits
    with tempfile.TemporaryDirectory() as tmp:
        build_datastore(f"{tmp}/fits", [[5, 6, 7, 8, 5, 6, 7]], 300)
        out = draftkit.SpeculativeDecoder(model, source=Rest.open(f"{tmp}/fits")).generate([[5, 6]], max_new_tokens=4)
        assert out.sequences.shape[1] == 6
        build_datastore(f"{tmp}/beyond", [[5, 6, 150]], 300)
        with pytest.raises(MismatchedDataFileError, match="holds token id 150 \\(built for a vocabulary of 300"):
            draftkit.SpeculativeDecoder(model, source=Rest.open(f"{tmp}/beyond"))


def test_context_only_retrieval_hits_repeated_spans():
    source = Rest(None, include_context=True)
    ctx = np.asarray([5, 6, 7, 8, 9, 1, 2, 5, 6, 7], np.int64)
    draft = source.propose(DraftRequest(context=ctx, prompt_length=10, max_depth=4, max_nodes=8, vocab_size=20))
    assert [p.tolist() for p in draft.sequences] == [[8, 9, 1, 2]]


_NO_JIT_SCRIPT = r"""
import os, tempfile, numpy as np
from numba import config
assert config.DISABLE_JIT
from draftkit.sources.rest import Rest, build_datastore, kernels, reference
from draftkit.sources.rest.suffix import RetrievalParams, retrieve
from draftkit.types import DraftRequest
rng = np.random.default_rng(1)
docs = [rng.integers(0, 4, size=rng.integers(1, 25)).tolist() for _ in range(12)]
with tempfile.TemporaryDirectory() as tmp:
    build_datastore(tmp, docs, 6, chunk_tokens=40)
    source = Rest.open(tmp, include_context=True, max_matches=7)
    chunks = [(c.tokens, c.suffix_array) for c in source.store.chunks]
    for trial in range(30):
        ctx = rng.integers(0, 6, size=rng.integers(1, 12)).astype(np.int64)
        params = RetrievalParams(min_len=1, max_len=5, max_matches=7, depth=4, max_nodes=9, include_context=True)
        a, b = (retrieve(chunks, ctx, params, separator=6, vocab_limit=6, stops=np.asarray([3]),
                         max_depth=4, max_nodes=9, impl=impl) for impl in (kernels, reference))
        assert [p.tolist() for p in a.paths] == [p.tolist() for p in b.paths] and a.weights == b.weights
        source.propose(DraftRequest(context=ctx, prompt_length=1, max_depth=4, max_nodes=9, vocab_size=6))
print("ok")
"""


def test_works_with_the_jit_disabled():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _NO_JIT_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("bad", [0, -3])
def test_invalid_options_are_refused(bad):
    from draftkit.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="max_matches"):
        Rest(None, include_context=True, max_matches=bad)
    with pytest.raises(InvalidInputError, match="needs a datastore"):
        Rest(None)


def test_equal_queries_give_identical_drafts():
    """Deterministic: the same request always gives the same draft."""
    with tempfile.TemporaryDirectory() as tmp:
        build_datastore(tmp, [[1, 2, 3, 1, 2, 4, 1, 2, 3]], 10)
        source = Rest.open(tmp, include_context=True)
        req = DraftRequest(context=np.asarray([1, 2], np.int64), prompt_length=2, max_depth=5, max_nodes=4,
                           vocab_size=10)
        drafts = [source.propose(req) for _ in range(3)]
    assert all([p.tolist() for p in d.sequences] == [p.tolist() for p in drafts[0].sequences] for d in drafts)
    assert source.capabilities.stateful is False


@pytest.mark.parametrize("impl", [kernels, reference])
def test_every_suffix_array_entry_read_is_range_checked(impl):
    """Damaging any single entry of the matched range makes the step raise CorruptDataFileError
    (the binary searches or the row gathering reads it), whichever entry it is. Entries too large
    are used here; negative ones (which used to crash) are covered in a subprocess by
    ``test_rest_datastore.py::test_unsampled_suffix_array_damage_is_an_error_not_a_crash``."""
    from draftkit.errors import CorruptDataFileError

    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 4, 30).tolist() for _ in range(6)]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp, docs, 4, 10_000)
        tokens = np.asarray(store.chunks[0].tokens)
        good = np.asarray(store.chunks[0].suffix_array).copy()
    query = np.asarray([1, 2], np.int64)
    params = RetrievalParams(min_len=2, max_len=2, max_matches=10**6)
    m, lo, hi = kernels.longest_match(tokens, good, query, 2, 2, 4)
    assert m == 2 and hi - lo >= 3
    clean = retrieve([(tokens, good)], query, params, separator=4, vocab_limit=4, stops=np.empty(0, np.int64),
                     max_depth=10, max_nodes=64, impl=impl)
    assert clean.occurrences == hi - lo
    for j in range(lo, hi):
        for bad in (tokens.size, 2**31 - 1):
            sa = good.copy()
            sa[j] = bad
            with pytest.raises(CorruptDataFileError, match="datastore verify /the/store"):
                retrieve([(tokens, sa)], query, params, separator=4, vocab_limit=4, stops=np.empty(0, np.int64),
                         max_depth=10, max_nodes=64, impl=impl, where="/the/store")
    # The kernels themselves report the damage instead of reading outside the chunk.
    sa = good.copy()
    sa[lo:hi] = tokens.size + 7
    rows, lens, terms = np.empty((hi - lo, 4), np.int64), np.empty(hi - lo, np.int64), np.empty(hi - lo, np.int64)
    got = impl.gather_rows(tokens, sa, lo, hi, 2, hi - lo, 4, 4, 4, np.empty(0, np.int64), rows, lens, terms, 0)
    assert got == kernels.CORRUPT
    with pytest.raises(CorruptDataFileError, match="datastore verify"):
        find_occurrences(tokens, sa, [1, 2])  # the match range itself holds bad entries
    sa[:] = tokens.size
    assert impl.longest_match(tokens, sa, query, 2, 2, 4) == (kernels.CORRUPT, 0, 0)
