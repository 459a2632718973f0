"""Train draftkit's demo models: ``python -m draftkit.demo.train --out WORK_DIR``.

What it does, in order, all inside one wall-clock budget:

1. reads the standard library (:mod:`draftkit.demo.corpus`), trains the
   tokenizer (:mod:`draftkit.demo.tokenizer`) and tokenises both splits once,
   caching everything in the work dir;
2. trains the *target* Llama, then the *draft* Llama, on random windows of the
   training token stream (AdamW, warmup + cosine decay, bf16 autocast,
   gradient clipping), checkpointing every few minutes;
3. evaluates each on the held-out files (loss, bits per character), saves it
   in float32 with the tokenizer and a model card, and finally copies both
   folders into ``src/draftkit/demo/models/``.

Why the schedule is planned from a measured throughput: the models are
compute-bound, and a cosine schedule only helps if it actually reaches its end.
So each phase first times a few real steps, then fixes the number of steps its
share of the budget allows (refined at checkpoints during the first 80%), and
decays the learning rate over exactly those steps.

Why checkpoints hold everything (weights, optimizer, step, plan, RNG states,
elapsed time): ``--resume`` must continue the same run, not start a similar one;
a killed job loses at most one checkpoint interval.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = [
    "DRAFT_SPEC",
    "TARGET_SPEC",
    "ModelSpec",
    "PipelineConfig",
    "TrainState",
    "build_model",
    "evaluate",
    "lr_at",
    "main",
    "prepare_data",
    "run_pipeline",
    "train_model",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and optimisation settings of one model.

    ``seq_len`` x ``batch_size`` tokens make one optimizer step. Embeddings are
    tied: with a ~8k vocabulary the embedding is a large share of a tiny model,
    and tying it halves that cost.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    seq_len: int
    batch_size: int
    peak_lr: float
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size

    def llama_config(self, vocab_size: int, special_id: int) -> LlamaConfig:
        """The transformers config; ``special_id`` is ``<|endoftext|>`` (BOS, EOS and PAD)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta,
            tie_word_embeddings=True,
            bos_token_id=special_id,
            eos_token_id=special_id,
            pad_token_id=special_id,
            attention_bias=False,
            mlp_bias=False,
            hidden_act="silu",
            rms_norm_eps=1e-5,
            initializer_range=0.02,
            use_cache=True,
        )


#: The target: 6 layers of width 256 (~7.2M parameters with an 8192 vocabulary).
#: Measured on one core of this project's CPU (bf16 autocast, torch.compile):
#: ~3,000 tokens/s, versus ~2,000 for 8 layers; 6 layers keep enough depth for
#: layer-skipping experiments while seeing ~1.5x more tokens in the budget.
TARGET_SPEC = ModelSpec(
    name="target",
    hidden_size=256,
    num_layers=6,
    num_heads=4,
    intermediate_size=768,
    seq_len=512,
    batch_size=8,
    peak_lr=2e-3,
    warmup_steps=100,
)

#: The draft: 2 layers of width 128 (~1.5M parameters), several times faster than the target.
DRAFT_SPEC = ModelSpec(
    name="draft",
    hidden_size=128,
    num_layers=2,
    num_heads=2,
    intermediate_size=384,
    seq_len=512,
    batch_size=8,
    peak_lr=3e-3,
    warmup_steps=100,
)


