"""A composite source against its members, side by side in one process.

    python benchmarks/composite.py --model demo --members pld,aded,recycling --prompts stdlib --limit 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from draftkit.bench.corpus import corpus_sources_for
from draftkit.bench.methods import DraftkitMethod, GenSettings, PlainMethod
from draftkit.bench.prompts import load_prompt_set
from draftkit.bench.report import format_table, write_results
from draftkit.bench.runner import BenchConfig, run_benchmark
from draftkit.engine import PlainDecoder, SpeculativeDecoder
from draftkit.loading import load_model_and_tokenizer
from draftkit.plugins import default_registry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--members", default="pld,aded")
    parser.add_argument("--prompts", default="stdlib")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="runs per prompt and method; the median counts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench-composite")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model)
    registry = default_registry()
    corpus = corpus_sources_for(tokenizer, registry, model.config.vocab_size, log=lambda m: print(m, file=sys.stderr))
    members = args.members.split(",")

    def make(name: str) -> object:
        return corpus[name]() if name in corpus else registry.source(name)

    methods = [PlainMethod(PlainDecoder(model, tokenizer=tokenizer), tokenizer)]
    for name in members:
        methods.append(DraftkitMethod(SpeculativeDecoder(model, source=make(name), tokenizer=tokenizer), tokenizer, name))
    composite = SpeculativeDecoder(model, source=[make(n) for n in members], tokenizer=tokenizer)
    methods.append(DraftkitMethod(composite, tokenizer, "+".join(members)))
    prompts = load_prompt_set(args.prompts, args.limit)
    config = BenchConfig(settings=GenSettings(max_new_tokens=args.max_new_tokens), repeats=args.repeats)
    result = run_benchmark(methods, prompts, lambda t: tokenizer(t, return_tensors="pt").input_ids, config,
                           progress=False)
    print(format_table(result))
    speed = {s.name: s.speedup or 0.0 for s in result.summaries}
    best = max(members, key=lambda n: speed[n])
    comp = speed["+".join(members)]
    print(f"composite {comp:.2f}x vs best member {best} {speed[best]:.2f}x: {comp / speed[best]:.2f}x")
    write_results(result, Path(args.out), {"model": args.model, "members": members})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
