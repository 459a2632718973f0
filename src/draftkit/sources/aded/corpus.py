"""Turning text corpora into token arrays with the target's tokenizer.

Text files and jsonl files (one JSON object per line, text under a field) are
read lazily and tokenised in batches (``.npy`` files of token ids are read as they are) with the tokenizer's batch encoder (Rust
for fast tokenizers); a progress bar follows the bytes read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidInputError
from ..corpus_files import jsonl_record, jsonl_text, require_corpus_file
from .fileformat import tokenizer_fingerprint
from .table import TrigramMatrix, build_matrix

__all__ = ["iter_documents", "tokenize_documents", "build_matrix_from_files"]

#: Plain text files are cut into documents of about this many characters, at
#: line ends, so batches stay small; a cut loses the two trigrams across it.
TEXT_CHUNK_CHARS = 1 << 16


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson")


def iter_documents(
    paths: Sequence[str | os.PathLike[str]],
    *,
    jsonl_field: str = "text",
    on_bytes: Any = None,
) -> Iterator[str]:
    """Yield the documents of ``paths``: one per jsonl record, ~64 KB pieces of text files.

    ``on_bytes(n)`` is called with the number of bytes consumed (progress bars).
    A jsonl record whose field is a list of strings (a conversation) yields them
    joined by newlines.
    """
    for raw in paths:
        path = Path(raw)
        require_corpus_file(path)
        with open(path, "rb") as f:
            if _is_jsonl(path):
                for lineno, line in enumerate(f, 1):
                    if on_bytes is not None:
                        on_bytes(len(line))
                    if not line.strip():
                        continue
                    where = f"{path}:{lineno}"  # read as datastore build reads it
                    value = jsonl_text(jsonl_record(line, where), jsonl_field, where)
                    if value:
                        yield value
            else:
                piece: list[str] = []
                size = 0
                for line in f:
                    if on_bytes is not None:
                        on_bytes(len(line))
                    text = line.decode("utf-8", errors="replace")
                    piece.append(text)
                    size += len(text)
                    if size >= TEXT_CHUNK_CHARS:
                        yield "".join(piece)
                        piece, size = [], 0
                if piece:
                    yield "".join(piece)


def tokenize_documents(
    tokenizer: Any, documents: Iterable[str], *, batch_size: int = 256
) -> Iterator[np.ndarray]:
    """Batch-encode ``documents`` (no special tokens added); yield one int64 array each."""
    batch: list[str] = []

    def flush() -> Iterator[np.ndarray]:
        # verbose=False: no "longer than the model's maximum" warning, a corpus file is not a prompt.
        encoded = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
        for ids in encoded:
            yield np.asarray(ids, dtype=np.int64)

    for doc in documents:
        batch.append(doc)
        if len(batch) >= batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def _npy_token_arrays(path: Path, vocab_size: int) -> Iterator[np.ndarray]:
    """The documents of a pre-tokenised ``.npy`` file, read as ``draftkit datastore build`` reads them.

    Their ids are checked against the tokenizer here, so that an id out of range
    names the file and the tokenizer rather than a keyword argument.
    """
    from ..rest.corpus import iter_corpus_documents

    for ids in iter_corpus_documents([path], None, progress=False):
        bad = ids[(ids < 0) | (ids >= vocab_size)]
        if bad.size:
            raise InvalidInputError(f"{path}: token id {int(bad[0])} is outside the tokenizer's vocabulary "
                                    f"[0, {vocab_size}); give the tokenizer the ids were made with")
        yield ids


def _token_arrays(tokenizer: Any, paths: Sequence[Path], jsonl_field: str, batch_size: int,
                  on_bytes: Any) -> Iterator[np.ndarray]:
    """Token ids of every corpus file, in order: text and jsonl tokenised, ``.npy`` read as ids."""
    from ..rest.corpus import corpus_kind

    for path in paths:
        if corpus_kind(path) == "npy":
            yield from _npy_token_arrays(path, len(tokenizer))
            if on_bytes is not None:
                on_bytes(path.stat().st_size)
        else:
            docs = iter_documents([path], jsonl_field=jsonl_field, on_bytes=on_bytes)
            yield from tokenize_documents(tokenizer, docs, batch_size=batch_size)


def build_matrix_from_files(
    tokenizer: Any,
    paths: Sequence[str | os.PathLike[str]],
    *,
    jsonl_field: str = "text",
    top_k: int = 12,
    max_entries: int | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> TrigramMatrix:
    """Tokenise text / jsonl files with ``tokenizer`` (``.npy`` files hold token ids already) and count
    their tri-gram matrix.

    The matrix records ``len(tokenizer)`` as its vocabulary size and the
    tokenizer's fingerprint, so loading it with another tokenizer is refused.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InvalidInputError("no corpus file given")
    for path in paths:
        require_corpus_file(path)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(p.stat().st_size for p in paths), unit="B", unit_scale=True, desc="tokenising")
    try:
        arrays = _token_arrays(tokenizer, paths, jsonl_field, batch_size, bar.update if bar is not None else None)
        eos = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
        matrix = build_matrix(
            arrays,
            len(tokenizer),
            top_k=top_k,
            max_entries=max_entries,
            eos_token_ids=eos,
            fingerprint=tokenizer_fingerprint(tokenizer),
        )
    finally:
        if bar is not None:
            bar.close()
    if matrix.tokens == 0:  # as datastore build says it: an empty matrix would draft nothing, silently
        raise InvalidInputError("the corpus has no tokens; nothing to build")
    return matrix
