"""The on-disk retrieval datastore: build, open, verify, and refusing damaged stores.

Each way a store can be unusable is refused with its own message: a missing or
invalid header, wrong magic, an edited header (checksum), another format
version, a truncated data file, a damaged data file (checksum, at verify), token
ids outside the vocabulary, another tokenizer.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import numpy as np
import pytest

from draftkit.errors import CorruptDataFileError, DataFileError, InvalidInputError, MismatchedDataFileError
from draftkit.fingerprint import tokenizer_fingerprint
from draftkit.sources.rest import (
    Datastore,
    Rest,
    build_datastore,
    build_datastore_from_files,
    read_header,
    verify_datastore,
)
from draftkit.sources.rest.datastore import HEADER_NAME, _header_digest, check_chunk_contents


def make_tokenizer(extra: str = ""):
    """A small byte-level BPE tokenizer trained here (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["[UNK]", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = "the quick brown fox jumps over the lazy dog. def main(): return 0\n" + extra
    tok.train_from_iterator([text] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50, size=rng.integers(1, 40)) for _ in range(40)]
    build_datastore(tmp_path / "store", docs, 50, tokenizer_fingerprint="sha256:" + "ab" * 32, chunk_tokens=300)
    return tmp_path / "store"


def rewrite_header(path: Path, edit, *, fix_checksum: bool) -> None:
    header = json.loads((path / HEADER_NAME).read_text())
    edit(header)
    if fix_checksum:
        header["header_sha256"] = _header_digest(header)
    (path / HEADER_NAME).write_text(json.dumps(header))


def test_build_open_verify_round_trip(store_dir: Path):
    store = verify_datastore(store_dir)
    assert len(store.chunks) > 1  # built in several chunks
    header = read_header(store_dir)
    assert header["num_tokens"] == sum(int((c.tokens != 50).sum()) for c in store.chunks)
    for chunk in store.chunks:
        assert isinstance(chunk.tokens, np.ndarray) and chunk.tokens.dtype == np.dtype("<u2")
        assert int(chunk.tokens[-1]) == 50  # every document ends with the separator
    assert "tokens" in store.info() and "50" in store.info()


def test_documents_never_cross_chunks_or_boundaries(tmp_path: Path):
    docs = [[1, 2, 3], [4, 5], list(range(6, 20))]  # the last one is longer than a chunk
    build_datastore(tmp_path, docs, 30, chunk_tokens=6)
    stored = [c.tokens.tolist() for c in Datastore.open(tmp_path).chunks]
    assert stored == [[1, 2, 3, 30], [4, 5, 30], [6, 7, 8, 9, 10, 30], [11, 12, 13, 14, 15, 30],
                      [16, 17, 18, 19, 30]]


def drop_page_cache(path: Path) -> None:
    """Evict a file from the page cache (freshly written pages are mapped in large folios)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def test_open_does_not_read_the_arrays(tmp_path: Path):
    """A 120 MB store opens without its pages becoming resident (memory-mapped)."""
    n = 20_000_000
    build_datastore(tmp_path, [np.zeros(1, np.int64)], 2)  # a valid store, then a large chunk swapped in
    block = 1 << 20
    with open(tmp_path / "chunk-00000.tokens", "wb") as f:
        for start in range(0, n, block):
            part = np.ones(min(block, n - start), "<u2")
            if start + part.size == n:
                part[-1] = 2
            f.write(part.tobytes())
    with open(tmp_path / "chunk-00000.sa", "wb") as f:
        for start in range(0, n, block):
            f.write(np.arange(start, min(n, start + block), dtype="<i4").tobytes())

    def fix(h):
        c = h["chunks"][0]
        c["length"], c["documents"] = n, 1
        c["tokens"]["bytes"], c["suffix_array"]["bytes"] = 2 * n, 4 * n
        h["num_tokens"], h["max_token_id"] = n - 1, 1

    rewrite_header(tmp_path, fix, fix_checksum=True)
    for name in ("chunk-00000.tokens", "chunk-00000.sa"):  # start cold, as after a reboot
        drop_page_cache(tmp_path / name)
    before = rss_bytes()
    store = Datastore.open(tmp_path)
    opened = rss_bytes() - before
    assert store.chunks[0].tokens.size == n
    assert opened < 2 << 20, opened  # the arrays are 120 MB
    store.preload()  # reading them does page them in
    assert rss_bytes() - before > 30 << 20


def test_vocab_200k_uses_32_bit_ids(tmp_path: Path):
    build_datastore(tmp_path, [[199_999, 65_536, 3], [65_535]], 200_000)
    store = verify_datastore(tmp_path)
    assert store.token_dtype == np.dtype("<u4")
    assert store.chunks[0].tokens.tolist() == [199_999, 65_536, 3, 200_000, 65_535, 200_000]


def test_build_refuses_bad_input(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="outside the vocabulary"):
        build_datastore(tmp_path / "a", [[1, 2, 300]], 256)
    with pytest.raises(InvalidInputError, match="no tokens"):
        build_datastore(tmp_path / "b", [[], []], 256)
    build_datastore(tmp_path / "c", [[1]], 256)
    with pytest.raises(InvalidInputError, match="not empty"):
        build_datastore(tmp_path / "c", [[1]], 256)
    build_datastore(tmp_path / "c", [[2]], 256, overwrite=True)
    assert Datastore.open(tmp_path / "c").chunks[0].tokens.tolist() == [2, 256]


def test_a_failed_rebuild_keeps_the_store_it_would_replace(tmp_path: Path):
    """The old store was once deleted before the new corpus was read: any failure lost it."""
    build_datastore(tmp_path / "s", [[1, 2, 3], [4, 5]], 256, chunk_tokens=4)
    before = sorted(p.name for p in (tmp_path / "s").iterdir())

    def interrupted():
        yield [7, 8, 9]
        raise KeyboardInterrupt

    for documents, error in (([[1, 2], [3, 999]], InvalidInputError), (interrupted(), KeyboardInterrupt)):
        with pytest.raises(error):
            build_datastore(tmp_path / "s", documents, 256, chunk_tokens=2, overwrite=True)
        assert sorted(p.name for p in (tmp_path / "s").iterdir()) == before
        assert verify_datastore(tmp_path / "s").num_tokens == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing built beside the store
    (tmp_path / "s" / ".building-killed").mkdir()  # what a killed build leaves: ignored, then removed
    build_datastore(tmp_path / "s", [[6]], 256, overwrite=True)  # a rebuild with fewer chunks
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted([HEADER_NAME, "chunk-00000.sa", "chunk-00000.tokens"])


# -- each corruption refused with its own message ----------------------------------------------------


def test_missing_header(tmp_path: Path):
    with pytest.raises(DataFileError, match="datastore.json not found"):
        Datastore.open(tmp_path)


def test_header_not_json(store_dir: Path):
    (store_dir / HEADER_NAME).write_bytes(b"{\x00garbage")
    with pytest.raises(CorruptDataFileError, match="not valid JSON"):
        Datastore.open(store_dir)


def test_wrong_magic(store_dir: Path):
    rewrite_header(store_dir, lambda h: h.update(magic="something-else"), fix_checksum=True)
    with pytest.raises(CorruptDataFileError, match="wrong magic"):
        Datastore.open(store_dir)


def test_flipped_byte_in_header(store_dir: Path):
    raw = bytearray((store_dir / HEADER_NAME).read_bytes())
    pos = raw.index(b'"num_documents": ') + len(b'"num_documents": ')
    raw[pos] = ord("9") if raw[pos] != ord("9") else ord("8")  # still valid JSON, different value
    (store_dir / HEADER_NAME).write_bytes(bytes(raw))
    with pytest.raises(CorruptDataFileError, match="header checksum mismatch"):
        Datastore.open(store_dir)


def test_wrong_format_version(store_dir: Path):
    rewrite_header(store_dir, lambda h: h.update(format_version=99), fix_checksum=True)
    with pytest.raises(MismatchedDataFileError, match="format version 99"):
        Datastore.open(store_dir)


def test_truncated_data_file(store_dir: Path):
    f = store_dir / "chunk-00001.sa"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(CorruptDataFileError, match="truncated"):
        Datastore.open(store_dir)


def test_missing_data_file(store_dir: Path):
    (store_dir / "chunk-00000.tokens").unlink()
    with pytest.raises(CorruptDataFileError, match="is missing"):
        Datastore.open(store_dir)


def test_flipped_byte_in_data_file_is_found_by_verify(store_dir: Path):
    f = store_dir / "chunk-00000.tokens"
    raw = bytearray(f.read_bytes())
    raw[4] ^= 0x01  # a token id changes, sizes do not
    f.write_bytes(bytes(raw))
    with pytest.raises(CorruptDataFileError, match="SHA-256 checksum mismatch"):
        verify_datastore(store_dir)


def test_ids_beyond_vocabulary(store_dir: Path):
    """Ids >= vocab are refused: at open via the header, at verify by the full scan."""
    rewrite_header(store_dir, lambda h: h.update(max_token_id=50), fix_checksum=True)
    with pytest.raises(CorruptDataFileError, match="records token id 50, outside the vocabulary"):
        Datastore.open(store_dir)


def test_ids_beyond_vocabulary_in_a_forged_store(tmp_path: Path):
    """A consistently forged store (checksums recomputed) with an id above the vocabulary."""
    import hashlib

    build_datastore(tmp_path, [[3, 1, 2], [4, 4]], 60)
    f = tmp_path / "chunk-00000.tokens"
    store = Datastore.open(tmp_path)
    tokens = store.chunks[0].tokens.copy()
    last = int(store.chunks[0].suffix_array[-1])  # the largest suffix stays the largest
    del store
    tokens[last] = 61
    f.write_bytes(tokens.tobytes())
    rewrite_header(tmp_path, lambda h: h["chunks"][0]["tokens"].update(
        sha256=hashlib.sha256(tokens.tobytes()).hexdigest()), fix_checksum=True)
    with pytest.raises(CorruptDataFileError, match=r"token id 61 .*outside the vocabulary"):
        verify_datastore(tmp_path)


def test_full_scan_finds_every_kind_of_damage():
    tokens = np.asarray([1, 2, 9, 3, 9], np.uint16)  # vocab 9: the separator is 9
    sa = np.asarray([0, 1, 3, 2, 4], np.int32)
    check_chunk_contents(tokens, sa, 9, 2, "ok")
    with pytest.raises(CorruptDataFileError, match="token id 12 at position 1 is outside the vocabulary"):
        check_chunk_contents(np.asarray([1, 12, 9], np.uint16), np.arange(3, dtype=np.int32), 9, 1, "c")
    with pytest.raises(CorruptDataFileError, match="3 document separators"):
        check_chunk_contents(np.asarray([9, 9, 9], np.uint16), np.arange(3, dtype=np.int32), 9, 1, "c")
    with pytest.raises(CorruptDataFileError, match="not a permutation"):
        check_chunk_contents(tokens, np.asarray([0, 0, 3, 2, 4], np.int32), 9, 2, "c")
    with pytest.raises(CorruptDataFileError, match="out of range"):
        check_chunk_contents(tokens, np.asarray([0, 7, 3, 2, 4], np.int32), 9, 2, "c")


def test_tokenizer_mismatch(tmp_path: Path):
    tok = make_tokenizer()
    other = make_tokenizer(extra="completely different words zebra quantum")
    assert tokenizer_fingerprint(tok) != tokenizer_fingerprint(other)
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox\n" * 10)
    build_datastore_from_files(tmp_path / "s", [corpus], tok, progress=False)
    Rest.open(tmp_path / "s", tokenizer=tok)  # the right tokenizer is accepted
    with pytest.raises(MismatchedDataFileError, match="built with another tokenizer"):
        Rest.open(tmp_path / "s", tokenizer=other)


def test_store_without_fingerprint_refuses_a_tokenizer_check(tmp_path: Path):
    build_datastore(tmp_path, [[1, 2, 3]], 400)
    with pytest.raises(MismatchedDataFileError, match="records no tokenizer fingerprint"):
        Datastore.open(tmp_path, tokenizer=make_tokenizer())


# -- corpus files --------------------------------------------------------------------------------------


def test_build_from_text_jsonl_and_npy(tmp_path: Path):
    tok = make_tokenizer()
    text = tmp_path / "a.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 3)
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("\n".join(json.dumps({"meta": {"body": s}}) for s in ["def main():", "", "return 0"]) + "\n")
    ids = tmp_path / "c.npy"
    np.save(ids, np.asarray([[5, 6, 7], [8, 9, 10]], dtype=np.int32))
    summary = build_datastore_from_files(tmp_path / "s", [text, jsonl, ids], tok, jsonl_field="meta.body",
                                         progress=False)
    store = verify_datastore(tmp_path / "s", tokenizer=tok)
    assert store.vocab_size == len(tok) and store.tokenizer_fingerprint == tokenizer_fingerprint(tok)
    expected = [tok(t, add_special_tokens=False)["input_ids"]
                for t in ["the quick brown fox jumps over the lazy dog\n" * 3, "def main():", "return 0"]]
    expected += [[5, 6, 7], [8, 9, 10]]
    assert summary.num_documents == len(expected)
    assert summary.num_tokens == sum(len(e) for e in expected)
    sep = store.separator_id
    flat = store.chunks[0].tokens.tolist()
    docs, cur = [], []
    for t in flat:
        if t == sep:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    assert docs == expected
    assert "tokens" in str(summary) and "MiB" in str(summary)


def test_jsonl_missing_field_is_reported(tmp_path: Path):
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(InvalidInputError, match="no field 'text'"):
        build_datastore_from_files(tmp_path / "s", [jsonl], make_tokenizer(), progress=False)


def test_large_text_files_are_split_into_pieces(tmp_path: Path):
    tok = make_tokenizer()
    line = "the quick brown fox jumps over the lazy dog\n"
    text = tmp_path / "big.txt"
    text.write_text(line * 40)
    summary = build_datastore_from_files(tmp_path / "s", [text], tok, progress=False,
                                         text_piece_bytes=len(line) * 7)
    assert summary.num_documents == 6  # 40 lines in pieces of 7 lines (the last one shorter)
    per_line = len(tok(line, add_special_tokens=False)["input_ids"])
    assert summary.num_tokens == 40 * per_line


def test_fingerprint_is_stable_across_save_and_load(tmp_path: Path):
    from transformers import AutoTokenizer

    tok = make_tokenizer()
    tok.save_pretrained(tmp_path)
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(tmp_path)) == tokenizer_fingerprint(tok)
    tok.add_tokens(["<new>"])
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(tmp_path)) != tokenizer_fingerprint(tok)


def test_cli_functions(tmp_path: Path):
    from draftkit.sources.rest.commands import datastore_build, datastore_info, datastore_verify

    tok_dir = tmp_path / "tok"
    make_tokenizer().save_pretrained(tok_dir)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"body": f"the quick brown fox {i}"}) for i in range(5)) + "\n")
    summary = datastore_build([corpus], tmp_path / "s", tokenizer=tok_dir, jsonl_field="body", progress=False)
    assert "5 documents" in summary and "MiB on disk" in summary
    assert "tokenizer       sha256:" in datastore_info(tmp_path / "s")
    assert datastore_verify(tmp_path / "s", tokenizer=tok_dir, progress=False).startswith("OK")
    (tmp_path / "s" / "chunk-00000.sa").write_bytes(b"")
    with pytest.raises(CorruptDataFileError, match="truncated"):
        datastore_verify(tmp_path / "s", progress=False)


# A damaged suffix array whose damage the spot checks of `open` do not sample: every entry
# out of range except the sampled ones (and their right neighbours, which the order check reads).
_UNSAMPLED_DAMAGE_SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
from draftkit.errors import CorruptDataFileError
from draftkit.sources.rest import Datastore, Rest, build_datastore, kernels, reference
from draftkit.sources.rest.datastore import _SPOT_CHECKS
from draftkit.sources.rest.suffix import RetrievalParams, retrieve
from draftkit.types import DraftRequest

out, bad = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
docs = [rng.integers(0, 50, 2000) for _ in range(5)]
build_datastore(out, docs, 97)
entry = json.loads((out / "datastore.json").read_text())["chunks"][0]["suffix_array"]
sa = np.memmap(out / entry["file"], dtype="<i4", mode="r+")
n = sa.size
spot = set(np.unique(np.linspace(0, n - 1, min(n, _SPOT_CHECKS)).astype(np.int64)).tolist())
sa[[i for i in range(n) if i not in spot and i - 1 not in spot]] = bad
sa.flush()
del sa
store = Datastore.open(out)  # the damage is not sampled
print("opened")
source = Rest(store)
chunks = [(c.tokens, c.suffix_array) for c in store.chunks]
for start in range(0, 200, 20):
    ctx = np.asarray(docs[0][start : start + 40], np.int64)
    try:
        source.propose(DraftRequest(context=ctx, prompt_length=40, max_depth=8, max_nodes=32, vocab_size=97))
    except CorruptDataFileError as exc:
        print("propose:", exc)
    else:
        print("propose: no error")
    for impl in (kernels, reference):
        try:
            retrieve(chunks, ctx, RetrievalParams(), separator=97, vocab_limit=97, stops=np.empty(0, np.int64),
                     max_depth=8, max_nodes=32, impl=impl, where=str(out))
        except CorruptDataFileError:
            print(impl.__name__.rsplit(".", 1)[1] + ": error")
        else:
            print(impl.__name__.rsplit(".", 1)[1] + ": no error")
"""


@pytest.mark.parametrize("bad", [-1_500_000_000, -1, 10_000_000])
def test_unsampled_suffix_array_damage_is_an_error_not_a_crash(tmp_path: Path, bad: int):
    """Out-of-range suffix-array entries that `open` does not sample must make `propose` raise
    CorruptDataFileError naming the store and `draftkit datastore verify`, never read outside the
    chunk (a negative entry used to segfault the interpreter, so this runs in a subprocess)."""
    import subprocess
    import sys

    store = tmp_path / "store"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", _UNSAMPLED_DAMAGE_SCRIPT, str(store), str(bad)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"exit code {run.returncode}: {run.stderr[-2000:]}"
    lines = run.stdout.splitlines()
    assert lines[0] == "opened"
    proposes = [line for line in lines if line.startswith("propose:")]
    assert len(proposes) == 10
    for line in proposes:
        assert str(store) in line and f"draftkit datastore verify {store}" in line and "suffix" in line
    assert lines.count("kernels: error") == 10 and lines.count("reference: error") == 10
    with pytest.raises(CorruptDataFileError, match="checksum mismatch"):  # what verify then says
        verify_datastore(store)


def test_the_decoder_refuses_a_datastore_built_for_another_tokenizer(tmp_path: Path):
    """A store opened without a tokenizer (as the CLI's path= option does) is checked by the decoder."""
    import draftkit
    from draftkit.testing.models import tiny_model

    tok, other = make_tokenizer(), make_tokenizer(extra="completely different words zebra quantum")
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 10)
    build_datastore_from_files(tmp_path / "s", [corpus], tok, progress=False)
    model = tiny_model("llama", vocab_size=max(len(tok), len(other)))
    draftkit.SpeculativeDecoder(model, source="rest", source_options={"path": str(tmp_path / "s")}, tokenizer=tok)
    with pytest.raises(MismatchedDataFileError, match="built with another tokenizer"):
        draftkit.SpeculativeDecoder(model, source="rest", source_options={"path": str(tmp_path / "s")},
                                    tokenizer=other)


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_WILLNEED"), reason="no madvise on this platform")
def test_small_stores_are_read_ahead_on_open_and_big_ones_stay_lazy(tmp_path: Path, monkeypatch):
    """On a cold page cache a lazily mapped store paid one 4 KB fault per first touch: the demo
    store's first requests drafted 5-10x slower than warm ones. A store that fits comfortably is now
    read ahead in the background when opened (MADV_WILLNEED, and not MADV_RANDOM, which made
    lookups that overtake the read fault page by page again); one past the limit, or
    preload=False, is mapped for random access; preload=True reads ahead too before touching it."""
    import mmap

    import draftkit.sources.rest.datastore as datastore_module

    build_datastore(tmp_path, [np.arange(1, 50) % 7, np.arange(3, 40) % 5], 8)
    advice: list[int] = []

    class RecordingMap(mmap.mmap):
        def madvise(self, option, *args):
            advice.append(option)
            return super().madvise(option, *args)

    monkeypatch.setattr(datastore_module.mmap, "mmap", RecordingMap)
    store = Datastore.open(tmp_path)
    assert advice == [mmap.MADV_WILLNEED] * 2  # tokens and suffix array of the one chunk
    assert store.chunks[0].tokens.size > 0
    for preload, expected in ((False, mmap.MADV_RANDOM), (True, mmap.MADV_WILLNEED)):
        advice.clear()
        Datastore.open(tmp_path, preload=preload)
        assert advice == [expected] * 2, preload
    advice.clear()
    monkeypatch.setattr(datastore_module, "PREFETCH_MAX_BYTES", 16)
    Datastore.open(tmp_path)
    assert advice == [mmap.MADV_RANDOM] * 2
    with pytest.raises(InvalidInputError, match="preload must be None, True or False"):
        Datastore.open(tmp_path, preload="none")
