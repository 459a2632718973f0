"""Numba kernels of the ADED source: build, lookup, adaptive update, MCTS.

Every kernel is a ``nopython`` function over NumPy arrays that writes into
arrays it is given (or allocates its own scratch) and returns plain integers;
none returns ``Optional``. :mod:`.reference` implements the same algorithms in
readable Python over dictionaries; the tests check both agree exactly, so any
change here must be mirrored there (same successor order, same random draws,
same float64 arithmetic on float32-stored weights).

Array layout of an adaptive table (see :class:`.table.AdaptiveTable`)::

    bsucc  int32   [E]      successor ids of the corpus-built (base) rows, CSR order
    bw     float32 [E]      their weights (mutable: the adaptive updates)
    bw0    float32 [E]      the corpus-built weights (never written)
    bhash  int64   [H, 2]   open-addressing index of the base rows:
                            (bigram key, start | length << 40 | INSERTED flag)
    ohash  int64   [H2, 2]  index of the inserted rows: bigram key -> j
    okey   int64   [C]      bigram key of inserted row j
    orows  int32   [C, 2]   inserted row j: (first entry or -1, number of entries)
    pool_i int32   [C, 3]   inserted entries: (successor, next entry or -1, row j or -1 once dropped)
    pool_w float32 [C]      their weights
    log    int64   [L]      base entries changed since the last reset (undo log)
    meta   int64   [8]      counters, see the META_* constants

A bigram (a, b) is keyed ``a * V + b``. Its successors are its base entries
``bsucc[start:start + length]`` followed by the entries of its inserted row
(oldest first), if any. One probe of ``bhash`` gives the base range and says
whether an inserted row exists (the flag), so a lookup touches two cache lines
in the common case. A bigram seen only through insertions has no base slot and
only an inserted row.

A bigram holds at most ``max_learnt`` inserted successors: inserting one more
drops the row's weakest inserted entry (lowest weight, then oldest). A dropped
entry is unlinked from its row at once and its pool slot stays *dead* (row -1)
until the next compaction reclaims it, so every row, and therefore every lookup,
update and MCTS expansion, stays O(top_k + max_learnt) however long decoding runs.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "META_POOL_USED",
    "META_INSERTED_ROWS",
    "META_MAX_ROW",
    "META_LOG_USED",
    "META_LOG_OVERFLOW",
    "META_BASE_MAX_ROW",
    "META_DEAD",
    "META_SIZE",
    "MAX_BASE_ROW",
    "build_hash",
    "build_base_hash",
    "lookup",
    "hash_find",
    "trigram_keys",
    "count_sorted",
    "merge_counts",
    "prune_top_k",
    "update_window",
    "append_entry",
    "append_many",
    "restore_log",
    "clear_inserted",
    "gather",
    "mcts_draft",
    "node_capacity",
    "merged_rows",
]

_jit = nb.njit(cache=True, nogil=True)

META_POOL_USED = 0  #: inserted entries in the pool
META_INSERTED_ROWS = 1  #: inserted rows in use
META_MAX_ROW = 2  #: upper bound of any row's length (sizes the MCTS node pool)
META_LOG_USED = 3  #: entries of the undo log in use
META_LOG_OVERFLOW = 4  #: 1 when the undo log overflowed (reset then copies all weights)
META_BASE_MAX_ROW = 5  #: longest base row
META_DEAD = 6  #: pool slots of dropped entries (counted in META_POOL_USED until a compaction)
META_SIZE = 8

_U12 = np.uint64(12)
_U25 = np.uint64(25)
_U27 = np.uint64(27)
_U11 = np.uint64(11)
_START_MASK = (1 << 40) - 1
_LEN_SHIFT = 40
_LEN_MASK = (1 << 22) - 1
_INSERTED = 1 << 62
MAX_BASE_ROW = _LEN_MASK
_INV53 = 1.0 / 9007199254740992.0


# -- hashing -----------------------------------------------------------------------------------


@_jit
def _slot(key, mask):
    # Multiplicative mixing kept inside int64 (no wrap-around, so no overflow
    # warnings when the kernels run interpreted): keys are < 2**42.
    h = (key & 0x7FFFFFFF) * 0x9E3779B1 ^ (key >> 31) * 0x85EBCA77
    h ^= h >> 29
    return h & mask


@_jit
def hash_find(table, key):
    """Value stored for ``key`` in an open-addressing table [H, 2], or -1."""
    mask = table.shape[0] - 1
    i = _slot(key, mask)
    while True:
        k = table[i, 0]
        if k == key:
            return table[i, 1]
        if k == -1:
            return np.int64(-1)
        i = (i + 1) & mask


@_jit
def _hash_insert(table, key, value):
    mask = table.shape[0] - 1
    i = _slot(key, mask)
    while table[i, 0] != -1 and table[i, 0] != key:
        i = (i + 1) & mask
    table[i, 0] = key
    table[i, 1] = value


@_jit
def _probe(table, key):
    """Slot index of ``key`` in an open-addressing table, or -1."""
    mask = table.shape[0] - 1
    i = _slot(key, mask)
    while True:
        k = table[i, 0]
        if k == key:
            return i
        if k == -1:
            return np.int64(-1)
        i = (i + 1) & mask


@_jit
def build_base_hash(keys, offsets, table):
    """Index the base rows: ``keys[r] -> offsets[r] | (row length << 40)``."""
    for r in range(keys.size):
        _hash_insert(table, keys[r], offsets[r] | ((offsets[r + 1] - offsets[r]) << _LEN_SHIFT))
    return keys.size


@_jit
def build_hash(keys, first_value, table):
    """Fill ``table`` (all -1, power-of-two rows) with ``keys[i] -> first_value + i``."""
    for i in range(keys.size):
        _hash_insert(table, keys[i], first_value + i)
    return keys.size


# -- build ------------------------------------------------------------------------------------


@_jit
def _is_eos(tok, eos):
    for j in range(eos.size):
        if eos[j] == tok:
            return True
    return False


@_jit
def trigram_keys(tokens, vocab, eos, out):
    """Write the key ``(a * V + b) * V + c`` of every trigram of ``tokens`` into ``out``.

    Negative tokens separate documents: no trigram spans one. Trigrams whose
    first or second token is an EOS id are skipped (nothing after an EOS is
    learnt). Returns the number of keys written.
    """
    n = 0
    for i in range(tokens.size - 2):
        a = tokens[i]
        b = tokens[i + 1]
        c = tokens[i + 2]
        if a < 0 or b < 0 or c < 0:
            continue
        if _is_eos(a, eos) or _is_eos(b, eos):
            continue
        out[n] = (a * vocab + b) * vocab + c
        n += 1
    return n


@_jit
def count_sorted(keys, uniq, counts):
    """Run-length encode sorted ``keys`` into ``uniq``/``counts``; returns the run count."""
    n = 0
    i = 0
    while i < keys.size:
        j = i + 1
        while j < keys.size and keys[j] == keys[i]:
            j += 1
        uniq[n] = keys[i]
        counts[n] = j - i
        n += 1
        i = j
    return n


@_jit
def merge_counts(k1, c1, k2, c2, out_k, out_c):
    """Merge two sorted (key, count) runs, adding the counts of equal keys."""
    i = 0
    j = 0
    n = 0
    while i < k1.size or j < k2.size:
        if j >= k2.size or (i < k1.size and k1[i] < k2[j]):
            out_k[n] = k1[i]
            out_c[n] = c1[i]
            i += 1
        elif i >= k1.size or k2[j] < k1[i]:
            out_k[n] = k2[j]
            out_c[n] = c2[j]
            j += 1
        else:
            out_k[n] = k1[i]
            out_c[n] = c1[i] + c2[j]
            i += 1
            j += 1
        n += 1
    return n


@_jit
def _before(count_x, succ_x, count_y, succ_y):
    # Ranking of successors inside a bigram: higher count first, then smaller id.
    return count_x > count_y or (count_x == count_y and succ_x < succ_y)


@_jit
def prune_top_k(uniq, counts, vocab, top_k, bkeys, boff, bsucc, bw, bcount):
    """Group sorted trigram counts by bigram and keep each bigram's ``top_k`` successors.

    Weight of a kept successor = its count / the bigram's total count over *all*
    its successors (the official normalisation, done before pruning). Rows are
    written in key order, successors by (count desc, id asc). Returns
    ``(rows, entries)`` written.
    """
    n = uniq.size
    nrows = 0
    ne = 0
    boff[0] = 0
    sel = np.empty(top_k, np.int64)
    i = 0
    while i < n:
        bigram = uniq[i] // vocab
        j = i
        total = 0
        while j < n and uniq[j] // vocab == bigram:
            total += counts[j]
            j += 1
        # Insertion into a sorted selection of at most top_k indices.
        m = 0
        for t in range(i, j):
            ct = counts[t]
            st = uniq[t] - bigram * vocab
            if m == top_k:
                last = sel[m - 1]
                if not _before(ct, st, counts[last], uniq[last] - bigram * vocab):
                    continue
                m -= 1
            pos = m
            while pos > 0:
                prev = sel[pos - 1]
                if _before(ct, st, counts[prev], uniq[prev] - bigram * vocab):
                    sel[pos] = prev
                    pos -= 1
                else:
                    break
            sel[pos] = t
            m += 1
        for q in range(m):
            t = sel[q]
            bsucc[ne] = uniq[t] - bigram * vocab
            bw[ne] = counts[t] / total
            bcount[ne] = counts[t]
            ne += 1
        bkeys[nrows] = bigram
        nrows += 1
        boff[nrows] = ne
        i = j
    return nrows, ne


# -- lookup -----------------------------------------------------------------------------------


@_jit
def lookup(key, bhash, ohash):
    """``(start, length, row)`` of a bigram: its base range and its inserted row (or -1)."""
    s = _probe(bhash, key)
    if s >= 0:
        v = bhash[s, 1]
        orow = np.int64(-1)
        if v & _INSERTED:
            orow = hash_find(ohash, key)
        return v & _START_MASK, (v >> _LEN_SHIFT) & _LEN_MASK, orow
    return np.int64(0), np.int64(0), hash_find(ohash, key)


@_jit
def gather(start, length, orow, bsucc, bw, orows, pool_i, pool_w, limit, out_c, out_w):
    """Copy a bigram's successors below ``limit`` (and their weights) in row order."""
    n = 0
    for e in range(start, start + length):
        c = bsucc[e]
        if c < limit:
            out_c[n] = c
            out_w[n] = bw[e]
            n += 1
    if orow >= 0:
        e = orows[orow, 0]
        while e >= 0:
            c = pool_i[e, 0]
            if c < limit:
                out_c[n] = c
                out_w[n] = pool_w[e]
                n += 1
            e = pool_i[e, 1]
    return n


