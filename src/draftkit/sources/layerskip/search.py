"""Find a model's skip set by Bayesian optimisation of measured decoding speed.

Draft & Verify searches the 2L attention / MLP switches of an L-layer model with
a Gaussian-process Bayesian optimiser: each switch is a continuous ``x`` in
[0, 1], the sub-block is skipped when ``x > 0.5``, and the objective is the
*measured* speed of self-speculative greedy decoding on a few calibration
prompts. Measuring speed (rather than, say, draft acceptance) weighs what a
skipped sub-block saves against the acceptance it costs on the actual machine,
which is why the result is specific to a model *and* a device.

This module drives the optimiser of the maintained ``bayesian-optimization``
package (``pip install bayesian-optimization``; an optional dependency of
draftkit) in ask / tell fashion:

* the objective is the speed-up over plain decoding measured at the start
  (tokens/s of layer-skip decoding / tokens/s of plain decoding, same prompts);
* the first trials are known-good sets (middle bands of several widths, attention
  only, MLP only), so a short search is never worse than the default;
* a suggestion whose switches round to an already measured set is told the known
  value without measuring again; after a few such repeats the search measures an
  unmeasured neighbour of the best set (one switch flipped) instead, so the
  budget goes to new sets;
* after every trial the state (all trials, the baseline speed) is written to a
  JSON file; ``resume_from`` continues from such a file, refusing one made for
  another model or other prompts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import CorruptDataFileError, InvalidInputError, MismatchedDataFileError
from .discover import find_layout
from .skipset import DEFAULT_BAND, ModelFingerprint, SkipSet

__all__ = ["search_skip_set", "SearchResult", "Trial", "seed_sets", "STATE_FORMAT"]

STATE_FORMAT = "draftkit-layerskip-search"
_STATE_VERSION = 1
#: Consecutive suggestions of already measured sets before a neighbour of the best is tried.
_MAX_REPEATS = 3
#: Iterations when neither an iteration nor a time budget is given.
DEFAULT_ITERATIONS = 50


@dataclass(frozen=True)
class Trial:
    """One measured (or recalled) point of the search."""

    x: tuple[float, ...]  #: the 2L switches as suggested
    attention: tuple[int, ...]  #: layers whose attention is skipped (x > 0.5)
    mlp: tuple[int, ...]
    speedup: float  #: tokens/s over the baseline's tokens/s
    tokens_per_second: float
    mean_accepted_tokens: float
    origin: str  #: "seed", "bayes", "neighbour" or "repeat" (value recalled, not measured)

    def as_dict(self) -> dict[str, Any]:
        return {
            "x": list(self.x),
            "attention": list(self.attention),
            "mlp": list(self.mlp),
            "speedup": self.speedup,
            "tokens_per_second": self.tokens_per_second,
            "mean_accepted_tokens": self.mean_accepted_tokens,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trial:
        return cls(
            x=tuple(round(float(v), 6) for v in d["x"]),
            attention=tuple(int(v) for v in d["attention"]),
            mlp=tuple(int(v) for v in d["mlp"]),
            speedup=float(d["speedup"]),
            tokens_per_second=float(d["tokens_per_second"]),
            mean_accepted_tokens=float(d["mean_accepted_tokens"]),
            origin=str(d.get("origin", "bayes")),
        )


@dataclass(frozen=True)
class SearchResult:
    """The best skip set found and how it compares with plain decoding."""

    skip_set: SkipSet  #: records the model and the figures below in ``skip_set.search``
    speedup: float  #: tokens/s of layer-skip decoding / tokens/s of plain decoding
    tokens_per_second: float
    baseline_tokens_per_second: float
    mean_accepted_tokens: float  #: tokens per target forward (plain decoding = 1.0)
    trials: int  #: trials in the state (resumed ones included)
    measured: int  #: sets measured by this call
    seconds: float  #: wall-clock time of this call
    state_path: Path | None


# -- measuring ----------------------------------------------------------------------------------


def _as_prompt(p: Any) -> torch.Tensor:
    t = p if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p, dtype=np.int64))
    t = t.reshape(-1).to(torch.long)
    if t.numel() == 0:
        raise InvalidInputError("a calibration prompt is empty; give at least one token per prompt")
    return t[None]


@dataclass(frozen=True)
class _Measure:
    tokens_per_second: float
    mean_accepted_tokens: float


#: Clocks a trial can be timed with: wall-clock latency, or the CPU time of this process.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _measure(decoder: Any, prompts: Sequence[torch.Tensor], max_new_tokens: int, clock: str = "wall") -> _Measure:
    now = CLOCKS[clock]
    emitted = 0
    steps = 0
    seconds = 0.0
    for prompt in prompts:
        t0 = now()
        out = decoder.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False)
        seconds += now() - t0
        emitted += out.stats.emitted
        steps += out.stats.steps
    tps = emitted / seconds if seconds > 0 else 0.0
    return _Measure(tps, emitted / steps if steps else 0.0)


def seed_sets(num_layers: int) -> list[SkipSet]:
    """Known-good starting points: middle bands of a few widths, attention-only and MLP-only."""
    band = SkipSet.middle_band(num_layers, DEFAULT_BAND)
    out = [band]
    for fraction in (0.3, 0.6):
        out.append(SkipSet.middle_band(num_layers, fraction))
    out.append(SkipSet(num_layers, band.attention, frozenset()))
    out.append(SkipSet(num_layers, frozenset(), band.mlp))
    wide = SkipSet.middle_band(num_layers, 0.6)
    out.append(SkipSet(num_layers, wide.attention, band.mlp))
    # Too few layers for a band (1-2): start from the middle layer's MLP alone.
    out.append(SkipSet(num_layers, frozenset(), frozenset({num_layers // 2})))
    unique: dict[Any, SkipSet] = {}
    for s in out:
        if s.skipped:
            unique.setdefault(s.key, s)
    return list(unique.values())


# -- state file ---------------------------------------------------------------------------------


def _prompts_digest(prompts: Sequence[torch.Tensor], max_new_tokens: int) -> str:
    h = hashlib.sha256(f"{max_new_tokens}:".encode())
    for p in prompts:
        h.update(p.reshape(-1).numpy().astype(np.int64).tobytes())
        h.update(b"|")
    return "sha256:" + h.hexdigest()


def _load_state(path: Path, fingerprint: ModelFingerprint, digest: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorruptDataFileError(f"search state {str(path)!r} is not valid JSON ({exc}); delete it to start over") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != _STATE_VERSION:
        raise CorruptDataFileError(
            f"{str(path)!r} is not a draftkit layer-skip search state (version {_STATE_VERSION}); "
            "pass another resume_from path or delete the file"
        )
    try:
        theirs = ModelFingerprint.from_dict(state["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptDataFileError(f"search state {str(path)!r} is malformed ({exc})") from exc
    why = theirs.mismatch(fingerprint)
    if why:
        raise MismatchedDataFileError(
            f"search state {str(path)!r} belongs to another model ({why}); use a new state file for this model"
        )
    if state.get("prompts") != digest:
        raise MismatchedDataFileError(
            f"search state {str(path)!r} was measured on other calibration prompts or another "
            "max_new_tokens; resume with the same ones, or use a new state file"
        )
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (a crash mid-write keeps the previous state), one trial per line."""
    head = json.dumps({k: v for k, v in state.items() if k != "trials"}, indent=1)
    trials = ",\n".join("  " + json.dumps(t) for t in state.get("trials", ()))
    text = head[: head.rindex("}")].rstrip() + ',\n "trials": [\n' + trials + "\n ]\n}\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# -- the search ---------------------------------------------------------------------------------