def lr_at(step: int, planned_steps: int, spec: ModelSpec) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a ``planned_steps`` run.

    Linear warmup, then cosine decay from ``peak_lr`` to ``min_lr_ratio * peak_lr``
    reached exactly at the last planned step. Warmup is shortened for very
    short runs so that it never takes more than a tenth of them.
    """
    warmup = max(1, min(spec.warmup_steps, planned_steps // 10))
    peak = spec.peak_lr
    floor = peak * spec.min_lr_ratio
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, planned_steps - 1 - warmup))
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainState:
    """Progress of one model's training, saved in its checkpoint.

    ``planned_steps`` is 0 until the throughput has been measured;
    ``elapsed_seconds`` counts wall time spent in this phase over all runs.
    """

    step: int = 0
    planned_steps: int = 0
    tokens_seen: int = 0
    elapsed_seconds: float = 0.0
    budget_seconds: float = 0.0
    tokens_per_second: float = 0.0
    last_loss: float = float("nan")
    finished: bool = False
    resumed_times: int = 0
    init_from: str = ""
    init_tokens_seen: int = 0
    init_seconds: float = 0.0


def _initialise_from(
    model: LlamaForCausalLM, spec: ModelSpec, folder: Path, state: TrainState, log: Log
) -> TrainState:
    """Load the weights of a saved model folder into ``model``; return the state carrying its history.

    The folder must hold a model of exactly ``spec``'s architecture: continuing
    from another shape would silently train a different model.
    """
    from safetensors.torch import load_file

    weights_path = folder / "model.safetensors"
    if not weights_path.is_file():
        raise FileNotFoundError(f"{folder} holds no model.safetensors to continue from")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    expected = spec.llama_config(model.config.vocab_size, model.config.eos_token_id)
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        if config.get(key) != getattr(expected, key):
            raise RuntimeError(
                f"cannot continue {spec.name} from {folder}: its {key} is {config.get(key)}, "
                f"the {spec.name} spec has {getattr(expected, key)}"
            )
    weights = load_file(str(weights_path))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # Tied embeddings: safetensors stores the shared tensor once, under one name.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(
            f"{folder} does not match the {spec.name} model: missing {missing}, unexpected {unexpected}"
        )
    model.tie_weights()
    history_path = folder / "training.json"
    history = json.loads(history_path.read_text(encoding="utf-8")) if history_path.is_file() else {}
    if not history:
        log(f"[{spec.name}] {folder} has no training.json: tokens seen before are unknown, counted as 0")
    tokens_before = int(history.get("tokens_seen", 0))
    seconds_before = float(history.get("total_train_seconds", history.get("train_seconds", 0.0)))
    log(
        f"[{spec.name}] continuing from {folder} ({tokens_before:,} tokens seen before); "
        f"new schedule with peak lr {spec.peak_lr:g}"
    )
    return replace(
        state,
        tokens_seen=tokens_before,
        init_from=str(folder),
        init_tokens_seen=tokens_before,
        init_seconds=seconds_before,
    )


def build_model(spec: ModelSpec, vocab_size: int, special_id: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised float32 Llama; the same seed gives the same weights."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = spec.llama_config(vocab_size, special_id)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    model.generation_config.bos_token_id = special_id
    model.generation_config.eos_token_id = special_id
    model.generation_config.pad_token_id = special_id
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Parameters counted once each (the tied embedding is not counted twice)."""
    return sum(p.numel() for p in model.parameters())


def _make_optimizer(model: torch.nn.Module, spec: ModelSpec) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on norm gains)."""
    import torch

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": spec.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=spec.peak_lr, betas=spec.betas, eps=1e-8)


def _window_batch(
    tokens: torch.Tensor, starts: np.ndarray, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    idx = torch.from_numpy(starts).unsqueeze(1) + torch.arange(seq_len + 1).unsqueeze(0)
    window = tokens[idx]
    return window[:, :-1], window[:, 1:]


def _lm_loss(model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats over every position of ``x``."""
    import torch.nn.functional as F

    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