# -- adaptive update --------------------------------------------------------------------------


@_jit
def append_entry(key, succ, weight, bhash, ohash, okey, orows, pool_i, pool_w, meta):
    """Append a new (bigram key, successor) entry at the end of its inserted row.

    The caller guarantees the successor is not in the bigram's row yet and that
    the pool, ``orows`` and ``ohash`` have room (``AdaptiveTable._ensure_room``).
    """
    s = _probe(bhash, key)
    base_len = np.int64(0)
    if s >= 0:
        base_len = (bhash[s, 1] >> _LEN_SHIFT) & _LEN_MASK
    orow = hash_find(ohash, key)
    last = np.int64(-1)
    if orow < 0:
        orow = meta[META_INSERTED_ROWS]
        meta[META_INSERTED_ROWS] += 1
        okey[orow] = key
        _hash_insert(ohash, key, orow)
        orows[orow, 0] = -1
        orows[orow, 1] = 0
        if s >= 0:
            bhash[s, 1] |= _INSERTED
    else:
        e = orows[orow, 0]
        while e >= 0:
            last = e
            e = pool_i[e, 1]
    e = meta[META_POOL_USED]
    meta[META_POOL_USED] += 1
    pool_i[e, 0] = succ
    pool_i[e, 1] = -1
    pool_i[e, 2] = orow
    pool_w[e] = weight
    if last < 0:
        orows[orow, 0] = e
    else:
        pool_i[last, 1] = e
    orows[orow, 1] += 1
    length = base_len + orows[orow, 1]
    if length > meta[META_MAX_ROW]:
        meta[META_MAX_ROW] = length
    return orow


