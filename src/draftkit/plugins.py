"""Plugin discovery and the typed registry of parts.

pluggy finds the parts; the rest of draftkit only talks to :class:`Registry`,
a typed façade that never exposes ``pm.hook``. Each plugin's hooks are called
one plugin at a time, so a plugin that fails to import *or* raises while
registering is recorded as a :class:`PluginFailure` (with its name and error)
and every other plugin keeps working.

Nothing happens at import: :func:`default_registry` builds the manager on first
use and caches it explicitly (``default_registry.cache_clear()`` rebuilds it).

Environment variables:

* ``DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD=1`` (or ``true``, ``yes``, ``on``): do not
  load entry-point plugins (``0``, ``false``, ``no``, ``off`` or empty: load them).
* ``DRAFTKIT_BLOCK_PLUGINS=a,b``: skip the entry points named ``a`` and ``b``
  (``a[package]``: only package's, when two packages use the name ``a``).
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import builtin, hookspecs
from .errors import DraftkitError, PluginError, UnknownPartError
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


#: Characters a source's name may not contain: the command line uses them to compose sources and options.
_RESERVED_NAME_CHARACTERS = ("+", ",", ".", "=")


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

    #: Why entry-point plugins were not all loaded (autoload off, blocked names), for messages.
    not_loaded: str = ""

    def _table(self, kind: str) -> dict[str, PartInfo]:
        if kind not in self.parts:
            raise UnknownPartError(f"unknown part kind {kind!r}; the kinds are {', '.join(map(repr, _KINDS))}")
        return self.parts[kind]

    def names(self, kind: str) -> list[str]:
        """Registered names of ``kind``: ``"source"``, ``"tree builder"`` or ``"verifier"``."""
        return sorted(self._table(kind))

    def info(self, kind: str, name: str) -> PartInfo:
        table = self._table(kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "(none)"
            hint = ""
            failed = [f.plugin for f in self.failures]
            if failed:
                hint = f" Plugins that failed to load: {', '.join(failed)} (see `draftkit plugins`)."
            if self.not_loaded:
                hint += f" {self.not_loaded}."
            if kind == "source" and "+" in name:
                members = ", ".join(repr(part) for part in name.split("+"))
                hint += f" To merge sources into one tree, pass a list: source=[{members}]."
            raise UnknownPartError(f"unknown {kind} {name!r}; known {kind}s: {known}.{hint}")
        return table[name]

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Build a part; a plugin's own failure is reported as a :class:`PluginError` naming it."""
        info = self.info(kind, name)
        try:
            part = info.factory(**options)
        except DraftkitError:
            raise  # already says what is wrong (a draftkit-checked option value)
        except Exception as exc:
            raise PluginError(
                f"could not create {kind} {name!r} (from plugin {info.plugin!r}) with options "
                f"{sorted(options)}: {type(exc).__name__}: {exc}"
            ) from exc
        if part is None:
            raise PluginError(f"the factory of {kind} {name!r} (from plugin {info.plugin!r}) returned None")
        return part

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
    not_loaded: list[str] = []
    if load_entry_points is None:
        load_entry_points = not _autoload_disabled()
        if not load_entry_points:
            not_loaded.append("Entry-point plugins are off (DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD is set)")
    if load_entry_points:
        blocked = {
            s.strip() for s in os.environ.get("DRAFTKIT_BLOCK_PLUGINS", "").split(",") if s.strip()
        }
        skipped = set()
        taken: dict[str, str] = {}  # plugin names loaded or failed -> their package
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            if ep.name in blocked or f"{ep.name}[{dist}]" in blocked:
                skipped.add(ep.name if ep.name in blocked else f"{ep.name}[{dist}]")
                continue
            name = ep.name
            if name in taken:  # another package uses the same entry-point name
                if taken[name] == dist:
                    continue  # the same package seen twice on the path
                name = f"{ep.name}[{dist}]"
                if name in taken:
                    continue
            taken[name] = dist
            try:
                plugin = ep.load()
                if pm.is_registered(plugin):
                    continue  # one module listed by two entry points
                _check_hook_names(plugin)
                pm.register(plugin, name=name)
            except (Exception, SystemExit) as exc:  # a broken plugin (even one calling sys.exit) must not
                failures.append(PluginFailure(name, dist, "import", f"{type(exc).__name__}: {exc}"))  # stop the rest
                continue
            if name != ep.name:
                warnings.warn(
                    f"draftkit: plugins from packages {taken[ep.name]} and {dist} both use the entry-point "
                    f"name {ep.name!r}; the second is loaded as {name!r}", stacklevel=2)
            distributions[name] = dist
        if skipped:
            not_loaded.append(f"Blocked by DRAFTKIT_BLOCK_PLUGINS: {', '.join(sorted(skipped))}")
    for name, plugin in extra_plugins:
        _check_hook_names(plugin)
        pm.register(plugin, name=name)
        distributions[name] = "(registered in-process)"
    return LoadedPlugins(pm, failures, distributions, "; ".join(not_loaded))


