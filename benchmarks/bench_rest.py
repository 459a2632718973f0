"""Benchmark of the ``rest`` source (not a test): build time and size, memory, lookup latency.

Corpus: the ``.py`` files of the installed site-packages (sorted by path), i.e.
real code, tokenised with a Hugging Face tokenizer (``--tokenizer``, default the
demo model's tokenizer when it exists, else a byte-level BPE trained here on the
standard library). Files are split 95/5 by a hash of their path: the store is
built from the 95 % up to ``--tokens`` tokens; decoding is simulated on held-out
files of the *standard library* (not in the store): at each step the source
proposes a draft for the text so far, the step "accepts" the longest drafted
path that equals the true continuation, plus one token, as greedy decoding with
a target that produces exactly the held-out text would. That gives propose()
latency on realistic contexts and, as a model-free proxy, the mean accepted
tokens per step, side by side with ``pld`` on the same text.

A second store of synthetic Zipf-distributed ids over a 200,000-token vocabulary
(uint32 ids) shows the large-vocabulary path (``--zipf-tokens``, 0 to skip).

Stores go under ``--work`` (default /work/bench_tmp/rest, outside the repo) and
are deleted at the end unless ``--keep``.

    OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/bench_rest.py [--tokens 50000000] [--steps 3000]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DEMO_TOKENIZER = Path("/work/demo_work/tokenizer")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def drop_page_cache(folder: Path) -> None:
    for p in folder.iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def in_split(path: Path, heldout: bool, share: int = 20) -> bool:
    return (hashlib.sha1(str(path).encode()).digest()[0] % share == 0) == heldout


def site_packages_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["purelib"])
    return sorted(p for p in root.rglob("*.py") if p.is_file() and p.stat().st_size > 0)


def stdlib_heldout_files(n: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in root.rglob("*.py")
        if "site-packages" not in p.parts and p.is_file() and 2_000 < p.stat().st_size < 60_000
    )
    return [p for p in files if in_split(p, True, 10)][:n]


def load_tokenizer(path: str | None):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if path is None and DEMO_TOKENIZER.is_dir():
        path = str(DEMO_TOKENIZER)
    if path is not None:
        return AutoTokenizer.from_pretrained(path)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=8192, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = (p.read_text(errors="replace") for p in sorted(root.glob("*.py")))
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def tokenise_corpus(tok, target_tokens: int) -> tuple[list[np.ndarray], int, float, int]:
    """Documents (uint16/int32) of the training split until ``target_tokens``; (docs, bytes, s, files)."""
    from draftkit.sources.rest import iter_corpus_documents

    files = [p for p in site_packages_files() if in_split(p, False)]
    t0 = time.perf_counter()
    docs: list[np.ndarray] = []
    total = 0
    used_bytes = 0
    used_files = 0
    dtype = np.uint16 if len(tok) < 65535 else np.int32
    step = 200
    for start in range(0, len(files), step):
        batch = files[start : start + step]
        for doc in iter_corpus_documents(batch, tok, progress=False):
            docs.append(doc.astype(dtype))
            total += doc.size
        used_bytes += sum(p.stat().st_size for p in batch)
        used_files += len(batch)
        if total >= target_tokens:
            break
        print(f"  tokenised {total / 1e6:.1f}M tokens ({used_bytes / 2**20:.0f} MiB of text)", file=sys.stderr)
    return docs, used_bytes, time.perf_counter() - t0, used_files


def longest_accepted(draft, truth: np.ndarray) -> int:
    """Tokens of the true continuation that the draft's tree covers (greedy acceptance)."""
    best = 0
    for seq in draft.sequences:
        k = 0
        while k < len(seq) and k < truth.size and seq[k] == truth[k]:
            k += 1
        best = max(best, k)
    return best