@_jit
def append_many(keys, succ, weights, bhash, ohash, okey, orows, pool_i, pool_w, meta):
    """:func:`append_entry` for each (keys[i], succ[i], weights[i]), in order."""
    for i in range(keys.size):
        append_entry(keys[i], succ[i], weights[i], bhash, ohash, okey, orows, pool_i, pool_w, meta)
    return keys.size


@_jit
def _drop_weakest(orow, orows, pool_i, pool_w, meta):
    """Unlink the weakest inserted entry of row ``orow`` (lowest weight; ties: the oldest)."""
    victim = orows[orow, 0]
    victim_prev = np.int64(-1)
    prev = victim
    e = pool_i[victim, 1]
    while e >= 0:
        if pool_w[e] < pool_w[victim]:
            victim = e
            victim_prev = prev
        prev = e
        e = pool_i[e, 1]
    if victim_prev < 0:
        orows[orow, 0] = pool_i[victim, 1]
    else:
        pool_i[victim_prev, 1] = pool_i[victim, 1]
    pool_i[victim, 1] = -1
    pool_i[victim, 2] = -1
    orows[orow, 1] -= 1
    meta[META_DEAD] += 1
    return victim


@_jit
def update_window(tokens, eos, vocab, increment, cap, max_learnt, bhash, bsucc, bw, bw0,
                  ohash, okey, orows, pool_i, pool_w, log, meta):
    """ADED's adaptive rule over ``tokens``: +increment (capped) per trigram, inserting new ones.

    A trigram occurring twice in ``tokens`` is reinforced twice. Trigrams with a
    token outside [0, vocab) or an EOS as first or second token are skipped. A
    bigram that already has ``max_learnt`` inserted successors drops its weakest
    one (:func:`_drop_weakest`) to make room. Returns the number of inserted entries.
    """
    inserted = 0
    for i in range(tokens.size - 2):
        a = tokens[i]
        b = tokens[i + 1]
        c = tokens[i + 2]
        if a < 0 or b < 0 or c < 0 or a >= vocab or b >= vocab or c >= vocab:
            continue
        if _is_eos(a, eos) or _is_eos(b, eos):
            continue
        key = a * vocab + b
        start, length, orow = lookup(key, bhash, ohash)
        found = False
        for e in range(start, start + length):
            if bsucc[e] == c:
                if bw[e] == bw0[e]:
                    if meta[META_LOG_USED] < log.size:
                        log[meta[META_LOG_USED]] = e
                        meta[META_LOG_USED] += 1
                    else:
                        meta[META_LOG_OVERFLOW] = 1
                bw[e] = min(np.float64(bw[e]) + increment, cap)  # float64 also when interpreted
                found = True
                break
        if found:
            continue
        if orow >= 0:
            e = orows[orow, 0]
            while e >= 0:
                if pool_i[e, 0] == c:
                    pool_w[e] = min(np.float64(pool_w[e]) + increment, cap)
                    found = True
                    break
                e = pool_i[e, 1]
        if found:
            continue
        if orow >= 0 and orows[orow, 1] >= max_learnt:
            _drop_weakest(orow, orows, pool_i, pool_w, meta)
        append_entry(key, c, min(0.0 + increment, cap), bhash, ohash, okey, orows, pool_i, pool_w, meta)
        inserted += 1
    return inserted


