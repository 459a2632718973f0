"""``output_scores`` / ``output_logits`` and ``stopping_criteria``, as ``model.generate`` has them.

The scores of the tokens a speculative step emits come from the rows of the
accepted path; they must be Hugging Face's own (float32, one [1, V] tensor per
new token), and a user's stopping criteria must see what HF shows them and stop
at the same token. The tiny models are float64: the tree forward and HF's
single-token forwards then differ only far below float32's resolution, and
near-ties cannot flip an argmax.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import MaxLengthCriteria, StoppingCriteria, StoppingCriteriaList

import draftkit
from draftkit.errors import InvalidInputError
from draftkit.testing.sources import OracleSource
from helpers import cached_model
from strategies import VOCAB, architectures, prompts

EOS = 3


def close(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == torch.float32 and x.shape == y.shape and torch.allclose(x, y, rtol=1e-5, atol=1e-5, equal_nan=True)
        for x, y in zip(a, b, strict=True))


@given(arch=architectures, prompt=prompts(), source=st.sampled_from(["pld", "aded", "oracle"]),
       processors=st.sampled_from([{}, {"repetition_penalty": 1.3}, {"no_repeat_ngram_size": 2}]),
       max_new=st.integers(1, 20))
def test_scores_and_logits_equal_hf_generate(arch, prompt, source, processors, max_new):
    model = cached_model(arch, eos=EOS)
    ids = torch.tensor([prompt])
    hf = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
                        eos_token_id=EOS, pad_token_id=0, output_scores=True, output_logits=True, return_dict_in_generate=True, **processors)
    if source == "oracle":  # the whole answer drafted, plus decoys: every row of a long path is read
        part = OracleSource([hf.sequences[0].tolist()], decoys=2)
    else:
        part = source
    decoder = draftkit.SpeculativeDecoder(model, source=part, budget=8)
    out = decoder.generate(ids, max_new_tokens=max_new, eos_token_id=EOS, output_scores=True, output_logits=True,
                           **processors)
    assert out.sequences.tolist() == hf.sequences.tolist()
    assert close(out.scores, hf.scores) and close(out.logits, hf.logits)
    assert close(out["scores"], hf.scores)


def test_sampled_scores_are_plain_decodings_under_the_same_seed():
    model = cached_model("gpt2", eos=EOS)
    options = dict(max_new_tokens=16, do_sample=True, temperature=0.8, top_k=20, top_p=0.9, seed=5,
                   output_scores=True, eos_token_id=None)
    plain = draftkit.PlainDecoder(model).generate([[4, 5, 6, 4, 5, 6]], **options)
    spec = draftkit.SpeculativeDecoder(model, source="pld").generate([[4, 5, 6, 4, 5, 6]], **options)
    assert spec.sequences.tolist() == plain.sequences.tolist()
    assert close(spec.scores, plain.scores)
    assert any(torch.isinf(s).any() for s in spec.scores)  # the warpers' removals, as HF's scores show them
    assert spec.logits is None


class StopAfter(StoppingCriteria):
    """Stops after ``token``; records what it was shown, to compare with what HF shows it."""

    def __init__(self, token: int) -> None:
        self.token, self.seen = token, []

    def __call__(self, input_ids, scores, **kwargs):
        self.seen.append((input_ids.shape[-1], None if scores is None else len(scores)))
        return input_ids[:, -1] == self.token


@pytest.mark.parametrize(("record_scores", "as_dict"), [(False, True), (True, False), (True, True)])
@pytest.mark.parametrize("source", ["pld", "aded"])
def test_stopping_criteria_stop_where_hf_stops_and_see_what_hf_shows(record_scores, as_dict, source):
    model = cached_model("llama", eos=EOS)
    ids = torch.tensor([[5, 6, 7, 5, 6, 7, 5, 6]])
    full = draftkit.PlainDecoder(model).generate(ids, max_new_tokens=20, eos_token_id=None).new_tokens[0].tolist()
    token = full[6]  # a token in the middle of the answer: the criterion must cut a step's block
    hf_criterion, criterion = StopAfter(token), StopAfter(token)
    hf = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                        eos_token_id=None, pad_token_id=0, stopping_criteria=StoppingCriteriaList([hf_criterion]), output_scores=record_scores,
                        return_dict_in_generate=as_dict)
    out = draftkit.SpeculativeDecoder(model, source=source, budget=8).generate(
        ids, max_new_tokens=20, eos_token_id=None, stopping_criteria=StoppingCriteriaList([criterion]),
        output_scores=record_scores, return_dict_in_generate=as_dict)
    hf_sequences = hf.sequences if as_dict else hf
    assert out.sequences.tolist() == hf_sequences.tolist()
    assert out.stats.finish_reason == "stopping_criteria"
    assert criterion.seen == hf_criterion.seen


def test_builtin_criteria_and_plain_callables():
    model = cached_model("qwen2", eos=EOS)
    ids = torch.tensor([[9, 8, 7, 9, 8]])
    decoder = draftkit.SpeculativeDecoder(model, source="pld")
    out = decoder.generate(ids, max_new_tokens=20, eos_token_id=None, stopping_criteria=[MaxLengthCriteria(12)])
    assert out.sequences.shape[1] == 12
    out = decoder.generate(ids, max_new_tokens=20, eos_token_id=None,
                           stopping_criteria=lambda input_ids, scores: input_ids.shape[-1] >= 9)
    assert out.sequences.shape[1] == 9
    with pytest.raises(InvalidInputError, match="not callable"):
        decoder.generate(ids, max_new_tokens=4, stopping_criteria=[3])
    with pytest.raises(InvalidInputError, match="got str.*stop_strings"):
        decoder.generate(ids, max_new_tokens=4, stopping_criteria="stop")
    with pytest.raises(InvalidInputError, match="returned None"):
        decoder.generate(ids, max_new_tokens=4, stopping_criteria=[lambda input_ids, scores: None])


def test_batch_scores_are_laid_out_per_position_with_finished_rows_at_minus_inf():
    model = cached_model("mistral", eos=EOS)
    decoder = draftkit.SpeculativeDecoder(model, source="pld")
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    out = decoder.generate(ids, max_new_tokens=10, eos_token_id=None, pad_token_id=0, output_scores=True,
                           stopping_criteria=[lambda input_ids, scores: input_ids[0, 1] == 6 and input_ids.shape[-1] >= 6])
    rows = [o.new_tokens.shape[1] for o in out.per_sequence]
    assert rows == [3, 10]
    assert len(out.scores) == 10 and all(s.shape == (2, VOCAB) for s in out.scores)
    assert torch.equal(out.scores[1][0], out.per_sequence[0].scores[1][0])
    assert bool(torch.isinf(out.scores[5][0]).all()) and not bool(torch.isinf(out.scores[5][1]).all())
