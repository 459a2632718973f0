"""A corpus of the target's own answers, to warm the n-gram sources before the first request.

Why: ADED's matrix and the retrieval datastore draft what their corpus says comes
next, but a model writes in its own way (a small one especially) and its answers
repeat *its* n-grams, not the corpus'. ADED learns them online while it decodes;
a corpus of the model's greedy continuations of prompts cut from the user's own
text gives it (and a datastore) that knowledge up front. It is written as jsonl
records ``{"text": ...}`` that ``draftkit aded build`` and ``draftkit datastore
build`` read like any corpus. The prompts come from the corpus given, so an
evaluation set stays out of it as long as the corpus does.

Everything here is deterministic for a given corpus, seed and model: the prompt
cuts are drawn with a seeded generator, and decoding is greedy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

__all__ = ["AnswerSettings", "generate_answers", "sample_prompts"]


@dataclass(frozen=True)
class AnswerSettings:
    """How prompts are cut and answered.

    ``context_chars`` of text before a cut make the prompt (then at most
    ``max_prompt_tokens`` tokens of it, the last ones); the model writes up to
    ``max_new_tokens`` after it. ``keep_prompt_lines`` lines of the prompt's end
    are kept in front of the answer, so the n-grams across the cut are learnt too.
    """

    max_new_tokens: int = 96
    context_chars: int = 600
    max_prompt_tokens: int = 256
    keep_prompt_lines: int = 1
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "context_chars", "max_prompt_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.keep_prompt_lines < 0:
            raise InvalidInputError(f"keep_prompt_lines must be >= 0, got {self.keep_prompt_lines}")


def _cut_points(text: str) -> Iterator[int]:
    """Offsets just after a non-blank line that another non-blank line follows: places mid-text to answer from."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        following = text.find("\n", end + 1)
        next_line = text[end + 1 : following if following >= 0 else len(text)]
        if text[start:end].strip() and next_line.strip():
            yield end + 1
        start = end + 1


def sample_prompts(documents: Iterable[str], count: int, *, settings: AnswerSettings = AnswerSettings()) -> list[str]:
    """``count`` prompts cut from ``documents`` at line ends, drawn uniformly over all cut points.

    Reservoir sampling keeps one pass and ``count`` prompts in memory, whatever
    the corpus' size. Each prompt is the text before its cut, at most
    ``context_chars`` long, starting at a line start when one lies in that
    reach (a longer line is cut into).
    """
    if count < 1:
        raise InvalidInputError(f"the number of prompts must be at least 1, got {count}")
    rng = random.Random(settings.seed)
    chosen: list[str] = []
    seen = 0
    for text in documents:
        for cut in _cut_points(text):
            seen += 1
            slot = len(chosen) if len(chosen) < count else rng.randrange(seen)
            if slot >= count:
                continue
            begin = max(0, cut - settings.context_chars)
            if begin:
                line_start = text.find("\n", begin, cut)
                begin = line_start + 1 if 0 <= line_start < cut - 1 else begin
            prompt = text[begin:cut]
            if slot == len(chosen):
                chosen.append(prompt)
            else:
                chosen[slot] = prompt
    if not chosen:
        raise InvalidInputError("the corpus has no place to cut a prompt (it needs lines of text)")
    return chosen


def _prompt_tail(prompt: str, lines: int) -> str:
    if lines == 0:
        return ""
    parts = prompt.splitlines(keepends=True)
    return "".join(parts[-lines:])


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    settings: AnswerSettings = AnswerSettings(),
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """Yield, for each prompt in order, the model's greedy continuation (after the prompt's last lines).

    Batched with Hugging Face ``generate`` and left padding, the fastest plain
    decoding on a CPU; the text only feeds n-gram statistics, so batching's
    rounding differences do not matter. Answers stop at the model's EOS.
    """
    import torch

    from ..engine.model_config import context_window

    window = context_window(model.config)
    max_prompt = settings.max_prompt_tokens
    if window is not None and max_prompt + settings.max_new_tokens > window:
        max_prompt = window - settings.max_new_tokens
        if max_prompt < 1:
            raise InvalidInputError(f"max_new_tokens={settings.max_new_tokens} leaves no room for a prompt in the "
                                    f"model's context window of {window} tokens")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch_size = settings.batch_size if pad is not None else 1  # nothing to pad with: one prompt at a time
    eos = tokenizer.eos_token_id
    device = next(model.parameters()).device
    for first in range(0, len(prompts), batch_size):
        batch = list(prompts[first : first + batch_size])
        rows = [tokenizer(p).input_ids[-max_prompt:] for p in batch]  # the prompt's end matters most
        if any(not row for row in rows):
            raise InvalidInputError("a prompt encodes to no tokens; the corpus has text the tokenizer drops")
        width = max(len(row) for row in rows)
        ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=device)  # left padding
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=settings.max_new_tokens, do_sample=False,
                pad_token_id=pad, num_beams=1,
            )
        for prompt, row in zip(batch, out[:, width:].tolist(), strict=True):
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            yield _prompt_tail(prompt, settings.keep_prompt_lines) + tokenizer.decode(row, skip_special_tokens=True)
        if on_batch is not None:
            on_batch(len(batch))
