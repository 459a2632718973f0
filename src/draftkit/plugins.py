"""Plugin discovery and the typed registry of parts.

pluggy finds the parts; the rest of draftkit only talks to :class:`Registry`,
a typed façade that never exposes ``pm.hook``. Each plugin's hooks are called
one plugin at a time, so a plugin that fails to import *or* raises while
registering is recorded as a :class:`PluginFailure` (with its name and error)
and every other plugin keeps working.

Nothing happens at import: :func:`default_registry` builds the manager on first
use and caches it explicitly (``default_registry.cache_clear()`` rebuilds it).

Environment variables:

* ``DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD=1``: do not load entry-point plugins.
* ``DRAFTKIT_BLOCK_PLUGINS=a,b``: skip the entry points named ``a`` and ``b``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import builtin, hookspecs
from .errors import PluginError, UnknownPartError
from .hookspecs import PROJECT_NAME

__all__ = [
    "ENTRY_POINT_GROUP",
    "PartInfo",
    "PluginFailure",
    "Registry",
    "LoadedPlugins",
    "make_plugin_manager",
    "build_registry",
    "default_registry",
]

ENTRY_POINT_GROUP = "draftkit"
BUILTIN_PLUGIN = "draftkit.builtin"
_KINDS = ("source", "tree builder", "verifier")
_HOOKS = {
    "source": "draftkit_register_sources",
    "tree builder": "draftkit_register_tree_builders",
    "verifier": "draftkit_register_verifiers",
}


@dataclass(frozen=True)
class PartInfo:
    """A registered part: its name, factory and who provides it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or failed while registering its parts."""

    plugin: str
    distribution: str
    stage: str  # "import" or "register <kind>"
    error: str


@dataclass
class Registry:
    """Name -> factory tables for sources, tree builders and verifiers."""

    parts: dict[str, dict[str, PartInfo]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    failures: list[PluginFailure] = field(default_factory=list)

    def add(self, info: PartInfo) -> None:
        table = self.parts[info.kind]
        if info.name in table and table[info.name].plugin != info.plugin:
            existing = table[info.name]
            warnings.warn(
                f"draftkit: {info.kind} {info.name!r} from plugin {info.plugin!r} replaces the one "
                f"from {existing.plugin!r}",
                stacklevel=2,
            )
        table[info.name] = info

    def names(self, kind: str) -> list[str]:
        return sorted(self.parts[kind])

    def info(self, kind: str, name: str) -> PartInfo:
        table = self.parts[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "(none)"
            hint = ""
            failed = [f.plugin for f in self.failures]
            if failed:
                hint = f" Plugins that failed to load: {', '.join(failed)} (see `draftkit plugins`)."
            raise UnknownPartError(f"unknown {kind} {name!r}; known {kind}s: {known}.{hint}")
        return table[name]

    def create(self, kind: str, name: str, **options: Any) -> Any:
        info = self.info(kind, name)
        try:
            return info.factory(**options)
        except TypeError as exc:
            raise PluginError(
                f"could not create {kind} {name!r} (from plugin {info.plugin!r}) with options "
                f"{sorted(options)}: {exc}"
            ) from exc

    def source(self, name: str, **options: Any) -> Any:
        return self.create("source", name, **options)

    def tree_builder(self, name: str, **options: Any) -> Any:
        return self.create("tree builder", name, **options)

    def verifier(self, name: str, **options: Any) -> Any:
        return self.create("verifier", name, **options)

    def all_parts(self) -> Iterable[PartInfo]:
        for kind in _KINDS:
            yield from (self.parts[kind][n] for n in sorted(self.parts[kind]))


def make_plugin_manager(
    *, load_entry_points: bool | None = None, extra_plugins: Iterable[tuple[str, object]] = ()
) -> LoadedPlugins:
    """Build a plugin manager with the built-in parts and the installed plugins.

    ``load_entry_points=None`` follows ``DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD``.
    ``extra_plugins`` are ``(name, module_or_object)`` pairs registered directly
    (handy in tests and notebooks).
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name=BUILTIN_PLUGIN)
    failures: list[PluginFailure] = []
    distributions: dict[str, str] = {BUILTIN_PLUGIN: "draftkit"}
    if load_entry_points is None:
        load_entry_points = os.environ.get("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if load_entry_points:
        blocked = {
            s.strip() for s in os.environ.get("DRAFTKIT_BLOCK_PLUGINS", "").split(",") if s.strip()
        }
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or pm.get_plugin(ep.name) is not None:
                continue
            dist = ep.dist.name if ep.dist is not None else "?"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the others down
                failures.append(PluginFailure(ep.name, dist, "import", f"{type(exc).__name__}: {exc}"))
                continue
            distributions[ep.name] = dist
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        distributions[name] = "(registered in-process)"
    return LoadedPlugins(pm, failures, distributions)


@dataclass(frozen=True)
class LoadedPlugins:
    """A plugin manager plus what happened while loading it."""

    manager: pluggy.PluginManager
    failures: list[PluginFailure]
    distributions: dict[str, str]  #: plugin name -> package that provides it


def build_registry(
    *, load_entry_points: bool | None = None, extra_plugins: Iterable[tuple[str, object]] = ()
) -> Registry:
    """Create a :class:`Registry` by asking every plugin to register its parts."""
    loaded = make_plugin_manager(load_entry_points=load_entry_points, extra_plugins=extra_plugins)
    pm = loaded.manager
    registry = Registry(failures=list(loaded.failures))
    for kind, hook_name in _HOOKS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order: built-ins first
            plugin_name = impl.plugin_name
            dist = loaded.distributions.get(plugin_name, "?")
            if any(f.plugin == plugin_name for f in registry.failures):
                continue

            def register(name: str, factory: Callable[..., Any], *, _p=plugin_name, _d=dist, _k=kind) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {_p!r} registered a {_k} with an invalid name {name!r}")
                if not callable(factory):
                    raise PluginError(f"plugin {_p!r} registered {_k} {name!r} with a non-callable factory")
                registry.add(PartInfo(_k, name, factory, _p, _d))

            try:
                impl.function(register=register)
            except Exception as exc:
                registry.failures.append(
                    PluginFailure(plugin_name, dist, f"register {kind}", f"{type(exc).__name__}: {exc}")
                )
                # Drop whatever this plugin registered before failing: half a plugin is worse than none.
                for table in registry.parts.values():
                    for part_name in [n for n, i in table.items() if i.plugin == plugin_name]:
                        del table[part_name]
    for failure in registry.failures:
        warnings.warn(
            f"draftkit plugin {failure.plugin!r} (package {failure.distribution}) failed at "
            f"{failure.stage}: {failure.error}. Other plugins are unaffected; "
            "set DRAFTKIT_BLOCK_PLUGINS to silence this.",
            stacklevel=2,
        )
    return registry


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry, built on first use. ``default_registry.cache_clear()`` rebuilds it."""
    return build_registry()
