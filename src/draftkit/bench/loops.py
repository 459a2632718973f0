"""Detect outputs that end in a repetition loop.

Undertrained small models often fall into loops under greedy decoding, and every
n-gram method looks better than it is on a loop. Reporting the share of looping
outputs lets a reader judge how much of a speedup comes from them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ends_in_loop"]


def ends_in_loop(tokens: Sequence[int], *, min_span: int = 24, min_repeats: int = 3, max_period: int = 32) -> bool:
    """True if the output ends with a unit of <= ``max_period`` tokens repeated.

    The tail must be periodic over at least ``max(min_span, min_repeats * period)``
    tokens: short legitimate repetitions (``    ``, ``)))``) do not count.
    """
    n = len(tokens)
    for period in range(1, max_period + 1):
        span = max(min_span, min_repeats * period)
        if span > n:
            break
        tail = tokens[n - span :]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False