def simulate(source, docs: list[np.ndarray], steps: int, vocab: int, eos: frozenset[int], budget: int = 64,
             prompt: int = 32):
    """Walk held-out documents as greedy decoding of exactly that text would."""
    from draftkit.trees import TrieBuilder
    from draftkit.types import DraftRequest

    times, cpu_times, emitted, tree_times = [], [], [], []
    builder = TrieBuilder()
    done = 0
    for doc in docs:
        i = prompt
        while i < doc.size - 1 and done < steps:
            context = doc[:i]
            req = DraftRequest(context=context, prompt_length=prompt, max_depth=min(10, doc.size - i - 1),
                               max_nodes=budget, vocab_size=vocab, eos_token_ids=eos)
            c0 = time.thread_time_ns()
            t0 = time.perf_counter()
            draft = source.propose(req)
            t1 = time.perf_counter()
            cpu_times.append(time.thread_time_ns() - c0)
            builder.build(draft, budget, req.max_depth)
            tree_times.append(time.perf_counter() - t1)
            times.append(t1 - t0)
            acc = longest_accepted(draft, doc[i:])
            emitted.append(acc + 1)
            i += acc + 1
            done += 1
        if done >= steps:
            break
    t = np.asarray(times) * 1e6
    c = np.asarray(cpu_times) / 1e3
    return {
        "steps": len(times),
        "propose_us_median": float(np.median(t)),
        "propose_us_p90": float(np.percentile(t, 90)),
        "propose_us_p99": float(np.percentile(t, 99)),
        "propose_us_mean": float(t.mean()),
        # CPU time of the calling thread: excludes preemption by other processes on a shared machine
        "propose_cpu_us_median": float(np.median(c)),
        "propose_cpu_us_p99": float(np.percentile(c, 99)),
        "propose_cpu_us_mean": float(c.mean()),
        "trie_builder_us_median": float(np.median(np.asarray(tree_times) * 1e6)),
        "mean_accepted_tokens_proxy": float(np.mean(emitted)),
    }


def bench_store(name: str, out: Path, docs, vocab: int, fingerprint, chunk_tokens: int) -> dict:
    from draftkit.sources.rest import build_datastore

    gc.collect()
    t0 = time.perf_counter()
    summary = build_datastore(out, docs, vocab, tokenizer_fingerprint=fingerprint, chunk_tokens=chunk_tokens,
                              overwrite=True, source_description=name)
    seconds = time.perf_counter() - t0
    print(f"  {summary}", file=sys.stderr)
    return {
        "tokens": summary.num_tokens,
        "documents": summary.num_documents,
        "chunks": summary.num_chunks,
        "token_dtype": summary.token_dtype,
        "bytes_on_disk": summary.bytes_on_disk,
        "mib_on_disk": summary.bytes_on_disk / 2**20,
        "build_seconds_from_ids": seconds,
    }


