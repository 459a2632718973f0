"""``draftkit answers build``: the command-line front of :mod:`.own_answers`.

Answers are appended to the output as they are made, one jsonl record per
line, so an interrupted run keeps its work and ``--resume`` carries on where it
stopped (the prompts are drawn in the same order for the same corpus and seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["add_build_arguments", "build_answers_cli", "count_answers", "write_answers"]

#: How every record written here begins (json.dumps of {"text": ...}).
_RECORD_START = b'{"text": '


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``draftkit answers build`` to ``parser``."""
    parser.add_argument("--model", required=True, help="the target model: a local Hugging Face folder, or 'demo'")
    parser.add_argument("--corpus", required=True, nargs="+", metavar="FILE",
                        help="text or .jsonl files the prompts are cut from (keep evaluation prompts out of them)")
    parser.add_argument("-o", "--output", required=True, help="jsonl file to write, one {\"text\": ...} per answer")
    parser.add_argument("--count", type=int, default=2000, help="prompts to answer (default: 2000)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="tokens per answer, at most (default: 96)")
    parser.add_argument("--context-chars", type=int, default=600,
                        help="characters of corpus text before each cut that make the prompt (default: 600)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts decoded together (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt draw (default: 0)")
    parser.add_argument("--jsonl-field", default="text", help="field holding the text in jsonl records (default: text)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16", "float64"),
                        help="weights and compute dtype (default: float32)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="keep the answers already in --output and add the rest")
    group.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def count_answers(path: Path, *, repair: bool = False) -> int:
    """Complete records in ``path``; refuses a file that is not an answers file, whatever it holds.

    A last line cut short by an interrupt (it starts as every record this module writes) is not
    counted, and with ``repair`` it is removed so that appending can go on.
    """
    with open(path, "rb") as f:
        data = f.read()
    keep = data[: data.rfind(b"\n") + 1]
    for lineno, line in enumerate(keep.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise InvalidInputError(f"{path}:{lineno} is not a JSON record; is --output an answers file?") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InvalidInputError(f"{path}:{lineno} has no \"text\"; is --output an answers file?")
    partial = data[len(keep) :]
    if partial and not partial.startswith(_RECORD_START[: len(partial)]):
        raise InvalidInputError(f"{path} ends with a line that is not an answers record; is --output an answers file?")
    if partial and repair:
        with open(path, "r+b") as f:
            f.truncate(len(keep))
    return keep.count(b"\n")


def write_answers(
    out: Path,
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    settings: Any,
    done: int = 0,
    progress: bool = True,
) -> int:
    """Answer ``prompts[done:]`` and append them to ``out`` (created when ``done`` is 0); returns how many."""
    from .own_answers import generate_answers

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), initial=done, unit="answer", desc="answering")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with open(out, "a" if done else "w", encoding="utf-8") as f:
            for text in generate_answers(model, tokenizer, prompts[done:], settings=settings,
                                         on_batch=bar.update if bar is not None else None):
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")  # starts with _RECORD_START
                written += 1
                if written % settings.batch_size == 0:
                    f.flush()
    finally:
        if bar is not None:
            bar.close()
    return written


def build_answers_cli(args: argparse.Namespace) -> int:
    """Run ``draftkit answers build`` with parsed ``args``; returns the process exit code."""
    from ..loading import load_model_and_tokenizer
    from . import own_answers
    from .aded.corpus import iter_documents

    out = Path(args.output)
    if out.is_dir():
        raise InvalidInputError(f"-o {out} is a folder; give the jsonl file to write, e.g. {out / 'answers.jsonl'}")
    if out.exists() and not (args.resume or args.overwrite):
        raise InvalidInputError(f"{out} exists; pass --resume to add to it or --overwrite to replace it")
    if out.exists() and args.overwrite:
        count_answers(out)  # --overwrite replaces an answers file, never anything else at that path
    settings = own_answers.AnswerSettings(max_new_tokens=args.max_new_tokens, context_chars=args.context_chars,
                                          batch_size=args.batch_size, seed=args.seed)
    if args.count < 1:
        raise InvalidInputError(f"--count must be at least 1, got {args.count}")
    done = count_answers(out, repair=True) if out.exists() and args.resume else 0
    t0 = time.perf_counter()
    prompts = own_answers.sample_prompts(iter_documents(args.corpus, jsonl_field=args.jsonl_field), args.count,
                                         settings=settings)
    if done >= len(prompts):
        print(f"{out} already holds {done} answers; nothing to do", file=sys.stderr)
        return 0
    model, tokenizer = load_model_and_tokenizer(args.model, args.dtype)
    written = write_answers(out, model, tokenizer, prompts, settings=settings, done=done,
                            progress=not args.no_progress)
    print(f"wrote {out}: {done + written} answers ({written} new) in {time.perf_counter() - t0:.1f} s; build a "
          f"matrix or datastore from it with `draftkit aded build --corpus ... {out}`", file=sys.stderr)
    return 0
