"""Length and stopping options resolved as ``model.generate`` resolves them (float64 tiny models).

Each case is compared with Hugging Face's own ``generate`` on the same model and call; every one
of them once differed (an explicit length of 20 read as unset, a configured ``max_new_tokens``
losing to a call's ``max_length``, a user's ``MaxLengthCriteria`` / ``EosTokenCriteria`` added to
draftkit's own instead of replacing them, an explicit ``pad_token_id=None`` in a batch).
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import EosTokenCriteria, GenerationConfig, MaxLengthCriteria, StoppingCriteriaList

import draftkit
from helpers import cached_model

PROMPT = torch.tensor([[5, 6, 7, 8, 9, 10]])


def _model_with(**generation_config):
    model = copy.deepcopy(cached_model("llama", seed=5))
    for key, value in generation_config.items():
        setattr(model.generation_config, key, value)
    return model


def _both(model, ids=PROMPT, **options):
    hf = model.generate(ids, do_sample=False, attention_mask=torch.ones_like(ids), **options)
    ours = draftkit.SpeculativeDecoder(model, source="pld", budget=6).generate(ids, **options)
    return hf.tolist(), ours.sequences.tolist()


@pytest.mark.parametrize("where", ["call_config", "model_config"])
def test_an_explicit_max_length_of_20_is_a_length(where):
    model = _model_with(max_length=20) if where == "model_config" else _model_with()
    options = {"generation_config": GenerationConfig(max_length=20)} if where == "call_config" else {}
    hf, ours = _both(model, **options)
    assert len(hf[0]) == 20 and ours == hf


def test_a_configured_max_new_tokens_wins_over_the_calls_max_length():
    hf, ours = _both(_model_with(max_new_tokens=17), max_length=30)
    assert len(hf[0]) == PROMPT.shape[1] + 17 and ours == hf


def test_a_users_length_criterion_replaces_the_built_in_length():
    model = _model_with()
    criteria = StoppingCriteriaList([MaxLengthCriteria(PROMPT.shape[1] + 12)])
    hf, ours = _both(model, max_new_tokens=5, stopping_criteria=criteria)
    assert len(hf[0]) == PROMPT.shape[1] + 12 and ours == hf


def test_a_users_eos_criterion_replaces_the_built_in_eos():
    model = _model_with()
    free = model.generate(PROMPT, do_sample=False, max_new_tokens=12, eos_token_id=None)[0].tolist()
    eos, other = free[PROMPT.shape[1] + 1], free[PROMPT.shape[1] + 4]
    model.generation_config.eos_token_id = eos
    criteria = StoppingCriteriaList([EosTokenCriteria(other)])
    hf, ours = _both(model, max_new_tokens=12, stopping_criteria=criteria)
    assert hf[0][-1] == other and ours == hf  # the model's EOS no longer stops generation


def test_an_explicit_pad_token_id_none_pads_a_batch_with_eos():
    model = _model_with(pad_token_id=0)
    free = model.generate(PROMPT, do_sample=False, max_new_tokens=8, eos_token_id=None)[0].tolist()
    eos = free[PROMPT.shape[1] + 2]
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    hf = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8,
                        eos_token_id=eos, pad_token_id=None)
    ours = draftkit.SpeculativeDecoder(model, source="pld").generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, eos_token_id=eos, pad_token_id=None)
    assert ours.sequences.tolist() == hf.tolist()


def test_top_p_zero_keeps_the_likeliest_token_as_in_hf():
    model = _model_with()
    hf = model.generate(PROMPT, do_sample=True, top_p=0.0, max_new_tokens=8)
    ours = draftkit.SpeculativeDecoder(model, source="pld").generate(PROMPT, do_sample=True, top_p=0.0,
                                                                    max_new_tokens=8, seed=1)
    assert ours.sequences.tolist() == hf.tolist()
