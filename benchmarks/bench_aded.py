"""Benchmark of the ``aded`` source (not a test): build speed, memory, propose() latency.

Corpus: the Python standard library's ``.py`` files, tokenised with a byte-level
BPE tokenizer trained here (``--vocab`` tokens, default 16384). Files are split
90/10 by a hash of their path: the matrix is built from the 90 %, and decoding
is simulated on the held-out 10 %: at each step the source proposes a draft for
the text so far, the step "accepts" the longest drafted prefix that equals the
true continuation, and the source observes the accepted tokens plus one. That
gives the propose()/observe() latency at realistic table states and, as a
model-free proxy, the mean accepted tokens per step of a target that would
produce exactly the held-out text.

With ``draftretriever`` (ADED's official crate, PyPI 0.1.1; benchmark only)
installed, its ``Writer``/``Reader.search`` run on the same corpus and held-out
documents, side by side. ``Reader.search`` does the adaptive update and the MCTS
in one call, so it is compared with draftkit's propose() + observe().

    OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/bench_aded.py [--max-mb 32] [--steps 3000]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np


def stdlib_files(max_bytes: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    out, size = [], 0
    for p in files:
        s = p.stat().st_size
        if s == 0:
            continue
        out.append(p)
        size += s
        if size >= max_bytes:
            break
    return out


def is_heldout(path: Path) -> bool:
    return hashlib.sha1(str(path).encode()).digest()[0] % 10 == 0


def train_tokenizer(files: list[Path], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"], show_progress=False)
    sample, size = [], 0
    for p in files:
        text = p.read_text(errors="replace")
        sample.append(text)
        size += len(text)
        if size > 6_000_000:
            break
    tok.train_from_iterator(sample, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def encode(tokenizer, files: list[Path]) -> list[np.ndarray]:
    texts = [p.read_text(errors="replace") for p in files]
    out = []
    for i in range(0, len(texts), 64):
        for ids in tokenizer(texts[i : i + 64], add_special_tokens=False)["input_ids"]:
            out.append(np.asarray(ids, dtype=np.int64))
    return out


def accepted_len(paths, truth: np.ndarray) -> int:
    best = 0
    for p in paths:
        m = 0
        for a, b in zip(p, truth, strict=False):
            if a != b:
                break
            m += 1
        best = max(best, m)
    return best


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) * 1e6


def simulate_draftkit(source, docs, steps: int, prompt_len: int, max_nodes: int, max_depth: int):
    from draftkit import DraftRequest, StepFeedback, TokenTree, Verdict

    empty_tree, verdict = TokenTree.empty(), Verdict((), 0)
    t_prop, t_obs, emitted_per_step, cpu_prop = [], [], [], []
    vocab = source.vocab_size
    done = 0
    for doc in docs:
        if doc.size <= prompt_len + 8:
            continue
        source.begin(doc[:prompt_len])
        t = prompt_len
        while t < doc.size - 1 and done < steps:
            ctx = doc[:t]
            req = DraftRequest(context=ctx, prompt_length=prompt_len, max_depth=max_depth, max_nodes=max_nodes,
                               vocab_size=vocab)
            c0 = time.thread_time()
            t0 = time.perf_counter()
            draft = source.propose(req)
            t1 = time.perf_counter()
            cpu_prop.append(time.thread_time() - c0)
            acc = accepted_len([s.tolist() for s in draft.sequences], doc[t : t + max_depth])
            emitted = doc[t : t + acc + 1]
            fb = StepFeedback(context=ctx, tree=empty_tree, verdict=verdict, emitted=emitted)
            t2 = time.perf_counter()
            source.observe(fb)
            t3 = time.perf_counter()
            t_prop.append(t1 - t0)
            t_obs.append(t3 - t2)
            emitted_per_step.append(emitted.size)
            t += emitted.size
            done += 1
        if done >= steps:
            break
    return t_prop, t_obs, emitted_per_step, cpu_prop


def simulate_official(reader, docs, steps: int, prompt_len: int, tail: int):
    t_search, emitted_per_step, cpu_search = [], [], []
    done = 0
    for doc in docs:
        if doc.size <= prompt_len + 8:
            continue
        t = prompt_len
        lst = doc.tolist()
        while t < doc.size - 1 and done < steps:
            ctx = lst[max(0, t - tail) : t]
            c0 = time.thread_time()
            t0 = time.perf_counter()
            paths = reader.search(ctx)[0]
            t1 = time.perf_counter()
            cpu_search.append(time.thread_time() - c0)
            paths = [[x for x in p if x != -2] for p in paths]
            acc = accepted_len(paths, doc[t : t + 16])
            t_search.append(t1 - t0)
            emitted_per_step.append(acc + 1)
            t += acc + 1
            done += 1
        if done >= steps:
            break
    return t_search, emitted_per_step, cpu_search


def simulate_pld(docs, steps: int, prompt_len: int, max_depth: int):
    from draftkit import DraftRequest
    from draftkit.sources.pld import PromptLookup

    src = PromptLookup()
    emitted_per_step, done = [], 0
    for doc in docs:
        if doc.size <= prompt_len + 8:
            continue
        t = prompt_len
        while t < doc.size - 1 and done < steps:
            req = DraftRequest(context=doc[:t], prompt_length=prompt_len, max_depth=max_depth, max_nodes=32,
                               vocab_size=1 << 20)
            d = src.propose(req)
            acc = accepted_len([s.tolist() for s in d.sequences], doc[t : t + max_depth])
            emitted_per_step.append(acc + 1)
            t += acc + 1
            done += 1
        if done >= steps:
            break
    return emitted_per_step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-mb", type=float, default=32.0, help="stdlib source to read (MB)")
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=3000, help="simulated decoding steps per method")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--max-nodes", type=int, default=64)
    ap.add_argument("--max-depth", type=int, default=16)
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--out", default="bench-results/aded.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from draftkit.sources.aded import AdaptConfig, AdaptiveTable, Aded, build_matrix, warm_up
    from draftkit.sources.aded import table as table_mod

    res: dict[str, object] = {"loadavg_start": os.getloadavg()[0]}
    files = stdlib_files(int(args.max_mb * 1e6))
    train_files = [p for p in files if not is_heldout(p)]
    test_files = [p for p in files if is_heldout(p)]
    t0 = time.perf_counter()
    tok = train_tokenizer(train_files, args.vocab)
    res["tokenizer_train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train = encode(tok, train_files)
    test = encode(tok, test_files)
    res["encode_s"] = time.perf_counter() - t0
    vocab = len(tok)
    n_tokens = int(sum(d.size for d in train))
    res.update(vocab=vocab, train_files=len(train_files), train_tokens=n_tokens, test_files=len(test_files),
               test_tokens=int(sum(d.size for d in test)))
    print(f"corpus: {n_tokens:,} training tokens, vocab {vocab}, {len(test_files)} held-out files", flush=True)

    warm_up()
    build_matrix([np.arange(10)], 16)  # compile outside the timing
    gc.collect()
    t0 = time.perf_counter()
    matrix = build_matrix(train, vocab)
    build_s = time.perf_counter() - t0
    uniq, _ = table_mod._reduce_chunk(train, vocab, np.empty(0, np.int64))
    distinct = int(uniq.size)
    del uniq
    table = AdaptiveTable(matrix, AdaptConfig())
    res.update(
        build_s=build_s,
        build_tokens_per_s=n_tokens / build_s,
        distinct_trigrams=distinct,
        bigrams=matrix.num_bigrams,
        entries=matrix.num_entries,
        matrix_bytes=matrix.nbytes,
        table_bytes=table.nbytes,
        matrix_mb_per_million_distinct=matrix.nbytes / 1e6 / (distinct / 1e6),
        table_mb_per_million_distinct=table.nbytes / 1e6 / (distinct / 1e6),
        table_mb_per_million_entries=table.nbytes / 1e6 / (matrix.num_entries / 1e6),
    )
    del table
    print(f"build: {build_s:.2f} s ({n_tokens / build_s / 1e6:.1f} M tokens/s); {distinct:,} distinct trigrams, "
          f"{matrix.num_entries:,} entries kept; table {res['table_bytes'] / 1e6:.1f} MB", flush=True)

    src = Aded(matrix=matrix)
    t_prop, t_obs, em, cpu_prop = simulate_draftkit(src, test, args.steps, args.prompt_len, args.max_nodes,
                                                    args.max_depth)
    both = np.asarray(t_prop) + np.asarray(t_obs)
    res["draftkit"] = dict(
        steps=len(t_prop),
        propose_median_us=pct(t_prop, 50), propose_p99_us=pct(t_prop, 99),
        propose_cpu_median_us=pct(cpu_prop, 50), propose_cpu_p99_us=pct(cpu_prop, 99),
        observe_median_us=pct(t_obs, 50), observe_p99_us=pct(t_obs, 99),
        propose_observe_median_us=pct(both, 50), propose_observe_p99_us=pct(both, 99),
        mean_accepted_tokens=float(np.mean(em)),
    )
    print("draftkit aded:", json.dumps(res["draftkit"]), flush=True)
    src_empty = Aded(vocab_size=vocab)
    _, _, em_empty, _ = simulate_draftkit(src_empty, test, args.steps, args.prompt_len, args.max_nodes, args.max_depth)
    res["draftkit_online_only_mean_accepted_tokens"] = float(np.mean(em_empty))
    res["pld_mean_accepted_tokens"] = float(np.mean(simulate_pld(test, args.steps, args.prompt_len, args.max_depth)))

    if not args.no_official:
        try:
            import draftretriever
        except ImportError:
            print("draftretriever not installed: skipping the official implementation", file=sys.stderr)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "official.idx")
                lists = [d.tolist() for d in train]
                t0 = time.perf_counter()
                writer = draftretriever.Writer(path, vocab)
                for lst in lists:
                    writer.add_entry(lst)
                writer.finalize()
                off_build = time.perf_counter() - t0
                del writer, lists
                t0 = time.perf_counter()
                reader = draftretriever.Reader(path)
                off_load = time.perf_counter() - t0
                t_search, em_off, cpu_search = simulate_official(reader, test, args.steps, args.prompt_len, 32)
            res["official"] = dict(
                build_s=off_build, build_tokens_per_s=n_tokens / off_build, load_s=off_load, steps=len(t_search),
                search_median_us=pct(t_search, 50), search_p99_us=pct(t_search, 99),
                search_cpu_median_us=pct(cpu_search, 50), search_cpu_p99_us=pct(cpu_search, 99),
                mean_accepted_tokens=float(np.mean(em_off)),
            )
            print("official draftretriever:", json.dumps(res["official"]), flush=True)

    res["loadavg_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
