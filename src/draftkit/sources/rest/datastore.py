"""The on-disk retrieval datastore: build, open (memory-mapped), verify.

A store is a folder::

    datastore.json          header (magic, format version, vocabulary, tokenizer
                            fingerprint, dtypes, per-file sizes and SHA-256, and
                            the SHA-256 of the header itself)
    chunk-00000.tokens      token ids of chunk 0, raw little-endian uint16/uint32
    chunk-00000.sa          its suffix array, raw little-endian int32
    chunk-00001.tokens ...

Documents are written one after another, each followed by the *separator* id
(= ``vocab_size``, an id no tokenizer produces): a match can never span two
documents, and a continuation stops at the separator. A chunk holds whole
documents (a document longer than a chunk is split, and retrieval does not cross
the split). Token ids use the narrowest width that holds the separator: uint16
up to 65,535 tokens in the vocabulary, uint32 above (REST's fixed u16 broke on
150k-token vocabularies).

What is checked when:

* :meth:`Datastore.open` (fast, checks no whole array; a small store is read
  ahead in the background, see :data:`PREFETCH_MAX_BYTES`): the header parses, has the
  magic, its own checksum matches, the format version is this one, the fields are
  consistent (dtype fits the vocabulary, largest id < vocabulary), every file
  exists with exactly the recorded size (a truncated or extended file is refused),
  the tokenizer fingerprint matches when a tokenizer is given; and a few spot
  checks touching a handful of pages (sampled suffix-array entries in range,
  sampled tokens in range, sampled neighbouring suffixes in order, each chunk
  ending with a separator).
* :func:`verify_datastore` (reads everything): all of the above, the SHA-256 of
  every file, every token id below the vocabulary (or the separator), and every
  suffix array a permutation of its chunk's positions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import mmap
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...checks import is_integer
from ...errors import CorruptDataFileError, DataFileError, InvalidInputError, MismatchedDataFileError
from ...fingerprint import file_sha256
from .suffix import MAX_SORT_BYTES, byte_width, suffix_array

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "HEADER_NAME",
    "DEFAULT_CHUNK_TOKENS",
    "PREFETCH_MAX_BYTES",
    "Chunk",
    "Datastore",
    "BuildSummary",
    "build_datastore",
    "read_header",
    "verify_datastore",
    "check_chunk_contents",
    "token_dtype_for",
]

MAGIC = "draftkit-rest-datastore"
#: Bumped whenever the layout changes; the header checksum scheme never changes.
FORMAT_VERSION = 1
HEADER_NAME = "datastore.json"
#: Tokens per chunk (separators included). A chunk's suffix array is sorted in
#: memory: ~4 bytes/token for the array + up to 4x that for the byte-level sort.
DEFAULT_CHUNK_TOKENS = 1 << 26
_SA_DTYPE = np.dtype("<i4")
#: Stores up to this size are read ahead in the background when opened (``preload=None``): on a cold
#: page cache every first lookup otherwise faults in one 4 KB page at a time (measured here: the
#: demo store's first 10 requests drafted in 0.45-0.85 s cold with lazy mapping, 0.13-0.14 s read
#: ahead, 0.08 s warm), while a store several times the memory should stay lazy.
PREFETCH_MAX_BYTES = 1 << 30
_SPOT_CHECKS = 16


def token_dtype_for(vocab_size: int) -> np.dtype:
    """Narrowest stored dtype that holds every id and the separator (= vocab_size)."""
    if vocab_size <= np.iinfo(np.uint16).max:
        return np.dtype("<u2")
    if vocab_size <= np.iinfo(np.uint32).max:
        return np.dtype("<u4")
    raise InvalidInputError(f"vocab_size {vocab_size} does not fit in 32-bit token ids")


def _header_digest(header: dict[str, Any]) -> str:
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


# -- building -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSummary:
    """What a build produced; printed by ``draftkit datastore build``."""

    path: Path
    num_tokens: int  #: corpus tokens (separators not counted)
    num_documents: int
    num_chunks: int
    bytes_on_disk: int
    seconds: float
    token_dtype: str

    def __str__(self) -> str:
        return (
            f"built {self.path}: {self.num_tokens:,} tokens in {self.num_documents:,} documents, "
            f"{self.num_chunks} chunk(s), {self.token_dtype} ids, "
            f"{self.bytes_on_disk / 2**20:,.1f} MiB on disk, {self.seconds:.1f} s"
        )


class _ChunkWriter:
    """Accumulates documents into a fixed buffer and writes a chunk when it is full."""

    def __init__(self, out: Path, dtype: np.dtype, separator: int, chunk_tokens: int,
                 on_chunk: Callable[[int], None] | None) -> None:
        self.out = out
        self.dtype = dtype
        self.separator = separator
        self.buffer = np.empty(chunk_tokens, dtype)
        self.fill = 0
        self.docs_in_chunk = 0
        self.chunks: list[dict[str, Any]] = []
        self.on_chunk = on_chunk

    def add(self, doc: np.ndarray) -> None:
        cap = self.buffer.size
        while doc.size:
            if self.fill + doc.size + 1 > cap and self.fill:
                self.flush()
            piece = doc[: cap - 1]  # a document longer than a chunk is split
            doc = doc[cap - 1 :]
            end = self.fill + piece.size
            self.buffer[self.fill : end] = piece
            self.buffer[end] = self.separator
            self.fill = end + 1
            self.docs_in_chunk += 1

    def flush(self) -> None:
        if not self.fill:
            return
        index = len(self.chunks)
        tokens = self.buffer[: self.fill]
        sa = suffix_array(tokens, self.separator).astype(_SA_DTYPE, copy=False)
        entry: dict[str, Any] = {"length": int(self.fill), "documents": int(self.docs_in_chunk)}
        for key, arr, suffix in (("tokens", tokens, "tokens"), ("suffix_array", sa, "sa")):
            name = f"chunk-{index:05d}.{suffix}"
            data = memoryview(np.ascontiguousarray(arr)).cast("B")
            with open(self.out / name, "wb") as f:
                f.write(data)
            entry[key] = {"file": name, "bytes": int(data.nbytes), "sha256": hashlib.sha256(data).hexdigest()}
        del sa
        self.chunks.append(entry)
        if self.on_chunk is not None:
            self.on_chunk(index)
        self.fill = 0
        self.docs_in_chunk = 0


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an output folder that is a file, or not empty unless it holds a datastore to overwrite."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a directory; choose another output path")
    existing = [p for p in out.iterdir() if not _is_staging(p)] if out.is_dir() else []
    if not existing:
        return
    ours = [p for p in existing if _is_store_file(p)]
    if not overwrite or len(ours) != len(existing):
        raise InvalidInputError(
            f"{out} is not empty; pass overwrite=True (--overwrite) to replace an existing datastore, "
            "or choose an empty folder"
        )


def _is_store_file(path: Path) -> bool:
    return path.name == HEADER_NAME or path.name.startswith("chunk-")


_STAGING_PREFIX = ".building-"


def _is_staging(path: Path) -> bool:
    """A build's staging folder (left behind only by a build that was killed)."""
    return path.is_dir() and path.name.startswith(_STAGING_PREFIX)


