"""Fixed tree budgets vs budget="auto", side by side in one process.

For one or more sources, runs a SpeculativeDecoder per budget (fixed sizes and
"auto") with the benchmark harness (interleaved, median per-prompt speedups,
outputs checked against plain decoding) and prints how close "auto" gets to the
best fixed budget found by the sweep. With ``--confirm-repeats N`` a second
interleaved run pits auto against that budget alone (the sweep's best of several
noisy figures is biased upwards; the second run is not).

    python benchmarks/budget_sweep.py --model demo --sources pld,aded --prompts stdlib --limit 10

``--cost-shadow`` gives the target the verify cost of a ~60M-parameter model
(see cost_shadow.py): acceptance stays the demo model's, costs become those of
the bigger model, whose cost curve is steeper on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from draftkit.bench.methods import DraftkitMethod, GenSettings, PlainMethod
from draftkit.bench.prompts import load_prompt_set
from draftkit.bench.report import format_table, write_results
from draftkit.bench.runner import BenchConfig, run_benchmark
from draftkit.engine import PlainDecoder, SpeculativeDecoder
from draftkit.engine.budget import CostAwareBudget
from draftkit.engine.target import TargetModel
from draftkit.loading import load_model_and_tokenizer
from draftkit.plugins import default_registry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--sources", default="pld,aded", help="comma-separated; 'pld+aded' is a composite")
    parser.add_argument("--budgets", default="2,4,8,16,32,64")
    parser.add_argument("--pooled", action="store_true",
                        help="also run budget='auto' without conditioning on the previous step (an ablation)")
    parser.add_argument("--prompts", default="stdlib")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="runs per prompt and method; the median counts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench-budget")
    parser.add_argument("--confirm-repeats", type=int, default=0,
                        help="then run auto against the best fixed budget again, in a second interleaved run with "
                        "this many repeats, and report that ratio (0: no second run)")
    parser.add_argument("--cost-shadow", action="store_true",
                        help="also run a random-weights ~60M Llama on every forward (its cost, the demo's acceptance)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model)
    cost_note = {}
    if args.cost_shadow:
        from cost_shadow import add_cost_shadow, parameter_count, shadow_llama

        from draftkit.engine.budget import measure_verify_costs

        shadow = shadow_llama(model.config.vocab_size)
        add_cost_shadow(model, shadow)
        sizes = [0, 1, 4, 16, 32, 64]
        costs = measure_verify_costs(TargetModel(model), sizes)
        cost_note = {"shadow_parameters": parameter_count(shadow),
                     "verify_cost_ratio": {str(k): float(c / costs[0]) for k, c in zip(sizes, costs, strict=True)}}
        print(f"cost shadow: {cost_note['shadow_parameters']:,} parameters; verify cost vs 1 token: "
              + ", ".join(f"{k}: {v:.2f}x" for k, v in cost_note["verify_cost_ratio"].items()))
    registry = default_registry()
    corpus = {}
    names = {member for source in args.sources.split(",") for member in source.split("+")}
    if {"aded", "rest"} & names:
        from draftkit.bench.corpus import corpus_sources_for

        corpus = corpus_sources_for(tokenizer, registry, model.config.vocab_size, log=lambda m: print(m, file=sys.stderr))
    plain = PlainMethod(PlainDecoder(model, tokenizer=tokenizer), tokenizer)

    def method(name: str, budget: int | str) -> DraftkitMethod:
        members = [corpus[m]() if m in corpus else m for m in name.split("+")]  # "a+b": a composite
        source = members[0] if len(members) == 1 else members
        policy = (CostAwareBudget.calibrate(TargetModel(model), by_previous_step=False)
                  if budget == "auto-pooled" else budget)
        decoder = SpeculativeDecoder(model, source=source, budget=policy, tokenizer=tokenizer, registry=registry)
        return DraftkitMethod(decoder, tokenizer, f"{name}@{budget}")

    budgets: list[int | str] = [int(b) for b in args.budgets.split(",")] + ["auto"]
    if args.pooled:
        budgets.append("auto-pooled")
    sources = args.sources.split(",")
    methods = [plain] + [method(name, budget) for name in sources for budget in budgets]
    prompts = load_prompt_set(args.prompts, args.limit)

    def encode(text: str) -> torch.Tensor:
        return tokenizer(text, return_tensors="pt").input_ids

    config = BenchConfig(settings=GenSettings(max_new_tokens=args.max_new_tokens), repeats=args.repeats)
    result = run_benchmark(methods, prompts, encode, config)
    print(format_table(result))
    summary = {}
    for name in sources:
        rows = {s.name: s.speedup or 0.0 for s in result.summaries if s.name.startswith(name + "@")}
        fixed = {k: v for k, v in rows.items() if not k.split("@")[1].startswith("auto")}
        best = max(fixed, key=fixed.get)
        auto = rows[f"{name}@auto"]
        summary[name] = {"best_fixed": best, "best_fixed_speedup": fixed[best], "auto_speedup": auto,
                         "auto_vs_best": auto / fixed[best] if fixed[best] else None}
        print(f"{name}: best fixed {best} {fixed[best]:.2f}x, auto {auto:.2f}x "
              f"({auto / fixed[best]:.1%} of the best fixed budget)")
        if args.pooled:
            pooled = rows[f"{name}@auto-pooled"]
            summary[name]["auto_pooled_speedup"] = pooled
            print(f"{name}: auto without the previous-step context {pooled:.2f}x ({pooled / fixed[best]:.1%})")
    if args.confirm_repeats > 0:
        # The best of several noisy figures is biased upwards (the winner's curse), so comparing
        # auto with the sweep's maximum understates auto. A second run, with fresh decoders and
        # only the two contenders interleaved, measures both without that selection bias.
        contenders = [plain]
        for name in sources:
            best_budget = int(summary[name]["best_fixed"].split("@")[1])
            contenders += [method(name, best_budget), method(name, "auto")]
        confirm = run_benchmark(contenders, prompts, encode,
                                BenchConfig(settings=config.settings, repeats=args.confirm_repeats))
        print(format_table(confirm))
        write_results(confirm, Path(args.out) / "confirm", {"model": args.model, "confirm_of": "sweep.json"})
        speed = {s.name: s.speedup or 0.0 for s in confirm.summaries}
        for name in sources:
            best, auto = summary[name]["best_fixed"], speed[f"{name}@auto"]
            ratio = auto / speed[best] if speed[best] else None
            summary[name]["confirm"] = {"best_fixed_speedup": speed[best], "auto_speedup": auto, "auto_vs_best": ratio}
            share = f"{ratio:.1%}" if ratio is not None else "n/a"
            print(f"{name}, second run: {best} {speed[best]:.2f}x, auto {auto:.2f}x ({share})")
    out = Path(args.out)
    write_results(result, out, {"model": args.model, "sweep": summary, **cost_note})
    (out / "sweep.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
