"""Numba kernels of the retrieval lookup; :mod:`.reference` has the same algorithms in plain Python.

One retrieval step, as the source runs it:

1. :func:`longest_match` per chunk: the longest suffix of the context (between
   ``min_len`` and ``max_len`` tokens) that occurs in the chunk, and the range of
   the chunk's suffix array holding its occurrences (binary searches).
2. :func:`gather_rows` per chunk (and :func:`context_matches` +
   :func:`gather_context_rows` for the context itself): the tokens that follow up
   to ``n_take`` occurrences, cut at a document separator, after an EOS, at an id
   outside the vocabulary, at the end of the chunk.
3. :func:`sort_rows` merges the rows of several runs into one order (a chunk's
   rows are already sorted: they come out of a suffix array).
4. :func:`build_trie` folds the sorted rows into a frequency-weighted prefix tree
   in one linear pass, and :func:`select_nodes` keeps its best nodes.

Every kernel is ``nopython``, takes and fills NumPy arrays, and returns arrays or
integers, never ``None``; tokens arrays may be ``uint16``/``uint32`` memory maps
(read as ``int64``), queries and rows are ``int64``.

Suffix-array entries come from a file and are never trusted: every kernel that
dereferences one first checks ``0 <= pos < n``. An entry out of range (a damaged
store that :meth:`~.datastore.Datastore.open`'s spot checks did not sample) makes
:func:`longest_match` return ``m = CORRUPT`` and :func:`gather_rows` return
``CORRUPT`` instead of reading outside the mapping (which would crash the
interpreter); :func:`~.suffix.retrieve` turns that into
:class:`~draftkit.errors.CorruptDataFileError`.

Rows carry a *terminator* so rows from different chunks can be merged in the
order their suffix arrays would have given them: ``END`` (-1) when the row stops
at the end of a chunk / the context (sorts first, like a shorter suffix), the
stopping token itself when it was a separator or an out-of-vocabulary id, and
``COMPLETE`` (-2) when the row is whole (EOS included, or ``depth`` tokens). Rows
are ordered as the token sequence extended by its terminator (unless complete),
shorter first; within one chunk this is the suffix-array order, so a merge keeps
every prefix's rows contiguous, which is what the one-pass trie needs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "END",
    "COMPLETE",
    "CORRUPT",
    "longest_match",
    "gather_rows",
    "context_matches",
    "gather_context_rows",
    "sort_rows",
    "build_trie",
    "select_nodes",
    "draft_paths",
]

#: Terminator of a row that stopped at the end of its chunk or of the context.
END = -1
#: Terminator of a row that is complete (ended on an EOS token or reached ``depth``).
COMPLETE = -2
#: Returned (as the match length / the row count) when a suffix-array entry is out of range.
CORRUPT = -1


@njit(cache=True, nogil=True)
def _bad_entry(sa, i, n):  # pragma: no cover - jitted
    """Suffix-array entry ``i`` is not a position of the chunk (a damaged file)."""
    pos = np.int64(sa[i])
    return pos < 0 or pos >= n


@njit(cache=True, nogil=True)
def _compare(tokens, pos, query, qstart, m):  # pragma: no cover - jitted
    """Order of suffix ``tokens[pos:]`` against pattern ``query[qstart:qstart+m]``.

    -1 if the suffix sorts before the pattern, 0 if it starts with it, +1 after.
    A suffix that ends inside the pattern is a proper prefix of it: before.
    """
    n = tokens.shape[0]
    for k in range(m):
        if pos + k >= n:
            return -1
        a = np.int64(tokens[pos + k])
        b = query[qstart + k]
        if a < b:
            return -1
        if a > b:
            return 1
    return 0


@njit(cache=True, nogil=True)
def _lower_bound(tokens, sa, query, qstart, m):  # pragma: no cover - jitted
    """First suffix-array index whose suffix is not before the pattern (CORRUPT: bad entry)."""
    n = tokens.shape[0]
    lo = 0
    hi = sa.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if _bad_entry(sa, mid, n):
            return CORRUPT
        if _compare(tokens, np.int64(sa[mid]), query, qstart, m) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _upper_bound(tokens, sa, query, qstart, m, lo):  # pragma: no cover - jitted
    """First suffix-array index (>= lo) whose suffix sorts after the pattern (CORRUPT: bad entry)."""
    n = tokens.shape[0]
    hi = sa.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if _bad_entry(sa, mid, n):
            return CORRUPT
        if _compare(tokens, np.int64(sa[mid]), query, qstart, m) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _occurs(tokens, sa, query, qstart, m):  # pragma: no cover - jitted
    """1 if the pattern occurs, 0 if not, CORRUPT if a suffix-array entry read is out of range."""
    lo = _lower_bound(tokens, sa, query, qstart, m)
    if lo == CORRUPT:
        return CORRUPT
    if lo >= sa.shape[0]:
        return 0
    if _bad_entry(sa, lo, tokens.shape[0]):
        return CORRUPT
    return 1 if _compare(tokens, np.int64(sa[lo]), query, qstart, m) == 0 else 0


@njit(cache=True, nogil=True)
def longest_match(tokens, sa, query, min_len, max_len, vocab):  # pragma: no cover - jitted
    """Longest suffix of ``query`` occurring in ``tokens``: ``(m, lo, hi)``.

    ``sa[lo:hi]`` are the positions where ``query[-m:]`` starts; ``(0, 0, 0)`` when
    no suffix of at least ``min_len`` tokens occurs. Only the query's tail made of
    ids below ``vocab`` is matched (an id >= vocab could otherwise match a
    separator and cross a document boundary).

    Whether ``query[-m:]`` occurs is monotone in ``m`` (an occurrence of a longer
    suffix contains one of every shorter suffix), so the longest length is found
    by a binary search over lengths instead of trying 16, 15, ..., 2 in turn.

    ``(CORRUPT, 0, 0)`` when a suffix-array entry it reads is not a position of
    ``tokens`` (a damaged store); nothing outside ``tokens`` is ever read.
    """
    qlen = query.shape[0]
    usable = 0
    while usable < qlen and usable < max_len and 0 <= query[qlen - 1 - usable] < vocab:
        usable += 1
    if usable < min_len or min_len < 1 or sa.shape[0] == 0:
        return 0, 0, 0
    found = _occurs(tokens, sa, query, qlen - min_len, min_len)
    if found == CORRUPT:
        return CORRUPT, 0, 0
    if found == 0:
        return 0, 0, 0
    good = min_len
    bad = usable + 1
    while bad - good > 1:
        mid = (good + bad) >> 1
        found = _occurs(tokens, sa, query, qlen - mid, mid)
        if found == CORRUPT:
            return CORRUPT, 0, 0
        if found == 1:
            good = mid
        else:
            bad = mid
    lo = _lower_bound(tokens, sa, query, qlen - good, good)
    if lo == CORRUPT:
        return CORRUPT, 0, 0
    hi = _upper_bound(tokens, sa, query, qlen - good, good, lo)
    if hi == CORRUPT:
        return CORRUPT, 0, 0
    return good, lo, hi


@njit(cache=True, nogil=True)
def _is_stop(tok, stops):  # pragma: no cover - jitted
    for s in stops:
        if tok == s:
            return True
    return False


@njit(cache=True, nogil=True)
def _copy_row(seq, begin, depth, sep, vocab, stops, rows, lens, terms, r):  # pragma: no cover - jitted
    """Row ``r`` := up to ``depth`` tokens of ``seq`` from ``begin`` (callers check ``begin >= 0``)."""
    n = seq.shape[0]
    length = 0
    term = COMPLETE
    while length < depth:
        p = begin + length
        if p < 0 or p >= n:
            term = END
            break
        t = np.int64(seq[p])
        if t == sep or t >= vocab or t < 0:
            term = t
            break
        rows[r, length] = t
        length += 1
        if _is_stop(t, stops):
            break
    lens[r] = length
    terms[r] = term


@njit(cache=True, nogil=True)
def gather_rows(tokens, sa, lo, hi, m, n_take, depth, sep, vocab, stops, rows, lens, terms, start):  # pragma: no cover
    """Fill rows ``start, start+1, ...`` with what follows the occurrences ``sa[lo:hi]``.

    When there are more than ``n_take`` occurrences, ``n_take`` of them evenly
    spaced over the range are used (not the first ones: the range is sorted by
    continuation, so a prefix would be biased towards small token ids). A row
    holds the (at most ``depth``) tokens after the match, stops before a
    separator / an id >= ``vocab`` and after a stop token. Returns the row count,
    or CORRUPT when one of the entries used is not a position of ``tokens``.
    """
    n = tokens.shape[0]
    count = hi - lo
    take = count if count < n_take else n_take
    for i in range(take):
        j = lo + (i * count) // take
        if _bad_entry(sa, j, n):
            return CORRUPT
        _copy_row(tokens, np.int64(sa[j]) + m, depth, sep, vocab, stops, rows, lens, terms, start + i)
    return take


@njit(cache=True, nogil=True)
def context_matches(context, min_len, max_len, max_matches):  # pragma: no cover - jitted
    """Longest suffix of ``context`` that occurs earlier in it, and where.

    Returns ``(m, ends)``: ``ends`` are the indices (most recent first, at most
    ``max_matches``) of the last token of earlier occurrences of the last ``m``
    tokens; the final position itself does not count. ``m`` is 0 when no suffix of
    at least ``min_len`` tokens re-occurs.
    """
    n = context.shape[0]
    best = 0
    for e in range(n - 2, -1, -1):
        k = 0
        while k < max_len and e - k >= 0 and context[e - k] == context[n - 1 - k]:
            k += 1
        if k > best:
            best = k
    if best < min_len or min_len < 1:
        return 0, np.empty(0, np.int64)
    out = np.empty(max_matches, np.int64)
    found = 0
    for e in range(n - 2, -1, -1):
        if found >= max_matches:
            break
        k = 0
        while k < best and e - k >= 0 and context[e - k] == context[n - 1 - k]:
            k += 1
        if k >= best:
            out[found] = e
            found += 1
    return best, out[:found]


@njit(cache=True, nogil=True)
def gather_context_rows(context, ends, depth, vocab, stops, rows, lens, terms, start):  # pragma: no cover
    """Rows of what followed each earlier occurrence (``ends``) inside the context."""
    for i in range(ends.shape[0]):
        _copy_row(context, ends[i] + 1, depth, -1, vocab, stops, rows, lens, terms, start + i)
    return ends.shape[0]


@njit(cache=True, nogil=True)
def _row_cmp(rows, lens, terms, a, b):  # pragma: no cover - jitted
    """Compare rows a and b extended by their terminator (unless complete); shorter first."""
    la = lens[a] + (1 if terms[a] != COMPLETE else 0)
    lb = lens[b] + (1 if terms[b] != COMPLETE else 0)
    k = 0
    while k < la and k < lb:
        x = rows[a, k] if k < lens[a] else terms[a]
        y = rows[b, k] if k < lens[b] else terms[b]
        if x < y:
            return -1
        if x > y:
            return 1
        k += 1
    if la < lb:
        return -1
    if la > lb:
        return 1
    return 0


@njit(cache=True, nogil=True)
def sort_rows(rows, lens, terms, n_rows, run_starts):  # pragma: no cover - jitted
    """Stable order of rows ``0..n_rows-1`` given that each run is already sorted.

    ``run_starts`` are the first row of each run (ascending, the first is 0).
    Bottom-up merging of neighbouring runs: O(n log runs) row comparisons.
    """
    order = np.arange(n_rows)
    if n_rows <= 1:
        return order
    bounds = np.empty(run_starts.shape[0] + 1, np.int64)
    nb = 0
    for s in run_starts:
        if s < n_rows and (nb == 0 or s > bounds[nb - 1]):
            bounds[nb] = s
            nb += 1
    bounds[nb] = n_rows
    nruns = nb
    tmp = np.empty(n_rows, np.int64)
    while nruns > 1:
        new_nb = 0
        r = 0
        while r < nruns:
            lo = bounds[r]
            if r + 1 < nruns:
                mid = bounds[r + 1]
                hi = bounds[r + 2]
                i = lo
                j = mid
                k = lo
                while i < mid and j < hi:
                    if _row_cmp(rows, lens, terms, order[j], order[i]) < 0:
                        tmp[k] = order[j]
                        j += 1
                    else:
                        tmp[k] = order[i]
                        i += 1
                    k += 1
                while i < mid:
                    tmp[k] = order[i]
                    i += 1
                    k += 1
                while j < hi:
                    tmp[k] = order[j]
                    j += 1
                    k += 1
                for q in range(lo, hi):
                    order[q] = tmp[q]
            bounds[new_nb] = lo
            new_nb += 1
            r += 2
        bounds[new_nb] = n_rows
        nruns = new_nb
    return order


@njit(cache=True, nogil=True)
def build_trie(rows, lens, weights, order):  # pragma: no cover - jitted
    """Frequency-weighted prefix tree of the rows, taken in ``order`` (sorted).

    Returns ``(tokens, parents, scores, depths, first_child, next_sibling, n)``
    over nodes ``0..n-1``; node 0 is the root (the current context, token -1).
    A node's score is the total weight of the rows through it. Because rows that
    share a prefix are contiguous in the order, a row only has to be compared with
    the previous one: the longest common prefix says which nodes to reuse.
    Children are linked in creation order, which is the order of their tokens.
    """
    depth = rows.shape[1]
    cap = 1
    for r in order:
        cap += lens[r]
    tokens = np.empty(cap, np.int64)
    parents = np.empty(cap, np.int64)
    scores = np.zeros(cap, np.float64)
    depths = np.empty(cap, np.int64)
    first_child = np.full(cap, -1, np.int64)
    last_child = np.full(cap, -1, np.int64)
    next_sibling = np.full(cap, -1, np.int64)
    tokens[0] = -1
    parents[0] = -1
    depths[0] = 0
    n = 1
    stack = np.zeros(depth + 1, np.int64)  # stack[d] = node at depth d on the previous row's path
    prev = -1
    for r in order:
        length = lens[r]
        if length == 0:
            continue
        w = weights[r]
        lcp = 0
        if prev >= 0:
            limit = min(length, lens[prev])
            while lcp < limit and rows[r, lcp] == rows[prev, lcp]:
                lcp += 1
        scores[0] += w
        for d in range(lcp):
            scores[stack[d + 1]] += w
        for d in range(lcp, length):
            parent = stack[d]
            node = n
            n += 1
            tokens[node] = rows[r, d]
            parents[node] = parent
            depths[node] = d + 1
            scores[node] = w
            if last_child[parent] < 0:
                first_child[parent] = node
            else:
                next_sibling[last_child[parent]] = node
            last_child[parent] = node
            stack[d + 1] = node
        prev = r
    return tokens[:n], parents[:n], scores[:n], depths[:n], first_child[:n], next_sibling[:n], n


@njit(cache=True, nogil=True)
def _before(scores, depths, a, b):  # pragma: no cover - jitted
    """Node a ranks before node b: higher score, then shallower, then earlier created."""
    if scores[a] != scores[b]:
        return scores[a] > scores[b]
    if depths[a] != depths[b]:
        return depths[a] < depths[b]
    return a < b


@njit(cache=True, nogil=True)
def select_nodes(scores, depths, first_child, next_sibling, k):  # pragma: no cover - jitted
    """The ``k`` best non-root nodes, ascending (= topological) order.

    A child never ranks before its parent (its score is at most the parent's and
    it is deeper), so a best-first walk from the root with a heap visits nodes in
    exactly the global ranking order and only touches the frontier.
    """
    n = scores.shape[0]
    heap = np.empty(n, np.int64)
    size = 0
    picked = np.empty(min(k, n), np.int64)
    npicked = 0
    c = first_child[0]
    while c >= 0:  # push the root's children
        heap[size] = c
        i = size
        size += 1
        while i > 0:
            p = (i - 1) >> 1
            if _before(scores, depths, heap[i], heap[p]):
                heap[i], heap[p] = heap[p], heap[i]
                i = p
            else:
                break
        c = next_sibling[c]
    while size > 0 and npicked < k:
        top = heap[0]
        picked[npicked] = top
        npicked += 1
        size -= 1
        heap[0] = heap[size]
        i = 0
        while True:
            left = 2 * i + 1
            best = i
            if left < size and _before(scores, depths, heap[left], heap[best]):
                best = left
            if left + 1 < size and _before(scores, depths, heap[left + 1], heap[best]):
                best = left + 1
            if best == i:
                break
            heap[i], heap[best] = heap[best], heap[i]
            i = best
        c = first_child[top]
        while c >= 0:
            heap[size] = c
            i = size
            size += 1
            while i > 0:
                p = (i - 1) >> 1
                if _before(scores, depths, heap[i], heap[p]):
                    heap[i], heap[p] = heap[p], heap[i]
                    i = p
                else:
                    break
            c = next_sibling[c]
    return np.sort(picked[:npicked])


@njit(cache=True, nogil=True)
def draft_paths(tokens, parents, scores, depths, picked, max_depth):  # pragma: no cover - jitted
    """Root paths of the picked nodes that carry weight of their own.

    Returns ``(paths [p, max_depth], lengths [p], weights [p], p)``: one path per
    picked node whose score exceeds the total score of its picked children, with
    that excess as weight. A trie builder summing path weights then gives every
    picked node exactly its score again, so passing at most ``k`` paths to the
    engine's ``trie`` builder reproduces the selected tree.
    """
    k = picked.shape[0]
    n = scores.shape[0]
    child_sum = np.zeros(n, np.float64)
    is_picked = np.zeros(n, np.bool_)
    for i in range(k):
        is_picked[picked[i]] = True
    for i in range(k):
        p = parents[picked[i]]
        if p > 0 and is_picked[p]:
            child_sum[p] += scores[picked[i]]
    paths = np.zeros((k, max_depth), np.int64)
    lengths = np.zeros(k, np.int64)
    weights = np.zeros(k, np.float64)
    count = 0
    for i in range(k):
        node = picked[i]
        excess = scores[node] - child_sum[node]
        if excess <= 1e-9 * scores[node]:
            continue
        d = depths[node]
        v = node
        while v > 0:
            d -= 1
            paths[count, d] = tokens[v]
            v = parents[v]
        lengths[count] = depths[node]
        weights[count] = excess
        count += 1
    return paths[:count], lengths[:count], weights[:count], count
