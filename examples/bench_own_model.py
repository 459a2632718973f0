"""Benchmark draft sources on your own model folder, from Python.

Run:  python examples/bench_own_model.py PATH [--methods plain,hf,pld] [--prompts quick]

Equivalent to `draftkit bench --model PATH ...`; shown here to make the pieces
visible: methods, prompt sets, the interleaved runner and the report writers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from draftkit.bench.methods import GenSettings
from draftkit.bench.prompts import load_prompt_set
from draftkit.bench.report import format_table, write_results
from draftkit.bench.runner import BenchConfig, run_benchmark
from draftkit.bench.setup import build_methods
from draftkit.plugins import default_registry


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a local Hugging Face model folder")
    parser.add_argument("--methods", default="plain,hf,hf-pld,pld")
    parser.add_argument("--prompts", default="quick")
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", default="bench-own")
    args = parser.parse_args()

    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    methods = build_methods(model, tokenizer, args.methods.split(","), registry=default_registry())
    prompts = load_prompt_set(args.prompts, args.limit)
    # The context window lets the runner skip prompts the model cannot take, as `draftkit bench` does.
    window = getattr(model.config, "max_position_embeddings", None)
    config = BenchConfig(settings=GenSettings(max_new_tokens=args.max_new_tokens), context_window=window)
    result = run_benchmark(methods, prompts, lambda t: tokenizer(t, return_tensors="pt").input_ids, config)
    print(format_table(result))
    print("results:", write_results(result, Path(args.out), {"model": args.model}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
