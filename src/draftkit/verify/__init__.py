"""Verifiers: decide which root path of a token tree the target accepts."""

from .greedy import GreedyVerifier
from .random import RandomStream

__all__ = ["GreedyVerifier", "RandomStream"]
