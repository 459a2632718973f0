"""draftkit.testing.contract: passes for well-behaved sources, names the source when one breaks the contract."""

from __future__ import annotations

import numpy as np
import pytest

from draftkit.errors import ContractViolationError
from draftkit.sources.pld import PromptLookup
from draftkit.testing.contract import check_source, contract_prompts
from draftkit.testing.sources import RandomQSource, ScriptedSource
from draftkit.types import Draft


def test_prompt_lookup_keeps_the_contract_and_helps():
    report = check_source(PromptLookup, architectures=("llama", "gpt2"), budgets=(1, 8), prompts=2)
    assert report.source_name == "pld"
    assert report.runs == 2 * 2 * 2 * 2 * 3
    assert report.mean_tokens_per_step > 1.0  # the repetitive prompts make lookup fire


def test_a_stochastic_source_is_run_through_the_sampling_path():
    report = check_source(lambda: RandomQSource.random(97, width=2, length=2),
                          architectures=("llama",), budgets=(4,), prompts=2)
    assert report.runs > 0 and report.steps > 0


def test_a_source_drafting_outside_the_vocabulary_is_named():
    def outside(request):
        return Draft.chain([request.vocab_size + 5])

    with pytest.raises(ContractViolationError, match="bad-ids"):
        check_source(lambda: ScriptedSource(outside, name="bad-ids"), architectures=("llama",), budgets=(2,),
                     prompts=1)


def test_a_source_writing_to_the_context_fails():
    def scribble(request):
        request.context[-1] = 0
        return Draft.empty()

    with pytest.raises((ContractViolationError, ValueError)):
        check_source(lambda: ScriptedSource(scribble, name="scribbler"), architectures=("llama",), budgets=(2,),
                     prompts=1)


def test_contract_prompts_are_reproducible_and_in_range():
    a, b = contract_prompts(50, 6, seed=3), contract_prompts(50, 6, seed=3)
    assert a == b and all(p and all(0 <= t < 50 for t in p) for p in a)
    assert len(set(map(tuple, a))) == 6
    assert np.asarray(a[0]).size >= 12  # a repetitive one


def test_a_difference_from_plain_decoding_is_reported_with_its_position(monkeypatch):
    import torch

    from draftkit.engine import PlainDecoder

    real = PlainDecoder.generate

    def off_by_one(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        seq = out.sequences.clone()
        seq[0, -1] = (seq[0, -1] + 1) % 97
        return type(out)(torch.as_tensor(seq), out.stats)

    monkeypatch.setattr(PlainDecoder, "generate", off_by_one)
    with pytest.raises(AssertionError, match="differs from plain decoding at position"):
        check_source(PromptLookup, architectures=("llama",), budgets=(2,), prompts=1)
