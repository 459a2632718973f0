"""Build the list of benchmark methods for a model.

A method name ``a+b`` is a :class:`~draftkit.sources.composite.Composite` of the
registered sources ``a`` and ``b``.

Peers: draftkit's plain loop, HF ``generate`` (plain, prompt lookup, assisted
with a draft model). draftkit: one decoder per registered source with its
default tree and verifier; sources that need a corpus (an ADED matrix, a
retrieval datastore) get one built from the demo corpus by :mod:`.corpus`.
Bound: ``oracle``, a source that drafts plain decoding's own answer (the
ceiling of any source on this model and machine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DraftkitError
from .methods import DraftkitMethod, HFMethod, Method, OracleMethod, PlainMethod

__all__ = ["BOUNDS", "PEERS", "build_methods", "check_method_names"]

PEERS = ("plain", "hf", "hf-pld", "hf-assisted")
#: Reference points that are not methods a user runs.
BOUNDS = ("oracle",)
#: Composite sources benchmarked by default when their members are registered.
DEFAULT_COMPOSITES = ("pld+aded",)


def check_method_names(names: Sequence[str] | None, registry: Any) -> None:
    """Fail fast, before any model or prompt is loaded, on a misspelt method."""
    if not names:
        return
    sources = registry.names("source")
    known = (*PEERS, *BOUNDS)
    unknown = [n for n in names if n not in known and not all(p in sources for p in n.split("+"))]
    if unknown:
        raise DraftkitError(
            f"unknown benchmark method(s) {', '.join(unknown)}; known: {', '.join([*known, *sources])}"
        )


def build_methods(
    model: Any,
    tokenizer: Any,
    names: Sequence[str] | None,
    *,
    registry: Any,
    draft_model: Any = None,
    budget: int | None = None,
    corpus_sources: dict[str, Callable[[], Any]] | None = None,
    warn: Callable[[str], None] = print,
) -> list[Method]:
    """``names=None`` means every peer and every registered source."""
    from ..engine import PlainDecoder, SpeculativeDecoder

    corpus_sources = corpus_sources or {}
    sources = registry.names("source")
    check_method_names(names, registry)
    composites = [c for c in DEFAULT_COMPOSITES if all(p in sources for p in c.split("+"))]
    wanted = list(names) if names else [*PEERS, *sources, *composites, *BOUNDS]
    if "plain" not in wanted:
        wanted.insert(0, "plain")  # the reference every greedy output is checked against
    methods: list[Method] = []
    for name in wanted:
        if name == "plain":
            methods.append(PlainMethod(PlainDecoder(model, tokenizer=tokenizer), tokenizer))
        elif name == "hf":
            methods.append(HFMethod(model, tokenizer, "hf", {}))
        elif name == "hf-pld":
            methods.append(HFMethod(model, tokenizer, "hf-pld", {"prompt_lookup_num_tokens": 10}))
        elif name == "oracle":
            from ..testing.sources import OracleSource

            oracle = OracleSource([])
            kwargs = {} if budget is None else {"budget": budget}
            decoder = SpeculativeDecoder(model, source=oracle, tokenizer=tokenizer, registry=registry, **kwargs)
            methods.append(OracleMethod(decoder, PlainDecoder(model, tokenizer=tokenizer), oracle, tokenizer))
        elif name == "hf-assisted":
            if draft_model is None:
                warn("skipping hf-assisted: no draft model (the demo draft model is used with --model demo)")
                continue
            methods.append(HFMethod(model, tokenizer, "hf-assisted", {"assistant_model": draft_model}))
        else:
            try:
                parts = [corpus_sources[p]() if p in corpus_sources else p for p in name.split("+")]
                source = parts[0] if len(parts) == 1 else parts  # "a+b": a Composite of a and b
                kwargs = {} if budget is None else {"budget": budget}
                decoder = SpeculativeDecoder(model, source=source, tokenizer=tokenizer, registry=registry, **kwargs)
            except DraftkitError as exc:
                warn(f"skipping source {name!r}: {exc}")
                continue
            methods.append(DraftkitMethod(decoder, tokenizer, name))
    return methods
