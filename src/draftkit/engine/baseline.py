"""Plain autoregressive decoding: the reference every method is checked against.

One target forward per token, the same request validation, stop conditions and
logits processing as the speculative decoder, and the same position-keyed random
stream, so that "identical to plain decoding" is a statement about the same
numbers. Tests also compare it with Hugging Face ``model.generate``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from ..logits import LogitsPipeline, sample_from_probs
from ..types import DecodeStats, GenerationOutput, TokenTree
from .record import TokenRecord
from .request import RequestPlan, check_tokenizer, plan_request
from .stream import DecoderAPI
from .target import TargetModel

__all__ = ["PlainDecoder"]


class PlainDecoder(DecoderAPI):
    """``generate`` / ``stream`` with one token per forward pass."""

    name = "plain"

    def __init__(self, model: torch.nn.Module, *, tokenizer: Any = None) -> None:
        if tokenizer is not None:
            check_tokenizer(tokenizer, "given to the decoder")
        self.model = model
        self.target = TargetModel(model)
        self.tokenizer = tokenizer

    def _run(self, input_ids: Any, max_new_tokens: int | None, **kwargs: Any) -> Generator[list[int], None, Any]:
        """Validate eagerly, then return the step generator."""
        t_start = time.perf_counter()
        plan = plan_request(self.target, input_ids, max_new_tokens, default_tokenizer=self.tokenizer, **kwargs)
        return self._steps(plan, t_start)

    def _steps(self, plan: RequestPlan, t_start: float) -> Generator[list[int], None, GenerationOutput]:
        t0 = time.perf_counter()
        # This request's own KV cache; the prompt's prefill runs inside the first step, so the
        # first token costs one forward over the prompt, as in model.generate.
        target = self.target.start(plan.prompt, defer_prefill=True)
        prompt_len = int(plan.prompt.numel())
        stats = DecodeStats(prompt_tokens=prompt_len)
        sequence: list[int] = plan.prompt.tolist()
        window = target.context_window
        stats.time_prefill = time.perf_counter() - t0
        no_path = [np.empty(0, np.int64)]
        no_draft = TokenTree.empty()
        record = TokenRecord()
        try:
            while True:
                produced = len(sequence) - prompt_len
                if window is not None and len(sequence) > window:
                    stats.finish_reason = "context"
                    break
                t0 = time.perf_counter()
                logits = target.forward_tree(sequence[-1], no_draft)
                t1 = time.perf_counter()
                stats.time_verify += t1 - t0
                process = LogitsPipeline(plan.sampling, np.asarray(sequence, dtype=np.int64))
                scores = process(logits, no_path)[0]
                if plan.sampling.do_sample:
                    token = sample_from_probs(scores.softmax(-1), plan.random.token_uniform(produced))
                else:
                    token = int(torch.argmax(scores))
                step_scores = [scores[None].to(torch.float32)] if "scores" in plan.record else None
                step_logits = [logits[0:1].to(torch.float32)] if "logits" in plan.record else None
                keep, reason = plan.stop.cut(sequence, [token], produced, record.scores_until(plan, step_scores))
                emitted = [token][:keep]
                record.add(step_scores, step_logits, keep)
                stats.steps += 1
                stats.emitted += len(emitted)
                stats.accept_lengths.append(len(emitted))
                if not reason:
                    target.commit(())
                sequence.extend(emitted)
                stats.time_other += time.perf_counter() - t1
                if emitted:
                    yield emitted
                if reason:
                    stats.finish_reason = reason
                    break
        finally:
            target.end()
        stats.time_total = time.perf_counter() - t_start
        return GenerationOutput(torch.tensor([sequence], dtype=torch.long), stats, **record.output(plan))
