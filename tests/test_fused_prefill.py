"""A prompt's prefill fused with the first step's forward (float64 models, so rows compare to 1e-9).

A fused step feeds ``prompt[:-1] + [pending] + tree`` in one forward; its rows, the
cache it leaves after a commit, and the next step must equal a separate prefill's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import draftkit
from draftkit.engine import target as target_module
from draftkit.engine.target import TargetModel, TargetSession
from draftkit.types import TokenTree
from helpers import cached_model, hf_greedy
from strategies import architectures, prompts, trees


@st.composite
def tree_and_path(draw):
    tokens, parents = draw(trees())
    tt = TokenTree.from_parents(tokens, parents)
    if tt.size == 0:
        return tt, ()
    return tt, tuple(int(i) for i in tt.path(draw(st.integers(0, tt.size - 1))))


@given(arch=architectures, prompt=prompts(), case=tree_and_path(), lazy=st.booleans())
def test_a_fused_first_step_equals_a_separate_prefill(arch, prompt, case, lazy):
    tree, path = case
    target = TargetModel(cached_model(arch))
    assert target.can_fuse_prefill
    results = []
    for defer in (False, True):
        session = TargetSession(target)
        session.prefill(torch.tensor(prompt), defer=defer)
        assert (session._deferred is not None) == (defer and len(prompt) > 1)
        if lazy:
            hidden = session.forward_tree_hidden(prompt[-1], tree)
            assert hidden.shape[0] == tree.size + 1
            rows = target.lazy_logits(hidden)[0 : tree.size + 1]
        else:
            rows = session.forward_tree(prompt[-1], tree)
        assert rows.shape == (tree.size + 1, target.vocab_size)
        session.commit(path)
        assert session.cache_len == len(prompt) + len(path)
        after = session.forward_tree(3, TokenTree.empty())
        results.append((rows, after, [(layer.keys, layer.values) for layer in session.cache.layers]))
    (rows_a, after_a, cache_a), (rows_b, after_b, cache_b) = results
    torch.testing.assert_close(rows_b, rows_a, rtol=0, atol=1e-9)
    torch.testing.assert_close(after_b, after_a, rtol=0, atol=1e-9)
    for (k_a, v_a), (k_b, v_b) in zip(cache_a, cache_b, strict=True):
        torch.testing.assert_close(k_b, k_a, rtol=0, atol=1e-9)
        torch.testing.assert_close(v_b, v_a, rtol=0, atol=1e-9)


@contextlib.contextmanager
def _counting_forwards(model: torch.nn.Module) -> Iterator[list[int]]:
    calls: list[int] = []
    handle = model.base_model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def test_plain_decoding_costs_one_forward_per_token_as_generate_does():
    model = cached_model("llama", seed=3)
    prompt = [5, 6, 7, 8, 9, 10]
    want = hf_greedy(model, prompt, 6, None)
    decoder = draftkit.PlainDecoder(model)
    with _counting_forwards(model) as calls:
        out = decoder.generate([prompt], max_new_tokens=6)
    assert out.sequences[0].tolist() == want
    assert len(calls) == 6  # the prompt's prefill is the first token's forward


def test_long_prompts_and_models_without_logits_to_keep_prefill_separately(monkeypatch):
    """Past FUSED_PREFILL_MAX, or when the forward cannot limit its logits, the prefill is its own
    forward, and the output is the same."""
    model = cached_model("gpt2", seed=4)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]
    want = hf_greedy(model, prompt, 16, None)
    monkeypatch.setattr(target_module, "FUSED_PREFILL_MAX", len(prompt) - 1)  # one token over
    decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=6)
    with _counting_forwards(model) as calls:
        out = decoder.generate([prompt], max_new_tokens=16)
    assert out.sequences[0].tolist() == want
    assert len(calls) == out.stats.steps + 1

    class NoLogitsToKeep(type(model)):
        def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    use_cache=None, **kwargs):
            kwargs.pop("logits_to_keep", None)
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids, past_key_values=past_key_values,
                                   use_cache=use_cache, **kwargs)

    monkeypatch.setattr(target_module, "FUSED_PREFILL_MAX", 1024)
    model.__class__ = NoLogitsToKeep
    try:
        decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=6)
        assert not decoder.target.can_fuse_prefill
        with _counting_forwards(model) as calls:
            out = decoder.generate([prompt], max_new_tokens=16)
        assert out.sequences[0].tolist() == want
        assert len(calls) == out.stats.steps + 1
    finally:
        model.__class__ = NoLogitsToKeep.__mro__[1]


@pytest.mark.parametrize("arch", ["mistral", "gemma2"])
def test_a_fused_prompt_keeps_the_sliding_window(arch):
    """A prompt of 20 tokens and a window of 4: the prompt's own rows are restricted too (Gemma 2
    mixes full and sliding layers, one mask per layer type)."""
    from transformers import AutoModelForCausalLM

    from draftkit.testing.models import tiny_config

    config = tiny_config(arch, 97)
    config.sliding_window = 4
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.float64).eval()
    target = TargetModel(model)
    assert target.can_fuse_prefill and target.sliding_window == 4
    prompt = torch.arange(20) % 13 + 2
    tree = TokenTree.from_parents([3, 4, 5, 6], [-1, 0, 0, 1])
    rows = []
    for defer in (False, True):
        session = TargetSession(target)
        session.prefill(prompt, defer=defer)
        rows.append(session.forward_tree(int(prompt[-1]), tree))
    torch.testing.assert_close(rows[1], rows[0], rtol=0, atol=1e-9)
