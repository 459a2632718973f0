"""``draftkit aded build``: the command-line front of :func:`.corpus.build_matrix_from_files`.

It also reads pre-tokenised ``.npy`` id files, as ``draftkit datastore build`` does.

The top-level CLI wires it as a subcommand::

    sub = aded_subparsers.add_parser("build", help="build an ADED tri-gram matrix")
    add_build_arguments(sub)
    sub.set_defaults(func=build_matrix_cli)
    ...
    sys.exit(args.func(args))
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported by the command, not by `draftkit --help`, which imports this module
    import numpy as np

__all__ = ["add_build_arguments", "build_matrix_cli"]


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``draftkit aded build`` to ``parser``."""
    parser.add_argument("--tokenizer", required=True,
                        help="the target's tokenizer: a local folder it was saved to (or the model folder), or 'demo'")
    parser.add_argument("--corpus", required=True, nargs="+", metavar="FILE",
                        help="text files, .jsonl files (one JSON object per line) and/or .npy arrays of token ids "
                        "(1-D: one document, 2-D: one per row)")
    parser.add_argument("-o", "--output", required=True, help="matrix file to write")
    parser.add_argument("--jsonl-field", default="text", help="field holding the text in jsonl records (default: text)")
    parser.add_argument("--top-k", type=int, default=12, help="successors kept per bigram (default: 12)")
    parser.add_argument("--max-entries", type=int, default=None,
                        help="keep at most this many entries overall, the most frequent (default: no cap)")
    parser.add_argument("--batch-size", type=int, default=256, help="documents per tokenizer batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _npy_token_arrays(path: Path, vocab_size: int) -> Iterator[np.ndarray]:
    """The documents of a pre-tokenised ``.npy`` file, read as ``datastore build`` reads them.

    Their ids are checked against the tokenizer here, so that an id out of range
    names the file and the tokenizer rather than a keyword argument.
    """
    from ...errors import InvalidInputError
    from ..rest.corpus import iter_corpus_documents

    for ids in iter_corpus_documents([path], None, progress=False):
        bad = ids[(ids < 0) | (ids >= vocab_size)]
        if bad.size:
            raise InvalidInputError(f"{path}: token id {int(bad[0])} is outside the tokenizer's vocabulary "
                                    f"[0, {vocab_size}); give the tokenizer the ids were made with")
        yield ids


def _token_arrays(tokenizer: Any, paths: Sequence[Path], args: argparse.Namespace,
                  on_bytes: Callable[[int], Any] | None) -> Iterator[np.ndarray]:
    """Token ids of every corpus file, in order: text and jsonl tokenised, ``.npy`` read as ids."""
    from ..rest.corpus import corpus_kind
    from .corpus import iter_documents, tokenize_documents

    for path in paths:
        if corpus_kind(path) == "npy":
            yield from _npy_token_arrays(path, len(tokenizer))
            if on_bytes is not None:
                on_bytes(path.stat().st_size)
        else:
            docs = iter_documents([path], jsonl_field=args.jsonl_field, on_bytes=on_bytes)
            yield from tokenize_documents(tokenizer, docs, batch_size=args.batch_size)


def _build_matrix(tokenizer: Any, args: argparse.Namespace) -> Any:
    """The tri-gram matrix of ``--corpus``, as :func:`.corpus.build_matrix_from_files` builds it, plus ``.npy`` files.

    The matrix records ``len(tokenizer)`` as its vocabulary and the tokenizer's
    fingerprint, so loading it with another tokenizer is refused.
    """
    from ...errors import InvalidInputError
    from .fileformat import tokenizer_fingerprint
    from .table import build_matrix

    paths = [Path(p) for p in args.corpus]
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(f"corpus file {path} does not exist")
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(p.stat().st_size for p in paths), unit="B", unit_scale=True, desc="tokenising")
    try:
        eos = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
        return build_matrix(
            _token_arrays(tokenizer, paths, args, bar.update if bar is not None else None),
            len(tokenizer),
            top_k=args.top_k,
            max_entries=args.max_entries,
            eos_token_ids=eos,
            fingerprint=tokenizer_fingerprint(tokenizer),
        )
    finally:
        if bar is not None:
            bar.close()


def build_matrix_cli(args: argparse.Namespace) -> int:
    """Run ``draftkit aded build`` with parsed ``args``; returns the process exit code."""
    from ...cli import load_tokenizer
    from .fileformat import save_matrix

    t0 = time.perf_counter()
    tokenizer = load_tokenizer(args.tokenizer)
    matrix = _build_matrix(tokenizer, args)
    path = save_matrix(matrix, args.output)
    elapsed = time.perf_counter() - t0
    print(
        f"wrote {path}: {matrix.tokens:,} tokens, {matrix.num_bigrams:,} bigrams, {matrix.num_entries:,} "
        f"entries, {path.stat().st_size / 1e6:.1f} MB in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0
