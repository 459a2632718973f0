"""Greedy verification: keep the longest path the target's argmax agrees with."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..interfaces import LogitsProcessorFn
from ..types import SamplingParams, SourceCapabilities, TokenTree, Verdict
from .random import RandomStream

__all__ = ["GreedyVerifier", "greedy_walk", "greedy_walk_rows", "node_paths"]


def node_paths(tree: TokenTree, sampling: SamplingParams) -> list[np.ndarray]:
    """Per logits row, the tokens between the context and that row.

    Only path-dependent processing (repetition penalty, ``no_repeat_ngram_size``
    and the other ``generate`` processors) reads them, so they are only
    materialised when needed.
    """
    empty = np.empty(0, np.int64)
    if not sampling.uses_context_processors:
        return [empty] * (tree.size + 1)
    return [empty] + [tree.path_tokens(i) for i in range(tree.size)]


def greedy_walk(tree: TokenTree, argmax: np.ndarray) -> Verdict:
    """Walk from the root, descending into the child whose token is the argmax.

    ``argmax`` is int64 [n + 1]: the target's choice after the root and after each
    node. Siblings carry distinct tokens in a well-formed tree; if a builder emits
    duplicates the first one is taken, which is still exact.
    """
    return greedy_walk_rows(tree, lambda row: int(argmax[row]))


def greedy_walk_rows(tree: TokenTree, choice_at: Callable[[int], int]) -> Verdict:
    """:func:`greedy_walk` asking ``choice_at(row)`` for the target's choice only where the walk goes.

    Rows are 0 for the root and ``i + 1`` for node ``i``; the walk reads one row
    per accepted token plus one, so a caller can compute logits lazily.
    """
    accepted: list[int] = []
    row = 0  # logits row of the current position: 0 = root, i + 1 = node i
    current = -1
    children_of: dict[int, list[int]] = {}
    for i, p in enumerate(tree.parents.tolist()):
        children_of.setdefault(p, []).append(i)
    while True:
        want = int(choice_at(row))
        nxt = -1
        for child in children_of.get(current, ()):
            if int(tree.tokens[child]) == want:
                nxt = child
                break
        if nxt < 0:
            return Verdict(tuple(accepted), want)
        accepted.append(nxt)
        current = nxt
        row = nxt + 1


class GreedyVerifier:
    """Lossless for every source: the output is the target's greedy decoding.

    Each emitted token is the argmax of the target's (processed) logits given
    exactly the tokens before it, which is what plain greedy decoding emits.
    """

    name = "greedy"
    samples = False

    def supports(self, capabilities: SourceCapabilities) -> bool:
        return True

    def verify(
        self,
        tree: TokenTree,
        logits: torch.Tensor,
        sampling: SamplingParams,
        process: LogitsProcessorFn,
        random: RandomStream | None,
        position: int,
    ) -> Verdict:
        if sampling.uses_context_processors:
            # Processors that read a row's own path (repetition penalty, n-gram bans, ...) run on
            # the rows the walk reaches only: one per accepted token plus one, not the whole tree.
            empty = np.empty(0, np.int64)

            def processed_choice(row: int) -> int:
                path = tree.path_tokens(row - 1) if row else empty
                return int(torch.argmax(process(logits[row : row + 1], [path])[0]))

            return greedy_walk_rows(tree, processed_choice)
        if not isinstance(logits, torch.Tensor):
            # Rows computed on demand (the engine's LazyLogits): read only the rows the walk reaches.
            return greedy_walk_rows(tree, lambda row: int(torch.argmax(logits[row : row + 1][0])))
        # No processor changes the argmax (temperature/top-k/top-p do not apply to greedy):
        # skip the float64 copy of [n + 1, V] logits. Casting is monotonic, so ties agree.
        argmax = torch.argmax(logits, dim=-1).cpu().numpy()
        return greedy_walk(tree, argmax)
