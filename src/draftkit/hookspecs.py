"""The hooks a draftkit plugin can implement.

A plugin is a module (or object) with functions decorated by
``draftkit.hookimpl`` and named like the specs below, advertised under the
entry-point group ``draftkit``::

    [project.entry-points.draftkit]
    my_source = "my_package.plugin"

Hooks receive a ``register`` callback instead of returning values, so one hook
can register several parts and registration stays cheap: a factory is only
*called* when a decoder asks for that name. Registration must not load models,
files or Numba kernels.

The built-in parts are registered through these same hooks
(:mod:`draftkit.builtin`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME", "Register"]

PROJECT_NAME = "draftkit"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: ``register(name, factory)``; ``factory(**options)`` returns a new part.
Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def draftkit_register_sources(register: Register) -> None:
    """Register draft-source factories.

    Call ``register("name", factory)`` once per source. ``factory(**options)``
    must return an object implementing :class:`draftkit.interfaces.DraftSource`.
    """


@hookspec
def draftkit_register_tree_builders(register: Register) -> None:
    """Register tree-builder factories (:class:`draftkit.interfaces.TreeBuilder`)."""


@hookspec
def draftkit_register_verifiers(register: Register) -> None:
    """Register verifier factories (:class:`draftkit.interfaces.Verifier`)."""
