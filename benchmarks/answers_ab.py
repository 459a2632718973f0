"""Corpus alone vs corpus + the model's own answers, side by side in one process.

Builds the benchmark's corpus artefacts (ADED matrix, retrieval datastore) twice
— from the demo corpus (``-c``) and from the demo corpus plus an answers file
(``-a``, default: the demo target's shipped answers) — and runs ``aded``,
``pld+aded`` and ``rest`` with each, interleaved on the same prompts, with every
output checked against plain decoding. Separate ``draftkit bench`` runs differ by
more than the effect measured here; one process does not.

    python benchmarks/answers_ab.py --prompts stdlib
    python benchmarks/answers_ab.py --prompts humaneval --answers my-answers.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from draftkit.bench.corpus import corpus_sources_for
from draftkit.bench.methods import DraftkitMethod, GenSettings, PlainMethod
from draftkit.bench.prompts import load_prompt_set
from draftkit.bench.report import format_table
from draftkit.bench.runner import BenchConfig, run_benchmark
from draftkit.demo.answers import demo_answers_path
from draftkit.engine import PlainDecoder, SpeculativeDecoder
from draftkit.loading import load_model_and_tokenizer
from draftkit.plugins import default_registry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--answers", type=Path, default=None, help="answers jsonl (default: the demo target's)")
    parser.add_argument("--prompts", default="humaneval")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    answers = args.answers or demo_answers_path()
    if answers is None:
        parser.error("no --answers given and this installation ships no demo answers")
    model, tok = load_model_and_tokenizer(args.model)
    registry = default_registry()
    vocab = model.config.vocab_size
    methods: list = [PlainMethod(PlainDecoder(model, tokenizer=tok), tok)]
    for tag, extra in (("c", None), ("a", answers)):
        factories = corpus_sources_for(tok, registry, vocab, answers=extra)
        for name, source in (("aded", factories["aded"]()), ("pld+aded", ["pld", factories["aded"]()]),
                             ("rest", factories["rest"]())):
            decoder = SpeculativeDecoder(model, source=source, tokenizer=tok, registry=registry)
            methods.append(DraftkitMethod(decoder, tok, f"{name}-{tag}"))
    prompts = load_prompt_set(args.prompts, args.limit)
    config = BenchConfig(settings=GenSettings(max_new_tokens=args.max_new_tokens), repeats=args.repeats)
    result = run_benchmark(methods, prompts, lambda text: tok(text, return_tensors="pt").input_ids, config)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
