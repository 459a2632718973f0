"""What the benchmark runs: draftkit decoders and the peers users pick instead.

Every method answers one question the same way: given prompt ids and generation
settings, which new tokens came out, how long did it take, and (when known) how
many target steps were needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = ["GenSettings", "RunResult", "Method", "DraftkitMethod", "PlainMethod", "HFMethod"]


@dataclass(frozen=True)
class GenSettings:
    max_new_tokens: int = 128
    stop_strings: tuple[str, ...] = ()
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class RunResult:
    new_tokens: list[int]
    wall_time: float
    steps: int | None = None  #: target forward passes; None when the method does not say
    drafted: int | None = None
    accepted: int | None = None
    accept_lengths: list[int] | None = None
    time_draft: float | None = None
    time_verify: float | None = None
    time_other: float | None = None


class Method(Protocol):
    name: str
    #: "baseline" (plain decoding), "draftkit" (a draftkit source) or "peer".
    kind: str

    def run(self, input_ids: torch.Tensor, settings: GenSettings) -> RunResult: ...


def _draftkit_kwargs(settings: GenSettings, tokenizer: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens}
    if settings.stop_strings:
        kwargs.update(stop_strings=list(settings.stop_strings), tokenizer=tokenizer)
    if settings.do_sample:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed)
    return kwargs


def _from_output(out: Any, prompt_len: int, wall: float) -> RunResult:
    s = out.stats
    return RunResult(
        new_tokens=out.sequences[0, prompt_len:].tolist(),
        wall_time=wall,
        steps=s.steps,
        drafted=s.drafted,
        accepted=s.accepted,
        accept_lengths=list(s.accept_lengths),
        time_draft=s.time_draft,
        time_verify=s.time_verify + s.time_prefill,
        time_other=s.time_other,
    )


@dataclass
class PlainMethod:
    """draftkit's own plain autoregressive loop."""

    decoder: Any
    tokenizer: Any
    name: str = "plain"
    kind: str = "baseline"

    def run(self, input_ids: torch.Tensor, settings: GenSettings) -> RunResult:
        t0 = time.perf_counter()
        out = self.decoder.generate(input_ids, **_draftkit_kwargs(settings, self.tokenizer))
        return _from_output(out, input_ids.shape[1], time.perf_counter() - t0)


@dataclass
class DraftkitMethod:
    """A :class:`~draftkit.SpeculativeDecoder` built around one source."""

    decoder: Any
    tokenizer: Any
    name: str
    kind: str = "draftkit"

    def run(self, input_ids: torch.Tensor, settings: GenSettings) -> RunResult:
        t0 = time.perf_counter()
        out = self.decoder.generate(input_ids, **_draftkit_kwargs(settings, self.tokenizer))
        return _from_output(out, input_ids.shape[1], time.perf_counter() - t0)


@dataclass
class HFMethod:
    """Hugging Face ``model.generate`` with extra arguments (prompt lookup, assistant model)."""

    model: Any
    tokenizer: Any
    name: str
    extra: dict[str, Any]
    kind: str = "peer"

    def run(self, input_ids: torch.Tensor, settings: GenSettings) -> RunResult:
        kwargs: dict[str, Any] = dict(
            max_new_tokens=settings.max_new_tokens,
            attention_mask=torch.ones_like(input_ids),
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
            **self.extra,
        )
        if settings.stop_strings and "assistant_model" in self.extra:
            # HF forwards `stop_strings` to the assistant's own generate() without the
            # tokenizer and fails; the same criterion given as an object stays with the target.
            from transformers import StoppingCriteriaList, StopStringCriteria

            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [StopStringCriteria(self.tokenizer, list(settings.stop_strings))])
        elif settings.stop_strings:
            kwargs.update(stop_strings=list(settings.stop_strings), tokenizer=self.tokenizer)
        if settings.do_sample:
            torch.manual_seed(settings.seed)
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids, **kwargs)
        wall = time.perf_counter() - t0
        return RunResult(new_tokens=out[0, input_ids.shape[1]:].tolist(), wall_time=wall)
