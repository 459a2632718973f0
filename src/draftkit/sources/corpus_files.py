"""Reading shared by the commands that read corpus files (``aded build``, ``datastore build``), so that
both accept and refuse the same files with the same words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["require_corpus_file", "jsonl_record", "jsonl_text"]


def require_corpus_file(path: Path) -> None:
    """Refuse a corpus path that is not a file, saying what it is: a folder was once reported as
    missing, which sends its owner looking for a typo."""
    if path.is_file():
        return
    if path.is_dir():
        raise InvalidInputError(f"corpus path {path} is a folder; pass its files (e.g. {path}/*.txt)")
    raise InvalidInputError(f"corpus file {path} does not exist")


def jsonl_text(record: Any, field: str, where: str) -> str:
    """The text of a jsonl record's ``field`` (dots reach nested fields, e.g. ``meta.body``; a list of
    strings, e.g. chat turns, is joined with newlines); anything else is refused, naming ``where``."""
    value = record
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise InvalidInputError(
                f"{where}: no field {field!r} (found {keys}); choose the text field with jsonl_field= "
                "(--jsonl-field)"
            )
        value = value[part]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: field {field!r} holds {type(value).__name__}, expected text")
    return value


def jsonl_record(line: bytes, where: str) -> Any:
    """One jsonl line parsed, or an error naming ``where`` (file:line)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