def open_memory(out: Path) -> dict:
    from draftkit.sources.rest import Datastore

    drop_page_cache(out)
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    store = Datastore.open(out, preload=False)  # what opening itself costs, without the read-ahead
    seconds = time.perf_counter() - t0
    delta = rss() - before
    return {"open_seconds_cold": seconds, "open_rss_delta_mib_cold": delta / 2**20,
            "store_mib": store.bytes_on_disk / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50_000_000, help="tokens of the code store")
    ap.add_argument("--zipf-tokens", type=int, default=20_000_000, help="tokens of the synthetic u32 store")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--chunk-tokens", type=int, default=None)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--work", default="/work/bench_tmp/rest")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from draftkit.fingerprint import tokenizer_fingerprint
    from draftkit.sources.pld import PromptLookup
    from draftkit.sources.rest import Datastore, Rest
    from draftkit.sources.rest.datastore import DEFAULT_CHUNK_TOKENS

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}
    chunk_tokens = args.chunk_tokens or DEFAULT_CHUNK_TOKENS

    # -- real code ---------------------------------------------------------------------------
    tok = load_tokenizer(args.tokenizer)
    vocab = len(tok)
    eos = frozenset(i for i in [tok.eos_token_id] if i is not None)
    print(f"tokenising site-packages with a {vocab}-token tokenizer ...", file=sys.stderr)
    docs, text_bytes, tok_seconds, n_files = tokenise_corpus(tok, args.tokens)
    n_tok = sum(d.size for d in docs)
    results["code"] = {"tokenizer_vocab": vocab, "text_mib": text_bytes / 2**20, "files": n_files,
                       "tokenise_seconds": tok_seconds, "tokenise_mib_per_s": text_bytes / 2**20 / tok_seconds}
    code_dir = work / "code"
    print(f"building the code store ({n_tok / 1e6:.1f}M tokens) ...", file=sys.stderr)
    results["code"].update(bench_store("site-packages", code_dir, docs, vocab, tokenizer_fingerprint(tok),
                                       chunk_tokens))
    results["code"]["build_seconds_total"] = tok_seconds + results["code"]["build_seconds_from_ids"]
    del docs
    results["code"].update(open_memory(code_dir))

    heldout = [np.asarray(tok(p.read_text(errors="replace"), add_special_tokens=False)["input_ids"], np.int64)
               for p in stdlib_heldout_files(120)]
    t0 = time.perf_counter()
    # preload=False: the first pass measures the lazily mapped worst case (a store over
    # PREFETCH_MAX_BYTES, or preload=False); a smaller store is read ahead by default.
    source = Rest(Datastore.open(code_dir, preload=False))
    results["code"]["source_init_seconds_incl_jit"] = time.perf_counter() - t0
    before = rss()
    sims = {}
    print("simulating rest, first pass after a cold open ...", file=sys.stderr)
    sims["rest_first_pass_cold"] = simulate(source, heldout, args.steps, vocab, eos)
    print(f"  {json.dumps(sims['rest_first_pass_cold'])}", file=sys.stderr)
    for name, src in (
        ("rest", source),
        ("rest+context", Rest(source.store, include_context=True)),
        ("pld", PromptLookup()),
    ):
        print(f"simulating {name} on held-out stdlib files ...", file=sys.stderr)
        sims[name] = simulate(src, heldout, args.steps, vocab, eos)
        print(f"  {name}: {json.dumps(sims[name])}", file=sys.stderr)
    results["code"]["rss_delta_mib_after_lookups"] = (rss() - before) / 2**20
    results["code"]["simulation"] = sims
    del source
    gc.collect()

    # -- synthetic, 200k vocabulary --------------------------------------------------------------
    if args.zipf_tokens:
        vocab_z = 200_000
        rng = np.random.default_rng(0)
        ranks = rng.zipf(1.2, size=args.zipf_tokens)
        ranks = np.minimum(ranks - 1, vocab_z - 1)
        ids = rng.permutation(vocab_z)[ranks].astype(np.uint32)
        del ranks
        zdocs = np.split(ids, np.arange(2048, ids.size, 2048))
        zipf_dir = work / "zipf200k"
        print(f"building the synthetic store ({args.zipf_tokens / 1e6:.0f}M tokens, vocab 200k) ...",
              file=sys.stderr)
        results["zipf200k"] = bench_store("zipf", zipf_dir, zdocs, vocab_z, None, chunk_tokens)
        results["zipf200k"].update(open_memory(zipf_dir))
        queries = [np.asarray(rng.permutation(vocab_z)[np.minimum(rng.zipf(1.2, 600) - 1, vocab_z - 1)], np.int64)
                   for _ in range(10)]
        # contexts that end in a stored span, so lookups find long matches too
        queries += [np.concatenate([q[:40], ids[s : s + 400].astype(np.int64)])
                    for q, s in zip(queries[:10], rng.integers(0, ids.size - 400, 10), strict=True)]
        source = Rest(Datastore.open(zipf_dir, preload=False))
        simulate(source, queries, args.steps, vocab_z, frozenset())  # first pass: page faults
        results["zipf200k"]["simulation"] = {"rest": simulate(source, queries, args.steps, vocab_z, frozenset())}
        print(f"  zipf: {json.dumps(results['zipf200k']['simulation'])}", file=sys.stderr)
        del source, ids, zdocs

    results["machine"]["loadavg_end"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if not args.keep:
        shutil.rmtree(work / "code", ignore_errors=True)
        shutil.rmtree(work / "zipf200k", ignore_errors=True)


if __name__ == "__main__":
    main()
