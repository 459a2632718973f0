"""Suffix arrays of token chunks, and the retrieval step that searches them.

Construction uses libdivsufsort (through ``pydivsufsort``), which sorts *bytes*.
Token ids wider than a byte are written big-endian in ``w`` bytes each: comparing
two byte strings that start at multiples of ``w`` then compares the id sequences,
so the byte suffix array restricted to aligned positions (divided by ``w``) is the
token suffix array. ``w`` is the fewest bytes that hold the largest id (1-4), not
the storage width, which keeps the byte string (and the sort) as small as can be.

:func:`retrieve` is one retrieval step over several chunks and, optionally, the
context itself; it runs the kernels of :mod:`.kernels` (or, in tests, the
same-named functions of :mod:`.reference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import NoReturn

import numpy as np

from ...errors import CorruptDataFileError
from . import kernels as _kernels

__all__ = ["suffix_array", "byte_width", "RetrievalParams", "Retrieved", "retrieve", "find_occurrences", "match_evidence"]

#: libdivsufsort's 32-bit entry point sorts at most 2**31 - 1 bytes.
MAX_SORT_BYTES = 2**31 - 1


def byte_width(max_value: int) -> int:
    """Bytes needed to write ids up to ``max_value`` big-endian (at least 1)."""
    return max(1, (int(max_value).bit_length() + 7) // 8)


def suffix_array(tokens: np.ndarray, max_value: int | None = None) -> np.ndarray:
    """int32 [n] start positions of the suffixes of ``tokens`` in lexicographic order.

    ``tokens`` is a 1-D array of non-negative ids; ``max_value`` (default: the
    array's maximum) bounds them. A suffix that is a prefix of another sorts first.
    """
    from pydivsufsort import divsufsort

    arr = np.ascontiguousarray(tokens).reshape(-1)
    n = int(arr.size)
    if n == 0:
        return np.empty(0, np.int32)
    if max_value is None:
        max_value = int(arr.max())
    width = byte_width(max_value)
    if n * width > MAX_SORT_BYTES:
        raise ValueError(
            f"a chunk of {n} tokens of {width} bytes is too large to sort in one piece; "
            "use a smaller chunk_tokens"
        )
    if width == 1:
        packed = arr.astype(np.uint8)
    else:
        wide = arr.astype(np.uint32, copy=False)
        packed = np.empty((n, width), np.uint8)
        for b in range(width):  # most significant byte first
            packed[:, b] = (wide >> np.uint32(8 * (width - 1 - b))) & np.uint32(0xFF)
        packed = packed.reshape(-1)
        del wide
    byte_sa = divsufsort(packed)
    del packed
    if width == 1:
        return np.ascontiguousarray(byte_sa, dtype=np.int32)
    aligned = byte_sa[byte_sa % width == 0]
    del byte_sa
    aligned //= width
    return np.ascontiguousarray(aligned, dtype=np.int32)


@dataclass(frozen=True)
class RetrievalParams:
    """Knobs of one retrieval step (REST's defaults)."""

    min_len: int = 2  #: shortest context suffix that may match
    max_len: int = 16  #: longest context suffix tried
    max_matches: int = 5000  #: occurrences read per step (evenly spaced if more)
    depth: int = 10  #: tokens read after each occurrence
    max_nodes: int = 64  #: nodes kept in the frequency-weighted trie
    include_context: bool = False  #: also match inside the context itself
    context_weight: float = 1.0  #: weight of one occurrence in the context


@dataclass(frozen=True)
class Retrieved:
    """Result of one step: paths whose trie is the kept tree, and the match found."""

    paths: tuple[np.ndarray, ...]  #: int64 [len_i] root paths of the kept nodes with own weight
    weights: tuple[float, ...]  #: weight of each path (summing to the node frequencies)
    match_length: int  #: longest context suffix found in the store (0 = none)
    context_match_length: int  #: longest suffix re-occurring in the context (0 = none / not searched)
    occurrences: int  #: occurrences of the store match
    context_occurrences: int  #: earlier occurrences in the context used
    rows: int  #: continuations read


_EMPTY = Retrieved((), (), 0, 0, 0, 0, 0)


def match_evidence(found: Retrieved) -> int:
    """``Draft.evidence`` of a retrieval: the length class of the longest suffix matched.

    The budget learns how often each class is accepted. A longer match is not
    always the better one: on the demo model's HumanEval answers, 4-token
    matches in the standard library were accepted more often than 6-token ones,
    whose continuations the model had not learnt word for word.
    """
    longest = max(found.match_length, found.context_match_length)
    return 1 if longest <= 3 else 2 if longest <= 6 else 3


def retrieve(
    chunks: Sequence[tuple[np.ndarray, np.ndarray]],
    context: np.ndarray,
    params: RetrievalParams,
    *,
    separator: int,
    vocab_limit: int,
    stops: np.ndarray,
    max_depth: int,
    max_nodes: int,
    impl: ModuleType = _kernels,
    where: str = "the datastore",
) -> Retrieved:
    """One retrieval step: longest matching suffix, continuations, trie, best nodes.

    ``chunks`` are ``(tokens, suffix_array)`` pairs; ``context`` is int64 [L];
    ``stops`` int64 ids a continuation ends after (EOS); tokens ``>= vocab_limit``
    and ``separator`` end it before. ``max_depth`` / ``max_nodes`` are the engine's
    limits of this step (the params' own limits also apply).

    Raises :class:`~draftkit.errors.CorruptDataFileError` (naming ``where``, the
    store) when a kernel meets a suffix-array entry outside its chunk: damage the
    cheap checks at open did not sample.
    """
    depth = min(params.depth, max_depth)
    k = min(params.max_nodes, max_nodes)
    if depth < 1 or k < 1 or context.size == 0:
        return _EMPTY
    query = context[-params.max_len :]
    found = []
    best = 0  # longest match in the store
    for tokens, sa in chunks:
        m, lo, hi = impl.longest_match(tokens, sa, query, params.min_len, params.max_len, separator)
        if m == _kernels.CORRUPT:
            _corrupt(where, len(found))
        found.append((m, lo, hi))
        best = max(best, m)
    hits = [(i, lo, hi) for i, (m, lo, hi) in enumerate(found) if m == best and best > 0 and hi > lo]
    total = sum(hi - lo for _, lo, hi in hits)
    m_ctx, ctx_ends = 0, np.empty(0, np.int64)
    if params.include_context:
        m_ctx, ctx_ends = impl.context_matches(context, params.min_len, params.max_len, params.max_matches)
    if not hits and ctx_ends.size == 0:
        return _EMPTY
    # Store rows weigh their frequency (REST). With context rows as well, each side is
    # normalised to a total mass equal to its match length (times context_weight for
    # the context): a long match in the context beats a short one in the store and
    # vice versa, and a frequent pattern in the store cannot drown the context.
    store_mass = float(best) / total if (hits and ctx_ends.size) else 1.0
    takes = []
    n_rows = int(ctx_ends.size)
    for _, lo, hi in hits:
        count = hi - lo
        take = count if total <= params.max_matches else max(1, (params.max_matches * count) // total)
        takes.append(take)
        n_rows += take
    rows = np.empty((n_rows, depth), np.int64)
    lens = np.empty(n_rows, np.int64)
    terms = np.empty(n_rows, np.int64)
    weights = np.empty(n_rows, np.float64)
    run_starts = np.empty(len(hits) + ctx_ends.size, np.int64)
    r = 0
    runs = 0
    for (i, lo, hi), take in zip(hits, takes, strict=True):
        tokens, sa = chunks[i]
        got = impl.gather_rows(tokens, sa, lo, hi, best, take, depth, separator, vocab_limit, stops,
                               rows, lens, terms, r)
        if got == _kernels.CORRUPT:
            _corrupt(where, i)
        weights[r : r + got] = store_mass * (hi - lo) / got  # each row stands for (hi-lo)/got occurrences
        run_starts[runs] = r
        runs += 1
        r += got
    if ctx_ends.size:
        got = impl.gather_context_rows(context, ctx_ends, depth, vocab_limit, stops, rows, lens, terms, r)
        weights[r : r + got] = params.context_weight * (m_ctx / got if hits else 1.0)
        run_starts[runs : runs + got] = np.arange(r, r + got)  # unsorted: each row is its own run
        runs += got
        r += got
    if runs > 1:
        order = impl.sort_rows(rows, lens, terms, r, run_starts[:runs])
    else:
        order = np.arange(r, dtype=np.int64)
    tokens, parents, scores, depths, first_child, next_sibling, _ = impl.build_trie(rows, lens, weights, order)
    picked = impl.select_nodes(scores, depths, first_child, next_sibling, k)
    paths, lengths, path_weights, p = impl.draft_paths(tokens, parents, scores, depths, picked, depth)
    return Retrieved(
        tuple(paths[i, : lengths[i]] for i in range(p)),
        tuple(float(w) for w in path_weights),
        best,
        int(m_ctx),
        total,
        int(ctx_ends.size),
        r,
    )


def _corrupt(where: str, chunk: int | None) -> NoReturn:
    part = f"{where} chunk {chunk}" if chunk is not None else "the suffix array"
    raise CorruptDataFileError(
        f"{part}: a suffix-array entry points outside the chunk, so the suffix array file is damaged "
        f"(opening a store spot-checks only a few entries). Run `draftkit datastore verify {where}` for "
        "details, then rebuild the datastore with `draftkit datastore build`"
    )


def find_occurrences(tokens: np.ndarray, sa: np.ndarray, pattern: Sequence[int]) -> np.ndarray:
    """Start positions (int64, suffix-array order) of ``pattern`` in ``tokens``.

    Raises :class:`~draftkit.errors.CorruptDataFileError` if a suffix-array entry
    it reads or returns is not a position of ``tokens``.
    """
    pat = np.asarray(pattern, dtype=np.int64)
    if pat.size == 0:
        return np.asarray(sa, dtype=np.int64)
    m, lo, hi = _kernels.longest_match(tokens, sa, pat, pat.size, pat.size, np.iinfo(np.int64).max)
    if m == _kernels.CORRUPT:
        _corrupt("STORE", None)
    if m != pat.size:
        return np.empty(0, np.int64)
    found = np.asarray(sa[lo:hi], dtype=np.int64)
    if found.size and (int(found.min()) < 0 or int(found.max()) >= tokens.shape[0]):
        _corrupt("STORE", None)
    return found
