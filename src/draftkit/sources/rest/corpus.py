"""Turn corpus files into documents of token ids for :func:`~.datastore.build_datastore`.

Three kinds of input, told apart by the file name:

* ``*.jsonl`` / ``*.ndjson``: one JSON object per line, one document per line,
  the text in a chosen field (``jsonl_field``; dots reach nested fields, e.g.
  ``meta.body``); a string list (e.g. chat turns) is joined with newlines.
* ``*.npy``: pre-tokenised ids; a 1-D integer array is one document, a 2-D array
  one document per row. No tokenizer needed.
* anything else: UTF-8 text, one document per file. Files larger than
  ``text_piece_bytes`` are cut at line boundaries into pieces of about that size,
  each its own document, so a huge file never sits in memory whole (retrieval
  does not cross those cuts, which costs nothing measurable).

Text is tokenised in batches without special tokens (a BOS in the middle of the
store would never help a draft), with a progress bar over the input bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidInputError
from ..corpus_files import jsonl_record, jsonl_text, require_corpus_file
from .datastore import DEFAULT_CHUNK_TOKENS, BuildSummary, build_datastore

__all__ = ["iter_corpus_documents", "build_datastore_from_files", "corpus_kind"]

DEFAULT_TEXT_PIECE_BYTES = 4 << 20
DEFAULT_BATCH_SIZE = 64


def corpus_kind(path: str | os.PathLike[str]) -> str:
    """``"jsonl"``, ``"npy"`` or ``"text"``, from the file name."""
    name = Path(path).name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".npy"):
        return "npy"
    return "text"


class _Encoder:
    """Batch-encodes texts with a Hugging Face tokenizer (transformers or tokenizers)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        tok = self.tokenizer
        if hasattr(tok, "encode_batch") and not callable(getattr(tok, "batch_encode_plus", None)):
            encoded = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
        else:
            encoded = tok(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        return [np.asarray(ids, dtype=np.int64) for ids in encoded]


def _text_pieces(path: Path, piece_bytes: int) -> Iterator[tuple[str, int]]:
    """(text, bytes read) pieces of a text file: the whole file, or ~piece_bytes cut after a newline."""
    size = path.stat().st_size
    if size <= piece_bytes:
        yield path.read_bytes().decode("utf-8", errors="replace"), size
        return
    with open(path, "rb") as f:
        carry = b""
        pending = 0
        while True:
            block = f.read(piece_bytes)
            if not block:
                break
            pending += len(block)
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) < 4 * piece_bytes:  # no line end yet: read on
                carry = data
                continue
            cut = cut or len(data)
            carry = data[cut:]
            yield data[:cut].decode("utf-8", errors="replace"), pending
            pending = 0
        if carry or pending:
            yield carry.decode("utf-8", errors="replace"), pending


def _texts(path: Path, kind: str, field: str, piece_bytes: int) -> Iterator[tuple[str, int]]:
    if kind == "text":
        yield from _text_pieces(path, piece_bytes)
        return
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                yield "", len(line)
                continue
            where = f"{path}:{lineno}"
            yield jsonl_text(jsonl_record(line, where), field, where), len(line)


def _npy_documents(path: Path) -> Iterator[np.ndarray]:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if not np.issubdtype(arr.dtype, np.integer) or arr.ndim not in (1, 2):
        raise InvalidInputError(
            f"{path}: expected a 1-D or 2-D integer array of token ids, got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.ndim == 1:
        yield np.asarray(arr)
    else:
        for row in arr:
            yield np.asarray(row)


def iter_corpus_documents(
    paths: Sequence[str | os.PathLike[str]],
    tokenizer: Any = None,
    *,
    jsonl_field: str = "text",
    batch_size: int = DEFAULT_BATCH_SIZE,
    text_piece_bytes: int = DEFAULT_TEXT_PIECE_BYTES,
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """Yield int64 token arrays, one per document, from corpus files (see the module doc)."""
    files = [Path(p) for p in paths]
    if not files:
        raise InvalidInputError("no corpus files given")
    for f in files:
        require_corpus_file(f)
        if corpus_kind(f) != "npy" and tokenizer is None:
            raise InvalidInputError(f"{f} is text; a tokenizer is needed to tokenise it (--tokenizer PATH)")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="tokenising")
    encode = _Encoder(tokenizer) if tokenizer is not None else None
    try:
        for f in files:
            kind = corpus_kind(f)
            if kind == "npy":
                yield from _npy_documents(f)
                if bar is not None:
                    bar.update(f.stat().st_size)
                continue
            assert encode is not None
            batch: list[str] = []
            consumed = 0
            for text, nbytes in _texts(f, kind, jsonl_field, text_piece_bytes):
                consumed += nbytes
                if text:
                    batch.append(text)
                if len(batch) >= batch_size:
                    yield from encode(batch)
                    batch = []
                    if bar is not None:
                        bar.update(consumed)
                    consumed = 0
            if batch:
                yield from encode(batch)
            if bar is not None:
                bar.update(consumed)
    finally:
        if bar is not None:
            bar.close()


def build_datastore_from_files(
    out_dir: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    tokenizer: Any = None,
    *,
    vocab_size: int | None = None,
    jsonl_field: str = "text",
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overwrite: bool = False,
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    text_piece_bytes: int = DEFAULT_TEXT_PIECE_BYTES,
) -> BuildSummary:
    """Tokenise corpus files and build a datastore; the vocabulary defaults to ``len(tokenizer)``.

    With a tokenizer, its fingerprint is recorded so that ``Rest.open(path,
    tokenizer=...)`` can refuse the store for another tokenizer. Without one, all
    inputs must be ``.npy`` id arrays and ``vocab_size`` is required.
    """
    fingerprint = None
    if tokenizer is not None:
        from ...fingerprint import tokenizer_fingerprint

        fingerprint = tokenizer_fingerprint(tokenizer)
        if vocab_size is None:
            vocab_size = len(tokenizer) if hasattr(tokenizer, "__len__") else tokenizer.get_vocab_size()
    if vocab_size is None:
        raise InvalidInputError("vocab_size is required when no tokenizer is given")
    docs = iter_corpus_documents(
        paths, tokenizer, jsonl_field=jsonl_field, batch_size=batch_size,
        text_piece_bytes=text_piece_bytes, progress=progress,
    )
    names = ", ".join(Path(p).name for p in paths[:5]) + (f" (+{len(paths) - 5} more)" if len(paths) > 5 else "")
    return build_datastore(out_dir, docs, int(vocab_size), tokenizer_fingerprint=fingerprint,
                           chunk_tokens=chunk_tokens, overwrite=overwrite, source_description=names)
