"""One check for the on/off options of the built-in sources."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = ["require_switch"]


def require_switch(source: str, name: str, value: Any) -> bool:
    """``value`` as a bool if it is one (numpy's too), else a named error: a string such as "no"
    from a config file or command line is truthy, and would switch the option on."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidInputError(f"{source}: {name} must be true or false, got {value!r}")
