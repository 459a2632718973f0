"""Regression tests from review: concurrency, configured processors, mask probing, contracts."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import draftkit
from draftkit.errors import ContractViolationError, UnsupportedSamplingError
from draftkit.testing.models import tiny_model
from draftkit.testing.sources import OracleSource, ScriptedSource
from draftkit.types import Draft
from helpers import cached_model, hf_greedy


def test_interleaved_streams_of_one_decoder_do_not_share_a_cache():
    """float64 model: two requests stepped alternately both equal plain decoding."""
    model = cached_model("llama")
    decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    a, b = [[1, 2, 3, 1, 2, 3, 1]], [[9, 8, 7, 6, 9, 8]]
    sa, sb = decoder.stream(a, max_new_tokens=30), decoder.stream(b, max_new_tokens=30)
    out_a, out_b = [], []
    for _ in range(100):
        for stream, out in ((sa, out_a), (sb, out_b)):
            out.extend(next(stream, []))
    plain = draftkit.PlainDecoder(model)
    assert out_a == plain.generate(a, max_new_tokens=30).new_tokens[0].tolist()
    assert out_b == plain.generate(b, max_new_tokens=30).new_tokens[0].tolist()


def test_unsupported_options_switched_on_in_generation_config_are_refused():
    model = tiny_model("llama", seed=3)
    model.generation_config.num_beams = 3
    with pytest.raises(UnsupportedSamplingError, match="num_beams=3"):
        draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=4)
    model.generation_config.num_beams = 1
    draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=4)


def test_generation_config_sampling_defaults_are_used():
    """HF semantics: an omitted top_k comes from generation_config (here 1: sampling becomes greedy)."""
    model = tiny_model("gpt2", seed=4)
    model.generation_config.top_k = 1
    out = draftkit.SpeculativeDecoder(model).generate([[5, 6, 7]], max_new_tokens=12, do_sample=True, seed=3)
    assert out.sequences[0].tolist() == hf_greedy(model, [5, 6, 7], 12, None)


def test_attention_that_ignores_the_tree_mask_verifies_chains():
    """A backend that drops the 4-D mask (a causal-only kernel, as flash attention) would let tree
    siblings see each other: the decoder verifies chains with it, and says how to get trees back."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def ignore_mask(module, query, key, value, attention_mask, **kwargs):
        q, k = query.shape[-2], key.shape[-2]
        causal = torch.ones(q, k, dtype=torch.bool).tril(k - q)
        return sdpa_attention_forward(module, query, key, value, causal[None, None], **kwargs)

    AttentionInterface.register("draftkit_test_ignore_mask", ignore_mask)
    model = tiny_model("llama", seed=5)
    prompt = [[5, 6, 7, 5, 6, 7, 5, 6]]
    expected = draftkit.PlainDecoder(model).generate(prompt, max_new_tokens=30).sequences
    model.set_attn_implementation("draftkit_test_ignore_mask")
    with pytest.warns(UserWarning, match="attn_implementation='sdpa' to verify trees"):
        decoder = draftkit.SpeculativeDecoder(model, source=["pld", "aded"], budget=8)
    assert decoder.target.chain_only
    out = decoder.generate(prompt, max_new_tokens=30)
    assert torch.equal(out.sequences, expected) and out.stats.accepted > 0


def test_auto_budget_on_a_small_context():
    model = cached_model("gpt2", context=32)
    decoder = draftkit.SpeculativeDecoder(model, budget="auto")
    assert decoder.budget <= 14
    prompt = list(range(1, 11))
    out = decoder.generate([prompt], max_new_tokens=20)
    assert out.sequences.tolist() == draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=20).sequences.tolist()


@pytest.mark.parametrize("bad, match", [
    (None, "returned NoneType from propose"),
    ([1, 2], "returned list from propose"),
    (Draft((np.array([1.7, 2.2]),)), "token ids must be integers"),
])
def test_sources_returning_the_wrong_type(bad, match):
    model = cached_model("llama")
    source = ScriptedSource(lambda req: bad, name="sloppy")
    with pytest.raises(ContractViolationError, match=match):
        draftkit.SpeculativeDecoder(model, source=source).generate([[1, 2, 3]], max_new_tokens=4)


def test_feedback_stops_where_generation_stops():
    """After an EOS in the middle of an accepted block, the source sees the cut verdict, no node logits."""
    model = cached_model("llama")
    prompt = [7, 8, 9]
    free = hf_greedy(model, prompt, 30, None)
    eos = free[len(prompt) + 5]
    feedback = []

    class Watcher(OracleSource):
        capabilities = draftkit.SourceCapabilities(wants_node_logits=True)

        def observe(self, fb):
            feedback.append(fb)

    draftkit.SpeculativeDecoder(model, source=Watcher(free), tree="chain", budget=16).generate(
        [prompt], max_new_tokens=30, eos_token_id=eos)
    last = feedback[-1]
    assert last.emitted.tolist()[-1] == eos
    assert len(last.verdict.accepted_nodes) <= last.emitted.size
    assert last.node_logits is None
    assert all(fb.node_logits is not None for fb in feedback[:-1])


def test_numpy_integers_and_tensor_eos_are_accepted():
    model = cached_model("qwen2")
    out = draftkit.SpeculativeDecoder(model).generate(np.array([[1, 2, 3]]), max_new_tokens=np.int64(5),
                                                      eos_token_id=torch.tensor([3]))
    assert out.sequences.shape[1] <= 8


