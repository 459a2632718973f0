"""`draftkit generate` end to end on a local model folder."""

from __future__ import annotations

import torch

from draftkit.cli import main
from draftkit.engine import PlainDecoder
from draftkit.testing.models import tiny_model
from draftkit.testing.tokenizers import char_tokenizer


def _model_dir(tmp_path):
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), eos_token_id=None, dtype=torch.float64)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return tok, model


def test_generate_with_a_composite_source_prints_plain_decodings_text(tmp_path, capsys):
    tok, model = _model_dir(tmp_path)
    prompt = "abcabcabcab"
    rc = main(["generate", "--model", str(tmp_path), "--dtype", "float64", "--source", "pld+aded",
               "--source-option", "pld.max_ngram=2", "--max-new-tokens", "20", prompt])
    out = capsys.readouterr()
    assert rc == 0
    assert "[pld+aded]" in out.err and "finish: length" in out.err
    ids = tok(prompt, return_tensors="pt").input_ids
    expected = PlainDecoder(model).generate(ids, max_new_tokens=20).sequences[0, ids.shape[1]:]
    assert out.out == prompt + tok.decode(expected.tolist(), skip_special_tokens=True) + "\n"


def test_composite_options_must_name_their_member(tmp_path, capsys):
    _model_dir(tmp_path)
    rc = main(["generate", "--model", str(tmp_path), "--source", "pld+aded", "--source-option", "max_ngram=2",
               "x"])
    assert rc != 0
    assert "pld.max_ngram=2" in capsys.readouterr().err