def _install(staging: Path, out: Path) -> None:
    """Replace the store in ``out`` (if any) by the one built in ``staging``, a folder inside ``out``.

    Only now is the old store touched: a build that fails (a bad document, an
    interrupt) leaves it as it was. Every move is a rename within ``out``'s own
    file system. The old header goes first and the new header comes last, so a
    crash in between leaves no openable, mixed store.
    """
    new = {p.name for p in staging.iterdir()}
    (out / HEADER_NAME).unlink(missing_ok=True)
    for p in sorted(staging.iterdir(), key=lambda p: p.name == HEADER_NAME):
        os.replace(p, out / p.name)
    for p in out.iterdir():
        if _is_store_file(p) and p.name not in new:  # chunks of a bigger old store
            p.unlink()


def build_datastore(
    out_dir: str | os.PathLike[str],
    documents: Iterable[Sequence[int] | np.ndarray],
    vocab_size: int,
    *,
    tokenizer_fingerprint: str | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overwrite: bool = False,
    source_description: str = "",
    on_chunk: Callable[[int], None] | None = None,
) -> BuildSummary:
    """Write a datastore of ``documents`` (each a 1-D sequence of ids) to ``out_dir``.

    Documents are streamed: at most ``chunk_tokens`` tokens are held in memory,
    so corpora larger than memory build in pieces. ``tokenizer_fingerprint``
    (:func:`draftkit.fingerprint.tokenizer_fingerprint`) lets :meth:`Datastore.open`
    refuse the store for another tokenizer. The header is written last, so an
    interrupted build leaves no openable store.
    """
    t0 = time.perf_counter()
    if not is_integer(vocab_size) or vocab_size < 1:
        raise InvalidInputError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    vocab_size = int(vocab_size)
    dtype = token_dtype_for(vocab_size)
    if chunk_tokens < 2:
        raise InvalidInputError(f"chunk_tokens must be >= 2, got {chunk_tokens}")
    width = byte_width(vocab_size)
    if chunk_tokens * width > MAX_SORT_BYTES:
        raise InvalidInputError(
            f"chunk_tokens={chunk_tokens} is too large for {width}-byte ids: at most "
            f"{MAX_SORT_BYTES // width} tokens per chunk"
        )
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    # Built in a folder inside the output folder (its file system, so moving in is a rename) and moved
    # in only when complete: a failed build never costs the store it would have replaced.
    out.mkdir(parents=True, exist_ok=True)
    for stale in [p for p in out.iterdir() if _is_staging(p)]:  # a killed build's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    try:
        return _build_into(staging, out, documents, vocab_size, dtype, chunk_tokens, tokenizer_fingerprint,
                           source_description, on_chunk, t0)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_into(
    staging: Path,
    out: Path,
    documents: Iterable[Sequence[int] | np.ndarray],
    vocab_size: int,
    dtype: np.dtype,
    chunk_tokens: int,
    tokenizer_fingerprint: str | None,
    source_description: str,
    on_chunk: Callable[[int], None] | None,
    t0: float,
) -> BuildSummary:
    writer = _ChunkWriter(staging, dtype, vocab_size, chunk_tokens, on_chunk)
    num_tokens = 0
    num_docs = 0
    max_id = -1
    for i, doc in enumerate(documents):
        arr = np.asarray(doc)
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise InvalidInputError(
                f"document {i} must be a 1-D sequence of integer token ids, got shape {arr.shape} "
                f"dtype {arr.dtype}"
            )
        if arr.size == 0:
            continue
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise InvalidInputError(
                f"document {i} contains token id {bad}, outside the vocabulary [0, {vocab_size}); "
                "pass the tokenizer's full vocabulary size (len(tokenizer))"
            )
        max_id = max(max_id, hi)
        writer.add(arr.astype(dtype, copy=False))
        num_tokens += int(arr.size)
        num_docs += 1
    if num_tokens == 0:
        raise InvalidInputError("the corpus has no tokens; nothing to build")
    writer.flush()
    header: dict[str, Any] = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "vocab_size": vocab_size,
        "separator_id": vocab_size,
        "token_dtype": dtype.str,
        "index_dtype": _SA_DTYPE.str,
        "tokenizer_fingerprint": tokenizer_fingerprint,
        "num_tokens": num_tokens,
        "num_documents": num_docs,
        "max_token_id": max_id,
        "chunks": writer.chunks,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source_description,
    }
    header["header_sha256"] = _header_digest(header)
    (staging / HEADER_NAME).write_text(json.dumps(header, indent=1, sort_keys=True) + "\n", encoding="ascii")
    _install(staging, out)
    size = sum(c[k]["bytes"] for c in writer.chunks for k in ("tokens", "suffix_array"))
    size += (out / HEADER_NAME).stat().st_size
    return BuildSummary(out, num_tokens, num_docs, len(writer.chunks), size, time.perf_counter() - t0, dtype.name)


