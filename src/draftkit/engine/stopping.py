"""When generation ends, with the semantics of Hugging Face ``generate``.

A step may emit several tokens at once; :meth:`StopConditions.cut` returns how
many of them to keep so that nothing after an EOS, a stop token, a completed stop
string or the ``max_new_tokens`` limit is ever emitted, counted or fed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
        self._longest = max((len(s) for s in self.stop_strings), default=0)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def completes_at(self, sequence: Sequence[int]) -> bool:
        """Whether the last token of ``sequence`` completes one of the stop strings."""
        if not self.stop_strings or not sequence:
            return False
        window = self._longest + 1
        while True:
            tail = list(sequence[-window:])
            before = self._decode(tail[:-1])
            if len(before) >= self._longest or window >= len(sequence):
                break
            window *= 2
        text = self._decode(tail)
        start_last = len(before)
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

    def cut(self, sequence: list[int], emitted: list[int], new_so_far: int) -> tuple[int, str]:
        """How many of ``emitted`` to keep, and the finish reason ('' if not finished).

        ``sequence`` is the full sequence *before* ``emitted`` (prompt included).
        """
        room = self.max_new_tokens - new_so_far
        for i, tok in enumerate(emitted):
            if i >= room:
                return i, "length"
            if tok in self.stop_token_ids:
                return i + 1, "eos"
            if self.stop_strings is not None and self.stop_strings.completes_at(sequence + emitted[: i + 1]):
                return i + 1, "stop_string"
        if len(emitted) >= room:
            return len(emitted), "length"
        return len(emitted), ""
