"""ADED matrix files: round trip, and every kind of damage or mismatch refused with its own message.

Also the corpus helper and the ``draftkit aded build`` function, with a small
word-level tokenizer trained here (no hub access).
"""

from __future__ import annotations

import argparse
import json
import struct

import numpy as np
import pytest

from draftkit.errors import CorruptDataFileError, MismatchedDataFileError
from draftkit.sources.aded import (
    FORMAT_VERSION,
    Aded,
    build_matrix,
    build_matrix_from_files,
    load_matrix,
    save_matrix,
    tokenizer_fingerprint,
)
from draftkit.sources.aded.cli import add_build_arguments, build_matrix_cli

TEXT = (
    "the cat sat on the mat . the cat ate the rat . a dog sat on the log . "
    "the dog ate the cat food . the rat sat on the cat . "
) * 3


def make_tokenizer(extra: str = ""):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "</s>"])
    tok.train_from_iterator([TEXT + extra], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


FP = "sha256:" + bytes(range(32)).hex()


@pytest.fixture
def matrix():
    rng = np.random.default_rng(0)
    return build_matrix([rng.integers(0, 50, 2000)], 50, fingerprint=FP)


def test_round_trip(tmp_path, matrix):
    path = save_matrix(matrix, tmp_path / "m.aded")
    back = load_matrix(path, vocab_size=50, fingerprint=FP)
    assert list(back.rows()) == list(matrix.rows())
    assert (back.vocab_size, back.top_k, back.tokens, back.fingerprint) == (50, 12, 2000, FP)
    assert back.keys.flags.writeable and back.weights.dtype == np.float32


def test_truncated_file_refused(tmp_path, matrix):
    path = save_matrix(matrix, tmp_path / "m.aded")
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CorruptDataFileError, match="truncated: the header announces"):
        load_matrix(path)
    path.write_bytes(data[:60])
    with pytest.raises(CorruptDataFileError, match="shorter than the 128-byte header"):
        load_matrix(path)


@pytest.mark.parametrize("offset", [130, 900, -1, 20, 50, 100])
def test_flipped_byte_refused(tmp_path, matrix, offset):
    path = save_matrix(matrix, tmp_path / "m.aded")
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataFileError, match="checksum|truncated|wrong length"):
        load_matrix(path)


def test_bad_magic_refused(tmp_path, matrix):
    path = save_matrix(matrix, tmp_path / "m.aded")
    data = bytearray(path.read_bytes())
    data[0:8] = b"NOTADED!"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataFileError, match="bad magic"):
        load_matrix(path)


def test_a_folder_given_as_the_matrix_is_refused_by_name(tmp_path):
    """A datastore's folder passed as ``matrix=`` once surfaced as a bare IsADirectoryError."""
    with pytest.raises(CorruptDataFileError, match="is a folder, not an ADED matrix file"):
        load_matrix(tmp_path)


def test_wrong_version_refused(tmp_path, matrix):
    path = save_matrix(matrix, tmp_path / "m.aded")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, FORMAT_VERSION + 1)
    path.write_bytes(bytes(data))
    with pytest.raises(MismatchedDataFileError, match=f"format version {FORMAT_VERSION + 1}"):
        load_matrix(path)


def test_mismatched_vocabulary_and_tokenizer_refused(tmp_path, matrix):
    path = save_matrix(matrix, tmp_path / "m.aded")
    with pytest.raises(MismatchedDataFileError, match="vocabulary of 50 tokens, not 51"):
        load_matrix(path, vocab_size=51)
    with pytest.raises(MismatchedDataFileError, match="another tokenizer"):
        load_matrix(path, fingerprint="sha256:" + "ab" * 32)
    with pytest.raises(MismatchedDataFileError, match="another tokenizer"):
        Aded.load(path, tokenizer=make_tokenizer())
    bare = save_matrix(build_matrix([np.arange(10)], 50), tmp_path / "bare.aded")
    with pytest.raises(MismatchedDataFileError, match="records no tokenizer fingerprint"):
        load_matrix(bare, tokenizer=make_tokenizer())


