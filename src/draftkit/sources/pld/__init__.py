"""Prompt lookup decoding: draft what followed the same n-gram earlier in the context."""

from .source import PromptLookup, find_continuations

__all__ = ["PromptLookup", "find_continuations"]