def _autoload_disabled() -> bool:
    value = os.environ.get("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def _check_hook_names(plugin: object) -> None:
    """Refuse a plugin with a misspelt hook (pluggy would ignore it, and the plugin would register
    nothing without a word) or a hook function not marked with ``@draftkit.hookimpl``."""
    known = [name for name in dir(hookspecs) if name.startswith(f"{PROJECT_NAME}_")]
    for attr in dir(plugin):
        if not attr.startswith(f"{PROJECT_NAME}_") or not callable(getattr(plugin, attr, None)):
            continue
        marked = hasattr(getattr(plugin, attr), f"{PROJECT_NAME}_impl")
        if attr not in known and marked:
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (draftkit's hooks: {', '.join(known)})"
            raise PluginError(f"it defines an unknown hook {attr!r}{hint}")
        if attr in known and not marked:
            raise PluginError(f"its hook {attr!r} lacks the @draftkit.hookimpl decorator")


@dataclass(frozen=True)
class LoadedPlugins:
    """A plugin manager plus what happened while loading it."""

    manager: pluggy.PluginManager
    failures: list[PluginFailure]
    distributions: dict[str, str]  #: plugin name -> package that provides it
    not_loaded: str = ""  #: why some entry-point plugins were not loaded (autoload off, blocked)


def build_registry(
    *, load_entry_points: bool | None = None, extra_plugins: Iterable[tuple[str, object]] = ()
) -> Registry:
    """Create a :class:`Registry` by asking every plugin to register its parts."""
    loaded = make_plugin_manager(load_entry_points=load_entry_points, extra_plugins=extra_plugins)
    pm = loaded.manager
    registry = Registry(failures=list(loaded.failures), not_loaded=loaded.not_loaded)
    # Per plugin: the earlier parts its own parts took the place of, to give back if it fails later.
    replaced_by: dict[str, dict[tuple[str, str], PartInfo]] = {}
    for kind, hook_name in _HOOKS.items():
        hook = getattr(pm.hook, hook_name)
        # Registration order (pluggy lists implementations oldest first): built-ins, then entry-point
        # plugins, then in-process ones, so a plugin's part of a taken name replaces the earlier one.
        for impl in hook.get_hookimpls():
            plugin_name = impl.plugin_name
            dist = loaded.distributions.get(plugin_name, "?")
            if any(f.plugin == plugin_name for f in registry.failures):
                continue
            replaced = replaced_by.setdefault(plugin_name, {})

            def register(name: str, factory: Callable[..., Any], *, _p=plugin_name, _d=dist, _k=kind,
                         _replaced=replaced) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {_p!r} registered a {_k} with an invalid name {name!r}")
                reserved: list[str] = []
                if _k == "source":  # the command line composes and configures sources by name
                    reserved = [c for c in _RESERVED_NAME_CHARACTERS if c in name]
                    reserved += ["whitespace"] if any(c.isspace() for c in name) else []
                if reserved:
                    raise PluginError(
                        f"plugin {_p!r} registered the {_k} name {name!r}, which the command line cannot spell: "
                        f"it contains {', '.join(map(repr, reserved))} ('+' joins composite members, ',' separates "
                        "methods, '.' and '=' spell --source-option MEMBER.KEY=VALUE); rename it"
                    )
                if not callable(factory):
                    raise PluginError(f"plugin {_p!r} registered {_k} {name!r} with a non-callable factory")
                earlier = registry.parts[_k].get(name)
                if earlier is not None and earlier.plugin != _p:
                    _replaced.setdefault((_k, name), earlier)
                registry.add(PartInfo(_k, name, factory, _p, _d))

            try:
                impl.function(register=register)
            except (Exception, SystemExit) as exc:
                registry.failures.append(
                    PluginFailure(plugin_name, dist, f"register {kind}", f"{type(exc).__name__}: {exc}")
                )
                # Drop whatever this plugin registered before failing (half a plugin is worse than
                # none), and give back the parts it had replaced.
                _drop_plugin_parts(registry, plugin_name, replaced_by, {f.plugin for f in registry.failures})
    for failure in registry.failures:
        warnings.warn(
            f"draftkit plugin {failure.plugin!r} (package {failure.distribution}) failed at "
            f"{failure.stage}: {failure.error}. Other plugins are unaffected; "
            "set DRAFTKIT_BLOCK_PLUGINS to silence this.",
            stacklevel=2,
        )
    return registry


def _drop_plugin_parts(registry: Registry, plugin_name: str,
                       replaced_by: dict[str, dict[tuple[str, str], PartInfo]], failed: set[str]) -> None:
    """Remove ``plugin_name``'s parts, giving back what each replaced: the latest earlier part whose
    plugin has not failed too (following the chain back, to the built-in or to nothing)."""
    for kind, table in registry.parts.items():
        for part_name in [n for n, i in table.items() if i.plugin == plugin_name]:
            earlier = replaced_by.get(plugin_name, {}).get((kind, part_name))
            while earlier is not None and earlier.plugin in failed:
                earlier = replaced_by.get(earlier.plugin, {}).get((kind, part_name))
            if earlier is None:
                del table[part_name]
            else:
                table[part_name] = earlier


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry, built on first use. ``default_registry.cache_clear()`` rebuilds it."""
    return build_registry()