@_jit
def restore_log(bw, bw0, log, meta):
    """Undo the base-weight changes recorded in the log."""
    for i in range(meta[META_LOG_USED]):
        e = log[i]
        bw[e] = bw0[e]
    meta[META_LOG_USED] = 0
    return 0


@_jit
def clear_inserted(bhash, ohash, okey, meta):
    """Forget every inserted entry and row; clears the base slots' INSERTED flags."""
    for j in range(meta[META_INSERTED_ROWS]):
        s = _probe(bhash, okey[j])
        if s >= 0:
            bhash[s, 1] &= ~_INSERTED
    ohash[:, :] = -1
    meta[META_POOL_USED] = 0
    meta[META_DEAD] = 0
    meta[META_INSERTED_ROWS] = 0
    meta[META_MAX_ROW] = meta[META_BASE_MAX_ROW]
    return 0


@_jit
def merged_rows(bkeys, boff, bsucc, bw, bhash, ohash, okey, orows, pool_i, pool_w, meta,
                out_keys, out_off, out_succ, out_w):
    """Write the current table (base + inserted) as CSR rows sorted by key.

    Successor order inside a row is the table's row order. Returns ``(rows, entries)``.
    """
    nbase = bkeys.size
    nins = meta[META_INSERTED_ROWS]
    all_keys = np.empty(nbase + nins, np.int64)
    for r in range(nbase):
        all_keys[r] = bkeys[r]
    n_all = nbase
    for j in range(nins):
        if _probe(bhash, okey[j]) < 0:  # a bigram known only through insertions
            all_keys[n_all] = okey[j]
            n_all += 1
    order = np.argsort(all_keys[:n_all], kind="mergesort")
    nrows = 0
    ne = 0
    out_off[0] = 0
    for q in range(n_all):
        key = all_keys[order[q]]
        start, length, orow = lookup(key, bhash, ohash)
        begin = ne
        for e in range(start, start + length):
            out_succ[ne] = bsucc[e]
            out_w[ne] = bw[e]
            ne += 1
        if orow >= 0:
            e = orows[orow, 0]
            while e >= 0:
                out_succ[ne] = pool_i[e, 0]
                out_w[ne] = pool_w[e]
                ne += 1
                e = pool_i[e, 1]
        if ne > begin:
            out_keys[nrows] = key
            nrows += 1
            out_off[nrows] = ne
    return nrows, ne


