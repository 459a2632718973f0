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

    if "path" in options:
        path = options.pop("path")
        return Rest.open(path, **options)
    return Rest(**options)


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


@hookimpl
def draftkit_register_sources(register: Register) -> None:
    register("pld", _pld)
    register("aded", _aded)  # options: matrix=PATH (else starts empty and learns online), persist, ...
    register("rest", _rest)  # options: path=STORE (required unless include_context=True), ...
    register("layerskip", _layerskip)  # options: skip_set=SKIP.json, drafting, max_draft, ...


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