def evaluate(
    model: Any,
    tokens: np.ndarray,
    seq_len: int,
    *,
    batch_size: int = 8,
    max_tokens: int | None = None,
    bf16: bool = False,
) -> tuple[float, int]:
    """Total loss in nats and number of predicted tokens over a token stream.

    The stream is cut into consecutive windows of ``seq_len`` inputs; each
    window predicts the ``seq_len`` tokens after its inputs, and the next window
    starts where those end, so every token but the first is predicted exactly
    once (with a context restarting at each window). Float32 by default: the
    reported numbers are those of the shipped float32 weights.
    """
    import torch
    import torch.nn.functional as F

    stream = tokens if max_tokens is None else tokens[: max_tokens + 1]
    data = torch.from_numpy(stream.astype("int64"))
    n_pred_total = len(data) - 1
    starts = list(range(0, n_pred_total, seq_len))
    was_training = model.training
    model.eval()
    total = 0.0
    count = 0
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            full = [s for s in starts if s + seq_len <= n_pred_total]
            rest = [s for s in starts if s + seq_len > n_pred_total]
            for i in range(0, len(full), batch_size):
                chunk = full[i : i + batch_size]
                x = torch.stack([data[s : s + seq_len] for s in chunk])
                y = torch.stack([data[s + 1 : s + seq_len + 1] for s in chunk])
                logits = model(input_ids=x, use_cache=False).logits.float()
                total += F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
                ).item()
                count += y.numel()
            for s in rest:
                x = data[s:n_pred_total].unsqueeze(0)
                y = data[s + 1 : n_pred_total + 1].unsqueeze(0)
                logits = model(input_ids=x, use_cache=False).logits.float()
                total += F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
                ).item()
                count += y.numel()
    finally:
        model.train(was_training)
    return total, count


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_model(
    spec: ModelSpec,
    tokens: np.ndarray,
    *,
    vocab_size: int,
    special_id: int,
    checkpoint_path: Path,
    budget_seconds: float | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    seed: int = 0,
    use_compile: bool = False,
    bf16: bool = True,
    checkpoint_every_seconds: float = 180.0,
    log_every_seconds: float = 30.0,
    monitor_tokens: np.ndarray | None = None,
    stop_after_steps: int | None = None,
    init_from: Path | None = None,
    log: Log = print,
) -> tuple[LlamaForCausalLM, TrainState]:
    """Train one model on random windows of ``tokens``; return it and its state.

    Exactly one of ``budget_seconds`` (plan the number of steps from measured
    throughput) and ``max_steps`` (a fixed plan) must be given. With
    ``resume=True`` and an existing checkpoint, training continues from it with
    the plan, budget and random streams it had; a finished checkpoint returns
    at once. ``stop_after_steps`` stops (with a checkpoint) after that many
    steps in total without finishing, as an interrupted job would.
    ``monitor_tokens`` (a few held-out windows) is evaluated at each
    checkpoint, for the log only.

    ``init_from`` (a saved model folder of the same architecture) starts the
    weights from that model instead of a random initialisation, with a fresh
    optimizer and a new warmup + cosine schedule: continued training. Its
    ``training.json`` (written by this pipeline) provides the tokens and time
    it had already seen, so the counts in the state stay totals.
    """
    import numpy as np
    import torch

    if (budget_seconds is None) == (max_steps is None):
        raise ValueError("give exactly one of budget_seconds and max_steps")
    if len(tokens) < spec.seq_len + 2:
        raise ValueError(f"{len(tokens)} training tokens cannot fill one window of {spec.seq_len}")

    model = build_model(spec, vocab_size, special_id, seed)
    optimizer = _make_optimizer(model, spec)
    rng = np.random.Generator(np.random.PCG64(seed))
    state = TrainState(budget_seconds=budget_seconds or 0.0, planned_steps=max_steps or 0)
    resuming = resume and checkpoint_path.is_file()
    if init_from is not None and not resuming:
        state = _initialise_from(model, spec, Path(init_from), state, log)

    if resuming:
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if ckpt["spec"] != asdict(spec):
            raise RuntimeError(
                f"checkpoint {checkpoint_path} was made with another {spec.name} spec; "
                "resume with the same settings or use a new work dir"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        state = TrainState(**ckpt["state"])
        if max_steps is not None and not state.finished:
            state.planned_steps = max_steps
        state.resumed_times += 1
        log(
            f"[{spec.name}] resumed from {checkpoint_path.name} at step {state.step}"
            f"/{state.planned_steps or '?'} ({state.tokens_seen:,} tokens seen, "
            f"{_fmt_duration(state.elapsed_seconds)} spent)"
        )
        if state.finished:
            return model, state
    elif checkpoint_path.exists() and not resume:
        raise FileExistsError(f"{checkpoint_path} exists; pass resume=True (--resume) or use a new work dir")

    def save_checkpoint() -> None:
        _atomic_torch_save(
            {
                "spec": asdict(spec),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "state": asdict(state),
                "vocab_size": vocab_size,
                "special_id": special_id,
            },
            checkpoint_path,
        )

    n_params = count_parameters(model)
    log(
        f"[{spec.name}] {n_params:,} parameters; {spec.tokens_per_step:,} tokens/step "
        f"({spec.batch_size} x {spec.seq_len}); {len(tokens):,} training tokens"
    )

    forward: Any = model
    compiled = False
    if use_compile:
        try:
            import torch._inductor.config as inductor_config

            inductor_config.compile_threads = 1
            forward = torch.compile(model)
            compiled = True
        except Exception as exc:  # compile is an optimisation only
            log(f"[{spec.name}] torch.compile unavailable ({exc!r}); training eagerly")

    data = torch.from_numpy(tokens.astype(np.int64))
    max_start = len(tokens) - spec.seq_len - 1
    model.train()

    progress_bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        progress_bar = tqdm(
            total=state.planned_steps or None, initial=state.step, desc=spec.name, unit="step"
        )

    session_start = time.perf_counter()
    elapsed_before = state.elapsed_seconds
    last_ckpt = last_log = session_start
    log_loss_sum, log_loss_n, log_tokens = 0.0, 0, 0
    # Throughput is measured from the 3rd step of this session on (compilation and warm-up excluded).
    measure_from_step: int | None = None
    measure_from_time = 0.0
    steps_this_session = 0
    provisional_plan = max(spec.warmup_steps * 10, 10)

    def elapsed() -> float:
        return elapsed_before + (time.perf_counter() - session_start)

    def replan(now: float) -> None:
        """Set planned_steps from the throughput of the steps since the last (re)plan.

        A recent window rather than the whole run: the machine is shared, and
        the remaining time is best predicted by the current speed. The window
        includes checkpoint and monitoring time, which the budget pays too.
        """
        nonlocal measure_from_step, measure_from_time
        assert budget_seconds is not None and measure_from_step is not None
        done = state.step - measure_from_step
        if done < 4:
            return
        seconds_per_step = (now - measure_from_time) / done
        measure_from_step, measure_from_time = state.step, now
        remaining = state.budget_seconds - elapsed()
        new_plan = state.step + max(1, int(remaining / seconds_per_step))
        state.tokens_per_second = spec.tokens_per_step / seconds_per_step
        if new_plan != state.planned_steps:
            log(
                f"[{spec.name}] plan: {new_plan} steps ({new_plan * spec.tokens_per_step:,} tokens) at "
                f"{state.tokens_per_second:,.0f} tokens/s measured, {_fmt_duration(remaining)} left of budget"
            )
            state.planned_steps = new_plan
            if progress_bar is not None:
                progress_bar.total = new_plan

    while True:
        plan = state.planned_steps or provisional_plan
        plan_is_known = bool(state.planned_steps) or max_steps is not None  # max_steps=0: nothing to do
        if plan_is_known and state.step >= state.planned_steps:
            break
        if stop_after_steps is not None and state.step >= stop_after_steps:
            save_checkpoint()
            log(f"[{spec.name}] stopped at step {state.step} (stop_after_steps)")
            return model, state
        if budget_seconds is not None and elapsed() > 1.25 * state.budget_seconds:
            log(f"[{spec.name}] over 125% of its time budget; stopping at step {state.step} of {plan}")
            break

        lr = lr_at(state.step, plan, spec)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = rng.integers(0, max_start + 1, size=spec.batch_size)
        x, y = _window_batch(data, starts, spec.seq_len)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = _lm_loss(forward, x, y)
            loss.backward()
        except Exception as exc:
            if not compiled:
                raise
            log(f"[{spec.name}] compiled step failed ({exc!r}); falling back to eager")
            optimizer.zero_grad(set_to_none=True)
            forward, compiled = model, False
            continue
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"[{spec.name}] loss became {loss_value} at step {state.step}; lower peak_lr"
            )
        state.step += 1
        steps_this_session += 1
        state.tokens_seen += spec.tokens_per_step
        state.last_loss = loss_value
        log_loss_sum += loss_value
        log_loss_n += 1
        log_tokens += spec.tokens_per_step
        if progress_bar is not None:
            progress_bar.update(1)
            progress_bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}")

        now = time.perf_counter()
        state.elapsed_seconds = elapsed()
        if budget_seconds is not None:
            if steps_this_session == 2:
                measure_from_step, measure_from_time = state.step, now
            elif (
                measure_from_step is not None
                and state.planned_steps == 0
                and state.step - measure_from_step >= 8
                and now - measure_from_time >= 20.0
            ):
                replan(now)
            elif (
                budget_seconds is not None and state.planned_steps == 0 and elapsed() >= state.budget_seconds
            ):
                state.planned_steps = state.step  # tiny budgets: stop even before measuring

        if now - last_log >= log_every_seconds:
            rate = log_tokens / (now - last_log)
            log(
                f"[{spec.name}] step {state.step}/{state.planned_steps or '?'} loss {log_loss_sum / max(1, log_loss_n):.4f} "
                f"lr {lr:.2e} {rate:,.0f} tok/s tokens {state.tokens_seen:,} "
                f"elapsed {_fmt_duration(state.elapsed_seconds)}"
                + (f" / budget {_fmt_duration(state.budget_seconds)}" if budget_seconds is not None else "")
            )
            last_log = now
            log_loss_sum, log_loss_n, log_tokens = 0.0, 0, 0

        if now - last_ckpt >= checkpoint_every_seconds:
            if (
                budget_seconds is not None
                and measure_from_step is not None
                and state.planned_steps
                and state.step < 0.8 * state.planned_steps
            ):
                replan(now)
            if monitor_tokens is not None:
                total, count = evaluate(model, monitor_tokens, spec.seq_len, bf16=True)
                log(f"[{spec.name}] held-out sample loss {total / count:.4f} ({count:,} tokens)")
            state.elapsed_seconds = elapsed()
            save_checkpoint()
            log(f"[{spec.name}] checkpoint saved at step {state.step}")
            last_ckpt = time.perf_counter()

    if progress_bar is not None:
        progress_bar.close()
    if state.tokens_per_second == 0.0 and steps_this_session:
        state.tokens_per_second = (
            steps_this_session * spec.tokens_per_step / (time.perf_counter() - session_start)
        )
    state.finished = True
    state.elapsed_seconds = elapsed()
    save_checkpoint()
    log(
        f"[{spec.name}] finished: {state.step} steps, {state.tokens_seen:,} tokens, "
        f"last loss {state.last_loss:.4f}, {_fmt_duration(state.elapsed_seconds)}"
    )
    return model, state


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run of the pipeline depends on.

    ``budget_seconds`` is the wall-clock budget of the whole run (data
    preparation, both trainings, evaluation and saving). ``max_steps``
    replaces the budget with fixed step counts per model name (for tests).
    """

    work_dir: Path
    models_dir: Path
    budget_seconds: float = 125 * 60
    resume: bool = False
    vocab_size: int = 8192
    heldout_fraction: float = 0.02
    max_files: int | None = None
    seed: int = 0
    target: ModelSpec = TARGET_SPEC
    draft: ModelSpec = DRAFT_SPEC
    target_share: float = 0.8
    use_compile: bool = True
    checkpoint_every_seconds: float = 180.0
    log_every_seconds: float = 30.0
    max_steps: dict[str, int] | None = None
    command: str = ""
    corpus_root: Path | None = None
    init_from: Path | None = None
    only: tuple[str, ...] | None = None
    peak_lr: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def specs(self) -> tuple[ModelSpec, ...]:
        """The model specs this run trains, in order, with any learning-rate override applied."""
        chosen = [s for s in (self.target, self.draft) if self.only is None or s.name in self.only]
        if self.peak_lr:
            chosen = [replace(s, peak_lr=self.peak_lr.get(s.name, s.peak_lr)) for s in chosen]
        return tuple(chosen)


@dataclass
class PreparedData:
    """The tokenizer and token streams of both splits, plus what the model cards report."""

    tokenizer: PreTrainedTokenizerFast
    train_tokens: np.ndarray
    heldout_tokens: np.ndarray
    meta: dict[str, Any]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def prepare_data(cfg: PipelineConfig, log: Log = print) -> PreparedData:
    """Read the corpus, train the tokenizer and tokenise both splits, or load the cache.

    The cache (``tokenizer/``, ``train_tokens.npy``, ``heldout_tokens.npy``,
    ``data.json``) is reused only if the corpus fingerprint still matches, so a
    resumed run cannot silently continue on a different Python's library.
    """
    import numpy as np
    from transformers import AutoTokenizer

    from .corpus import corpus_fingerprint, load_corpus
    from .tokenizer import EOS_TOKEN, encode_documents, train_tokenizer

    work = cfg.work_dir
    meta_path = work / "data.json"
    start = time.perf_counter()
    split = load_corpus(cfg.corpus_root, heldout_fraction=cfg.heldout_fraction, max_files=cfg.max_files)
    fingerprint = corpus_fingerprint(split)
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta["corpus_fingerprint"] != fingerprint or meta["vocab_size"] != cfg.vocab_size:
            raise RuntimeError(
                f"the cached data in {work} was made from another corpus or vocabulary "
                f"(Python {meta['python_version']}); use a new work dir"
            )
        tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")
        log(
            f"data: reusing cached tokenizer and {meta['train_tokens']:,} + {meta['heldout_tokens']:,} tokens"
        )
        return PreparedData(
            tokenizer,
            np.load(work / "train_tokens.npy"),
            np.load(work / "heldout_tokens.npy"),
            meta,
        )

    log(
        f"data: Python {split.python_version} standard library at {split.root}: "
        f"{len(split.train)} train files ({split.train_chars:,} chars), "
        f"{len(split.heldout)} held-out files ({split.heldout_chars:,} chars)"
    )
    if cfg.init_from is not None:
        # Continued training must keep the vocabulary the weights were trained with.
        source = cfg.init_from / cfg.specs()[0].name
        tokenizer = AutoTokenizer.from_pretrained(source)
        if len(tokenizer) != cfg.vocab_size:
            raise RuntimeError(f"the tokenizer in {source} has {len(tokenizer)} tokens, not {cfg.vocab_size}")
        log(f"data: tokenizer of {source} ({len(tokenizer)} tokens)")
    else:
        tokenizer = train_tokenizer((f.text for f in split.train), vocab_size=cfg.vocab_size)
        log(f"data: tokenizer trained ({len(tokenizer)} tokens) in {time.perf_counter() - start:.1f}s")
    tokenizer.save_pretrained(work / "tokenizer")
    train_tokens = encode_documents(tokenizer, [f.text for f in split.train])
    heldout_tokens = encode_documents(tokenizer, [f.text for f in split.heldout])
    np.save(work / "train_tokens.npy", train_tokens)
    np.save(work / "heldout_tokens.npy", heldout_tokens)
    meta = {
        "python_version": split.python_version,
        "stdlib_root": split.root,
        "heldout_fraction": split.heldout_fraction,
        "corpus_fingerprint": fingerprint,
        "vocab_size": cfg.vocab_size,
        "special_token": EOS_TOKEN,
        "special_id": tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        "train_files": len(split.train),
        "heldout_files": len(split.heldout),
        "train_chars": split.train_chars,
        "heldout_chars": split.heldout_chars,
        "train_tokens": len(train_tokens),
        "heldout_tokens": len(heldout_tokens),
        "heldout_relpaths": [f.relpath for f in split.heldout],
        "data_seconds": time.perf_counter() - start,
    }
    _write_json(meta_path, meta)
    log(
        f"data: {len(train_tokens):,} train tokens, {len(heldout_tokens):,} held-out tokens "
        f"({split.train_chars / len(train_tokens):.2f} chars/token) in {meta['data_seconds']:.1f}s"
    )
    return PreparedData(tokenizer, train_tokens, heldout_tokens, meta)


def _model_card(
    kind: str,
    spec: ModelSpec,
    n_params: int,
    state: TrainState,
    result: dict[str, Any],
    meta: dict[str, Any],
    commands: list[str],
    companion: str,
    threads: int,
    compiled: bool,
) -> str:
    import torch
    import transformers

    compiled_note = " with torch.compile" if compiled else ""
    continued_note = (
        f"| continued from | an earlier run of this pipeline ({state.init_tokens_seen:,} tokens seen), "
        f"with a fresh optimizer and a new warmup + cosine schedule |\n"
        if state.init_from
        else ""
    )
    role = (
        "the **target** model of draftkit's examples and benchmarks"
        if kind == "target"
        else "the **draft** model of draftkit's classic draft-model baseline (same tokenizer as the target)"
    )
    command_lines = "\n".join(commands)
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags:
- draftkit
- llama
- python
- code
---

# draftkit demo {kind} model

A tiny Llama trained from scratch on the Python standard library, {role}.
It exists so that draftkit can demonstrate and test speculative decoding without
any download. It writes plausible-looking Python, but it is a demo, not a code assistant:
expect repetition under greedy decoding and wrong code.

Load it with `AutoModelForCausalLM.from_pretrained(folder)` and `AutoTokenizer.from_pretrained(folder)`,
or find the folder with `draftkit.demo.demo_model_path("{kind}")`. Its companion is the
`{companion}` model in the sibling folder.

## Model

| | |
|---|---|
| architecture | `LlamaForCausalLM`, {spec.num_layers} layers, hidden {spec.hidden_size}, {spec.num_heads} heads, MLP {spec.intermediate_size}, RoPE (theta {spec.rope_theta:g}), tied embeddings |
| parameters | {n_params:,} |
| context | trained on {spec.seq_len}-token windows; `max_position_embeddings` {spec.max_position_embeddings} |
| vocabulary | {meta["vocab_size"]:,} byte-level BPE tokens; `{meta["special_token"]}` (id {meta["special_id"]}) is BOS, EOS and PAD |
| weights | float32, safetensors |

The tokenizer adds no special token by itself. In training every file was preceded and
followed by `{meta["special_token"]}`: prepend it to a prompt that starts a file.

## Data

The `*.py` files of the CPython {meta["python_version"]} standard library (`test/` included,
`site-packages` excluded), read as UTF-8 with replacement of invalid bytes. Files are held out
by the SHA-256 of their relative path ({meta["heldout_fraction"]:.0%}):

| split | files | characters | tokens |
|---|---|---|---|
| train | {meta["train_files"]:,} | {meta["train_chars"]:,} | {meta["train_tokens"]:,} |
| held-out | {meta["heldout_files"]:,} | {meta["heldout_chars"]:,} | {meta["heldout_tokens"]:,} |

The standard library is distributed under the Python Software Foundation License.

## Training

{"In the last run: " if state.init_from else ""}AdamW (betas {spec.betas[0]}, {spec.betas[1]}; weight decay {spec.weight_decay} on matrices),
peak learning rate {spec.peak_lr:g} with {spec.warmup_steps} warmup steps and cosine decay to
{spec.min_lr_ratio:g} x peak at the last planned step, gradient clipping at {spec.grad_clip:g},
bf16 autocast on {threads} CPU thread(s){compiled_note}, batches of {spec.batch_size} random {spec.seq_len}-token windows
of the training token stream.

| | |
|---|---|
{continued_note}| steps | {state.step:,} (planned {state.planned_steps:,}){" in the last run" if state.init_from else ""} |
| tokens seen | {state.tokens_seen:,} ({state.tokens_seen / meta["train_tokens"]:.2f} epochs){" in all runs" if state.init_from else ""} |
| training time | {_fmt_duration(state.init_seconds + state.elapsed_seconds)} (last run measured {state.tokens_per_second:,.0f} tokens/s) |
| final training loss | {state.last_loss:.4f} nats/token |

## Evaluation on the held-out files

| | |
|---|---|
| loss | {result["heldout_loss"]:.4f} nats/token ({result["heldout_predicted_tokens"]:,} predicted tokens, {spec.seq_len}-token windows, float32) |
| perplexity | {math.exp(result["heldout_loss"]):.2f} |
| bits per character | {result["bits_per_char"]:.4f} |

Bits per character = loss x tokens / characters / ln 2 over the held-out files.

## Reproduce

Made with draftkit's `draftkit.demo` pipeline (torch {torch.__version__}, transformers {transformers.__version__}):

```
{command_lines}
```
"""


