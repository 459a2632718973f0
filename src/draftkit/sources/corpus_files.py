"""Checks shared by the commands that read corpus files (``aded build``, ``datastore build``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInputError

__all__ = ["require_corpus_file"]


def require_corpus_file(path: Path) -> None:
    """Refuse a corpus path that is not a file, saying what it is: a folder was once reported as
    missing, which sends its owner looking for a typo."""
    if path.is_file():
        return
    if path.is_dir():
        raise InvalidInputError(f"corpus path {path} is a folder; pass its files (e.g. {path}/*.txt)")
    raise InvalidInputError(f"corpus file {path} does not exist")
