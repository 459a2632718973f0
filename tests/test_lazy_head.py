"""Greedy verification with a separable LM head: logits only for the rows the walk reaches.

float64 tiny models (no near-ties can flip an argmax): the lazy path must give
exactly plain decoding's tokens, compute fewer logits rows than the tree has,
and be switched off for models whose forward does more than apply the head.
"""

from __future__ import annotations

import pytest
import torch

import draftkit
from draftkit.engine.target import TargetModel
from draftkit.testing.models import ARCHITECTURES, tiny_model
from draftkit.testing.sources import OracleSource
from helpers import hf_greedy


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_tested_architecture_has_a_separable_head(arch):
    assert TargetModel(tiny_model(arch)).head is not None


def _count_head_rows(model):
    rows = []
    handle = model.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
    return rows, handle


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_greedy_steps_compute_only_the_walked_rows(arch):
    model = tiny_model(arch)
    prompt = [5, 6, 7, 8]
    expected = hf_greedy(model, prompt, 40, None)
    decoder = draftkit.SpeculativeDecoder(model, source=OracleSource(expected, decoys=3), budget=16)
    rows, handle = _count_head_rows(model)
    try:
        out = decoder.generate([prompt], max_new_tokens=40)
    finally:
        handle.remove()
    assert out.sequences[0].tolist() == expected
    # One row per emitted token (accepted + bonus), not one per tree node.
    assert sum(rows) == out.stats.emitted
    assert out.stats.drafted > out.stats.emitted


@pytest.mark.parametrize("repetition_penalty", [1.0, 1.3])
def test_seeded_sampling_walks_lazy_rows_and_matches_plain_sampling(repetition_penalty):
    model = tiny_model("llama")
    prompt = [1, 2, 3, 1, 2, 3, 1, 2]
    options = dict(do_sample=True, seed=3, temperature=0.7, top_p=0.9, repetition_penalty=repetition_penalty)
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=24, **options)
    decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    rows, handle = _count_head_rows(model)
    try:
        out = decoder.generate([prompt], max_new_tokens=24, **options)
    finally:
        handle.remove()
    assert out.sequences.tolist() == plain.sequences.tolist()
    assert sum(rows) == out.stats.emitted  # one row per emitted token, not per tree node


def test_sources_reading_node_logits_keep_whole_tree_logits():
    from draftkit.testing.sources import ScriptedSource
    from draftkit.types import Draft, SourceCapabilities

    source = ScriptedSource(lambda request: Draft.chain([1, 2, 3]))
    source.capabilities = SourceCapabilities(wants_node_logits=True)
    model = tiny_model("llama")
    decoder = draftkit.SpeculativeDecoder(model, source=source, budget=8)
    rows, handle = _count_head_rows(model)
    try:
        out = decoder.generate([[4, 5, 6]], max_new_tokens=12)
    finally:
        handle.remove()
    assert sum(rows) == out.stats.drafted + out.stats.steps  # every row of every verified tree
    assert all(f.node_logits is not None for f in source.feedback[:-1])


def test_a_model_with_extra_logit_processing_falls_back_and_stays_exact():
    """A forward that changes logits after the head (like soft-capping) must not be split."""
    model = tiny_model("llama")
    bias = torch.linspace(-3.0, 3.0, model.config.vocab_size, dtype=torch.float64)
    inner = model.forward

    def biased_forward(*args, **kwargs):
        out = inner(*args, **kwargs)
        out.logits = out.logits + bias
        return out

    model.forward = biased_forward
    target = TargetModel(model)
    assert target.head is None
    prompt = [9, 8, 7, 9, 8, 7]
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=30)
    out = draftkit.SpeculativeDecoder(model, source="pld", budget=8).generate([prompt], max_new_tokens=30)
    assert out.sequences.tolist() == plain.sequences.tolist()
