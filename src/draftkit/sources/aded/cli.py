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
from pathlib import Path

from ...errors import InvalidInputError

__all__ = ["add_build_arguments", "build_matrix_cli"]


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``draftkit aded build`` to ``parser``."""
    parser.add_argument("--tokenizer", required=True,
                        help="the target's tokenizer: a local folder it was saved to (or the model folder), or 'demo'")
    parser.add_argument("--corpus", required=True, nargs="+", metavar="FILE",
                        help="text files, .jsonl files (one JSON object per line) and/or .npy arrays of token ids "
                        "(1-D: one document, 2-D: one per row)")
    parser.add_argument("-o", "--output", required=True, help="matrix file to write (its folder is created)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing matrix file")
    parser.add_argument("--jsonl-field", default="text", help="field holding the text in jsonl records; dots reach nested fields, e.g. meta.body (default: text)")
    parser.add_argument("--top-k", type=int, default=12, help="successors kept per bigram (default: 12)")
    parser.add_argument("--max-entries", type=int, default=None,
                        help="keep at most this many entries overall, the most frequent (default: no cap)")
    parser.add_argument("--batch-size", type=int, default=256, help="documents per tokenizer batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _is_matrix_file(path: Path) -> bool:
    """Whether ``path`` starts like a matrix file (its magic), so --overwrite cannot replace anything else."""
    from .fileformat import MAGIC

    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def build_matrix_cli(args: argparse.Namespace) -> int:
    """Run ``draftkit aded build`` with parsed ``args``; returns the process exit code."""
    from ...loading import load_tokenizer
    from .corpus import build_matrix_from_files
    from .fileformat import save_matrix

    out = Path(args.output)  # checked before the build, which can take minutes
    if out.is_dir():
        raise InvalidInputError(f"-o {out} is a folder; give the matrix file to write, e.g. {out / 'matrix.aded'}")
    if out.exists() and not args.overwrite:
        raise InvalidInputError(f"{out} exists; pass --overwrite to replace it")
    if out.exists() and not _is_matrix_file(out):
        raise InvalidInputError(f"{out} exists and is not an ADED matrix; --overwrite only replaces a matrix file, "
                                "choose another output path")
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(args.tokenizer)
    matrix = build_matrix_from_files(
        tokenizer,
        args.corpus,
        jsonl_field=args.jsonl_field,
        top_k=args.top_k,
        max_entries=args.max_entries,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    path = save_matrix(matrix, out)
    elapsed = time.perf_counter() - t0
    print(
        f"wrote {path}: {matrix.tokens:,} tokens, {matrix.num_bigrams:,} bigrams, {matrix.num_entries:,} "
        f"entries, {path.stat().st_size / 1e6:.1f} MB in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0
