"""The sparse tri-gram matrix: building it, and its adaptive (mutable) form.

:class:`TrigramMatrix` is the immutable, compact result of counting a corpus
(what is saved and loaded). :class:`AdaptiveTable` wraps one for decoding: a hash
index for O(1) bigram lookup, mutable weights, and a bounded pool of inserted
entries; its hot paths are the Numba kernels of :mod:`.kernels`.

Weights. At build time the weight of successor ``c`` of bigram ``(a, b)`` is
``count(a, b, c) / count(a, b, *)``: the tri-gram probability, normalised over
*all* successors seen in the corpus, before each bigram keeps its ``top_k``
successors (ties broken by smaller token id). The adaptive rule then adds
``increment`` to a weight per occurrence in the update window, capped at
``max_weight``; inserted entries start at ``increment``. The probability the
draft search uses for ``c`` after ``(a, b)`` is ``w(a, b, c) / sum_c' w(a, b, c')``
over the row's current successors (see :class:`.config.MctsConfig.normalize`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ...errors import InvalidInputError
from . import kernels as K
from .config import AdaptConfig, MctsConfig, puct_factors, window_chunks

__all__ = ["TrigramMatrix", "build_matrix", "AdaptiveTable", "MAX_VOCAB"]

#: Trigram keys pack (a, b, c) as (a * V + b) * V + c into an int64.
MAX_VOCAB = 2_097_151


@dataclass(frozen=True, eq=False)
class TrigramMatrix:
    """A bigram -> successors table in CSR form, rows sorted by bigram key.

    Row ``i`` is the bigram ``(keys[i] // V, keys[i] % V)``; its successors are
    ``successors[offsets[i]:offsets[i+1]]`` with ``weights`` alongside, ordered by
    weight descending (ids ascending among equals) when freshly built. The
    arrays must not be modified: adaptive tables share them.
    """

    vocab_size: int
    keys: np.ndarray  #: int64 [B] bigram keys a * V + b, strictly increasing
    offsets: np.ndarray  #: int64 [B + 1]
    successors: np.ndarray  #: int32 [E]
    weights: np.ndarray  #: float32 [E]
    top_k: int = 0  #: successors kept per bigram at build time (0 = unknown)
    tokens: int = 0  #: corpus tokens counted (informational)
    #: :func:`draftkit.fingerprint.tokenizer_fingerprint` of the tokenizer, "" when unknown
    fingerprint: str = field(default="")

    @classmethod
    def empty(cls, vocab_size: int) -> TrigramMatrix:
        _check_vocab(vocab_size)
        return cls(
            vocab_size,
            np.empty(0, np.int64),
            np.zeros(1, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.float32),
        )

    @property
    def num_bigrams(self) -> int:
        return int(self.keys.size)

    @property
    def num_entries(self) -> int:
        return int(self.successors.size)

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.offsets.nbytes + self.successors.nbytes + self.weights.nbytes)

    def rows(self) -> Iterator[tuple[int, int, list[tuple[int, float]]]]:
        """Yield ``(a, b, [(successor, weight), ...])`` in key order (for tests and inspection)."""
        v = self.vocab_size
        for i, key in enumerate(self.keys.tolist()):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            yield key // v, key % v, list(
                zip(self.successors[lo:hi].tolist(), self.weights[lo:hi].tolist(), strict=True)
            )

    def successors_of(self, a: int, b: int) -> list[tuple[int, float]]:
        key = a * self.vocab_size + b
        i = int(np.searchsorted(self.keys, key))
        if i < self.keys.size and self.keys[i] == key:
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            return list(zip(self.successors[lo:hi].tolist(), self.weights[lo:hi].tolist(), strict=True))
        return []


def _check_vocab(vocab_size: int) -> None:
    if not isinstance(vocab_size, (int, np.integer)) or not (1 <= int(vocab_size) <= MAX_VOCAB):
        raise InvalidInputError(f"vocab_size must be an integer in [1, {MAX_VOCAB}], got {vocab_size!r}")


def _as_tokens(arr: object, vocab_size: int) -> np.ndarray:
    out = np.asarray(arr)
    if out.ndim != 1:
        out = out.reshape(-1)
    if out.size and not np.issubdtype(out.dtype, np.integer):
        raise InvalidInputError(f"token arrays must hold integer ids, got dtype {out.dtype}")
    out = out.astype(np.int64, copy=False)
    if out.size and (int(out.min()) < 0 or int(out.max()) >= vocab_size):
        bad = int(out[(out < 0) | (out >= vocab_size)][0])
        raise InvalidInputError(
            f"token id {bad} is outside [0, {vocab_size}); pass the tokenizer's full vocabulary size "
            "(len(tokenizer)) as vocab_size"
        )
    return out


def _reduce_chunk(parts: list[np.ndarray], vocab: int, eos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Documents are joined with -1 separators so no trigram spans two of them.
    joined = np.full(sum(p.size + 1 for p in parts), -1, np.int64)
    pos = 0
    for p in parts:
        joined[pos : pos + p.size] = p
        pos += p.size + 1
    keys = np.empty(max(joined.size - 2, 0), np.int64)
    n = K.trigram_keys(joined, np.int64(vocab), eos, keys)
    keys = np.sort(keys[:n])
    uniq = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    m = K.count_sorted(keys, uniq, counts)
    return uniq[:m], counts[:m]


def _merge(acc: tuple[np.ndarray, np.ndarray] | None, new: tuple[np.ndarray, np.ndarray]):
    if acc is None:
        return new
    size = acc[0].size + new[0].size
    out_k = np.empty(size, np.int64)
    out_c = np.empty(size, np.int64)
    m = K.merge_counts(acc[0], acc[1], new[0], new[1], out_k, out_c)
    return out_k[:m].copy(), out_c[:m].copy()


def build_matrix(
    token_arrays: Iterable[object],
    vocab_size: int,
    *,
    top_k: int = 12,
    max_entries: int | None = None,
    eos_token_ids: Iterable[int] = (),
    chunk_tokens: int = 1 << 24,
    fingerprint: str = "",
) -> TrigramMatrix:
    """Count the trigrams of ``token_arrays`` (one array per document) into a matrix.

    Counting is sort-based on packed int64 keys, in chunks of about
    ``chunk_tokens`` tokens whose counts are merged, so memory is bounded by the
    distinct trigrams, not the corpus size. Each bigram keeps its ``top_k``
    successors (count descending, id ascending). With ``max_entries``, only that
    many entries are kept overall: those with the highest counts (ties: smaller
    trigram key), without changing the kept weights. Trigrams whose first or
    second token is one of ``eos_token_ids`` are not counted.
    """
    _check_vocab(vocab_size)
    vocab = int(vocab_size)
    if top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1, got {top_k}")
    if max_entries is not None and max_entries < 0:
        raise InvalidInputError(f"max_entries must be >= 0 or None, got {max_entries}")
    eos = np.asarray(sorted({int(t) for t in eos_token_ids}), dtype=np.int64)
    acc: tuple[np.ndarray, np.ndarray] | None = None
    parts: list[np.ndarray] = []
    pending = 0
    total_tokens = 0
    for arr in token_arrays:
        toks = _as_tokens(arr, vocab)
        if toks.size < 3:
            total_tokens += toks.size
            continue
        parts.append(toks)
        pending += toks.size
        total_tokens += toks.size
        if pending >= chunk_tokens:
            acc = _merge(acc, _reduce_chunk(parts, vocab, eos))
            parts, pending = [], 0
    if parts:
        acc = _merge(acc, _reduce_chunk(parts, vocab, eos))
    if acc is None:
        m = TrigramMatrix.empty(vocab)
        return TrigramMatrix(vocab, m.keys, m.offsets, m.successors, m.weights, top_k, total_tokens, fingerprint)
    uniq, counts = acc
    n = uniq.size
    bkeys = np.empty(n, np.int64)
    boff = np.empty(n + 1, np.int64)
    bsucc = np.empty(n, np.int32)
    bw = np.empty(n, np.float32)
    bcount = np.empty(n, np.int64)
    nrows, ne = K.prune_top_k(uniq, counts, np.int64(vocab), np.int64(top_k), bkeys, boff, bsucc, bw, bcount)
    bkeys, boff, bsucc, bw, bcount = bkeys[:nrows], boff[: nrows + 1], bsucc[:ne], bw[:ne], bcount[:ne]
    if max_entries is not None and ne > max_entries:
        row_of = np.repeat(np.arange(nrows, dtype=np.int64), np.diff(boff))
        key3 = bkeys[row_of] * vocab + bsucc
        order = np.lexsort((key3, -bcount))
        keep = np.zeros(ne, bool)
        keep[order[:max_entries]] = True
        kept_per_row = np.add.reduceat(keep.astype(np.int64), boff[:-1]) if nrows else np.zeros(0, np.int64)
        nonempty = kept_per_row > 0
        bkeys = bkeys[nonempty]
        boff = np.concatenate([[0], np.cumsum(kept_per_row[nonempty])]).astype(np.int64)
        bsucc, bw = bsucc[keep], bw[keep]
    return TrigramMatrix(
        vocab,
        np.ascontiguousarray(bkeys),
        np.ascontiguousarray(boff),
        np.ascontiguousarray(bsucc),
        np.ascontiguousarray(bw),
        int(top_k),
        int(total_tokens),
        fingerprint,
    )


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def _new_hash(capacity_keys: int, load: float) -> np.ndarray:
    """An empty open-addressing table [H, 2] (key -1 = free) at most ``load`` full."""
    return np.full((_pow2_at_least(int(capacity_keys / load) + 1), 2), -1, np.int64)


class AdaptiveTable:
    """A :class:`TrigramMatrix` that learns while decoding (Numba backend).

    The corpus-built rows are shared with the matrix (only their weights are
    copied); inserted entries live in a pool that grows by doubling up to
    ``adapt.max_inserted`` entries. :meth:`reset` restores the matrix's state
    at a cost proportional to what was learnt since the last reset.
    """

    backend = "numba"

    def __init__(self, matrix: TrigramMatrix, adapt: AdaptConfig, *, initial_capacity: int = 4096) -> None:
        self.matrix = matrix
        self.adapt = adapt
        self.vocab_size = matrix.vocab_size
        m = matrix
        self._boff = np.ascontiguousarray(m.offsets, dtype=np.int64)
        self._bkeys = np.ascontiguousarray(m.keys, dtype=np.int64)
        self._bsucc = np.ascontiguousarray(m.successors, dtype=np.int32)
        self._bw0 = np.ascontiguousarray(m.weights, dtype=np.float32)
        self._bw = self._bw0.copy()
        base_max = int(np.diff(self._boff).max()) if m.num_bigrams else 0
        if base_max > K.MAX_BASE_ROW:
            raise InvalidInputError(f"a matrix row has {base_max} successors, more than {K.MAX_BASE_ROW}")
        self._bhash = _new_hash(m.num_bigrams, load=0.6)
        K.build_base_hash(self._bkeys, self._boff, self._bhash)
        self._meta = np.zeros(K.META_SIZE, np.int64)
        self._meta[K.META_BASE_MAX_ROW] = base_max
        self._meta[K.META_MAX_ROW] = base_max
        self._log = np.empty(max(1 << 14, m.num_entries // 16), np.int64)
        self._alloc(min(initial_capacity, adapt.max_inserted))
        self._eos_none = np.empty(0, np.int64)
        self._params_for: MctsConfig | None = None
        self._params: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._rng = np.ones(1, np.uint64)

    # -- storage -------------------------------------------------------------------------------

    def _alloc(self, capacity: int) -> None:
        self._cap = capacity
        self._pool_i = np.full((capacity, 3), -1, np.int32)
        self._pool_w = np.zeros(capacity, np.float32)
        self._okey = np.full(capacity, -1, np.int64)
        self._orows = np.full((capacity, 2), -1, np.int32)
        self._ohash = _new_hash(capacity, load=0.5)

    def _grow(self, capacity: int) -> None:
        old_cap = self._cap
        pool_i, pool_w, okey, orows = self._pool_i, self._pool_w, self._okey, self._orows
        self._alloc(capacity)
        self._pool_i[:old_cap] = pool_i
        self._pool_w[:old_cap] = pool_w
        self._okey[:old_cap] = okey
        self._orows[:old_cap] = orows
        nrows = int(self._meta[K.META_INSERTED_ROWS])
        K.build_hash(self._okey[:nrows], np.int64(0), self._ohash)

    def _compact(self, keep: int) -> None:
        """Forget all but the ``keep`` strongest inserted entries (weight, then recency).

        Dead slots (entries a full row dropped) are never survivors: compaction
        is what reclaims them.
        """
        used = int(self._meta[K.META_POOL_USED])
        idx = np.flatnonzero(self._pool_i[:used, 2] >= 0)
        w = self._pool_w[idx]
        survivors = np.sort(idx[np.lexsort((-idx, -w.astype(np.float64)))[:keep]])
        keys = self._okey[self._pool_i[survivors, 2]]
        succ = self._pool_i[survivors, 0].astype(np.int64)
        weights = self._pool_w[survivors].copy()
        K.clear_inserted(self._bhash, self._ohash, self._okey, self._meta)
        K.append_many(keys, succ, weights, self._bhash, self._ohash, self._okey, self._orows, self._pool_i,
                      self._pool_w, self._meta)

    def _ensure_room(self, new_entries: int) -> None:
        used = int(self._meta[K.META_POOL_USED])
        if used + new_entries <= self._cap:
            return
        limit = self.adapt.max_inserted
        if self._cap < limit:
            self._grow(min(limit, max(2 * self._cap, used + new_entries)))
            if used + new_entries <= self._cap:
                return
        self._compact(min(limit // 2, limit - new_entries))

    # -- the adaptive rule ---------------------------------------------------------------------

    def update(self, tokens: np.ndarray, eos: np.ndarray | None = None) -> int:
        """Apply the adaptive rule to every trigram of ``tokens``; returns entries inserted."""
        eos = self._eos_none if eos is None else eos
        a = self.adapt
        inserted = 0
        for chunk in window_chunks(np.ascontiguousarray(tokens, dtype=np.int64)):
            self._ensure_room(chunk.size - 2)
            inserted += K.update_window(
                chunk, eos, self.vocab_size, float(a.increment), float(a.max_weight), a.max_learnt_per_bigram,
                self._bhash, self._bsucc, self._bw, self._bw0, self._ohash, self._okey,
                self._orows, self._pool_i, self._pool_w, self._log, self._meta,
            )
        return inserted

    def reset(self) -> None:
        """Back to the matrix's weights with no inserted entry."""
        if self._meta[K.META_LOG_OVERFLOW]:
            self._bw[:] = self._bw0
            self._meta[K.META_LOG_USED] = 0
            self._meta[K.META_LOG_OVERFLOW] = 0
        else:
            K.restore_log(self._bw, self._bw0, self._log, self._meta)
        K.clear_inserted(self._bhash, self._ohash, self._okey, self._meta)

    # -- drafting ------------------------------------------------------------------------------

    def draft(
        self,
        a: int,
        b: int,
        eos: np.ndarray,
        limit: int,
        max_len: int,
        max_nodes: int,
        mcts: MctsConfig,
        rng_state: int,
        out_paths: np.ndarray,
        out_lens: np.ndarray,
        out_w: np.ndarray,
    ) -> int:
        """Run the MCTS from bigram (a, b); fills the ``out_*`` arrays, returns the path count."""
        # The parameter arrays are built once per (limits, config): the engine's budget policy
        # varies max_nodes from step to step, and a rebuild (~20 us) is a sixth of a whole draft.
        if self._params_for is not mcts:
            self._params_for, self._params = mcts, {}
        params = self._params.get((max_len, max_nodes))
        if params is None:
            params = self._params[(max_len, max_nodes)] = (
                np.array([mcts.iterations, mcts.rollout_depth, max_len, mcts.num_paths, mcts.greedy_extension,
                          max_nodes, int(mcts.normalize)], np.int64),
                np.array([mcts.c1, mcts.c2, *puct_factors(mcts.c1, mcts.c2, mcts.iterations)], np.float64),
            )
        iparams, fparams = params
        rng = self._rng
        rng[0] = rng_state
        return K.mcts_draft(
            a, b, eos, self.vocab_size, limit, iparams, fparams, rng,
            self._bhash, self._bsucc, self._bw, self._ohash, self._orows, self._pool_i,
            self._pool_w, self._meta, out_paths, out_lens, out_w,
        )

    # -- inspection ----------------------------------------------------------------------------

    @property
    def num_inserted(self) -> int:
        """Inserted entries currently in the table (dropped ones not counted)."""
        return int(self._meta[K.META_POOL_USED] - self._meta[K.META_DEAD])

    @property
    def max_row_length(self) -> int:
        """Upper bound of any bigram's successor count: at most the longest matrix row + ``max_learnt_per_bigram``."""
        return int(self._meta[K.META_MAX_ROW])

    def mcts_node_capacity(self, mcts: MctsConfig) -> int:
        """Nodes one :meth:`draft` allocates room for (``kernels.node_capacity``)."""
        return int(K.node_capacity(mcts.iterations, self.max_row_length))

    @property
    def nbytes(self) -> int:
        """Bytes held by the table (matrix arrays included)."""
        arrays = (self._bkeys, self._boff, self._bsucc, self._bw, self._bw0, self._bhash, self._ohash,
                  self._okey, self._orows, self._pool_i, self._pool_w, self._log)
        return int(sum(x.nbytes for x in arrays))

    def successors(self, a: int, b: int) -> list[tuple[int, float]]:
        """The row of bigram (a, b) in row order: ``[(successor, weight), ...]``."""
        v = self.vocab_size
        if not (0 <= a < v and 0 <= b < v):
            return []
        start, length, orow = K.lookup(a * v + b, self._bhash, self._ohash)
        size = max(int(self._meta[K.META_MAX_ROW]), 1)
        out_c = np.empty(size, np.int64)
        out_w = np.empty(size, np.float64)
        n = K.gather(start, length, orow, self._bsucc, self._bw, self._orows, self._pool_i, self._pool_w, v,
                     out_c, out_w)
        return list(zip(out_c[:n].tolist(), out_w[:n].tolist(), strict=True))

    def to_matrix(self) -> TrigramMatrix:
        """The current state (base + inserted entries) as a new matrix."""
        nrows_max = self._bkeys.size + int(self._meta[K.META_INSERTED_ROWS])
        ne_max = self._bsucc.size + int(self._meta[K.META_POOL_USED])
        keys = np.empty(nrows_max, np.int64)
        off = np.empty(nrows_max + 1, np.int64)
        succ = np.empty(ne_max, np.int32)
        w = np.empty(ne_max, np.float32)
        nrows, ne = K.merged_rows(self._bkeys, self._boff, self._bsucc, self._bw, self._bhash, self._ohash,
                                  self._okey, self._orows, self._pool_i, self._pool_w, self._meta, keys, off,
                                  succ, w)
        m = self.matrix
        return TrigramMatrix(self.vocab_size, keys[:nrows].copy(), off[: nrows + 1].copy(), succ[:ne].copy(),
                             w[:ne].copy(), m.top_k, m.tokens, m.fingerprint)
