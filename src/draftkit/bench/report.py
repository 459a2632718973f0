"""Write what a benchmark measured: terminal table, results.json, answers, chart."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import BenchResult

__all__ = ["format_table", "earlier_methods", "write_results", "write_answers", "write_chart"]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: BenchResult) -> str:
    header = ["method", "tok/s", "speedup", "no-loop", "tok/step", "accept", "draft s", "verify s", "other s",
              "peak MB", "loops", "match"]
    rows = []
    for s in result.summaries:
        match = "-"
        if not result.config.settings.do_sample and s.name != result.config.reference:
            match = "all" if not s.mismatches else f"{s.prompts - len(s.mismatches)}/{s.prompts}"
        rows.append([
            s.name + (" *" if s.name == result.baseline else ""),
            _fmt(s.tokens_per_second, ".1f"),
            _fmt(s.speedup, ".2f") + ("x" if s.speedup is not None else ""),
            _fmt(s.speedup_no_loop, ".2f") + ("x" if s.speedup_no_loop is not None else ""),
            _fmt(s.mean_accepted_tokens, ".2f"),
            _fmt(s.acceptance_rate, ".0%"),
            _fmt(s.time_draft, ".2f"),
            _fmt(s.time_verify, ".2f"),
            _fmt(s.time_other, ".2f"),
            _fmt(s.peak_rss_mb, ".0f"),
            f"{s.loop_share:.0%}",
            match,
        ])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("* baseline for speedups (the faster plain decoder). speedup = median over prompts of the "
                 "per-token time ratio; no-loop = the same median over the prompts whose baseline output does "
                 "not end in a repetition loop; tok/step includes the bonus token (plain = 1.00).")
    if any(s.kind == "bound" for s in result.summaries):
        lines.append("oracle: drafts plain decoding's own answer; the ceiling of any draft source here, "
                     "not a method a user can run.")
    for s in result.summaries:
        for mm in s.mismatches:
            lines.append(f"MISMATCH {s.name}: prompt {mm['prompt']} diverges from {result.config.reference} "
                         f"at new token {mm['first_divergent_position']}")
    return "\n".join(lines)


def earlier_methods(out_dir: Path) -> list[str]:
    """The methods of the benchmark whose results.json is in ``out_dir`` (none if there is none)."""
    try:
        return [str(m["name"]) for m in json.loads((out_dir / "results.json").read_text())["methods"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_results(result: BenchResult, out_dir: Path, meta: dict[str, Any]) -> Path:
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": {
            **meta,
            "baseline": result.baseline,
            "config": dataclasses.asdict(result.config),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "methods": [dataclasses.asdict(s) for s in result.summaries],
        "runs": [
            {
                "prompt": r.prompt.id,
                "category": r.prompt.category,
                "method": r.method,
                "new_tokens": len(r.result.new_tokens),
                "wall_times": r.wall_times,
                "steps": r.result.steps,
                "match": r.match,
                "first_divergence": r.first_divergence,
                "loops": r.loops,
            }
            for r in result.runs
        ],
    }
    path = out_dir / "results.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def write_answers(result: BenchResult, out_dir: Path, decode: Any, earlier_methods: Sequence[str] = ()) -> Path:
    """Spec-Bench-style answer files, one jsonl per method. Those an earlier benchmark wrote into
    the same folder for methods this run did not have are removed (``earlier_methods``, read from
    its results.json before it was replaced), so the folder matches results.json; other files,
    such as other systems' answers kept there, stay."""
    folder = out_dir / "answers"
    folder.mkdir(parents=True, exist_ok=True)
    by_method: dict[str, list[Any]] = {}
    for r in result.runs:
        by_method.setdefault(r.method, []).append(r)
    for name in set(earlier_methods) - set(by_method):
        (folder / f"{name}.jsonl").unlink(missing_ok=True)
    for method, runs in by_method.items():
        with open(folder / f"{method}.jsonl", "w", encoding="utf-8") as fh:
            for r in runs:
                fh.write(json.dumps({
                    "question_id": r.prompt.id if r.prompt.question_id is None else r.prompt.question_id,
                    "category": r.prompt.category,
                    "model_id": method,
                    "choices": [{
                        "index": 0,
                        "turns": [decode(r.result.new_tokens)],
                        "new_tokens": [len(r.result.new_tokens)],
                        "wall_time": [r.median_time],
                        "accept_lengths": r.result.accept_lengths,
                    }],
                    "tstamp": time.time(),
                }) + "\n")
    return folder


def write_chart(result: BenchResult, out_dir: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [s.name for s in result.summaries]
    speed = [s.speedup or 0.0 for s in result.summaries]
    mat = [s.mean_accepted_tokens or 0.0 for s in result.summaries]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 1.8))
    palette = {"draftkit": "#2a6fb0", "bound": "#d9a441"}
    colors = [palette.get(s.kind, "#888888") for s in result.summaries]
    axes[0].barh(names, speed, color=colors)
    axes[0].axvline(1.0, color="black", lw=0.8)
    axes[0].set_xlabel(f"speedup vs {result.baseline} (median per prompt)")
    for i, v in enumerate(speed):
        axes[0].text(v, i, f" {v:.2f}x", va="center", fontsize=8)
    axes[1].barh(names, mat, color=colors)
    axes[1].set_xlabel("mean accepted tokens per step (plain = 1)")
    for i, v in enumerate(mat):
        if v:
            axes[1].text(v, i, f" {v:.2f}", va="center", fontsize=8)
    for ax in axes:
        ax.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = out_dir / "chart.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
