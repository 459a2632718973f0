"""Write the demo target's own answers, the warm-up corpus the benchmark adds to its n-gram sources.

Run ``python -m draftkit.demo.answers`` (about eight minutes on two CPU cores)
after training the demo models: it cuts prompts from the demo corpus' *training*
split (never HumanEval, never the held-out files), lets the shipped target
continue each greedily and writes ``models/target/answers.jsonl``, which
``draftkit bench --model demo`` adds to the corpus of its ADED matrix and
retrieval datastore. It is :mod:`draftkit.sources.own_answers` applied to the
demo corpus, exactly what ``draftkit answers build`` does for a user's model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ..sources.own_answers import AnswerSettings

__all__ = ["DEMO_ANSWER_COUNT", "DEMO_ANSWERS_FILE", "DEMO_ANSWERS_META", "demo_answers_path", "main", "write_provenance"]

#: Prompts answered for the shipped file (the seed and lengths are AnswerSettings' defaults).
DEMO_ANSWER_COUNT = 3000
DEMO_ANSWERS_FILE = "answers.jsonl"
#: Where the answers came from (interpreter, corpus fingerprint, settings, command), next to them.
DEMO_ANSWERS_META = "answers.json"


def demo_answers_path() -> Path | None:
    """The shipped answers of the demo target, or None when this installation has none."""
    from . import demo_model_path

    try:
        path = demo_model_path("target") / DEMO_ANSWERS_FILE
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def write_provenance(out: Path, *, answers: int, split: Any, settings: AnswerSettings, command: str) -> Path:
    """Record next to ``out`` what made it: the corpus (interpreter and fingerprint), the settings, the command."""
    from .corpus import corpus_fingerprint

    meta = {
        "answers": answers,
        "python_version": split.python_version,
        "corpus_fingerprint": corpus_fingerprint(split),
        "settings": dataclasses.asdict(settings),
        "command": command,
    }
    path = out.with_name(DEMO_ANSWERS_META)
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    from ..loading import load_model_and_tokenizer
    from ..sources.own_answers import sample_prompts
    from ..sources.own_answers_cli import count_answers, write_answers
    from . import demo_model_path
    from .corpus import load_corpus

    parser = argparse.ArgumentParser(prog="python -m draftkit.demo.answers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEMO_ANSWER_COUNT, help="prompts to answer")
    parser.add_argument("--out", type=Path, default=None, help="file to write (default: next to the demo target)")
    parser.add_argument("--resume", action="store_true", help="keep the answers already written and add the rest")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = args.out or demo_model_path("target") / DEMO_ANSWERS_FILE
    settings = AnswerSettings()
    split = load_corpus()
    prompts = sample_prompts((f.text for f in split.train), args.count, settings=settings)
    done = count_answers(out, repair=True) if args.resume and out.exists() else 0
    model, tokenizer = load_model_and_tokenizer("demo")
    written = write_answers(out, model, tokenizer, prompts, settings=settings, done=done,
                            progress=not args.no_progress)
    command = ["python -m draftkit.demo.answers", *(sys.argv[1:] if argv is None else argv)]
    write_provenance(out, answers=done + written, split=split, settings=settings, command=" ".join(command))
    print(f"wrote {out}: {done + written} answers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