def _finalize_model(
    kind: str,
    spec: ModelSpec,
    model: LlamaForCausalLM,
    state: TrainState,
    data: PreparedData,
    cfg: PipelineConfig,
    commands: list[str],
    log: Log,
) -> dict[str, Any]:
    """Evaluate on the held-out split and save weights, tokenizer and card to ``work_dir/final/kind``."""
    import torch

    t0 = time.perf_counter()
    model = model.to(torch.float32)
    total, count = evaluate(model, data.heldout_tokens, spec.seq_len)
    loss = total / count
    bpc = total / data.meta["heldout_chars"] / math.log(2)
    result = {
        "kind": kind,
        "commands": commands,
        "parameters": count_parameters(model),
        "heldout_loss": loss,
        "heldout_predicted_tokens": count,
        "bits_per_char": bpc,
        "tokens_seen": state.tokens_seen,
        "steps": state.step,
        "planned_steps": state.planned_steps,
        "train_seconds": state.elapsed_seconds,
        "total_train_seconds": state.init_seconds + state.elapsed_seconds,
        "tokens_per_second": state.tokens_per_second,
        "init_from": state.init_from,
        "init_tokens_seen": state.init_tokens_seen,
        "spec": asdict(spec),
    }
    folder = cfg.work_dir / "final" / kind
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    data.tokenizer.save_pretrained(folder)
    companion = "draft" if kind == "target" else "target"
    card = _model_card(
        kind,
        spec,
        result["parameters"],
        state,
        result,
        data.meta,
        commands,
        companion,
        threads=torch.get_num_threads(),
        compiled=cfg.use_compile,
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    # The history a later continued run starts from (see ``_initialise_from``).
    _write_json(folder / "training.json", result)
    _write_json(cfg.work_dir / "final" / f"{kind}.json", result)
    log(
        f"[{kind}] held-out loss {loss:.4f} nats/token, {bpc:.4f} bits/char "
        f"({count:,} tokens, eval+save {time.perf_counter() - t0:.1f}s) -> {folder}"
    )
    return result


def _install(work_dir: Path, models_dir: Path, kinds: tuple[str, ...], log: Log) -> None:
    """Copy the finished folders into ``models_dir``, replacing older ones."""
    models_dir.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        src = work_dir / "final" / kind
        tmp = models_dir / f".{kind}.tmp"
        dst = models_dir / kind
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
        for path in dst.iterdir():
            path.chmod(0o644)  # safetensors writes 0600; installed files must be world-readable
        size = sum(p.stat().st_size for p in dst.iterdir())
        log(f"installed {kind} model in {dst} ({size / 1e6:.1f} MB)")


def _earlier_commands(folder: Path | None) -> list[str]:
    """The commands that made the model a continued run starts from (its ``training.json``)."""
    if folder is None or not (folder / "training.json").is_file():
        return []
    history = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    return list(history.get("commands", []))


def run_pipeline(cfg: PipelineConfig, log: Log = print) -> dict[str, dict[str, Any]]:
    """Run (or resume) the whole pipeline; return the evaluation results per model."""
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    run_path = cfg.work_dir / "run.json"
    if run_path.is_file():
        if not cfg.resume:
            raise FileExistsError(f"{cfg.work_dir} already holds a run; pass --resume or use a new --out")
        run = json.loads(run_path.read_text(encoding="utf-8"))
        if run["budget_seconds"] != cfg.budget_seconds:
            log(f"keeping the original budget of {run['budget_seconds'] / 60:.1f} min")
        run["commands"].append(cfg.command)
    else:
        run = {
            "budget_seconds": cfg.budget_seconds,
            "commands": [cfg.command],
            "started": time.time(),
            "init_from": None if cfg.init_from is None else str(cfg.init_from),
            "only": None if cfg.only is None else list(cfg.only),
            "peak_lr": cfg.peak_lr,
        }
    _write_json(run_path, run)
    budget = float(run["budget_seconds"])

    data = prepare_data(cfg, log)
    meta = data.meta
    vocab = len(data.tokenizer)
    special = int(meta["special_id"])
    monitor = data.heldout_tokens[: 16 * 512 + 1]

    # Budget: data preparation is spent; keep a reserve for evaluation and saving.
    reserve = min(240.0, 0.03 * budget)
    available = max(0.0, budget - meta["data_seconds"] - reserve)
    results: dict[str, dict[str, Any]] = {}
    target_elapsed = 0.0
    specs = cfg.specs()
    for spec in specs:
        kind = spec.name
        result_path = cfg.work_dir / "final" / f"{kind}.json"
        ckpt = cfg.work_dir / f"ckpt_{kind}.pt"
        if result_path.is_file() and (cfg.work_dir / "final" / kind / "config.json").is_file():
            results[kind] = json.loads(result_path.read_text(encoding="utf-8"))
            target_elapsed = results[kind]["train_seconds"] if kind == cfg.target.name else target_elapsed
            log(f"[{kind}] already finished (held-out loss {results[kind]['heldout_loss']:.4f})")
            continue
        if cfg.max_steps is not None:
            kwargs: dict[str, Any] = {"max_steps": cfg.max_steps[kind]}
        elif len(specs) == 1:
            kwargs = {"budget_seconds": available}
        elif kind == cfg.target.name:
            kwargs = {"budget_seconds": cfg.target_share * available}
        else:
            # Whatever the target left (it may have run a little over or under), with a floor.
            floor = 0.5 * (1.0 - cfg.target_share) * available
            kwargs = {"budget_seconds": max(floor, available - target_elapsed)}
        model, state = train_model(
            spec,
            data.train_tokens,
            vocab_size=vocab,
            special_id=special,
            checkpoint_path=ckpt,
            resume=cfg.resume,
            seed=cfg.seed + (0 if kind == cfg.target.name else 1),
            use_compile=cfg.use_compile,
            checkpoint_every_seconds=cfg.checkpoint_every_seconds,
            log_every_seconds=cfg.log_every_seconds,
            monitor_tokens=monitor,
            init_from=None if cfg.init_from is None else cfg.init_from / kind,
            log=log,
            **kwargs,
        )
        if kind == cfg.target.name:
            target_elapsed = state.elapsed_seconds
        commands = _earlier_commands(cfg.init_from / kind if cfg.init_from else None) + run["commands"]
        results[kind] = _finalize_model(kind, spec, model, state, data, cfg, commands, log)
        del model

    _install(cfg.work_dir, cfg.models_dir, tuple(spec.name for spec in specs), log)
    return results


def default_models_dir() -> Path:
    """``src/draftkit/demo/models``: where the shipped demo models live."""
    return Path(__file__).resolve().parent / "models"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m draftkit.demo.train",
        description="Train draftkit's demo target and draft models on the Python standard library.",
    )
    parser.add_argument("--out", type=Path, required=True, help="work dir for caches and checkpoints")
    parser.add_argument(
        "--time-budget-minutes", type=float, default=125.0, help="wall-clock budget of the whole run"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="where to install the final model folders"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and tokenizers")
    parser.add_argument("--no-compile", action="store_true", help="do not use torch.compile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="continue training from the model folders in this dir (e.g. src/draftkit/demo/models)",
    )
    parser.add_argument(
        "--only", choices=("target", "draft"), action="append", default=None, help="train only this model"
    )
    parser.add_argument(
        "--peak-lr", type=float, default=None, help="override the peak learning rate of the trained models"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = _parse_args(args_list)
    if args.threads == 1:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    import torch

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):  # already set if torch ran parallel work
        torch.set_num_interop_threads(1)

    def log(message: str) -> None:
        print(time.strftime("%Y-%m-%d %H:%M:%S ") + message, flush=True)

    command = shlex.join([sys.executable.rsplit("/", 1)[-1], "-m", "draftkit.demo.train", *args_list])
    cfg = PipelineConfig(
        work_dir=args.out,
        models_dir=args.models_dir or default_models_dir(),
        budget_seconds=args.time_budget_minutes * 60.0,
        resume=args.resume,
        seed=args.seed,
        use_compile=not args.no_compile,
        command=command,
        init_from=args.init_from,
        only=None if args.only is None else tuple(args.only),
        peak_lr=None
        if args.peak_lr is None
        else {name: args.peak_lr for name in (args.only or ("target", "draft"))},
    )
    log(f"{command}  (threads={args.threads}, torch {torch.__version__})")
    results = run_pipeline(cfg, log)
    for kind, result in results.items():
        log(
            f"{kind}: {result['parameters']:,} parameters, held-out loss {result['heldout_loss']:.4f}, "
            f"{result['bits_per_char']:.4f} bits/char, {result['tokens_seen']:,} tokens seen"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
