"""The public API: ``__all__`` lists exactly the public names, and they import."""

from __future__ import annotations

import draftkit


def test_all_matches_public_names():
    public = {n for n in dir(draftkit) if not n.startswith("_") and n not in ("annotations", "TYPE_CHECKING", "Any")}
    modules = {n for n in public if type(getattr(draftkit, n)).__name__ == "module"}
    assert set(draftkit.__all__) - {"__version__"} == public - (modules - {"sources"})


def test_exported_names_resolve():
    for name in draftkit.__all__:
        assert getattr(draftkit, name) is not None


def test_protocols_are_satisfied_by_builtin_parts():
    from draftkit.sources.pld import PromptLookup
    from draftkit.trees import ChainBuilder, TrieBuilder
    from draftkit.verify import GreedyVerifier

    assert isinstance(PromptLookup(), draftkit.DraftSource)
    assert isinstance(TrieBuilder(), draftkit.TreeBuilder) and isinstance(ChainBuilder(), draftkit.TreeBuilder)
    assert isinstance(GreedyVerifier(), draftkit.Verifier)
