"""Plain-Python versions of the retrieval algorithms, for reading and for tests.

Same signatures and results as :mod:`.kernels`, written for clarity instead of
speed: suffixes are compared as Python lists, the longest match is found by
trying lengths from the longest down (REST's loop), the trie is a dict keyed by
path and ranked with ``sorted``. Tests check that both agree exactly.

Like the kernels, these never index with a suffix-array entry outside the chunk:
they return ``CORRUPT`` instead. (The reference reads *every* entry of the
array, the kernel only the ones its binary searches probe, so on a damaged array
the reference reports damage at least whenever the kernel does.)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

from .kernels import COMPLETE, CORRUPT, END

__all__ = [
    "suffix_array",
    "longest_match",
    "gather_rows",
    "context_matches",
    "gather_context_rows",
    "sort_rows",
    "build_trie",
    "select_nodes",
    "draft_paths",
]


def suffix_array(tokens: np.ndarray) -> np.ndarray:
    """Start positions of all suffixes in lexicographic order (shorter first on ties)."""
    seq = [int(t) for t in tokens]
    return np.asarray(sorted(range(len(seq)), key=lambda i: seq[i:]), dtype=np.int32)


def longest_match(tokens, sa, query, min_len, max_len, vocab):
    qlen = len(query)
    usable = 0
    while usable < qlen and usable < max_len and 0 <= int(query[qlen - 1 - usable]) < vocab:
        usable += 1
    if min_len < 1 or len(sa) == 0:
        return 0, 0, 0
    seq = [int(t) for t in tokens]
    positions = [int(p) for p in sa]
    if usable >= min_len and not all(0 <= p < len(seq) for p in positions):
        return CORRUPT, 0, 0
    for m in range(usable, min_len - 1, -1):
        pattern = [int(t) for t in query[qlen - m :]]
        heads = [seq[p : p + m] for p in positions]  # sorted, since sa is
        lo = bisect_left(heads, pattern)
        hi = bisect_right(heads, pattern)
        if hi > lo:
            return m, lo, hi
    return 0, 0, 0


def _row(seq, begin, depth, sep, vocab, stops):
    out: list[int] = []
    term = COMPLETE
    while len(out) < depth:
        p = begin + len(out)
        if p < 0 or p >= len(seq):
            term = END
            break
        t = int(seq[p])
        if t == sep or t >= vocab or t < 0:
            term = t
            break
        out.append(t)
        if t in stops:
            break
    return out, term


def _store(rows, lens, terms, r, row, term):
    rows[r, : len(row)] = row
    lens[r] = len(row)
    terms[r] = term


def gather_rows(tokens, sa, lo, hi, m, n_take, depth, sep, vocab, stops, rows, lens, terms, start):
    count = hi - lo
    take = min(count, n_take)
    stop_set = {int(s) for s in stops}
    for i in range(take):
        j = lo + (i * count) // take
        if not 0 <= int(sa[j]) < len(tokens):
            return CORRUPT
        row, term = _row(tokens, int(sa[j]) + m, depth, sep, vocab, stop_set)
        _store(rows, lens, terms, start + i, row, term)
    return take


def context_matches(context, min_len, max_len, max_matches):
    seq = [int(t) for t in context]
    n = len(seq)
    for m in range(min(max_len, n - 1), min_len - 1, -1):
        if m < 1:
            break
        suffix = seq[n - m :]
        ends = [e for e in range(n - 2, m - 2, -1) if seq[e - m + 1 : e + 1] == suffix]
        if ends:
            return m, np.asarray(ends[:max_matches], dtype=np.int64)
    return 0, np.empty(0, np.int64)


def gather_context_rows(context, ends, depth, vocab, stops, rows, lens, terms, start):
    stop_set = {int(s) for s in stops}
    for i, e in enumerate(ends):
        row, term = _row(context, int(e) + 1, depth, -1, vocab, stop_set)
        _store(rows, lens, terms, start + i, row, term)
    return len(ends)


def _sort_key(rows, lens, terms, r):
    key = [int(t) for t in rows[r, : lens[r]]]
    if terms[r] != COMPLETE:
        key.append(int(terms[r]))
    return key


def sort_rows(rows, lens, terms, n_rows, run_starts):
    return np.asarray(sorted(range(n_rows), key=lambda r: _sort_key(rows, lens, terms, r)), dtype=np.int64)


def build_trie(rows, lens, weights, order):
    """Same node numbering as the kernel: nodes in order of first appearance."""
    index: dict[tuple[int, ...], int] = {(): 0}
    tokens, parents, scores, depths = [-1], [-1], [0.0], [0]
    for r in order:
        row = tuple(int(t) for t in rows[r, : lens[r]])
        if not row:
            continue
        scores[0] += float(weights[r])
        for d in range(1, len(row) + 1):
            node = index.get(row[:d])
            if node is None:
                node = index[row[:d]] = len(tokens)
                tokens.append(row[d - 1])
                parents.append(index[row[: d - 1]])
                depths.append(d)
                scores.append(float(weights[r]))
            else:
                scores[node] += float(weights[r])
    n = len(tokens)
    first_child = [-1] * n
    next_sibling = [-1] * n
    last = [-1] * n
    for node in range(1, n):
        p = parents[node]
        if last[p] < 0:
            first_child[p] = node
        else:
            next_sibling[last[p]] = node
        last[p] = node
    as_i = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return (as_i(tokens), as_i(parents), np.asarray(scores, dtype=np.float64), as_i(depths),
            as_i(first_child), as_i(next_sibling), n)


def select_nodes(scores, depths, first_child, next_sibling, k):
    ranked = sorted(range(1, len(scores)), key=lambda i: (-scores[i], depths[i], i))
    return np.asarray(sorted(ranked[:k]), dtype=np.int64)


def draft_paths(tokens, parents, scores, depths, picked, max_depth):
    chosen = {int(i) for i in picked}
    paths, lengths, weights = [], [], []
    for node in (int(i) for i in picked):
        kids = sum(scores[c] for c in picked if parents[c] == node)
        excess = scores[node] - kids
        if excess <= 1e-9 * scores[node]:
            continue
        path = []
        v = node
        while v > 0:
            path.append(int(tokens[v]))
            v = int(parents[v])
        path.reverse()
        assert all(int(parents[c]) in chosen or int(parents[c]) == 0 for c in chosen)
        paths.append(path + [0] * (max_depth - len(path)))
        lengths.append(len(path))
        weights.append(excess)
    p = len(paths)
    return (np.asarray(paths, dtype=np.int64).reshape(p, max_depth), np.asarray(lengths, dtype=np.int64),
            np.asarray(weights, dtype=np.float64), p)
