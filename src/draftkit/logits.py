"""One logits-processing path shared by the plain sampler and every verifier.

Losslessness needs the verifier's target distribution ``p`` to be *exactly* the
distribution the plain decoder samples from. Keeping a single implementation of
the processors (HF ``generate`` semantics and order) makes that true by
construction. Distributions are computed in float64 so that a proposal law and a
target law are always compared in the same precision.
"""

from __future__ import annotations

import numpy as np
import torch

from .types import SamplingParams

__all__ = ["LogitsPipeline", "sample_from_probs"]


class LogitsPipeline:
    """Processes rows of raw logits for one request.

    ``context`` is the sequence before the rows' paths (prompt + output so far);
    the repetition penalty of a tree node uses ``context`` plus that node's own
    path, so sibling branches never see each other's tokens.
    """

    def __init__(self, params: SamplingParams, context: np.ndarray) -> None:
        self.params = params
        self.context = context

    def __call__(self, logits: torch.Tensor, paths: list[np.ndarray]) -> torch.Tensor:
        """Processed scores, float64 [m, V]; removed tokens are ``-inf``."""
        p = self.params
        extra = p.processors
        # Hugging Face hands processors a fresh copy; a user's processor may write into it.
        scores = logits.to(torch.float64, copy=extra is not None)
        if extra is not None:  # each row's sequence (context + path), built once for all stages
            row_ids = [torch.from_numpy(np.concatenate([self.context, path]).astype(np.int64))[None].to(scores.device)
                       for path in paths]
            scores = self._hf_stage(extra.before_penalty, scores, row_ids)
        if p.repetition_penalty not in (None, 1.0):
            scores = scores.clone()
            for row, path in enumerate(paths):
                seen = np.unique(np.concatenate([self.context, path]).astype(np.int64))
                seen = seen[(seen >= 0) & (seen < scores.shape[-1])]
                idx = torch.from_numpy(seen)
                vals = scores[row, idx]
                scores[row, idx] = torch.where(
                    vals < 0, vals * p.repetition_penalty, vals / p.repetition_penalty
                )
        if extra is not None:
            scores = self._hf_stage(extra.penalty, scores, row_ids)  # a user's penalty in the built-in's place
            scores = self._hf_stage(extra.before_warpers, scores, row_ids)
        if p.do_sample:
            scores = self._warp(scores)
            if extra is not None:
                scores = self._hf_stage(extra.after_warpers, scores, row_ids)
        if extra is not None:
            scores = self._hf_stage(extra.final, scores, row_ids)
        return scores

    def _warp(self, scores: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p.temperature != 1.0:
            scores = scores / p.temperature
        if p.top_k is not None and p.top_k < scores.shape[-1]:
            kth = torch.topk(scores, p.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if p.top_p is not None and p.top_p < 1.0:
            sorted_scores, sorted_idx = torch.sort(scores, descending=False, dim=-1)
            cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
            remove_sorted = cumulative <= (1 - p.top_p)
            remove_sorted[..., -1] = False  # always keep the most likely token
            remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
            scores = scores.masked_fill(remove, float("-inf"))
        if p.min_p is not None and p.min_p > 0:
            probs = scores.softmax(dim=-1)
            threshold = p.min_p * probs.max(dim=-1, keepdim=True).values
            scores = scores.masked_fill(probs < threshold, float("-inf"))
        return scores

    @staticmethod
    def _hf_stage(processors: tuple, scores: torch.Tensor, row_ids: list[torch.Tensor]) -> torch.Tensor:
        """Hugging Face processors, row by row: each row sees its own sequence ``row_ids[row]`` [1, L]."""
        if not processors:
            return scores
        rows = []
        for row, ids in enumerate(row_ids):
            out = scores[row : row + 1]
            for processor in processors:
                out = processor(ids, out)
                if not isinstance(out, torch.Tensor) or out.shape != (1, scores.shape[-1]):
                    from .errors import InvalidInputError

                    raise InvalidInputError(
                        f"the logits processor {type(processor).__name__} returned "
                        f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__} for scores "
                        f"of shape (1, {scores.shape[-1]}); a processor must return scores of the shape it got"
                    )
            rows.append(out.to(torch.float64))
        return torch.cat(rows)

    def probs(self, logits: torch.Tensor, paths: list[np.ndarray]) -> torch.Tensor:
        """Sampling distributions, float64 [m, V]."""
        return self(logits, paths).softmax(dim=-1)


def sample_from_probs(probs: torch.Tensor, uniform: float) -> int:
    """Inverse-CDF draw from a 1-D distribution with a given uniform in [0, 1).

    The same function is used by the plain sampler and the verifiers so that one
    uniform maps to the same token in both.
    """
    cdf = torch.cumsum(probs, dim=0)
    if not float(cdf[-1]) > 0:  # NaN or zero: the processors removed every token
        from .errors import InvalidInputError

        raise InvalidInputError(
            "no token is left to sample from: the logits processors (suppress_tokens, bad_words_ids, top-k, "
            "...) removed every token at this position"
        )
    target = uniform * float(cdf[-1])
    idx = int(torch.searchsorted(cdf, torch.tensor([target], dtype=cdf.dtype), right=True)[0])
    idx = min(idx, probs.shape[0] - 1)
    # Never return a zero-probability token because of rounding at the end of the CDF.
    while probs[idx] <= 0 and idx > 0:
        idx -= 1
    return idx
