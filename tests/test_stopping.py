"""Stop tokens and stop strings behave like Hugging Face ``generate``."""

from __future__ import annotations

import functools

import torch
from hypothesis import given
from hypothesis import strategies as st

import draftkit
from draftkit.engine.stopping import StopStringMatcher
from draftkit.testing.sources import OracleSource
from draftkit.testing.tokenizers import char_tokenizer
from helpers import cached_model, hf_greedy
from strategies import architectures

STOPS = ["\nd", "e", "in", "f(", "x y", "  ", "re", ":\n"]


@functools.lru_cache(maxsize=1)
def tokenizer():
    return char_tokenizer()


@given(
    arch=architectures,
    prompt=st.text(alphabet="abc defxy(in\n:re", min_size=1, max_size=20),
    stops=st.lists(st.sampled_from(STOPS), min_size=1, max_size=3, unique=True),
    max_new=st.integers(1, 40),
    source=st.sampled_from(["pld", "oracle"]),
)
def test_stop_strings_match_hf_generate(arch, prompt, stops, max_new, source):
    tok = tokenizer()
    model = cached_model(arch, seed=1)
    ids = tok(prompt, return_tensors="pt").input_ids
    hf = model.generate(ids, max_new_tokens=max_new, do_sample=False, stop_strings=stops, tokenizer=tok,
                        attention_mask=torch.ones_like(ids), pad_token_id=0)[0].tolist()
    free = hf_greedy(model, ids[0].tolist(), max_new, None)
    src = "pld" if source == "pld" else OracleSource(free)
    out = draftkit.SpeculativeDecoder(model, source=src, budget=8).generate(
        ids, max_new_tokens=max_new, stop_strings=stops, tokenizer=tok
    )
    assert out.sequences[0].tolist() == hf
    plain = draftkit.PlainDecoder(model, tokenizer=tok).generate(ids, max_new_tokens=max_new, stop_strings=stops)
    assert plain.sequences[0].tolist() == hf


def test_matcher_overhangs_and_earlier_occurrences():
    tok = tokenizer()
    m = StopStringMatcher(tok, ["def"])
    ids = tok.encode("xx de")
    assert not m.completes_at(ids)
    assert m.completes_at(ids + tok.encode("f"))  # completes across tokens
    overhang = tok.convert_tokens_to_ids("f(")  # one token that runs past the stop string's end
    assert m.completes_at(ids + [overhang])
    assert not m.completes_at(tok.encode("def") + tok.encode("a"))  # already complete before


def test_stop_token_ids_end_generation_like_eos():
    model = cached_model("qwen2")
    prompt = [4, 5, 6]
    free = hf_greedy(model, prompt, 20, None)
    stop_tok = free[len(prompt) + 3]
    out = draftkit.SpeculativeDecoder(model, source=OracleSource(free)).generate(
        [prompt], max_new_tokens=20, stop_token_ids=[stop_tok]
    )
    first = free.index(stop_tok, len(prompt))
    assert out.sequences[0].tolist() == free[: first + 1]
    assert out.stats.finish_reason == "eos"


@functools.lru_cache(maxsize=1)
def bpe_tokenizer():
    """The demo model's byte-level BPE: multi-character tokens, and byte tokens that split UTF-8."""
    from transformers import AutoTokenizer

    from draftkit.demo import demo_model_path

    return AutoTokenizer.from_pretrained(demo_model_path("target"))


@given(
    ids=st.lists(st.integers(0, 8191), min_size=2, max_size=40),
    split=st.integers(1, 39),
    picks=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 6)), min_size=1, max_size=3),
    extra=st.sampled_from(["", "\ndef", "é", "\ufffd", " ("]),
)
def test_block_stop_check_agrees_with_the_token_by_token_check(ids, split, picks, extra):
    """StopConditions.cut decodes a whole block once to rule stop strings out; its answer must be
    the token-by-token one, on a real BPE tokenizer whose byte tokens can split a character."""
    from draftkit.engine.stopping import StopConditions

    tok = bpe_tokenizer()
    split = min(split, len(ids) - 1)
    sequence, emitted = ids[:split], ids[split:]
    text = tok.decode(ids)
    stops = [text[a % max(1, len(text)): a % max(1, len(text)) + n] for a, n in picks] + [extra]
    matcher = StopStringMatcher(tok, [s for s in stops if s])
    conditions = StopConditions(max_new_tokens=100, stop_strings=matcher)
    expected = (len(emitted), "")
    for i in range(len(emitted)):
        if matcher.completes_at(sequence + emitted[: i + 1]):
            expected = (i + 1, "stop_string")
            break
    assert conditions.cut(sequence, emitted, 0) == expected


@given(
    text=st.text(alphabet="ab (\n日本語é😀", min_size=2, max_size=14),
    picks=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 4)), min_size=1, max_size=3),
)
def test_stop_strings_ending_in_a_split_character_match_as_in_hf(text, picks):
    """Byte-level BPE splits '日' or '😀' over several byte tokens; the token that completes the
    character completes a stop string ending in it (it once never matched). Checked against HF's
    own StopStringCriteria at every prefix of the tokenized text."""
    from transformers import StopStringCriteria

    tok = bpe_tokenizer()
    ids = tok(text, add_special_tokens=False).input_ids
    stops = sorted({text[a % len(text): a % len(text) + n] for a, n in picks})
    matcher = StopStringMatcher(tok, stops)
    hf = StopStringCriteria(tok, stops)
    for k in range(1, len(ids) + 1):
        want = bool(hf(torch.tensor([ids[:k]]), None)[0])
        assert matcher.completes_at(ids[:k]) == want, (text, stops, k)


def test_an_empty_stop_string_stops_after_the_first_token_as_in_hf():
    tok = tokenizer()
    model = cached_model("llama", seed=1)
    ids = tok("abc de", return_tensors="pt").input_ids
    for stops in (["", "zz"], ""):  # a bare string is one stop string, as in HF
        hf = model.generate(ids, max_new_tokens=6, do_sample=False, stop_strings=stops, tokenizer=tok,
                            attention_mask=torch.ones_like(ids), pad_token_id=0)
        out = draftkit.SpeculativeDecoder(model, source="pld", budget=8).generate(
            ids, max_new_tokens=6, stop_strings=stops, tokenizer=tok)
        assert out.sequences.tolist() == hf.tolist() and hf.shape[1] == ids.shape[1] + 1
        assert out.stats.finish_reason == "stop_string"
