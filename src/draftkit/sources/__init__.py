"""First-party draft sources.

Each source lives in its own subpackage and is registered by name through the
plugin manager (see :mod:`draftkit.builtin`); importing this package is cheap and
loads no model, corpus or Numba kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .pld import PromptLookup

if TYPE_CHECKING:
    pass

__all__ = ["PromptLookup"]


def __getattr__(name: str) -> Any:
    # Heavier sources are imported on first use so `import draftkit` stays light.
    lazy = {
        "Aded": ("draftkit.sources.aded", "Aded"),
        "Rest": ("draftkit.sources.rest", "Rest"),
        "LayerSkip": ("draftkit.sources.layerskip", "LayerSkip"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(name)