def _rounded(x: np.ndarray) -> tuple[float, ...]:
    """Switch values as stored in the state file (6 decimals), so a resumed search
    registers exactly the points it measured."""
    return tuple(round(float(v), 6) for v in x)


def _param_names(num_layers: int) -> list[str]:
    width = len(str(num_layers - 1))
    return [f"a{i:0{width}d}" for i in range(num_layers)] + [f"m{i:0{width}d}" for i in range(num_layers)]


def search_skip_set(
    model: torch.nn.Module,
    prompts: Sequence[Any],
    *,
    budget_iterations: int | None = None,
    budget_seconds: float | None = None,
    resume_from: str | Path | None = None,
    state_path: str | Path | None = None,
    progress: bool = True,
    max_new_tokens: int = 32,
    seed: int = 0,
    initial_sets: Sequence[SkipSet] | None = None,
    source_options: dict[str, Any] | None = None,
    tree: str = "chain",
    confirm: bool = True,
    clock: str = "wall",
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Search the skip set that makes self-speculative greedy decoding of ``model`` fastest.

    ``prompts``: a handful (the paper uses 8) of calibration prompts as token-id
    sequences; each is decoded for ``max_new_tokens`` tokens per trial.
    Budget: ``budget_iterations`` new trials and/or ``budget_seconds`` of wall
    clock (the search stops at the first reached; 50 iterations if neither is
    given). A trial that starts in time is finished, so the time budget can be
    overrun by one trial.
    ``resume_from``: a state file to continue from (it is created if missing);
    ``state_path``: where to write the state after every trial (defaults to
    ``resume_from``). ``initial_sets`` replace the default seeds
    (:func:`seed_sets`). ``source_options`` are passed to every trial's
    :class:`LayerSkip` (e.g. ``max_draft``); ``confirm`` re-measures the best set
    and plain decoding back to back at the end, so the reported speed-up compares
    measurements taken under the same machine load. ``clock="wall"`` (default)
    times trials by wall clock, the paper's objective; ``clock="cpu"`` uses this
    process's CPU time, far less noisy on a machine shared with other jobs (it
    ignores time spent waiting for a core) and a good proxy for latency when torch
    runs on one thread.

    Returns the best set (recording the model and the search figures) and its
    speed-up; save it with ``result.skip_set.save(path)``.
    """
    try:
        from bayes_opt import BayesianOptimization
    except ImportError:
        raise ImportError(
            "the layer-skip search needs the 'bayesian-optimization' package: pip install bayesian-optimization"
        ) from None
    from ...engine import PlainDecoder, SpeculativeDecoder
    from .source import LayerSkip

    t_start = time.perf_counter()
    if clock not in CLOCKS:
        raise InvalidInputError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if budget_iterations is None and budget_seconds is None:
        budget_iterations = DEFAULT_ITERATIONS
    if budget_iterations is not None and budget_iterations < 0:
        raise InvalidInputError(f"budget_iterations must be >= 0, got {budget_iterations}")
    if budget_seconds is not None and budget_seconds < 0:
        raise InvalidInputError(f"budget_seconds must be >= 0, got {budget_seconds}")
    calib = [_as_prompt(p) for p in prompts]
    if not calib:
        raise InvalidInputError("search_skip_set needs at least one calibration prompt")
    say = log if log is not None else (lambda msg: None)
    num_layers = find_layout(model).num_layers
    fingerprint = ModelFingerprint.of(model)
    digest = _prompts_digest(calib, max_new_tokens)
    options = dict(source_options or {})
    options.pop("skip_set", None)

    def speculative(skip: SkipSet) -> Any:
        return SpeculativeDecoder(model, source=LayerSkip(skip, **options), tree=tree)

    resume_path = Path(resume_from) if resume_from is not None else None
    out_path = Path(state_path) if state_path is not None else resume_path
    state = _load_state(resume_path, fingerprint, digest) if resume_path is not None else None
    plain = PlainDecoder(model)
    if state is None:
        _measure(plain, calib[:1], min(max_new_tokens, 4), clock)  # warm-up: lazy inits, allocator
        base = _measure(plain, calib, max_new_tokens, clock)
        say(f"plain decoding: {base.tokens_per_second:.1f} tokens/s")
        state = {
            "format": STATE_FORMAT,
            "version": _STATE_VERSION,
            "model": fingerprint.as_dict(),
            "prompts": digest,
            "num_prompts": len(calib),
            "max_new_tokens": max_new_tokens,
            "clock": clock,
            "baseline_tokens_per_second": base.tokens_per_second,
            "seconds": 0.0,
            "trials": [],
        }
    elif state.get("clock", "wall") != clock:
        raise MismatchedDataFileError(
            f"search state {str(resume_path)!r} timed trials with clock={state.get('clock')!r}; resume "
            f"with the same clock (not {clock!r}) or use a new state file"
        )
    baseline_tps = float(state["baseline_tokens_per_second"])
    if baseline_tps <= 0:
        raise CorruptDataFileError("the search state has no valid baseline speed; delete it to start over")
    trials = [Trial.from_dict(d) for d in state["trials"]]

    names = _param_names(num_layers)
    optimizer = BayesianOptimization(
        f=None,
        pbounds={n: (0.0, 1.0) for n in names},
        random_state=seed,
        verbose=0,
        allow_duplicate_points=True,
    )
    known: dict[Any, Trial] = {}
    registered: set[tuple[float, ...]] = set()

    def tell(trial: Trial) -> None:
        # bayes_opt accepts (and prints a warning for) an x registered twice; the
        # first value stands for it, so a repeated x is simply not told again.
        if trial.x not in registered:
            registered.add(trial.x)
            optimizer.register(params=dict(zip(names, trial.x, strict=True)), target=trial.speedup)
        if trial.origin != "repeat":
            known.setdefault((trial.attention, trial.mlp), trial)

    for t in trials:
        tell(t)
    queue: list[tuple[np.ndarray, str]] = [
        (s.to_vector(), "seed") for s in (initial_sets if initial_sets is not None else seed_sets(num_layers))
    ]
    rng = np.random.default_rng(seed + len(trials))

    def best_trial() -> Trial | None:
        return max(known.values(), key=lambda t: t.speedup) if known else None

    def out_of_budget(done: int) -> bool:
        if budget_iterations is not None and done >= budget_iterations:
            return True
        return budget_seconds is not None and time.perf_counter() - t_start >= budget_seconds

    def neighbour() -> np.ndarray:
        best = best_trial()
        start = best_set(best) if best is not None else SkipSet.middle_band(num_layers)
        for _ in range(8 * num_layers):
            x = start.to_vector()
            j = int(rng.integers(2 * num_layers))
            x[j] = 1.0 - x[j]
            if SkipSet.from_vector(x, num_layers).key not in known:
                return x
        return rng.random(2 * num_layers)

    def best_set(t: Trial) -> SkipSet:
        return SkipSet(num_layers, frozenset(t.attention), frozenset(t.mlp))

    from tqdm.auto import tqdm

    bar = tqdm(
        total=budget_iterations,
        disable=not progress,
        unit="trial",
        desc="layerskip search",
        dynamic_ncols=True,
    )
    prior_seconds = float(state.get("seconds", 0.0))
    space = 4**num_layers  # distinct skip sets
    done = 0
    repeats = 0
    idle = 0  # consecutive loops without a measurement
    try:
        while not out_of_budget(done) or (done == 0 and not known):
            if len(known) >= space or idle > 50 * _MAX_REPEATS:
                say("every skip set the optimiser proposes has been measured; stopping early")
                break
            origin = "bayes"
            if queue:
                x, origin = queue.pop(0)
            elif repeats >= _MAX_REPEATS:
                x, origin = neighbour(), "neighbour"
                repeats = 0
            else:
                params = optimizer.suggest()
                x = np.asarray([float(params[n]) for n in names])
            skip = SkipSet.from_vector(x, num_layers)
            seen = known.get(skip.key)
            if seen is not None:
                # Tell the optimiser the known value at this x; no measurement, no budget used.
                tell(Trial(_rounded(x), seen.attention, seen.mlp, seen.speedup,
                           seen.tokens_per_second, seen.mean_accepted_tokens, "repeat"))
                repeats += 1 if origin == "bayes" else 0
                idle += 1
                continue
            repeats = idle = 0
            m = _measure(speculative(skip), calib, max_new_tokens, clock)
            trial = Trial(
                _rounded(x),
                *skip.key,
                speedup=m.tokens_per_second / baseline_tps,
                tokens_per_second=m.tokens_per_second,
                mean_accepted_tokens=m.mean_accepted_tokens,
                origin=origin,
            )
            trials.append(trial)
            tell(trial)
            done += 1
            best = best_trial()
            bar.update(1)
            bar.set_postfix(best=f"{best.speedup:.3f}x", last=f"{trial.speedup:.3f}x", refresh=False)
            if out_path is not None:
                state["trials"] = [t.as_dict() for t in trials]
                state["seconds"] = prior_seconds + time.perf_counter() - t_start
                _save_state(out_path, state)
    finally:
        bar.close()

    best = best_trial()
    assert best is not None
    chosen = best_set(best)
    tps, accepted, speedup, base_tps = best.tokens_per_second, best.mean_accepted_tokens, best.speedup, baseline_tps
    if confirm:
        again_plain = _measure(plain, calib, max_new_tokens, clock)
        again = _measure(speculative(chosen), calib, max_new_tokens, clock)
        tps, accepted, base_tps = again.tokens_per_second, again.mean_accepted_tokens, again_plain.tokens_per_second
        speedup = tps / base_tps if base_tps > 0 else 0.0
    seconds = time.perf_counter() - t_start
    state["trials"] = [t.as_dict() for t in trials]
    state["seconds"] = prior_seconds + seconds
    if out_path is not None:
        _save_state(out_path, state)
    result_set = chosen.for_model(
        model,
        speedup=speedup,
        tokens_per_second=tps,
        baseline_tokens_per_second=base_tps,
        mean_accepted_tokens=accepted,
        trials=len(trials),
        search_seconds=state["seconds"],
        max_new_tokens=max_new_tokens,
        num_prompts=len(calib),
        clock=clock,
        dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
        device=str(next(model.parameters()).device),
        torch_threads=torch.get_num_threads(),
    )
    say(f"best: {chosen.describe()}: {speedup:.3f}x plain, {accepted:.2f} tokens/step")
    return SearchResult(
        skip_set=result_set,
        speedup=speedup,
        tokens_per_second=tps,
        baseline_tokens_per_second=base_tps,
        mean_accepted_tokens=accepted,
        trials=len(trials),
        measured=done,
        seconds=seconds,
        state_path=out_path,
    )
