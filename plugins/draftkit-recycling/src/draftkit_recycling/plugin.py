"""The pluggy entry point: registers the ``recycling`` draft source.

draftkit imports this module when it builds its registry (entry-point group
``draftkit``, see ``pyproject.toml``). Registration only records a factory: the
source module, its template and its matrix are created when a decoder asks for
``source="recycling"``, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import draftkit

#: The callback draftkit hands to registration hooks: ``register(name, factory)``.
Register = Callable[[str, Callable[..., Any]], None]


def make_recycling(**options: Any) -> Any:
    """Factory called by ``SpeculativeDecoder(model, source="recycling", source_options=...)``."""
    from .source import Recycling

    return Recycling(**options)


@draftkit.hookimpl
def draftkit_register_sources(register: Register) -> None:
    register("recycling", make_recycling)
