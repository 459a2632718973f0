"""draftkit's ``aded`` against ADED's official implementation, through one engine.

The official crate (PyPI ``draftretriever`` 0.1.1, ADED's own Rust code; install
with ``pip install 'draftkit[official]'``) is wrapped as a draft source: every
step its ``Reader.search`` (adaptive update + MCTS) proposes the paths for the
last 32 context tokens, and draftkit's engine verifies them exactly like the
paths of draftkit's ``aded``. Same model, corpus (the demo corpus' training
split), prompts and tree budget; outputs are checked against plain decoding.

    python benchmarks/aded_vs_official.py --model demo --prompts stdlib --limit 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from draftkit.bench.corpus import corpus_documents, corpus_tokens, default_cache_dir
from draftkit.bench.methods import DraftkitMethod, GenSettings, PlainMethod
from draftkit.bench.prompts import load_prompt_set
from draftkit.bench.report import format_table, write_results
from draftkit.bench.runner import BenchConfig, run_benchmark
from draftkit.engine import PlainDecoder, SpeculativeDecoder
from draftkit.loading import load_model_and_tokenizer
from draftkit.types import Draft, DraftRequest, SourceCapabilities, StepFeedback


class OfficialAded:
    """ADED's official ``Reader.search`` as a draftkit source (benchmark only)."""

    name = "aded-official"
    capabilities = SourceCapabilities(stateful=True)

    def __init__(self, reader: object, tail: int = 32) -> None:
        self.reader = reader
        self.tail = tail

    def begin(self, prompt: np.ndarray) -> None:
        pass

    def observe(self, feedback: StepFeedback) -> None:
        pass  # the official search adapts from the context it is given

    def reset(self) -> None:
        pass

    def propose(self, request: DraftRequest) -> Draft:
        paths = self.reader.search(request.context[-self.tail :].tolist())[0]
        seqs = []
        for path in paths:
            toks = [t for t in path if 0 <= t < request.vocab_size]
            for j, t in enumerate(toks):  # never past an EOS
                if t in request.eos_token_ids:
                    toks = toks[: j + 1]
                    break
            if toks:
                seqs.append(np.asarray(toks[: request.max_depth], dtype=np.int64))
        # The official paths come ranked; keep that order as weights.
        return Draft(tuple(seqs), tuple(float(len(seqs) - i) for i in range(len(seqs)))) if seqs else Draft.empty()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--prompts", default="stdlib")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--budget", default="64", help="tree budget for both (an integer or 'auto')")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench-aded-official")
    args = parser.parse_args()
    try:
        import draftretriever
    except ImportError:
        print("needs the official package: pip install 'draftkit[official]'", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    budget = args.budget if args.budget == "auto" else int(args.budget)
    model, tokenizer = load_model_and_tokenizer(args.model)
    from draftkit.fingerprint import tokenizer_fingerprint
    from draftkit.sources.aded import Aded, build_matrix

    folder = default_cache_dir() / "bench" / tokenizer_fingerprint(tokenizer).split(":")[-1][:16]
    docs = corpus_documents(corpus_tokens(tokenizer, folder), tokenizer.eos_token_id)
    vocab = model.config.vocab_size
    ours = Aded(vocab, matrix=build_matrix(docs, vocab))
    # Not a TemporaryDirectory: the official reader keeps its file open until the process ends.
    tmp = tempfile.mkdtemp(prefix="draftkit-official-")
    path = os.path.join(tmp, "official.idx")
    writer = draftretriever.Writer(path, vocab)
    for d in docs:
        writer.add_entry(d.tolist())
    writer.finalize()
    official = OfficialAded(draftretriever.Reader(path))
    methods = [
        PlainMethod(PlainDecoder(model, tokenizer=tokenizer), tokenizer),
        DraftkitMethod(SpeculativeDecoder(model, source=ours, budget=budget, tokenizer=tokenizer), tokenizer, "aded"),
        DraftkitMethod(SpeculativeDecoder(model, source=official, budget=budget, tokenizer=tokenizer), tokenizer,
                       "aded-official"),
    ]
    prompts = load_prompt_set(args.prompts, args.limit)
    config = BenchConfig(settings=GenSettings(max_new_tokens=args.max_new_tokens))
    result = run_benchmark(methods, prompts, lambda t: tokenizer(t, return_tensors="pt").input_ids, config,
                           progress=False)
    print(format_table(result))
    write_results(result, Path(args.out), {"model": args.model, "prompts": args.prompts, "budget": args.budget})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
