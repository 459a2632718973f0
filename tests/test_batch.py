"""Batched and multi-sample ``generate()`` calls (``draftkit.engine.batch``).

A padded batch is decoded row by row; the output must be exactly Hugging
Face's batched ``generate`` (left padding, rows ending early filled with
``pad_token_id``). The tiny models are float64, so the padded batch forward of
HF and draftkit's per-row tree forwards cannot disagree on an argmax through a
near-tie.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import GenerationConfig, MaxLengthCriteria, StoppingCriteriaList, TextStreamer

import draftkit
from draftkit.errors import (
    BatchSizeError,
    EmptyPromptError,
    InvalidInputError,
    PromptTooLongError,
    UnsupportedSamplingError,
)
from draftkit.testing.models import tiny_model
from helpers import cached_model
from strategies import architectures, prompts

EOS = 3
PAD = 0


def left_padded(rows: list[list[int]], pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


@given(arch=architectures, rows=st.lists(prompts(max_len=12), min_size=1, max_size=3),
       source=st.sampled_from(["pld", "aded"]), budget=st.sampled_from([4, "auto"]),
       max_new=st.integers(1, 24))
def test_padded_batch_matches_hf_generate(arch, rows, source, budget, max_new):
    model = cached_model(arch, eos=EOS)
    ids, mask = left_padded(rows)
    expected = model.generate(ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                              eos_token_id=EOS, pad_token_id=PAD)
    decoder = draftkit.SpeculativeDecoder(model, source=source, budget=budget)
    out = decoder.generate(ids, attention_mask=mask, max_new_tokens=max_new, eos_token_id=EOS, pad_token_id=PAD)
    assert out.sequences.tolist() == expected.tolist()
    assert len(out.per_sequence) == (len(rows) if ids.shape[0] > 1 or 0 in mask else 0)
    for row, single in zip(rows, out.per_sequence, strict=False):  # each row exactly as a one-row call
        alone = decoder.generate([row], max_new_tokens=max_new, eos_token_id=EOS)
        assert single.sequences.tolist() == alone.sequences.tolist()
    assert out.new_tokens.shape[1] == out.sequences.shape[1] - ids.shape[1]


def test_right_padding_keeps_the_input_rows_and_appends_each_answer():
    model = cached_model("llama", eos=EOS)
    rows = [[5, 6, 7, 8, 9], [10, 11]]
    ids = torch.tensor([rows[0], rows[1] + [PAD] * 3])
    mask = torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(ids, attention_mask=mask, max_new_tokens=10,
                                                                    eos_token_id=None, pad_token_id=PAD)
    for i, row in enumerate(rows):
        alone = draftkit.PlainDecoder(model).generate([row], max_new_tokens=10, eos_token_id=None)
        assert out.sequences[i, :5].tolist() == ids[i].tolist()
        assert out.sequences[i, 5:].tolist() == alone.new_tokens[0].tolist()


def test_mask_inferred_from_pad_token_as_in_hf():
    model = cached_model("qwen2", eos=EOS)
    ids, mask = left_padded([[9, 8, 7, 6, 5, 4], [20, 21]], pad=1)
    expected = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=EOS,
                              pad_token_id=1)
    out = draftkit.PlainDecoder(model).generate(ids, max_new_tokens=8, eos_token_id=EOS, pad_token_id=1)
    assert out.sequences.tolist() == expected.tolist()


def test_one_left_padded_row_is_unpadded():
    model = cached_model("gpt2", eos=EOS)
    ids, mask = left_padded([[4, 5, 6]], pad=PAD)
    ids, mask = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids], 1), torch.cat([torch.zeros(1, 2, dtype=torch.long), mask], 1)
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(ids, attention_mask=mask, max_new_tokens=6,
                                                                    eos_token_id=None)
    alone = draftkit.PlainDecoder(model).generate([[4, 5, 6]], max_new_tokens=6, eos_token_id=None)
    assert out.sequences[0, :5].tolist() == ids[0].tolist()
    assert out.sequences[0, 5:].tolist() == alone.new_tokens[0].tolist()


def test_num_return_sequences_samples_rows_with_consecutive_seeds():
    model = cached_model("llama", eos=EOS)
    decoder = draftkit.SpeculativeDecoder(model, source="pld")
    out = decoder.generate([[5, 6, 7], [8, 9, 10]], attention_mask=[[1, 1, 1], [1, 1, 1]], max_new_tokens=12,
                           do_sample=True, num_return_sequences=3, seed=11, eos_token_id=None)
    assert out.sequences.shape == (6, 15)
    for i in range(6):
        prompt = [[5, 6, 7], [8, 9, 10]][i // 3]
        alone = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=12, do_sample=True, seed=11 + i,
                                                      eos_token_id=None)
        assert out.sequences[i].tolist() == alone.sequences[0].tolist()
    assert len({tuple(r) for r in out.sequences[:3].tolist()}) > 1  # the samples of a row differ


def test_num_return_sequences_from_the_generation_config():
    model = cached_model("llama", eos=EOS)
    config = GenerationConfig(num_return_sequences=2, do_sample=True, eos_token_id=None)
    out = draftkit.PlainDecoder(model).generate([[5, 6, 7]], generation_config=config, max_new_tokens=4, eos_token_id=None)
    assert out.sequences.shape == (2, 7)


def test_num_return_sequences_needs_sampling():
    model = cached_model("llama", eos=EOS)
    with pytest.raises(UnsupportedSamplingError, match="needs do_sample=True"):
        draftkit.SpeculativeDecoder(model, source="pld").generate([[5, 6, 7]], num_return_sequences=2,
                                                                  do_sample=False)


def counting(model):
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.parametrize("bad, error, match", [
    ({"input_ids": [[1, 2, 3], [4, 5]]}, InvalidInputError, "different lengths"),
    ({"attention_mask": [[1, 1, 1]]}, InvalidInputError, "shape"),
    ({"attention_mask": [[1, 0, 1], [1, 1, 1]]}, InvalidInputError, "between tokens"),
    ({"attention_mask": [[1, 1, 1], [0, 0, 0]]}, EmptyPromptError, "row 1"),
    ({"attention_mask": [[1, 1, 1], [0.5, 1, 1]]}, InvalidInputError, "0 \\(padding\\) and 1"),
    ({"pad_token_id": None, "eos_token_id": None, "max_time": 10.0}, InvalidInputError, "pad_token_id"),
    ({"input_ids": [[1, 2, 3], [4, 5, 96]], "attention_mask": [[1, 1, 1], [1, 1, 1]], "max_length": 3},
     InvalidInputError, "padded width of 3"),
    ({"input_ids": [[1, 2, 3], [4, 5, 500]]}, InvalidInputError, "row 1 of the batch: prompt token id 500"),
    ({"num_return_sequences": 0, "do_sample": True}, InvalidInputError, "num_return_sequences"),
])
def test_bad_batches_fail_before_any_row_is_decoded(bad, error, match):
    model = tiny_model("mistral", seed=3)  # its own model: the counting hook must not stay on a shared one
    decoder = draftkit.SpeculativeDecoder(model, source="pld")
    calls = counting(model)
    call = {"input_ids": [[1, 2, 3], [4, 5, 6]], "max_new_tokens": 4, "pad_token_id": 0, **bad}
    with pytest.raises(error, match=match):
        decoder.generate(**call)
    assert calls == []


def test_a_row_too_long_fails_before_the_others_are_decoded():
    model = tiny_model("gpt2", context=32)
    decoder = draftkit.PlainDecoder(model)
    calls = counting(model)
    ids = torch.tensor([[1] * 33, [2] * 33])
    mask = torch.ones_like(ids)
    mask[0, :20] = 0
    with pytest.raises(PromptTooLongError):
        decoder.generate(ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0)
    assert calls == []


def test_stream_and_streamer_refuse_a_batch():
    model = cached_model("llama", eos=EOS)
    decoder = draftkit.SpeculativeDecoder(model, source="pld")
    with pytest.raises(BatchSizeError, match="call generate\\(\\) for a batch"):
        decoder.stream([[1, 2], [3, 4]])
    with pytest.raises(BatchSizeError, match="streamer"):
        decoder.generate([[1, 2], [3, 4]], streamer=TextStreamer(None))
    with pytest.raises(InvalidInputError, match="generate\\(\\), which takes padded batches"):
        decoder.stream([[0, 1, 2]], attention_mask=[[0, 1, 1]])


def test_lengths_count_the_padded_width_as_in_hf():
    """``max_length``, ``min_length`` and a length criterion see the padded row in HF; the same here."""
    model = cached_model("llama", eos=EOS)
    ids, mask = left_padded([[5, 6, 7, 8, 9, 10, 11, 12], [20, 21]])
    for options in ({"max_length": 12}, {"max_new_tokens": 10, "min_length": 14},
                    {"max_new_tokens": 10, "stopping_criteria": StoppingCriteriaList([MaxLengthCriteria(12)])}):
        expected = model.generate(ids, attention_mask=mask, do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
                                  **options)
        out = draftkit.SpeculativeDecoder(model, source="pld").generate(
            ids, attention_mask=mask, eos_token_id=EOS, pad_token_id=PAD, **options)
        assert out.sequences.tolist() == expected.tolist(), options


def test_prefix_allowed_tokens_fn_gets_the_row_index_and_padded_row_as_in_hf():
    """Each row was once decoded as a one-row call, so the function always got batch_id 0."""
    model = cached_model("llama", eos=EOS)
    ids, mask = left_padded([[5, 6, 7, 8, 9], [20, 21], [30, 31, 32]])

    def allowed(batch_id: int, row: torch.Tensor) -> list[int]:
        return [10 + batch_id + len(row) % 3, 40 + batch_id, EOS]  # the index and the padded length

    for options in ({}, {"num_return_sequences": 2, "do_sample": True, "top_k": 2}):
        expected = model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD,
                                  prefix_allowed_tokens_fn=allowed, **options)
        out = draftkit.SpeculativeDecoder(model, source="pld").generate(
            ids, attention_mask=mask, max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD,
            prefix_allowed_tokens_fn=allowed, seed=0, **options)
        assert out.sequences.shape == expected.shape
        new = out.sequences[:, ids.shape[1]:]
        for i in range(new.shape[0]):  # sampled rows differ from HF's, but only in allowed tokens
            for t, token in enumerate(new[i].tolist()):
                padded_row = out.sequences[i, : ids.shape[1] + t]
                assert token in allowed(i, padded_row) or token == PAD, (i, t)
        if not options:
            assert out.sequences.tolist() == expected.tolist()


def test_a_length_criterion_counts_right_padding_as_in_hf():
    """HF appends a right-padded row's answer after its padding, and its length criteria count it."""
    model = cached_model("llama", eos=EOS)
    ids = torch.tensor([[5, 6, 7, 8, PAD, PAD], [9, 10, 11, 12, 13, 14]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6])
    criteria = StoppingCriteriaList([MaxLengthCriteria(10)])
    expected = model.generate(ids, attention_mask=mask, do_sample=False, pad_token_id=PAD, eos_token_id=EOS,
                              max_new_tokens=2, stopping_criteria=criteria)
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(
        ids, attention_mask=mask, pad_token_id=PAD, eos_token_id=EOS, max_new_tokens=2, stopping_criteria=criteria)
    assert out.sequences.shape == expected.shape == (2, 10)
    assert [len(s.sequences[0]) for s in out.per_sequence] == [8, 10]  # 4 new tokens after 4 + 2 padding


