"""Per-token scores and logits, as ``model.generate(output_scores=True, output_logits=True)`` returns them.

A verification step computes the target's logits for every tree node; the
tokens it emits were chosen from the rows of the accepted path (the root's row,
then one row per accepted node, the last one giving the bonus token). Those
rows are exactly the rows plain decoding computes for the same tokens, so the
scores of a speculative run are plain decoding's, up to float rounding between
a tree forward and single-token forwards. Hugging Face returns them as float32
whatever the model's dtype, one ``[1, V]`` tensor per new token; so does this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..types import TokenTree, Verdict

__all__ = ["TokenRecord", "emitted_rows"]


def emitted_rows(plan: Any, tree: TokenTree, verdict: Verdict, logits: Any,
                 process: Any) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
    """``(scores, logits)`` of each token a step emits, when the request needs them (else ``None``).

    ``logits`` is the step's [n + 1, V] rows (a tensor, or the engine's lazy
    rows: only the path's rows are read); ``process`` the request's logits
    pipeline, given each row's own path as plain decoding would see it.
    """
    if not plan.record:
        return None, None
    nodes = list(verdict.accepted_nodes)
    rows = [0] + [node + 1 for node in nodes]
    raw = torch.cat([logits[r : r + 1] for r in rows])
    scores = None
    if "scores" in plan.record:
        paths = [np.empty(0, np.int64)] + [tree.tokens[nodes[: i + 1]] for i in range(len(nodes))]
        scores = list(process(raw, paths).to(torch.float32).split(1))
    raw_rows = list(raw.to(torch.float32).split(1)) if "logits" in plan.record else None
    return scores, raw_rows


@dataclass
class TokenRecord:
    """The scores / logits of the tokens a request has emitted so far."""

    scores: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)

    def scores_until(self, plan: Any, step_scores: list[torch.Tensor] | None) -> Callable[[int], Any]:
        """For stopping criteria: the scores recorded up to a step's token ``i``, as HF shows them
        (only with ``output_scores`` and ``return_dict_in_generate``; else ``None``)."""
        if step_scores is None or not plan.criteria_see_scores or not plan.stop.criteria:
            return lambda i: None
        return lambda i: (*self.scores, *step_scores[: i + 1])

    def add(self, scores: list[torch.Tensor] | None, logits: list[torch.Tensor] | None, keep: int) -> None:
        """The first ``keep`` rows of a step (the tokens kept after stop conditions)."""
        if scores is not None:
            self.scores.extend(scores[:keep])
        if logits is not None:
            self.logits.extend(logits[:keep])

    def output(self, plan: Any) -> dict[str, tuple[torch.Tensor, ...] | None]:
        """Keyword arguments of :class:`~draftkit.types.GenerationOutput`: what the request asked for."""
        return {
            "scores": tuple(self.scores) if "scores" in plan.record else None,
            "logits": tuple(self.logits) if "logits" in plan.record else None,
        }