# -- MCTS -------------------------------------------------------------------------------------


@_jit
def _next_uniform(rng):
    # xorshift64; its top 53 bits give the uniform. The state lives in rng[0]
    # so the caller controls seeding.
    x = rng[0]
    x ^= x >> _U12
    x ^= x << _U25
    x ^= x >> _U27
    rng[0] = x
    return np.float64(x >> _U11) * _INV53


@_jit
def _pick(n, ws, total, rng):
    # Sample an index with probability ws[i] / total (the rollout policy).
    target = _next_uniform(rng) * total
    cum = 0.0
    for j in range(n):
        cum += ws[j]
        if target < cum:
            return j
    return n - 1


@_jit
def node_capacity(iterations, max_row):
    """Nodes the MCTS may create: the root plus one expansion (a whole row) per iteration."""
    return 1 + iterations * max(max_row, 1)


@_jit
def mcts_draft(root_a, root_b, eos, vocab, limit, iparams, fparams, rng,
               bhash, bsucc, bw, ohash, orows, pool_i, pool_w, meta,
               out_paths, out_lens, out_w):
    """ADED's MCTS from the bigram (root_a, root_b); writes ranked paths, returns their number.

    ``iparams`` = (iterations, rollout_depth, max_len, num_paths, greedy_extension,
    max_nodes, normalize); ``fparams`` = (c1, c2). Paths are written to
    ``out_paths[i, :out_lens[i]]`` with weight ``out_w[i]`` (visit count).
    The union of the paths, as a trie, has at most ``max_nodes`` nodes; no path
    continues past an EOS; no id is >= ``limit``.
    """
    iterations = iparams[0]
    rollout_depth = iparams[1]
    max_len = iparams[2]
    num_paths = iparams[3]
    greedy_ext = iparams[4]
    max_nodes = iparams[5]
    normalize = iparams[6] != 0
    tree_limit = min(rollout_depth - 1, max_len)
    horizon = rollout_depth - 1
    if tree_limit < 1 or num_paths < 1 or max_nodes < 1:
        return 0
    if root_a < 0 or root_b < 0 or root_a >= vocab or root_b >= vocab or _is_eos(root_b, eos):
        return 0
    maxrow = max(meta[META_MAX_ROW], 1)
    buf_c = np.empty(maxrow, np.int64)
    buf_w = np.empty(maxrow, np.float64)
    start, length, orow = lookup(root_a * vocab + root_b, bhash, ohash)
    if gather(start, length, orow, bsucc, bw, orows, pool_i, pool_w, limit, buf_c, buf_w) == 0:
        return 0

    cap_nodes = node_capacity(iterations, maxrow)
    ints = np.empty((7, cap_nodes), np.int64)
    floats = np.empty((4, cap_nodes), np.float64)
    tok = ints[0]
    par = ints[1]
    first = ints[2]
    nch = ints[3]
    vis = ints[4]
    depth = ints[5]
    state = ints[6]  # 0 unexpanded, 1 expanded, 2 terminal (EOS)
    score = floats[0]
    prior = floats[1]
    # Cached PUCT terms of each node, refreshed when its visits change:
    # q = score / visits (+inf while unvisited) and pf = prior / (1 + visits).
    q = floats[2]
    pf = floats[3]
    tok[0] = root_b
    par[0] = -1
    first[0] = 0
    nch[0] = 0
    vis[0] = 0
    score[0] = 0.0
    prior[0] = 0.0
    q[0] = np.inf
    pf[0] = 0.0
    depth[0] = 0
    state[0] = 0
    n_nodes = 1

    for _ in range(iterations):
        node = 0
        d = 0
        prev = root_a
        acc = 0.0
        # Selection: PUCT down the expanded part of the tree.
        while nch[node] > 0 and d < tree_limit:
            factor = fparams[2 + vis[node]]
            best = first[node]
            best_score = 0.0
            for ch in range(first[node], first[node] + nch[node]):
                s = q[ch] + factor * pf[ch]
                if s > best_score:
                    best_score = s
                    best = ch
            prev = tok[node]
            node = best
            d += 1
            acc += prior[node]
        # Expansion: all successors of the leaf's bigram become children.
        if state[node] == 0 and d < tree_limit:
            state[node] = 1
            start, length_, orow = lookup(prev * vocab + tok[node], bhash, ohash)
            k = gather(start, length_, orow, bsucc, bw, orows, pool_i, pool_w, limit, buf_c, buf_w)
            total = 0.0
            for j in range(k):
                total += buf_w[j]
            if k > 0 and total > 0.0:
                first[node] = n_nodes
                nch[node] = k
                for j in range(k):
                    ch = n_nodes + j
                    tok[ch] = buf_c[j]
                    par[ch] = node
                    first[ch] = 0
                    nch[ch] = 0
                    vis[ch] = 0
                    score[ch] = 0.0
                    prior[ch] = buf_w[j] / total if normalize else buf_w[j]
                    q[ch] = np.inf
                    pf[ch] = prior[ch]
                    depth[ch] = d + 1
                    state[ch] = 2 if _is_eos(buf_c[j], eos) else 0
                n_nodes += k
                pick = _pick(k, buf_w, total, rng)
                prev = tok[node]
                node = first[node] + pick
                d += 1
                acc += prior[node]
        # Rollout: sample successors by weight up to the horizon (not past an EOS).
        if state[node] != 2:
            x = prev
            y = tok[node]
            dd = d
            while dd < horizon:
                start, length_, orow = lookup(x * vocab + y, bhash, ohash)
                k = gather(start, length_, orow, bsucc, bw, orows, pool_i, pool_w, limit, buf_c, buf_w)
                total = 0.0
                for j in range(k):
                    total += buf_w[j]
                if k == 0 or total <= 0.0:
                    break
                pick = _pick(k, buf_w, total, rng)
                acc += buf_w[pick] / total if normalize else buf_w[pick]
                dd += 1
                c = buf_c[pick]
                if _is_eos(c, eos):
                    break
                x = y
                y = c
        reward = 1.0 + acc
        v = node
        while v >= 0:
            vis[v] += 1
            score[v] += reward
            q[v] = score[v] / vis[v]
            pf[v] = prior[v] / (1.0 + vis[v])
            v = par[v]

    # Extraction: nodes by visits (ties: creation order), greedy extension, trie node cap.
    if n_nodes <= 1:
        return 0
    # The num_paths most visited nodes, ties by creation order (insertion into a
    # short sorted list: most nodes are unvisited leaves and are rejected at once).
    top = np.empty(num_paths, np.int64)
    n_top = 0
    for i in range(1, n_nodes):
        vi = vis[i]
        if n_top == num_paths:
            if vi <= vis[top[n_top - 1]]:
                continue
            n_top -= 1
        pos = n_top
        while pos > 0 and vi > vis[top[pos - 1]]:
            top[pos] = top[pos - 1]
            pos -= 1
        top[pos] = i
        n_top += 1
    width = out_paths.shape[1]
    path = np.empty(width, np.int64)
    n_out = 0
    used_nodes = 0
    for t in range(n_top):
        v = top[t]
        length = depth[v]
        if length > width:
            continue
        u = v
        for pos in range(length - 1, -1, -1):
            path[pos] = tok[u]
            u = par[u]
        for _g in range(greedy_ext):
            if length >= max_len or length >= width or _is_eos(path[length - 1], eos):
                break
            x = root_b if length == 1 else path[length - 2]
            start, length_, orow = lookup(x * vocab + path[length - 1], bhash, ohash)
            k = gather(start, length_, orow, bsucc, bw, orows, pool_i, pool_w, limit, buf_c, buf_w)
            if k == 0:
                break
            best = 0
            for j in range(1, k):
                if buf_w[j] > buf_w[best]:
                    best = j
            path[length] = buf_c[best]
            length += 1
        if length > max_len:
            length = max_len
        shared = 0
        for p in range(n_out):
            m = 0
            lim = min(out_lens[p], length)
            while m < lim and out_paths[p, m] == path[m]:
                m += 1
            if m > shared:
                shared = m
        if length <= shared:
            continue
        if used_nodes + length - shared > max_nodes:
            length = shared + (max_nodes - used_nodes)
            if length <= shared:
                break
        for pos in range(length):
            out_paths[n_out, pos] = path[pos]
        out_lens[n_out] = length
        out_w[n_out] = vis[v]
        used_nodes += length - shared
        n_out += 1
    return n_out
