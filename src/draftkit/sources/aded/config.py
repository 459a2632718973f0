"""Settings of the ADED source and the small helpers both backends share.

Two small frozen configs, one per part: :class:`AdaptConfig` for the adaptive
update of the tri-gram table and :class:`MctsConfig` for the draft search. The
defaults are the official ones (REFERENCE §1, ``DraftRetriever/src/lib.rs`` and
``mcts_sub.rs`` of the Adaptix repository).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...errors import InvalidInputError

__all__ = ["AdaptConfig", "MctsConfig", "window_chunks", "step_seed", "puct_factors", "UPDATE_CHUNK", "search_evidence"]

#: Longest token run handed to one table update. Long prompts are learnt in
#: chunks overlapping by two tokens, so every trigram is seen exactly once and
#: the room the table must reserve per call stays small.
UPDATE_CHUNK = 256


@dataclass(frozen=True)
class AdaptConfig:
    """How the table learns from the text being generated.

    Every step the last ``window`` tokens of the context (prompt + output, the
    newest token included) reinforce each of their trigrams by ``increment``,
    capped at ``max_weight``; a missing trigram is inserted with weight
    ``increment``. At most ``max_inserted`` entries are inserted on top of the
    corpus-built matrix: when that pool is full, the weaker half (lowest weight,
    then oldest) is forgotten, so memory plateaus.

    A bigram keeps at most ``max_learnt_per_bigram`` inserted successors (on top
    of its ``top_k`` corpus ones): a new one replaces the row's weakest inserted
    entry (lowest weight, then oldest). Without this cap a frequent bigram (an
    indentation in code) collects thousands of successors and every lookup,
    update and MCTS expansion of it becomes proportionally slower.
    """

    window: int = 16
    increment: float = 0.04
    max_weight: float = 3.0
    max_inserted: int = 1 << 20
    #: Learn every trigram of the prompt once at the start of a request (the
    #: official code only ever sees the last ``window`` tokens of the prompt).
    learn_prompt: bool = True
    max_learnt_per_bigram: int = 12

    def __post_init__(self) -> None:
        if self.window < 3:
            raise InvalidInputError(f"window must be >= 3 tokens (one trigram), got {self.window}")
        if not (self.increment >= 0 and np.isfinite(self.increment)):
            raise InvalidInputError(f"increment must be a finite number >= 0, got {self.increment}")
        if not (self.max_weight > 0 and np.isfinite(self.max_weight)):
            raise InvalidInputError(f"max_weight must be a finite number > 0, got {self.max_weight}")
        if isinstance(self.max_learnt_per_bigram, bool) or not isinstance(self.max_learnt_per_bigram, int) \
                or self.max_learnt_per_bigram < 1:
            raise InvalidInputError(
                f"max_learnt_per_bigram must be an integer >= 1, got {self.max_learnt_per_bigram!r}"
            )
        if self.max_inserted < 4 * UPDATE_CHUNK:
            raise InvalidInputError(
                f"max_inserted must be >= {4 * UPDATE_CHUNK} entries, got {self.max_inserted}"
            )


@dataclass(frozen=True)
class MctsConfig:
    """The draft search (PUCT selection as in MuZero).

    ``rollout_depth`` counts bigram states of one simulation with the root
    included (the official ``sentence_length``): tree nodes reach depth
    ``rollout_depth - 1`` and each kept path is extended by
    ``greedy_extension`` arg-max tokens, so drafts are at most
    ``rollout_depth - 1 + greedy_extension`` tokens long.
    """

    iterations: int = 150
    rollout_depth: int = 4
    num_paths: int = 24
    greedy_extension: int = 1
    c1: float = 32.0
    c2: float = 8.0
    max_nodes: int = 64
    #: Priors and rewards use the normalised weights w / sum(row) (the
    #: tri-gram probabilities). False reproduces the official code, which uses
    #: the raw stored weights (equal to probabilities before any update).
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("iterations", "rollout_depth", "num_paths", "max_nodes"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rollout_depth < 2:
            raise InvalidInputError(f"rollout_depth must be >= 2 (root + one token), got {self.rollout_depth}")
        if self.greedy_extension < 0:
            raise InvalidInputError(f"greedy_extension must be >= 0, got {self.greedy_extension}")
        if not (self.c2 > 0 and np.isfinite(self.c2) and np.isfinite(self.c1)):
            raise InvalidInputError(f"c1 must be finite and c2 finite and > 0, got c1={self.c1}, c2={self.c2}")

    @property
    def max_path_len(self) -> int:
        return self.rollout_depth - 1 + self.greedy_extension


def puct_factors(c1: float, c2: float, iterations: int) -> list[float]:
    """PUCT exploration factor of a parent visited n times, n = 0..iterations.

    ``f(n) = (c1 + ln((n + c2 + 1) / c2)) * sqrt(n)``; a child scores
    ``Q/N + f(N_parent) * p / (1 + N)``. Tabulated once so the search loop
    computes no logarithm, and both backends read the very same numbers.
    """
    return [(c1 + math.log((n + c2 + 1.0) / c2)) * math.sqrt(n) for n in range(iterations + 1)]


def window_chunks(tokens: np.ndarray, size: int = UPDATE_CHUNK) -> Iterator[np.ndarray]:
    """Split ``tokens`` into runs of at most ``size`` overlapping by 2 (each trigram once)."""
    n = tokens.size
    if n < 3:
        return
    start = 0
    while start + 2 < n:
        stop = min(n, start + size)
        yield tokens[start:stop]
        start = stop - 2


_MASK = (1 << 64) - 1


def step_seed(seed: int, context_length: int) -> int:
    """A non-zero 64-bit xorshift state for one ``propose`` (splitmix64 of seed and step).

    Seeding by position makes a draft a pure function of (table, context, seed):
    two runs from the same table propose the same trees.
    """
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(context_length) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return z or 0x9E3779B97F4A7C15


def search_evidence(best_visits: float, mcts: MctsConfig) -> int:
    """``Draft.evidence`` of a search whose best path got ``best_visits`` of its simulations.

    A search that keeps returning to one path has found a confident
    continuation; one spread over many paths has not. On the demo model's
    HumanEval answers, steps whose best path got under a third of the visits
    accepted about 1.2 tokens of a 16-node tree, the others 2.4-3.
    """
    share = best_visits / mcts.iterations
    return 1 if share < 0.35 else 2 if share < 0.6 else 3
