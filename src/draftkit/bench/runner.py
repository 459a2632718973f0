"""Run methods side by side and summarise them.

Method: every prompt is run by every method before the next prompt starts
(interleaving spreads machine noise over all methods alike); each (prompt,
method) pair runs ``repeats`` times and its median wall time is kept. Every
repeat starts from the learning state the first run started from (methods
with a ``fork()``), so adaptive sources cannot learn an answer in one repeat
and draft it in the next. Speedup is
the median over prompts of the per-token time ratio against the faster plain
baseline (draftkit's loop or HF ``generate``, whichever was faster overall).
Greedy outputs are compared token for token with draftkit's plain baseline.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import DraftkitError, InvalidInputError
from .loops import ends_in_loop
from .methods import GenSettings, Method, RunResult
from .prompts import PromptCase

__all__ = ["BenchConfig", "PromptRun", "MethodSummary", "BenchResult", "run_benchmark", "summarise"]


@dataclass(frozen=True)
class BenchConfig:
    settings: GenSettings = GenSettings()
    repeats: int = 1
    warmup: bool = True
    reference: str = "plain"  #: method whose outputs the others must match
    #: The model's context window (None: unbounded). A prompt longer than it is skipped with a
    #: warning; one that leaves less room than ``max_new_tokens`` gets fewer new tokens, the same for
    #: every method (plain decoding stops at the window; HF ``generate`` would run past it).
    context_window: int | None = None


@dataclass
class PromptRun:
    prompt: PromptCase
    method: str
    result: RunResult  #: of the first repeat (tokens, step counters)
    wall_times: list[float]
    peak_rss_mb: float | None
    match: bool | None = None  #: greedy output identical to the reference
    first_divergence: int | None = None
    loops: bool = False
    #: the repeat whose wall time is the median (the faster middle one of an even count): its draft / verify /
    #: other split is reported, so the split adds up to the time the speedup uses (the first repeat
    #: can be a cold one: page faults of a memory-mapped datastore, caches)
    timing: RunResult | None = None

    @property
    def median_time(self) -> float:
        return statistics.median(self.wall_times)


@dataclass
class MethodSummary:
    name: str
    kind: str
    prompts: int
    new_tokens: int
    total_time: float
    tokens_per_second: float
    speedup: float | None  #: median per-prompt ratio vs the faster plain baseline
    mean_accepted_tokens: float | None  #: tokens per target step, bonus included (plain = 1.00)
    acceptance_rate: float | None
    time_draft: float | None
    time_verify: float | None
    time_other: float | None
    peak_rss_mb: float | None
    loop_share: float
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    by_category: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: median per-prompt ratio over the prompts whose baseline output does not end in a loop (None if all loop)
    speedup_no_loop: float | None = None


@dataclass
class BenchResult:
    config: BenchConfig
    baseline: str
    summaries: list[MethodSummary]
    runs: list[PromptRun]
    #: methods left out because they raised (a broken plugin source): name -> the error
    failed: dict[str, str] = field(default_factory=dict)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _run(method: Method, ids: torch.Tensor, settings: GenSettings, case: PromptCase) -> RunResult:
    """One run of ``method`` on ``case``; an input error (a prompt too long for the model) names the prompt.

    Without the id, one bad question in a prompt file of hundreds stops the
    benchmark with no way to tell which one to fix.
    """
    try:
        return method.run(ids, settings)
    except InvalidInputError as exc:
        message = f"prompt {case.id} ({method.name}): {exc}"
        try:
            renamed = type(exc)(message)
        except Exception:  # an error class with another constructor
            renamed = InvalidInputError(message)
        raise renamed from exc


def run_benchmark(
    methods: Sequence[Method],
    prompts: Sequence[PromptCase],
    encode: Callable[[str], torch.Tensor],
    config: BenchConfig,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run every method on every prompt and summarise. ``warn`` says which prompts were skipped
    and which methods failed (default: :func:`warnings.warn`).

    A method other than the reference that raises a draftkit error which is not about the input
    (a broken plugin source, a contract violation) is left out, said so, and the others go on:
    one bad third-party source must not cost a long benchmark. Input errors (a prompt the model
    cannot take) stop it, naming the prompt.
    """
    from tqdm.auto import tqdm

    say = warn or (lambda message: warnings.warn(message, stacklevel=3))
    encoded = [encode(p.text) for p in prompts]
    prompts, encoded = _fitting(prompts, encoded, config.context_window, say)
    failed: dict[str, str] = {}

    def leave_out(m: Method, exc: DraftkitError, where: str) -> None:
        if isinstance(exc, InvalidInputError) or m.name == config.reference:
            raise exc
        failed[m.name] = f"{type(exc).__name__}: {exc}"
        say(f"{m.name} failed {where} and is left out of the results: {failed[m.name]}")

    if config.warmup and prompts:
        room = _room(min(8, config.settings.max_new_tokens), int(encoded[0].shape[-1]), config.context_window)
        warm = GenSettings(max_new_tokens=room)
        for m in methods:
            try:
                _run(m, encoded[0], warm, prompts[0])
            except DraftkitError as exc:
                leave_out(m, exc, f"in the warm-up (prompt {prompts[0].id})")
    runs: list[PromptRun] = []
    total = len(prompts) * len(methods) * config.repeats
    bar = tqdm(total=total, desc="bench", unit="run", disable=not progress, dynamic_ncols=True)
    for case, ids in zip(prompts, encoded, strict=True):
        settings = GenSettings(
            max_new_tokens=_room(config.settings.max_new_tokens, int(ids.shape[-1]), config.context_window),
            stop_strings=case.stop_strings,
            do_sample=config.settings.do_sample,
            temperature=config.settings.temperature,
            top_p=config.settings.top_p,
            seed=config.settings.seed,
        )
        for m in methods:
            if m.name in failed:
                bar.update(config.repeats)
                continue
            bar.set_postfix_str(f"{m.name} {case.id}")
            times: list[float] = []
            results: list[RunResult] = []
            tracking = _reset_peak_rss()
            # Repeats start from the state the first run started from (an adaptive source must not
            # learn the answer in one repeat and draft it in the next); the first run's state goes on.
            fork = getattr(m, "fork", None)
            snapshot = None
            if fork is not None and config.repeats > 1:
                try:
                    snapshot = fork()
                except Exception as exc:  # e.g. a plugin source holding an uncopyable handle
                    warnings.warn(f"{m.name}: its state cannot be copied ({type(exc).__name__}: {exc}); "
                                  "its repeats run on the live state and may learn from each other",
                                  stacklevel=2)
            try:
                for r in range(config.repeats):
                    runner = m if r == 0 or snapshot is None else (snapshot if r == config.repeats - 1 else snapshot.fork())
                    res = _run(runner, ids, settings, case)
                    times.append(res.wall_time)
                    results.append(res)
                    bar.update(1)
            except DraftkitError as exc:
                leave_out(m, exc, f"on prompt {case.id}")
                bar.update(config.repeats - len(results))
                continue
            first = results[0]
            at_median = sorted(range(len(times)), key=times.__getitem__)[(len(times) - 1) // 2]
            runs.append(PromptRun(case, m.name, first, times, _peak_rss_mb() if tracking else None,
                                  loops=ends_in_loop(first.new_tokens), timing=results[at_median]))
    bar.close()
    runs = [r for r in runs if r.method not in failed]
    reference = {r.prompt.id: r.result.new_tokens for r in runs if r.method == config.reference}
    for r in runs:
        ref = reference.get(r.prompt.id)
        if ref is not None and r.method != config.reference:
            div = _first_divergence(r.result.new_tokens, ref)
            r.match, r.first_divergence = div is None, div
    result = summarise([m for m in methods if m.name not in failed], runs, config)
    result.failed.update(failed)
    return result


def _room(max_new_tokens: int, prompt_length: int, window: int | None) -> int:
    """New tokens a prompt has room for: the last token needs no position, so a sequence may reach
    ``window + 1`` tokens (what plain decoding produces before it stops at the window)."""
    return max_new_tokens if window is None else max(1, min(max_new_tokens, window + 1 - prompt_length))


def _fitting(prompts: Sequence[PromptCase], encoded: list[torch.Tensor], window: int | None,
             warn: Callable[[str], None]) -> tuple[list[PromptCase], list[torch.Tensor]]:
    """The prompts that fit the context window, and a warning naming the others."""
    if window is None:
        return list(prompts), encoded
    keep = [i for i, ids in enumerate(encoded) if int(ids.shape[-1]) <= window]
    if len(keep) < len(prompts):
        kept = set(keep)
        dropped = [prompts[i].id for i in range(len(prompts)) if i not in kept]
        if not keep:
            raise InvalidInputError(f"every prompt is longer than the model's context window ({window} tokens); "
                                    "use shorter prompts (--prompts) or a model with a longer context")
        warn(f"skipping {len(dropped)} of {len(prompts)} prompts longer than the model's context window "
             f"({window} tokens): {', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}")
    return [prompts[i] for i in keep], [encoded[i] for i in keep]


def _ratio_median(num: dict[str, float], den: dict[str, float]) -> float | None:
    ratios = [num[k] / den[k] for k in num if k in den and den[k] > 0]
    return statistics.median(ratios) if ratios else None


def _summarise_runs(name: str, kind: str, runs: list[PromptRun], base_tpt: dict[str, float],
                    greedy: bool, base_loops: frozenset[str] = frozenset()) -> MethodSummary:
    tokens = sum(len(r.result.new_tokens) for r in runs)
    total_time = sum(r.median_time for r in runs)
    tpt = {r.prompt.id: r.median_time / max(1, len(r.result.new_tokens)) for r in runs}
    steps = [r.result.steps for r in runs]
    known = all(s is not None for s in steps) and runs
    mat = acc = None
    split: list[float | None] = [None, None, None]
    if known:
        total_steps = sum(s for s in steps if s is not None)
        mat = tokens / total_steps if total_steps else None
        drafted = sum(r.result.drafted or 0 for r in runs)
        accepted = sum(r.result.accepted or 0 for r in runs)
        acc = accepted / drafted if drafted else None
        split = [sum(getattr(r.timing or r.result, f) or 0.0 for r in runs)
                 for f in ("time_draft", "time_verify", "time_other")]
    rss = [r.peak_rss_mb for r in runs if r.peak_rss_mb is not None]
    mismatches = [
        {"prompt": r.prompt.id, "first_divergent_position": r.first_divergence}
        for r in runs if greedy and r.match is False
    ]
    return MethodSummary(
        name=name,
        kind=kind,
        prompts=len(runs),
        new_tokens=tokens,
        total_time=total_time,
        tokens_per_second=tokens / total_time if total_time else 0.0,
        speedup=_ratio_median(base_tpt, tpt),
        mean_accepted_tokens=mat,
        acceptance_rate=acc,
        time_draft=split[0],
        time_verify=split[1],
        time_other=split[2],
        peak_rss_mb=max(rss) if rss else None,
        loop_share=sum(r.loops for r in runs) / len(runs) if runs else 0.0,
        speedup_no_loop=_ratio_median({k: v for k, v in base_tpt.items() if k not in base_loops}, tpt),
        mismatches=mismatches,
    )


def summarise(methods: Sequence[Method], runs: list[PromptRun], config: BenchConfig) -> BenchResult:
    by_method: dict[str, list[PromptRun]] = {m.name: [] for m in methods}
    for r in runs:
        by_method[r.method].append(r)
    baselines = [m.name for m in methods if m.kind == "baseline" or m.name == "hf"]
    if not baselines:
        baselines = [methods[0].name]
    baseline = min(baselines, key=lambda n: sum(r.median_time for r in by_method[n]))
    greedy = not config.settings.do_sample
    # Loops are judged on the baseline's output, so every method's no-loop median covers the same
    # prompts (with sampling, each method's own answers differ).
    base_loops = frozenset(r.prompt.id for r in by_method[baseline] if r.loops)
    summaries = []
    for m in methods:
        mruns = by_method[m.name]
        base_tpt = {r.prompt.id: r.median_time / max(1, len(r.result.new_tokens)) for r in by_method[baseline]}
        summary = _summarise_runs(m.name, m.kind, mruns, base_tpt, greedy, base_loops)
        for cat in sorted({r.prompt.category for r in mruns}):
            sub = _summarise_runs(m.name, m.kind, [r for r in mruns if r.prompt.category == cat], base_tpt, greedy,
                                  base_loops)
            summary.by_category[cat] = {
                "speedup": sub.speedup,
                "speedup_no_loop": sub.speedup_no_loop,
                "tokens_per_second": sub.tokens_per_second,
                "mean_accepted_tokens": sub.mean_accepted_tokens,
                "loop_share": sub.loop_share,
            }
        summaries.append(summary)
    return BenchResult(config, baseline, summaries, runs)
