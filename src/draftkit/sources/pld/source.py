"""Prompt lookup: n-gram matching inside the current context.

Inputs that quote their own context (code edits, summaries, RAG answers) repeat
long spans of it; the tokens that followed an earlier occurrence of the current
suffix are then an excellent, free draft.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...checks import is_integer
from ...errors import InvalidInputError
from ...types import Draft, DraftRequest, SourceCapabilities, StepFeedback

__all__ = ["PromptLookup", "find_continuations"]


def find_continuations(
    context: np.ndarray,
    ngram: int,
    max_len: int,
    max_candidates: int,
    stop_tokens: frozenset[int] = frozenset(),
) -> list[np.ndarray]:
    """Continuations of earlier occurrences of the context's last ``ngram`` tokens.

    Most recent occurrence first; each continuation is cut after the first stop
    token (EOS), so nothing beyond the end of a document is ever proposed.
    Occurrences that overlap the suffix itself are allowed (they give periodic
    continuations), but the suffix's own position is not a match.
    """
    length = context.size
    if ngram < 1 or length <= ngram:
        return []
    suffix = context[length - ngram :]
    windows = sliding_window_view(context[: length - 1], ngram)  # windows ending before the last token
    hits = np.nonzero((windows == suffix).all(axis=1))[0]
    out: list[np.ndarray] = []
    for start in hits[::-1]:
        begin = int(start) + ngram
        cont = context[begin : begin + max_len]
        if stop_tokens:
            for j, tok in enumerate(cont.tolist()):
                if tok in stop_tokens:
                    cont = cont[: j + 1]
                    break
        if cont.size:
            out.append(cont)
        if len(out) >= max_candidates:
            break
    return out


@dataclass
class PromptLookup:
    """Draft source ``pld``: prompt lookup decoding, generalised to a tree.

    The longest n-gram (``max_ngram`` down to ``min_ngram``) that re-occurs wins;
    up to ``max_candidates`` of its occurrences (most recent first) are proposed,
    weighted so a trie keeps the continuations that agree most. Stateless.
    """

    max_ngram: int = 3
    min_ngram: int = 1
    max_draft_len: int = 10
    max_candidates: int = 8

    name = "pld"
    capabilities = SourceCapabilities()

    def __post_init__(self) -> None:
        for key in ("max_ngram", "min_ngram", "max_draft_len", "max_candidates"):
            value = getattr(self, key)
            if not is_integer(value) or value < 1:
                raise InvalidInputError(f"pld {key} must be an integer >= 1, got {value!r}")
        if self.min_ngram > self.max_ngram:
            raise InvalidInputError(f"pld min_ngram ({self.min_ngram}) must not exceed max_ngram ({self.max_ngram})")

    def begin(self, prompt: np.ndarray) -> None:
        return None

    def propose(self, request: DraftRequest) -> Draft:
        max_len = min(self.max_draft_len, request.max_depth)
        if max_len < 1:
            return Draft.empty()
        for ngram in range(self.max_ngram, self.min_ngram - 1, -1):
            conts = find_continuations(
                request.context, ngram, max_len, self.max_candidates, request.eos_token_ids
            )
            if conts:
                # Recent occurrences first and slightly heavier: they reflect the current topic.
                weights = tuple(1.0 + 0.5 ** (i + 1) for i in range(len(conts)))
                # A longer match is far likelier to continue (in code, a 3-gram match was
                # accepted ~9 tokens deep on average, a 1-gram one under 1): the budget weighs it.
                return Draft(tuple(conts), weights, evidence=ngram)
        return Draft.empty()

    def observe(self, feedback: StepFeedback) -> None:
        return None

    def reset(self) -> None:
        return None
