"""Argument types shared by the ``draftkit`` subcommands: whole numbers with a floor, checked by
argparse so that a bad value is a usage error (exit 2) before any model is loaded."""

from __future__ import annotations

import argparse

__all__ = ["budget", "positive", "threads", "whole_number"]


def whole_number(text: str, expected: str, too_small: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(too_small)
    return value


def budget(text: str) -> int | str:
    return text if text == "auto" else whole_number(text, "an integer or 'auto'", "the budget must be >= 0")


def positive(text: str) -> int:
    return whole_number(text, "a whole number", "must be >= 1", minimum=1)


def threads(text: str) -> int:
    return whole_number(text, "a whole number of threads", "the number of threads must be >= 0 (0: torch's default)")