def test_inconsistent_content_refused_even_with_valid_checksum(tmp_path):
    from draftkit.sources.aded import TrigramMatrix

    bad = TrigramMatrix(10, np.array([5, 3], np.int64), np.array([0, 1, 2], np.int64),
                        np.array([1, 2], np.int32), np.array([1.0, 1.0], np.float32))
    path = save_matrix(bad, tmp_path / "bad.aded")
    with pytest.raises(CorruptDataFileError, match="not strictly increasing"):
        load_matrix(path)
    bad = TrigramMatrix(10, np.array([3], np.int64), np.array([0, 1], np.int64),
                        np.array([12], np.int32), np.array([1.0], np.float32))
    with pytest.raises(CorruptDataFileError, match="outside the vocabulary"):
        load_matrix(save_matrix(bad, tmp_path / "bad2.aded"))


def test_fingerprint_identifies_the_vocabulary():
    a, b = make_tokenizer(), make_tokenizer()
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(b)
    assert tokenizer_fingerprint(a).startswith("sha256:")
    assert tokenizer_fingerprint(make_tokenizer(" zebra")) != tokenizer_fingerprint(a)


def test_build_from_text_and_jsonl_files(tmp_path):
    tok = make_tokenizer()
    (tmp_path / "a.txt").write_text(TEXT)
    with open(tmp_path / "b.jsonl", "w") as f:
        for line in TEXT.split(" . "):
            f.write(json.dumps({"body": line, "other": 1}) + "\n")
    m = build_matrix_from_files(tok, [tmp_path / "a.txt", tmp_path / "b.jsonl"], jsonl_field="body", progress=False)
    ids = tok("the cat sat", add_special_tokens=False)["input_ids"]
    succ = dict(m.successors_of(ids[0], ids[1]))
    assert ids[2] in succ
    assert m.vocab_size == len(tok) and m.fingerprint == tokenizer_fingerprint(tok)
    # Same counts as tokenising each document by hand.
    docs = [TEXT] + TEXT.split(" . ")
    want = build_matrix([np.asarray(tok(d, add_special_tokens=False)["input_ids"]) for d in docs], len(tok))
    assert list(m.rows()) == list(want.rows())


def test_build_cli_function(tmp_path):
    tok = make_tokenizer()
    tok.save_pretrained(tmp_path / "tok")
    (tmp_path / "c.txt").write_text(TEXT)
    parser = add_build_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--tokenizer", str(tmp_path / "tok"), "--corpus", str(tmp_path / "c.txt"),
                              "-o", str(tmp_path / "m.aded"), "--no-progress", "--top-k", "4"])
    assert build_matrix_cli(args) == 0
    src = Aded.load(tmp_path / "m.aded", tokenizer=tok)
    assert src.vocab_size == len(tok)
    assert src.to_matrix().top_k == 4


def test_saved_learnt_state_loads_as_the_new_corpus_state(tmp_path):
    src = Aded(vocab_size=30, iterations=20)
    src.table.update(np.array([1, 2, 3, 4, 1, 2, 3]))
    src.save(tmp_path / "learnt.aded")
    back = Aded.load(tmp_path / "learnt.aded", iterations=20)
    assert list(back.to_matrix().rows()) == list(src.to_matrix().rows())
    assert back.num_inserted == 0


def test_the_decoder_refuses_a_matrix_built_for_another_tokenizer(tmp_path):
    """A matrix given by path (as the CLI does) is checked against the decoder's tokenizer and model."""
    import draftkit
    from draftkit.fingerprint import tokenizer_fingerprint
    from draftkit.testing.models import tiny_model

    tok, other = make_tokenizer(), make_tokenizer(extra=" zebra quantum")
    model = tiny_model("llama", vocab_size=len(other))
    ids = [tok.convert_tokens_to_ids(t) for t in TEXT.split()]
    path = save_matrix(build_matrix([np.asarray(ids)], len(tok), fingerprint=tokenizer_fingerprint(tok)),
                       tmp_path / "m.aded")
    draftkit.SpeculativeDecoder(model, source="aded", source_options={"matrix": str(path)}, tokenizer=tok)
    with pytest.raises(MismatchedDataFileError, match="another tokenizer"):
        draftkit.SpeculativeDecoder(model, source="aded", source_options={"matrix": str(path)}, tokenizer=other)
    with pytest.raises(MismatchedDataFileError, match="another tokenizer"):  # inside a composite too
        draftkit.SpeculativeDecoder(model, source=["pld", Aded.load(path)], tokenizer=other)
    small = tiny_model("llama", vocab_size=len(tok) - 2)
    with pytest.raises(MismatchedDataFileError, match=f"vocabulary of {len(tok)} tokens, but the model has"):
        draftkit.SpeculativeDecoder(small, source=Aded.load(path))