def test_prefix_allowed_tokens_fn_sees_right_padding_as_in_hf():
    """HF's prefix function gets the row as HF holds it: a right-padded row's padding lies between its
    prompt and its new tokens (the function once saw only the left padding)."""
    model = cached_model("llama", eos=EOS)
    ids = torch.tensor([[5, 6, 7, 8, PAD, PAD], [9, 10, 11, 12, 13, 14]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6])
    seen: list[tuple[int, list[int]]] = []

    def allowed(batch_id: int, row: torch.Tensor) -> list[int]:
        seen.append((batch_id, row.tolist()))
        return [20 + int(row[-1]) % 7, 30 + len(row) % 5, EOS]  # depends on the last token and the length

    expected = model.generate(ids, attention_mask=mask, do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
                              max_new_tokens=3, prefix_allowed_tokens_fn=allowed)
    hf_rows = sorted(seen)
    seen.clear()
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(
        ids, attention_mask=mask, eos_token_id=EOS, pad_token_id=PAD, max_new_tokens=3,
        prefix_allowed_tokens_fn=allowed)
    assert out.sequences.tolist() == expected.tolist()
    assert [5, 6, 7, 8, PAD, PAD] in [row for batch_id, row in seen if batch_id == 0]
    assert set(map(str, sorted(seen))) <= set(map(str, hf_rows))  # no row HF would not have shown


def test_no_pad_token_is_needed_when_no_row_can_end_early():
    model = cached_model("llama")  # no EOS, no pad
    out = draftkit.PlainDecoder(model).generate([[5, 6, 7], [8, 9, 10]], max_new_tokens=6, eos_token_id=None)
    assert out.sequences.shape == (2, 9)


def test_one_padded_row_streams_and_a_float_mask_is_accepted():
    model = cached_model("gpt2", eos=EOS)
    decoder = draftkit.SpeculativeDecoder(model, source="pld")

    class Collect:
        def __init__(self):
            self.chunks, self.ended = [], False

        def put(self, value):
            self.chunks.append(value.reshape(-1).tolist())

        def end(self):
            self.ended = True

    streamer = Collect()
    ids = torch.tensor([[PAD, PAD, 4, 5, 6, 4, 5]])
    out = decoder.generate(ids, attention_mask=torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]]),
                           max_new_tokens=8, eos_token_id=None, streamer=streamer)
    assert streamer.ended and streamer.chunks[0] == [4, 5, 6, 4, 5]
    assert sum(streamer.chunks[1:], []) == out.sequences[0, 7:].tolist()
    assert out.sequences[0, :7].tolist() == ids[0].tolist()
