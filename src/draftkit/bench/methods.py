"""What the benchmark runs: draftkit decoders and the peers users pick instead.

Every method answers one question the same way: given prompt ids and generation
settings, which new tokens came out, how long did it take, and (when known) how
many target steps were needed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = ["GenSettings", "RunResult", "Method", "DraftkitMethod", "PlainMethod", "HFMethod", "OracleMethod"]


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
    #: "baseline" (plain decoding), "draftkit" (a draftkit source), "peer" or "bound" (the oracle).
    kind: str

    def run(self, input_ids: torch.Tensor, settings: GenSettings) -> RunResult: ...

    # Optional: ``fork() -> Method``, a twin with a copy of the method's learning state, used so
    # that every repeat of a prompt starts from the state the first run started from.


def _draftkit_kwargs(settings: GenSettings, tokenizer: Any) -> dict[str, Any]:
    # Explicit settings: the model's generation config (do_sample, stop_strings) must not change a benchmark.
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                              "stop_strings": list(settings.stop_strings)}
    if settings.stop_strings:
        kwargs.update(tokenizer=tokenizer)
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed)
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


def fork_decoder(decoder: Any) -> Any:
    """A copy of ``decoder`` with its own learning state (source, budget policy) and the same model.

    Repeats of a (prompt, method) pair must all start from the state the first
    run started from: an adaptive source (ADED's matrix, Token Recycling's
    table) that learnt a prompt's answer in the first run would otherwise draft
    it perfectly in the next ones, and a median over repeats would report that.
    """
    import copy

    model = decoder.model
    shared: dict[int, Any] = {id(m): m for m in model.modules()}
    shared.update({id(p): p for p in model.parameters()})
    shared.update({id(b): b for b in model.buffers()})
    tokenizer = getattr(decoder, "tokenizer", None)
    if tokenizer is not None:
        shared[id(tokenizer)] = tokenizer
    return copy.deepcopy(decoder, memo=shared)


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

    def fork(self) -> DraftkitMethod:
        """The same method with a copy of the decoder's current learning state (see :func:`fork_decoder`)."""
        return DraftkitMethod(fork_decoder(self.decoder), self.tokenizer, self.name, self.kind)


@dataclass
class OracleMethod:
    """The ceiling of every draft source: a source that drafts plain decoding's own answer.

    No user can run it (it needs the answer), but it shows how fast *any* source
    could be on this model, machine and prompt set: prefill, the verify cost of
    the trees and the engine remain. The answer is decoded untimed before each
    timed run (seeded sampling reproduces it too). ``source`` is the decoder's
    :class:`~draftkit.testing.sources.OracleSource`, given the answer per run.
    """

    decoder: Any
    plain: Any
    source: Any
    tokenizer: Any
    name: str = "oracle"
    kind: str = "bound"

    def fork(self) -> OracleMethod:
        twin = fork_decoder(self.decoder)
        return OracleMethod(twin, self.plain, twin.source, self.tokenizer, self.name, self.kind)

    def run(self, input_ids: torch.Tensor, settings: GenSettings) -> RunResult:
        kwargs = _draftkit_kwargs(settings, self.tokenizer)
        self.source.reference = self.plain.generate(input_ids, **kwargs).sequences[0].tolist()
        t0 = time.perf_counter()
        out = self.decoder.generate(input_ids, **kwargs)
        return _from_output(out, input_ids.shape[1], time.perf_counter() - t0)


def _block_stop_criterion(tokenizer: Any, stop_strings: Sequence[str], prompt_len: int) -> Any:
    """A stopping criterion that finds a stop string completed anywhere in a block.

    HF's own ``StopStringCriteria`` only looks at the end of the sequence. Prompt
    lookup and assisted generation append several tokens per step, so a stop
    string completed inside a block goes unnoticed and generation runs on into
    other text. This criterion checks every token added since its last call with
    draftkit's matcher (HF's semantics); :func:`_truncate_at_stop` then cuts the
    output after the completing token, so the peer is compared on the same text.
    """
    from transformers import StoppingCriteria

    from ..engine.stopping import StopStringMatcher

    matcher = StopStringMatcher(tokenizer, stop_strings)

    class BlockStopStrings(StoppingCriteria):
        def __init__(self) -> None:
            self.checked = prompt_len

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            seq = input_ids[0].tolist()
            done = any(matcher.completes_at(seq[: i + 1]) for i in range(self.checked, len(seq)))
            self.checked = len(seq)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return BlockStopStrings()


def _truncate_at_stop(sequence: list[int], prompt_len: int, tokenizer: Any, stop_strings: Sequence[str],
                      stop_ids: set[int]) -> list[int]:
    """The new tokens up to and including the first stop token or completed stop string."""
    from ..engine.stopping import StopStringMatcher

    matcher = StopStringMatcher(tokenizer, stop_strings) if stop_strings else None
    for i in range(prompt_len, len(sequence)):
        if sequence[i] in stop_ids or (matcher is not None and matcher.completes_at(sequence[: i + 1])):
            return sequence[prompt_len: i + 1]
    return sequence[prompt_len:]


@contextlib.contextmanager
def _quiet_generation_warnings() -> Iterator[None]:
    """Hide ``transformers.generation``'s warnings while a peer runs: assisted generation warns about
    how it calls the assistant's own ``generate`` (deprecated arguments), which is not the user's doing."""
    import logging

    logger = logging.getLogger("transformers.generation.utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class HFMethod:
    """Hugging Face ``model.generate`` with extra arguments (prompt lookup, assistant model).

    Methods that emit several tokens per step (``extra`` set) get stop strings
    checked over every emitted block and their output cut at the first stop, EOS
    included: HF checks both only at the end of a block (see
    :func:`_block_stop_criterion`). Plain ``generate`` keeps HF's own criterion,
    which is exact one token at a time.
    """

    model: Any
    tokenizer: Any
    name: str
    extra: dict[str, Any]
    kind: str = "peer"

    def run(self, input_ids: torch.Tensor, settings: GenSettings) -> RunResult:
        prompt_len = input_ids.shape[1]
        kwargs: dict[str, Any] = dict(
            max_new_tokens=settings.max_new_tokens,
            attention_mask=torch.ones_like(input_ids),
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
            **self.extra,
        )
        blocks = bool(self.extra)
        if settings.stop_strings and blocks:
            from transformers import StoppingCriteriaList

            # Also avoids HF forwarding `stop_strings` to the assistant's own generate()
            # without the tokenizer, which fails.
            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [_block_stop_criterion(self.tokenizer, settings.stop_strings, prompt_len)])
        elif settings.stop_strings:
            kwargs.update(stop_strings=list(settings.stop_strings), tokenizer=self.tokenizer)
        if settings.do_sample:
            torch.manual_seed(settings.seed)
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False)
        with _quiet_generation_warnings():
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(input_ids, **kwargs)
            wall = time.perf_counter() - t0
        sequence = out[0].tolist()
        if blocks:
            eos = self.model.generation_config.eos_token_id
            stop_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
            new_tokens = _truncate_at_stop(sequence, prompt_len, self.tokenizer, settings.stop_strings, stop_ids)
        else:
            new_tokens = sequence[prompt_len:]
        return RunResult(new_tokens=new_tokens, wall_time=wall)
