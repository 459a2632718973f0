"""draftkit's own parts, registered through the public hooks like any plugin."""

from __future__ import annotations

from typing import Any

from .hookspecs import Register, hookimpl


def _pld(**options: Any) -> Any:
    from .sources.pld import PromptLookup

    return PromptLookup(**options)


def _aded(**options: Any) -> Any:
    from .sources.aded import Aded

    return Aded(**options)


def _rest(**options: Any) -> Any:
    from .sources.rest import Rest

    return Rest.open(**options) if "path" in options else Rest(**options)


def _layerskip(**options: Any) -> Any:
    from .sources.layerskip import LayerSkip

    return LayerSkip(**options)


def _chain(**options: Any) -> Any:
    from .trees import ChainBuilder

    return ChainBuilder(**options)


def _trie(**options: Any) -> Any:
    from .trees import TrieBuilder

    return TrieBuilder(**options)


def _greedy(**options: Any) -> Any:
    from .verify import GreedyVerifier

    return GreedyVerifier(**options)


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@hookimpl
def draftkit_register_sources(register: Register) -> None:
    register("pld", _pld)
    # Sources that live in their own subpackages are registered once they ship.
    for name, module, factory in (
        ("aded", "draftkit.sources.aded", _aded),
        ("rest", "draftkit.sources.rest", _rest),
        ("layerskip", "draftkit.sources.layerskip", _layerskip),
    ):
        if _module_exists(module):
            register(name, factory)


@hookimpl
def draftkit_register_tree_builders(register: Register) -> None:
    register("chain", _chain)
    register("trie", _trie)


def _walk(**options: Any) -> Any:
    from .verify.walk import SampleWalkVerifier

    return SampleWalkVerifier(**options)


def _speculative(**options: Any) -> Any:
    from .verify.speculative import SpeculativeVerifier

    return SpeculativeVerifier(**options)


@hookimpl
def draftkit_register_verifiers(register: Register) -> None:
    register("greedy", _greedy)
    # The two sampling verifiers accept disjoint draft kinds, so the engine's default
    # pick (first sampling verifier that supports the source) is the lossless one.
    register("walk", _walk)  # deterministic drafts
    register("speculative", _speculative)  # stochastic drafts (needs Draft.probs)