def test_generate_takes_what_a_tokenizer_returns_and_max_length_like_hf():
    """``decoder.generate(**tokenizer(text, return_tensors="pt"))`` as with ``model.generate``."""
    import torch

    from draftkit.errors import InvalidInputError
    from draftkit.testing.models import tiny_model

    model = tiny_model("llama")
    prompt = torch.tensor([[5, 6, 7, 5, 6]])
    encoded = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}
    for decoder in (draftkit.SpeculativeDecoder(model, source="pld", budget=8), draftkit.PlainDecoder(model)):
        expected = draftkit.PlainDecoder(model).generate(prompt, max_new_tokens=12).sequences
        got = decoder.generate(**encoded, max_new_tokens=12, pad_token_id=0, use_cache=True).sequences
        assert torch.equal(got, expected)
        assert decoder.generate(**encoded, max_length=17).sequences.shape[1] == 17  # prompt 5 + 12
        assert torch.equal(decoder.generate(prompt, max_length=17).sequences, expected)
        assert decoder.generate(prompt, max_new_tokens=3, max_length=17).sequences.shape[1] == 8  # HF: new wins
        assert decoder.generate(prompt).sequences.shape[1] == 5 + 128  # the default
        with pytest.raises(InvalidInputError, match="marks padding"):  # generate() unpads (tests/test_batch.py)
            decoder.stream(prompt, attention_mask=torch.tensor([[0, 1, 1, 1, 1]]))
        with pytest.raises(InvalidInputError, match="leaves no room"):
            decoder.generate(prompt, max_length=5)


def test_settings_stored_on_the_generation_config_are_read_like_model_generate():
    """EOS from the generation config only, its max_new_tokens / max_length, its stop_strings."""
    import torch

    from draftkit.errors import InvalidInputError
    from draftkit.testing.tokenizers import char_tokenizer

    prompt = torch.tensor([[5, 9, 13, 2, 40, 7]])
    model = tiny_model("llama")
    early = hf_greedy(model, prompt[0].tolist(), 30, None)[7]  # a token the model emits early
    model.config.eos_token_id = early
    model.generation_config.eos_token_id = None  # turns EOS stopping off in model.generate
    for decoder in (draftkit.SpeculativeDecoder(model, source="pld", budget=8), draftkit.PlainDecoder(model)):
        assert decoder.generate(prompt, max_new_tokens=30).sequences.shape[1] == 6 + 30
    model.generation_config.max_new_tokens = 7
    assert draftkit.SpeculativeDecoder(model, budget=8).generate(prompt).sequences.shape[1] == 6 + 7
    model.generation_config.max_new_tokens = None
    model.generation_config.max_length = 11
    assert draftkit.SpeculativeDecoder(model, budget=8).generate(prompt).sequences.shape[1] == 11
    # A configured max_length the prompt already fills: the error says where it was set (not typed).
    model.generation_config.max_length = 6
    for call in (lambda d: d.generate(prompt), lambda d: d.generate(torch.cat([prompt, prompt]))):
        with pytest.raises(InvalidInputError, match=r"max_length=6 \(set by the generation config.*pass max_new_tokens"):
            call(draftkit.SpeculativeDecoder(model, budget=8))
    model.generation_config.max_length = 11

    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok))
    ids = torch.tensor([tok("def f(x):\n").input_ids])
    text = tok.decode(hf_greedy(model, ids[0].tolist(), 30, None)[ids.shape[1]:])
    stop = text[5:7]
    model.generation_config.stop_strings = [stop]
    decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=8, tokenizer=tok)
    out = decoder.generate(ids, max_new_tokens=30)
    assert out.stats.finish_reason == "stop_string"
    with torch.inference_mode():  # HF reads the same generation config (a stop may span the prompt's end)
        expected = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=30,
                                  tokenizer=tok)
    assert out.sequences.tolist() == expected.tolist()
    with pytest.raises(InvalidInputError, match="generation config sets stop_strings"):
        draftkit.SpeculativeDecoder(model, source="pld", budget=8).generate(ids, max_new_tokens=30)
    assert draftkit.SpeculativeDecoder(model, budget=8).generate(ids, max_new_tokens=30, stop_strings=[]).stats.emitted == 30


def test_time_split_includes_the_prefill(monkeypatch):
    """The prompt's forward pass is counted in ``time_prefill``, or in ``time_verify`` when it runs
    inside the first step (it was once left out of every part).

    Setting up the request and the prompt's forward are each made to last at least 50 ms with a
    sleep, so the check does not depend on speed.
    """
    from draftkit.engine.target import TargetSession

    real_prefill, real_forward = TargetSession.prefill, TargetSession._forward

    def slow_prefill(self, prompt, defer=False):
        time.sleep(0.05)
        return real_prefill(self, prompt, defer)

    def slow_forward(self, *args, **kwargs):
        if self._deferred is not None:  # the fused prompt forward
            time.sleep(0.05)
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(TargetSession, "prefill", slow_prefill)
    monkeypatch.setattr(TargetSession, "_forward", slow_forward)
    model = tiny_model("llama", seed=3)
    for decoder in (draftkit.PlainDecoder(model), draftkit.SpeculativeDecoder(model, source="pld", budget=4)):
        stats = decoder.generate([[1, 2, 3, 1, 2]], max_new_tokens=2).stats
        parts = stats.time_prefill + stats.time_draft + stats.time_verify + stats.time_other
        assert stats.time_prefill >= 0.05 and stats.time_verify >= 0.05 and parts <= stats.time_total
