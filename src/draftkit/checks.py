"""Small predicates shared by the input checks of the engine and the sources."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_integer"]


def is_integer(value: Any) -> bool:
    """A Python or numpy integer, not a bool: ``True`` is an ``int`` to Python, never a count or an id."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
