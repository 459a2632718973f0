"""The ``draftkit datastore`` sub-commands as plain functions (``cli.py`` wires them).

Each returns the text to print and raises :mod:`draftkit.errors` exceptions on
failure, so the command line only maps arguments and exit codes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .datastore import DEFAULT_CHUNK_TOKENS, Datastore, verify_datastore

__all__ = ["datastore_build", "datastore_info", "datastore_verify"]


def _load_tokenizer(path: str | os.PathLike[str]) -> object:
    """The ``--tokenizer`` folder's tokenizer; a missing folder fails at once instead of trying a model hub."""
    from ...loading import load_tokenizer

    return load_tokenizer(str(path))


def datastore_build(
    corpus: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | None = None,
    vocab_size: int | None = None,
    jsonl_field: str = "text",
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """``draftkit datastore build --tokenizer PATH --corpus FILES... -o OUT [--jsonl-field F]``.

    ``tokenizer`` is a local Hugging Face tokenizer folder (or a model folder);
    it is required for text/jsonl inputs and recorded as a fingerprint. Returns
    the summary line (tokens, size on disk, build time).
    """
    from .corpus import build_datastore_from_files

    tok = _load_tokenizer(tokenizer) if tokenizer is not None else None
    summary = build_datastore_from_files(
        out_dir, list(corpus), tok, vocab_size=vocab_size, jsonl_field=jsonl_field,
        chunk_tokens=chunk_tokens, overwrite=overwrite, progress=progress,
    )
    return str(summary)


def datastore_info(path: str | os.PathLike[str]) -> str:
    """``draftkit datastore info STORE``: the header, after the cheap checks of ``open``."""
    return Datastore.open(path, preload=False).info()


def _check_built_with(path: str | os.PathLike[str], tokenizer: str | os.PathLike[str]) -> None:
    """Refuse a store built with another tokenizer than ``--tokenizer``, with advice for this command.

    ``Datastore.open``'s own message advises opening the store without a
    tokenizer, which is not what someone verifying it with one can do.
    """
    from ...fingerprint import require_fingerprint, tokenizer_fingerprint
    from .datastore import read_header

    header = read_header(path)
    fix = (f"verify it without --tokenizer to check only its integrity, or rebuild it with this tokenizer "
           f"(draftkit datastore build --tokenizer {tokenizer} ...)")
    require_fingerprint(f"the datastore {path}", header.get("tokenizer_fingerprint"),
                        tokenizer_fingerprint(_load_tokenizer(tokenizer)), fix)


def datastore_verify(
    path: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> str:
    """``draftkit datastore verify STORE [--tokenizer PATH]``: checksums and a full scan.

    Raises :class:`~draftkit.errors.CorruptDataFileError` (or
    ``MismatchedDataFileError``) naming the first problem; returns "OK ..." text.
    """
    if tokenizer is not None:
        _check_built_with(path, tokenizer)

    def report(step: str) -> None:
        if progress:
            print(f"  {step}", file=sys.stderr)

    store = verify_datastore(path, progress=report)
    return (
        f"OK: {store.path} is intact ({store.num_tokens:,} tokens, {len(store.chunks)} chunk(s), "
        f"checksums match, all ids < {store.vocab_size:,})"
    )
