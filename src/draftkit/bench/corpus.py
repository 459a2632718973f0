"""Corpus-backed sources for the benchmark, built from the demo corpus.

ADED needs a tri-gram matrix and REST a datastore built from a corpus with the
target's tokenizer. The benchmark builds them from the *training* split of the
demo corpus (the Python standard library), so prompts from HumanEval and from
held-out library files are never in it, and caches them by tokenizer fingerprint.
A file of the model's own answers (``draftkit answers build``; the demo target
ships one) is added to that corpus when given, and named in the cache key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["corpus_documents", "corpus_sources_for", "corpus_tokens"]


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
    tokens = encode_documents(tokenizer, [f.text for f in split.train], separator_id=tokenizer.eos_token_id)
    np.save(path, tokens)
    return tokens


def corpus_documents(tokens: Any, eos_id: int) -> list[Any]:
    """Split an EOS-separated token stream into its documents (empty ones dropped)."""
    import numpy as np

    cuts = np.nonzero(np.asarray(tokens) == eos_id)[0]
    docs = [np.asarray(tokens[a + 1 : b], dtype=np.int64) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return [d for d in docs if d.size]


def _answer_documents(tokenizer: Any, path: Path) -> list[Any]:
    from ..sources.aded.corpus import iter_documents, tokenize_documents

    return [d for d in tokenize_documents(tokenizer, iter_documents([path])) if d.size]


def corpus_sources_for(
    tokenizer: Any,
    registry: Any,
    vocab_size: int,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    answers: str | Path | None = None,
) -> dict[str, Callable[[], Any]]:
    """Factories for the registered sources that need corpus artefacts (built once, then cached).

    ``answers``: a jsonl file of the model's own answers added to the corpus.
    """
    from ..fingerprint import file_sha256, tokenizer_fingerprint

    if getattr(tokenizer, "eos_token_id", None) is None:  # the corpus' documents are EOS-separated
        log("the tokenizer has no EOS token to separate the demo corpus' files: ADED runs without the "
            "corpus (it learns from the prompts and answers only) and retrieval, which needs a datastore, "
            "is skipped")
        return {}
    fp = tokenizer_fingerprint(tokenizer)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = folder / "bench" / fp.split(":")[-1][:16]
    names = set(registry.names("source"))
    factories: dict[str, Callable[[], Any]] = {}

    key, what = "corpus", "the demo corpus"
    if answers is not None:
        answers = Path(answers)
        key, what = f"corpus+answers-{file_sha256(answers)[:16]}", f"the demo corpus and the model's answers in {answers}"
    loaded: list[list[Any]] = []  # the documents, read once for every source that needs them

    def docs() -> list[Any]:
        if not loaded:
            if not (folder / "corpus-train.npy").exists():
                log(f"tokenising the demo corpus (training split) into {folder} ...")
            documents = corpus_documents(corpus_tokens(tokenizer, folder), tokenizer.eos_token_id)
            if answers is not None:
                documents += _answer_documents(tokenizer, answers)
            loaded.append(documents)
        return loaded[0]

    if "aded" in names:
        def make_aded() -> Any:
            from ..sources.aded import Aded, build_matrix, save_matrix

            path = folder / f"{key}.aded"
            if not path.exists():
                documents = docs()
                log(f"building the ADED tri-gram matrix from {what} ...")
                save_matrix(build_matrix(documents, vocab_size, fingerprint=fp), path)
            return Aded.load(path, tokenizer=tokenizer)

        factories["aded"] = make_aded
    if "rest" in names:
        def make_rest() -> Any:
            from ..sources.rest import Rest, build_datastore

            path = folder / f"{key}.store"
            if not path.exists():
                documents = docs()
                log(f"building the retrieval datastore from {what} ...")
                description = "draftkit demo corpus (stdlib training split)"
                if answers is not None:
                    description += f" + the model's answers in {answers.name}"
                build_datastore(path, documents, vocab_size, tokenizer_fingerprint=fp, source_description=description)
            return Rest.open(path, tokenizer=tokenizer)

        factories["rest"] = make_rest
    return factories