# -- reading ------------------------------------------------------------------------------------


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise CorruptDataFileError(
            f"{path}: malformed header ({what}); the datastore is damaged, rebuild it with "
            "`draftkit datastore build`"
        )


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and validate ``datastore.json`` (magic, checksum, version, fields).

    Raises :class:`~draftkit.errors.CorruptDataFileError` for a damaged header and
    :class:`~draftkit.errors.MismatchedDataFileError` for another format version.
    """
    root = Path(path)
    file = root / HEADER_NAME
    if not file.is_file():
        hint = " (an interrupted build leaves no header)" if root.is_dir() else ""
        raise DataFileError(
            f"{root} is not a draftkit retrieval datastore: {HEADER_NAME} not found{hint}; "
            "build one with `draftkit datastore build`"
        )
    raw = file.read_bytes()
    try:
        header = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptDataFileError(
            f"{file}: the header is not valid JSON ({exc}); the datastore is damaged, rebuild it"
        ) from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        found = header.get("magic") if isinstance(header, dict) else None
        raise CorruptDataFileError(
            f"{file}: wrong magic {found!r} (expected {MAGIC!r}): this is not a draftkit retrieval "
            "datastore header"
        )
    stored = header.get("header_sha256")
    if stored != _header_digest(header):
        raise CorruptDataFileError(
            f"{file}: header checksum mismatch: the header was edited or damaged after the build; "
            "rebuild the datastore"
        )
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise MismatchedDataFileError(
            f"{file}: datastore format version {version!r}, but this draftkit reads version "
            f"{FORMAT_VERSION}; rebuild the datastore with this draftkit (or use the draftkit that built it)"
        )
    _validate_fields(header, file)
    return header


def _validate_fields(h: dict[str, Any], file: Path) -> None:
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    _need(is_int(h.get("vocab_size")) and h["vocab_size"] >= 1, file, "vocab_size")
    vocab = h["vocab_size"]
    _need(h.get("separator_id") == vocab, file, "separator_id must equal vocab_size")
    try:
        expected = token_dtype_for(vocab)
    except InvalidInputError:
        expected = None
    _need(expected is not None and h.get("token_dtype") == expected.str, file,
          f"token_dtype {h.get('token_dtype')!r} does not fit vocab_size {vocab}")
    _need(h.get("index_dtype") == _SA_DTYPE.str, file, "index_dtype")
    fp = h.get("tokenizer_fingerprint")
    _need(fp is None or isinstance(fp, str), file, "tokenizer_fingerprint")
    for key in ("num_tokens", "num_documents", "max_token_id"):
        _need(is_int(h.get(key)), file, key)
    if h["max_token_id"] >= vocab or h["max_token_id"] < 0:
        raise CorruptDataFileError(
            f"{file}: the header records token id {h['max_token_id']}, outside the vocabulary "
            f"[0, {vocab}); the datastore is inconsistent, rebuild it"
        )
    chunks = h.get("chunks")
    _need(isinstance(chunks, list) and len(chunks) >= 1, file, "chunks")
    itemsize = np.dtype(h["token_dtype"]).itemsize
    total = 0
    for i, c in enumerate(chunks):
        _need(isinstance(c, dict) and is_int(c.get("length")) and c["length"] >= 1, file, f"chunk {i} length")
        _need(is_int(c.get("documents")), file, f"chunk {i} documents")
        for key, size in (("tokens", itemsize), ("suffix_array", _SA_DTYPE.itemsize)):
            entry = c.get(key)
            _need(isinstance(entry, dict) and isinstance(entry.get("file"), str)
                  and is_int(entry.get("bytes")) and isinstance(entry.get("sha256"), str), file,
                  f"chunk {i} {key}")
            name = entry["file"]
            _need("/" not in name and "\\" not in name and name not in ("", ".", ".."), file,
                  f"chunk {i} file name {name!r}")
            _need(entry["bytes"] == c["length"] * size, file, f"chunk {i} {key} size")
        total += c["length"] - c["documents"]
    _need(total == h["num_tokens"], file, "num_tokens does not match the chunks")


def _store_bytes(header: dict[str, Any]) -> int:
    """Bytes of the arrays a (validated) header records."""
    return sum(int(c[key]["bytes"]) for c in header["chunks"] for key in ("tokens", "suffix_array"))


def _map_readonly(file: Path, dtype: np.dtype, length: int, *, read_ahead: bool = False) -> np.ndarray:
    """A read-only ndarray over a memory mapping of ``file`` (nothing is read before it returns).

    Lookups are binary searches, i.e. random reads: ``MADV_RANDOM`` stops the
    kernel from reading megabytes ahead around every page touched (on this kind of
    machine the read-ahead is 8 MB, which would page in most of a small store).
    ``read_ahead`` instead asks the kernel to read the whole file into the page
    cache in the background (``MADV_WILLNEED``): one sequential read instead of
    thousands of single-page faults on the first lookups. It returns at once and
    maps nothing into the process, so its resident memory does not grow. The two
    do not mix: with ``MADV_RANDOM`` as well, lookups that overtake the
    background read still fault page by page (the demo store's first requests
    drafted in 0.33-0.39 s that way, 0.13-0.14 s without it).
    """
    with open(file, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    advice = getattr(mmap, "MADV_WILLNEED" if read_ahead else "MADV_RANDOM", None)
    if hasattr(mapping, "madvise") and advice is not None:
        mapping.madvise(advice)
    return np.frombuffer(mapping, dtype=dtype, count=length)


@dataclass(frozen=True)
class Chunk:
    """One memory-mapped chunk: ``tokens`` (uint16/uint32 [n]) and ``suffix_array`` (int32 [n])."""

    tokens: np.ndarray
    suffix_array: np.ndarray
    documents: int


@dataclass(frozen=True)
class Datastore:
    """An opened (memory-mapped, validated) retrieval datastore.

    Opening maps the arrays without reading them: the operating system pages in
    only what lookups touch, and the pages are shared between processes.
    """

    path: Path
    header: dict[str, Any]
    chunks: tuple[Chunk, ...]

    @property
    def vocab_size(self) -> int:
        return int(self.header["vocab_size"])

    @property
    def separator_id(self) -> int:
        return int(self.header["separator_id"])

    @property
    def max_token_id(self) -> int:
        return int(self.header["max_token_id"])

    @property
    def num_tokens(self) -> int:
        return int(self.header["num_tokens"])

    @property
    def tokenizer_fingerprint(self) -> str | None:
        return self.header.get("tokenizer_fingerprint")

    @property
    def token_dtype(self) -> np.dtype:
        return np.dtype(self.header["token_dtype"])

    @property
    def bytes_on_disk(self) -> int:
        return sum(c[k]["bytes"] for c in self.header["chunks"] for k in ("tokens", "suffix_array"))

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        tokenizer: Any = None,
        tokenizer_fingerprint: str | None = None,
        preload: bool | None = None,
    ) -> Datastore:
        """Validate the header and file sizes, map the arrays, run spot checks.

        ``tokenizer`` (a Hugging Face tokenizer) or ``tokenizer_fingerprint``
        must match the fingerprint recorded at build time, when given.
        ``preload``: ``None`` (the default) asks the operating system to read a
        store of at most :data:`PREFETCH_MAX_BYTES` into its page cache in the
        background, a bigger one is read only where lookups touch it; ``False``
        reads nothing beyond the header and a few sampled pages; ``True`` touches
        every page now, so the first lookups pay no page faults.
        """
        root = Path(path)
        header = read_header(root)
        if tokenizer is not None and tokenizer_fingerprint is None:
            from ...fingerprint import tokenizer_fingerprint as fingerprint_of

            tokenizer_fingerprint = fingerprint_of(tokenizer)
        if tokenizer_fingerprint is not None:
            from ...fingerprint import require_fingerprint

            require_fingerprint(f"the datastore {root}", header.get("tokenizer_fingerprint"), tokenizer_fingerprint,
                                "open it without a tokenizer if you know it matches, or rebuild it with this "
                                "model's tokenizer (draftkit datastore build --tokenizer ...)")
        if preload not in (None, True, False):
            raise InvalidInputError(f"preload must be None, True or False, got {preload!r}")
        # preload=True reads it all now: sequentially (read-ahead) rather than one page per fault.
        read_ahead = preload is True or (preload is None and _store_bytes(header) <= PREFETCH_MAX_BYTES)
        chunks = []
        for i, c in enumerate(header["chunks"]):
            arrays = []
            for key, dtype in (("tokens", np.dtype(header["token_dtype"])), ("suffix_array", _SA_DTYPE)):
                file = root / c[key]["file"]
                if not file.is_file():
                    raise CorruptDataFileError(
                        f"{file} is missing (chunk {i} {key}); the datastore is incomplete, rebuild it"
                    )
                actual = file.stat().st_size
                if actual != c[key]["bytes"]:
                    state = "truncated" if actual < c[key]["bytes"] else "longer than recorded"
                    raise CorruptDataFileError(
                        f"{file} has {actual} bytes but the header records {c[key]['bytes']}: the file is "
                        f"{state}; rebuild the datastore"
                    )
                arrays.append(_map_readonly(file, dtype, c["length"], read_ahead=read_ahead))
            chunks.append(Chunk(arrays[0], arrays[1], int(c["documents"])))
        store = cls(root, header, tuple(chunks))
        store._spot_check()
        if preload:
            store.preload()
        return store

    def preload(self) -> None:
        """Touch every page of the arrays (reads the store; maps it into this process)."""
        page = mmap.PAGESIZE
        for chunk in self.chunks:
            for arr in (chunk.tokens, chunk.suffix_array):
                step = max(1, page // arr.itemsize)
                int(arr[::step].sum(dtype=np.int64))

    def _spot_check(self) -> None:
        """A few reads per chunk that catch gross damage without paging the store in."""
        sep = self.separator_id
        for i, chunk in enumerate(self.chunks):
            tokens, sa = chunk.tokens, chunk.suffix_array
            n = tokens.size
            where = f"{self.path} chunk {i}"
            if int(tokens[-1]) != sep:
                raise CorruptDataFileError(
                    f"{where}: the last token is not the document separator; the tokens file is damaged, "
                    "rebuild the datastore"
                )
            idx = np.unique(np.linspace(0, n - 1, min(n, _SPOT_CHECKS)).astype(np.int64))
            pos = np.asarray(sa[idx], dtype=np.int64)
            if pos.min() < 0 or pos.max() >= n:
                raise CorruptDataFileError(
                    f"{where}: suffix array entry out of range; the suffix array file is damaged, "
                    "rebuild the datastore (or run `draftkit datastore verify` for details)"
                )
            sample = np.asarray(tokens[pos], dtype=np.int64)
            if sample.max() > sep:
                raise CorruptDataFileError(
                    f"{where}: token id {int(sample.max())} is outside the vocabulary [0, {sep}); "
                    "the tokens file is damaged, rebuild the datastore"
                )
            for j in idx[:-1][:8].tolist() if n > 1 else []:
                a, b = int(sa[j]), int(sa[j + 1])
                if not _suffix_leq(tokens, a, b, 64):
                    raise CorruptDataFileError(
                        f"{where}: suffix array is not sorted at entry {j}; the store is damaged, "
                        "rebuild it (or run `draftkit datastore verify` for details)"
                    )

    def info(self) -> str:
        """Human-readable summary of the header (``draftkit datastore info``)."""
        h = self.header
        lines = [
            f"datastore       {self.path}",
            f"format          {h['magic']} v{h['format_version']}",
            f"vocab size      {h['vocab_size']:,} (separator id {h['separator_id']})",
            f"token dtype     {np.dtype(h['token_dtype']).name}",
            f"tokens          {h['num_tokens']:,} in {h['num_documents']:,} documents",
            f"largest id      {h['max_token_id']}",
            f"chunks          {len(h['chunks'])}",
            f"size on disk    {self.bytes_on_disk / 2**20:,.1f} MiB",
            f"tokenizer       {h.get('tokenizer_fingerprint') or '(no fingerprint recorded)'}",
            f"created         {h.get('created', '?')}",
        ]
        if h.get("source"):
            lines.append(f"source          {h['source']}")
        return "\n".join(lines)


def _suffix_leq(tokens: np.ndarray, a: int, b: int, limit: int) -> bool:
    """Suffix a <= suffix b, comparing at most ``limit`` tokens (equal prefixes pass)."""
    n = tokens.size
    x = np.asarray(tokens[a : min(n, a + limit)], dtype=np.int64)
    y = np.asarray(tokens[b : min(n, b + limit)], dtype=np.int64)
    k = min(x.size, y.size)
    diff = np.nonzero(x[:k] != y[:k])[0]
    if diff.size:
        return bool(x[diff[0]] < y[diff[0]])
    return x.size <= y.size or k == limit


def check_chunk_contents(tokens: np.ndarray, sa: np.ndarray, vocab: int, documents: int, where: str) -> None:
    """Full scan of one chunk: ids in range, one separator per document, suffix array a permutation."""
    sep = vocab
    bad = np.nonzero((tokens >= vocab) & (tokens != sep))[0]
    if bad.size:
        p = int(bad[0])
        raise CorruptDataFileError(
            f"{where}: token id {int(tokens[p])} at position {p} is outside the vocabulary [0, {vocab}); "
            "rebuild the datastore with the right vocab_size"
        )
    separators = int(np.count_nonzero(tokens == sep))
    if separators != documents:
        raise CorruptDataFileError(
            f"{where}: {separators} document separators but the header records {documents} documents; "
            "rebuild the datastore"
        )
    if sa.size != tokens.size or (sa.size and (int(sa.min()) < 0 or int(sa.max()) >= tokens.size)):
        raise CorruptDataFileError(f"{where}: suffix array entries out of range; rebuild the datastore")
    seen = np.zeros(tokens.size, dtype=bool)
    seen[sa] = True
    if not seen.all():
        raise CorruptDataFileError(
            f"{where}: the suffix array is not a permutation of the chunk's positions; rebuild the datastore"
        )


def verify_datastore(
    path: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Datastore:
    """Full integrity check: :meth:`Datastore.open` plus checksums and a full scan.

    Reads every byte of the store. Returns the opened store when it is intact,
    raises :class:`~draftkit.errors.CorruptDataFileError` naming the first problem.
    """
    store = Datastore.open(path, tokenizer=tokenizer)
    sep = store.separator_id
    vocab = store.vocab_size
    for i, (entry, chunk) in enumerate(zip(store.header["chunks"], store.chunks, strict=True)):
        for key in ("tokens", "suffix_array"):
            file = store.path / entry[key]["file"]
            if progress is not None:
                progress(f"checksum {file.name}")
            if file_sha256(file) != entry[key]["sha256"]:
                raise CorruptDataFileError(
                    f"{file}: SHA-256 checksum mismatch: the file was modified or damaged after the build; "
                    "rebuild the datastore"
                )
        if progress is not None:
            progress(f"scan chunk {i}")
        check_chunk_contents(chunk.tokens, chunk.suffix_array, vocab, entry["documents"], f"{store.path} chunk {i}")
    actual_max = max(int(np.max(np.where(c.tokens == sep, 0, c.tokens))) for c in store.chunks)
    if actual_max != store.max_token_id:
        raise CorruptDataFileError(
            f"{store.path}: largest token id is {actual_max} but the header records {store.max_token_id}; "
            "rebuild the datastore"
        )
    return store
