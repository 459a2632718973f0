"""The training corpus of draftkit's demo models: the Python standard library.

Why this corpus: draftkit cannot download anything at run time, so its demo
models are trained on text that every machine running draftkit already has —
the source of the interpreter's own standard library (``test/`` included, as
it is the largest body of ordinary, idiomatic Python in the tree). It is code,
which is where speculative decoding shines, and it is reproducible given the
Python version, which is recorded alongside every split.

Everything here is a pure function of the files on disk: the list is sorted by
relative path and the train / held-out split is decided by a hash of that path
alone, so the same interpreter gives the same split on every machine and the
split of one file never depends on which other files exist.
"""

from __future__ import annotations

import hashlib
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "DEFAULT_HELDOUT_FRACTION",
    "CorpusSplit",
    "SourceFile",
    "corpus_fingerprint",
    "is_heldout",
    "list_source_files",
    "load_corpus",
    "stdlib_root",
]

#: Share of files held out for evaluation. Small, because compute (not data)
#: limits the demo models, but large enough (~35 files) for a stable estimate.
DEFAULT_HELDOUT_FRACTION = 0.02


@dataclass(frozen=True)
class SourceFile:
    """One source file: its path relative to the corpus root (POSIX form) and its text."""

    relpath: str
    text: str


@dataclass(frozen=True)
class CorpusSplit:
    """The corpus cut into a training part and a held-out part.

    ``python_version`` is the full version of the interpreter whose standard
    library was read: the corpus is only reproducible given it.
    """

    train: tuple[SourceFile, ...]
    heldout: tuple[SourceFile, ...]
    python_version: str
    root: str
    heldout_fraction: float

    @property
    def train_chars(self) -> int:
        """Number of characters (not bytes) in the training files."""
        return sum(len(f.text) for f in self.train)

    @property
    def heldout_chars(self) -> int:
        """Number of characters (not bytes) in the held-out files; the denominator of bits per character."""
        return sum(len(f.text) for f in self.heldout)


def stdlib_root() -> Path:
    """Directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def list_source_files(root: Path) -> list[str]:
    """Relative POSIX paths of every ``*.py`` file under ``root``, sorted.

    ``site-packages`` is skipped wherever it appears: third-party code differs
    from machine to machine and would make the corpus unreproducible. Paths are
    sorted as strings so the order does not depend on the file system.
    """
    paths: list[str] = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if "site-packages" in rel.parts or not path.is_file():
            continue
        paths.append(PurePosixPath(*rel.parts).as_posix())
    paths.sort()
    return paths


def is_heldout(relpath: str, fraction: float = DEFAULT_HELDOUT_FRACTION) -> bool:
    """Whether a file belongs to the held-out split.

    Decided by the SHA-256 of the relative path alone (first 8 bytes read as an
    unsigned integer, compared with ``fraction`` of 2**64), so it is stable
    across machines, runs and additions or removals of other files.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"heldout fraction must be in [0, 1], got {fraction!r}")
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


def load_corpus(
    root: Path | None = None,
    *,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    max_files: int | None = None,
) -> CorpusSplit:
    """Read the corpus and split it into train and held-out files.

    Files are read as UTF-8 with ``errors="replace"``: a handful of standard
    library tests deliberately contain other encodings, and replacing their odd
    bytes keeps them usable without special cases. ``max_files`` keeps only the
    first files in sorted order (for quick tests); the split is still per path.
    """
    base = stdlib_root() if root is None else Path(root)
    relpaths = list_source_files(base)
    if max_files is not None:
        relpaths = relpaths[:max_files]
    train: list[SourceFile] = []
    heldout: list[SourceFile] = []
    for rel in relpaths:
        text = (base / rel).read_text(encoding="utf-8", errors="replace")
        (heldout if is_heldout(rel, heldout_fraction) else train).append(SourceFile(rel, text))
    return CorpusSplit(
        train=tuple(train),
        heldout=tuple(heldout),
        python_version=platform.python_version(),
        root=str(base),
        heldout_fraction=heldout_fraction,
    )


def corpus_fingerprint(split: CorpusSplit) -> str:
    """SHA-256 over the paths, texts and split membership of every file.

    Stored next to cached tokens and checkpoints so that a resumed run can
    tell whether the corpus it is resuming on is the one it started with.
    """
    h = hashlib.sha256()
    for label, files in (("train", split.train), ("heldout", split.heldout)):
        for f in files:
            for part in (label, f.relpath, f.text):
                data = part.encode("utf-8", errors="surrogatepass")
                h.update(len(data).to_bytes(8, "big"))
                h.update(data)
    return h.hexdigest()
