"""Budget policies compared on a fixed cost curve: decisions replayed, timing noise removed.

On a shared 2-core machine two runs of the same decoder differ by more than
the few percent that separate good budget policies, even with repeats. Yet the
time a policy costs is almost entirely a function of its decisions: the size of
the tree it verifies at each step. This script runs every (source, budget)
decoder for real (outputs checked against plain decoding), logs the verified
tree size of every step and prices the run with one cost curve measured once:

    time = prefill(prompt length) + sum over steps of (verify_cost(size) + overhead if it drafted)
    plain = prefill(prompt length) + new tokens * verify_cost(0)

(a step that also runs the prompt's prefill, fused, is charged prefill_per_token * size
for its tree instead of verify_cost(size): its tree rows join a wide product, which is
also how ``budget="auto"`` prices that step)

Speedups are then exact functions of the decisions, so policies can be
compared to within a fraction of a percent, and a bigger model's costs
(``--cost-shadow``: the 59M-parameter shadow of cost_shadow.py) only need to be
measured, not run for every decode. What it leaves out: the drafting and
bookkeeping time of each source (a constant ``--overhead`` per step stands in
for it), which ``budget_sweep.py`` measures for real.

    python benchmarks/budget_model.py --sources pld,aded,pld+aded --prompts quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from draftkit.bench.prompts import load_prompt_set
from draftkit.engine import PlainDecoder, SpeculativeDecoder
from draftkit.engine.budget import CostAwareBudget, FixedBudget, measure_verify_costs
from draftkit.engine.target import TargetModel
from draftkit.loading import load_model_and_tokenizer
from draftkit.plugins import default_registry

GRID = [0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64]


class LoggedPolicy:
    """Delegates to a policy and records every step's verified tree size and whether it drafted."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.max_budget = inner, inner.max_budget
        self.sizes: list[int] = []
        self.drafted: list[bool] = []
        self.fused: list[bool] = []  # whether the step's forward also ran the prompt's prefill
        self._prefill_rows = 0

    def begin(self) -> None:
        self.inner.begin()

    def wants_draft(self) -> bool:
        return self.inner.wants_draft()

    def choose(self, drafted: int) -> int:
        chosen = self.inner.choose(drafted)
        self.sizes.append(min(chosen, drafted))
        self.drafted.append(drafted > 0)
        self.fused.append(self._prefill_rows > 0)
        self._prefill_rows = 0
        return chosen

    def note_prefill(self, rows: int) -> None:
        self._prefill_rows = rows
        if hasattr(self.inner, "note_prefill"):
            self.inner.note_prefill(rows)

    def observe(self, *args: Any) -> None:
        self.inner.observe(*args)

    def __getattr__(self, name: str) -> Any:
        # The optional hooks (draft_nodes, note_prefill, note_draft, note_verify) reach the inner
        # policy when it has them: without them auto was priced without the draft's evidence, the
        # prefill-fused first step's costs and the cap on what the source drafts.
        if name == "inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def measure_costs(model: Any, repeats: int) -> dict[str, Any]:
    """Verify cost per tree size and a linear prefill cost, fastest of ``repeats`` rounds."""
    import time

    verify = measure_verify_costs(TargetModel(model), GRID, repeats=repeats)
    lengths, prefill = [32, 128, 256], []
    with torch.inference_mode():
        for n in lengths:
            ids = torch.arange(n)[None] % model.config.vocab_size
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.base_model(ids)
                runs.append(time.perf_counter() - t0)
            prefill.append(min(runs))
    slope, intercept = np.polyfit(lengths, prefill, 1)
    return {"grid": GRID, "verify": verify.tolist(), "prefill_per_token": float(slope),
            "prefill_fixed": float(max(0.0, intercept))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--sources", default="pld,aded,pld+aded", help="comma-separated; 'pld+aded' is a composite")
    parser.add_argument("--budgets", default="2,4,8,16,32,64",
                        help="fixed budgets to compare with 'auto' (and 'auto-pooled': auto without the "
                             "previous-step context)")
    parser.add_argument("--prompts", default="quick")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--costs", default=None, help="a costs.json written by an earlier run (default: measure)")
    parser.add_argument("--cost-shadow", action="store_true",
                        help="measure the costs of the ~60M random-weights shadow model (see cost_shadow.py)")
    parser.add_argument("--overhead", type=float, default=0.0005,
                        help="seconds per step that drafted, for drafting and bookkeeping")
    parser.add_argument("--repeats", type=int, default=9, help="rounds of the cost measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench-budget-model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.costs:
        costs = json.loads(Path(args.costs).read_text())
    else:
        priced = model
        if args.cost_shadow:
            from cost_shadow import add_cost_shadow, shadow_llama

            priced, _ = load_model_and_tokenizer(args.model)
            add_cost_shadow(priced, shadow_llama(model.config.vocab_size))
        costs = measure_costs(priced, args.repeats)
        (out / "costs.json").write_text(json.dumps(costs, indent=2))
    grid, verify = np.asarray(costs["grid"]), np.asarray(costs["verify"])
    print("verify cost vs one token: " + ", ".join(f"{k}: {c / verify[0]:.2f}x" for k, c in zip(grid, verify, strict=True)))

    def prefill(n: int) -> float:
        return costs["prefill_fixed"] + costs["prefill_per_token"] * n

    registry = default_registry()
    corpus: dict[str, Any] = {}
    if {"aded", "rest"} & {m for s in args.sources.split(",") for m in s.split("+")}:
        from draftkit.bench.corpus import corpus_sources_for

        corpus = corpus_sources_for(tokenizer, registry, model.config.vocab_size, log=lambda m: print(m, file=sys.stderr))
    prompts = load_prompt_set(args.prompts, args.limit)
    encoded = [tokenizer(p.text, return_tensors="pt").input_ids for p in prompts]

    def generate(decoder: Any, i: int) -> list[int]:
        kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "do_sample": False}
        if prompts[i].stop_strings:
            kwargs.update(stop_strings=list(prompts[i].stop_strings), tokenizer=tokenizer)
        return decoder.generate(encoded[i], **kwargs).sequences[0, encoded[i].shape[1]:].tolist()

    plain = PlainDecoder(model, tokenizer=tokenizer)
    reference = [generate(plain, i) for i in range(len(prompts))]
    plain_time = [prefill(x.shape[1]) + len(r) * verify[0] for x, r in zip(encoded, reference, strict=True)]
    variants: list[str] = [*args.budgets.split(","), "auto", "auto-pooled"]
    summary: dict[str, Any] = {}
    for name in args.sources.split(","):
        rows = {}
        for variant in variants:
            members = [corpus[m]() if m in corpus else m for m in name.split("+")]
            source = members[0] if len(members) == 1 else members
            # measured_costs=False: here the priced curve is the truth, so auto must not correct it with
            # the demo model's own timings (which LoggedPolicy passes on).
            inner = (FixedBudget(int(variant)) if variant.isdigit()
                     else CostAwareBudget(grid, verify, by_previous_step=variant == "auto", measured_costs=False))
            policy = LoggedPolicy(inner)
            decoder = SpeculativeDecoder(model, source=source, budget=policy, tokenizer=tokenizer, registry=registry)
            ratios, total = [], 0.0
            for i in range(len(prompts)):
                policy.sizes, policy.drafted, policy.fused = [], [], []
                if generate(decoder, i) != reference[i]:
                    raise SystemExit(f"{name}@{variant} differs from plain decoding on {prompts[i].id}")
                t = prefill(encoded[i].shape[1]) + sum(
                    (costs["prefill_per_token"] * s if f else np.interp(s, grid, verify)) + args.overhead * d
                    for s, d, f in zip(policy.sizes, policy.drafted, policy.fused, strict=True))
                ratios.append(plain_time[i] / t)
                total += t
            rows[variant] = {"median": statistics.median(ratios), "total": sum(plain_time) / total}
            print(f"{name}@{variant:12s} median {rows[variant]['median']:.3f}x  total {rows[variant]['total']:.3f}x",
                  flush=True)
        fixed = {k: v for k, v in rows.items() if k.isdigit()}
        for metric in ("median", "total"):
            best = max(fixed, key=lambda k, m=metric: fixed[k][m])
            auto = rows["auto"][metric] / fixed[best][metric]
            pooled = rows["auto-pooled"][metric] / fixed[best][metric]
            print(f"{name} {metric}: best fixed {best} {fixed[best][metric]:.3f}x; auto {auto:.1%} of it, "
                  f"auto-pooled {pooled:.1%}")
            rows[f"auto_vs_best_{metric}"] = auto
        summary[name] = rows
    (out / "model.json").write_text(json.dumps({"costs": costs, "overhead": args.overhead, "sources": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
