"""When generation ends, with the semantics of Hugging Face ``generate``.

A step may emit several tokens at once; :meth:`StopConditions.cut` returns how
many of them to keep so that nothing after an EOS, a stop token, a completed stop
string or the ``max_new_tokens`` limit is ever emitted, counted or fed back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InvalidInputError

__all__ = ["StopConditions", "StopStringMatcher"]


class StopStringMatcher:
    """Detects a stop string that ends inside the newest token.

    Like HF's ``StopStringCriteria``, a stop string matches when it appears in the
    decoded text and overlaps the last token (it may start in earlier tokens, the
    prompt included, and the last token may run past its end). A stop string that
    lies entirely in earlier tokens does not trigger again.
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str]) -> None:
        if tokenizer is None:
            raise ValueError(
                "stop_strings need a tokenizer to decode tokens: pass tokenizer=... to generate() "
                "or to the SpeculativeDecoder"
            )
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        #: An empty stop string is completed by any token: HF stops after the first new one.
        self._empty = any(s == "" for s in stop_strings)
        self._longest = max((len(s) for s in self.stop_strings), default=0)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _tail(self, sequence: Sequence[int]) -> tuple[list[int], str]:
        """The last tokens of ``sequence``, enough that those before the last one decode to at least
        the longest stop string (or all of it), and the text of those before the last one."""
        # Byte-level tokens can split a character (up to 4 UTF-8 bytes): a window that starts inside
        # one decodes its stray bytes as up to 3 U+FFFD, and the character the last token completes
        # may start 3 tokens before it. Both margins keep such a character whole in the window.
        margin = 3
        window = self._longest + 1 + margin
        while True:
            tail = list(sequence[-window:])
            before = self._decode(tail[:-1])
            if len(before) >= self._longest + margin or window >= len(sequence):
                return tail, before
            window *= 2

    def may_complete_in(self, sequence: Sequence[int], emitted: Sequence[int]) -> bool:
        """False when no token of ``emitted`` (appended to ``sequence``) can complete a stop string.

        One decode for a whole block, where :meth:`completes_at` decodes twice
        per token: a stop string completed by one of the new tokens appears in
        the text of the whole block and ends after the text before it. (The
        text of a prefix of tokens is a prefix of the block's text, up to an
        unfinished UTF-8 character at its end, shown as U+FFFD; stop strings
        containing U+FFFD are always checked token by token.)
        """
        if self._empty and emitted:
            return True
        if not self.stop_strings or not emitted:
            return False
        if any("\ufffd" in stop for stop in self.stop_strings):
            return True
        tail, before = self._tail([*sequence, emitted[0]])
        start_new = len(before)
        text = self._decode(tail[:-1] + list(emitted))
        # Searching a few characters early only ever sends more blocks to the exact check (in case
        # the tail ends in an unfinished character whose decoded length changes with the block).
        return any(
            text.find(stop, max(0, start_new - len(stop) - 3)) != -1 for stop in self.stop_strings
        )

    def completes_at(self, sequence: Sequence[int]) -> bool:
        """Whether the last token of ``sequence`` completes one of the stop strings."""
        if self._empty and sequence:
            return True
        if not self.stop_strings or not sequence:
            return False
        tail, before = self._tail(sequence)
        text = self._decode(tail)
        # Where the last token's text starts: where the two decodes part. Usually len(before), but
        # when the earlier tokens end in an unfinished UTF-8 character (U+FFFD) that the last token
        # completes, the completed character replaces it and belongs to the last token.
        start_last = len(os.path.commonprefix([before, text]))
        for stop in self.stop_strings:
            begin = text.find(stop, max(0, start_last - len(stop) + 1))
            if begin != -1 and begin + len(stop) > start_last:
                return True
        return False


@dataclass
class StopConditions:
    """EOS / stop tokens, stop strings and the new-token limit of one request."""

    max_new_tokens: int
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)
    stop_strings: StopStringMatcher | None = None
    #: ``time.perf_counter()`` value after which generation ends (``max_time``); None: no limit.
    deadline: float | None = None
    #: A user's stopping criteria (``model.generate``'s ``stopping_criteria``): called with
    #: ``(input_ids [1, t], scores)`` after every new token.
    criteria: tuple[Any, ...] = ()

    def cut(self, sequence: list[int], emitted: list[int], new_so_far: int,
            scores_until: Callable[[int], Any] | None = None) -> tuple[int, str]:
        """How many of ``emitted`` to keep, and the finish reason ('' if not finished).

        ``sequence`` is the full sequence *before* ``emitted`` (prompt included).
        ``scores_until(i)``: what the criteria get as ``scores`` after emitted
        token ``i``; Hugging Face passes the scores recorded so far (a tuple,
        with ``output_scores`` and ``return_dict_in_generate``) or ``None``,
        and so does the engine.
        """
        room = self.max_new_tokens - new_so_far
        strings = self.stop_strings
        if strings is not None and len(emitted) > 1 and not strings.may_complete_in(sequence, emitted[:room]):
            strings = None  # one decode showed that no token of this block completes a stop string
        for i, tok in enumerate(emitted):
            if i >= room:
                return i, "length"
            if tok in self.stop_token_ids:
                return i + 1, "eos"
            if strings is not None and strings.completes_at(sequence + emitted[: i + 1]):
                return i + 1, "stop_string"
            if self.criteria and self._criteria_stop(sequence + emitted[: i + 1],
                                                     scores_until(i) if scores_until else None):
                return i + 1, "stopping_criteria"
        if len(emitted) >= room:
            return len(emitted), "length"
        if self.deadline is not None and time.perf_counter() > self.deadline:
            return len(emitted), "time"
        return len(emitted), ""

    def _criteria_stop(self, sequence: list[int], scores: Any) -> bool:
        """Whether a user's criterion says stop after the last token of ``sequence`` (as HF calls them)."""
        ids = torch.tensor([sequence], dtype=torch.long)
        for criterion in self.criteria:
            verdict = criterion(ids, scores)
            if verdict is None:
                raise InvalidInputError(
                    f"stopping criterion {getattr(criterion, '__name__', type(criterion).__name__)} returned None; "
                    "it must return a bool (or a bool tensor, one value per row)")
            if bool(torch.as_tensor(verdict).any()):
                return True
        return False
