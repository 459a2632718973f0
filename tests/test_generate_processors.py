"""The other logits processors of ``model.generate`` (``draftkit.processors``) stay lossless.

Every test compares with an external reference: Hugging Face's own ``generate``
(greedy) or its own processor list (distributions). The tiny models are float64,
so a near-tie between two logits cannot flip an argmax between the tree forward
and HF's sequential forwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import GenerationConfig
from transformers.generation.logits_process import LogitsProcessor

import draftkit
from draftkit.engine.request import plan_request
from draftkit.engine.target import TargetModel
from draftkit.errors import InvalidInputError, UnsupportedSamplingError
from draftkit.logits import LogitsPipeline
from draftkit.testing.sources import OracleSource, RandomQSource
from helpers import cached_model
from strategies import VOCAB, architectures, generate_processor_options, prompts


class BanEvenPositions(LogitsProcessor):
    """A user's processor that depends on the position and writes into its input (allowed in HF)."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] % 2 == 0:
            scores[:, self.token] = -float("inf")
        return scores


def hf_generate(model, prompt: list[int], max_new_tokens: int, eos: int | None, **options) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                         pad_token_id=eos if eos is not None else 0, attention_mask=torch.ones_like(ids),
                         **options)[0].tolist()
    if eos is not None and eos in out[len(prompt):]:
        out = out[: out.index(eos, len(prompt)) + 1]
    return out


def free_run(model, prompt: list[int], n: int = 24) -> list[int]:
    """The model's greedy continuation with no EOS and no processor."""
    return hf_generate(model, prompt, n, eos=None)[len(prompt):]


def likely_eos(model, prompt: list[int]) -> int:
    """A token the model emits after about 7 tokens: as EOS, min_new_tokens and friends then matter."""
    run = free_run(model, prompt, 12)
    return next((t for t in run[6:] if t not in run[:6]), run[-1])


def sources_for(reference: list[int], prompt_len: int) -> list[object]:
    """pld, a right oracle with decoy branches, and an oracle that is wrong after each right token."""
    wrong = reference[:prompt_len] + [t if i % 2 == 0 else (t + 1) % VOCAB
                                      for i, t in enumerate(reference[prompt_len:])]
    return ["pld", OracleSource(reference, decoys=2), OracleSource(wrong, decoys=1)]


PROMPT = [28, 30, 18, 69, 57, 11, 10, 40]  # the test model continues it without looping early

#: Each case is built from the model's free continuation ``u`` so that it constrains this model.
CASES = {
    "no_repeat_ngram_size": lambda u: {"no_repeat_ngram_size": 1},
    "min_new_tokens": lambda u: {"min_new_tokens": 14},
    "min_length": lambda u: {"min_length": len(PROMPT) + 14},
    "bad_words_ids": lambda u: {"bad_words_ids": [[u[0]], [u[2], u[3]]]},
    "suppress_tokens": lambda u: {"suppress_tokens": [u[1], u[4]]},
    "begin_suppress_tokens": lambda u: {"begin_suppress_tokens": [u[0]]},
    "sequence_bias": lambda u: {"sequence_bias": [[[u[2]], -8.0], [[u[0], u[1]], -8.0]]},
    "exponential_decay_length_penalty": lambda u: {"exponential_decay_length_penalty": (2, 3.0)},
    "logits_processor": lambda u: {"logits_processor": [BanEvenPositions(u[0])]},
    "prefix_allowed_tokens_fn": lambda u: {
        "prefix_allowed_tokens_fn": lambda batch, ids: [t for t in range(VOCAB) if t % 4 != int(ids[-1]) % 4]},
    "combined": lambda u: {"no_repeat_ngram_size": 2, "repetition_penalty": 1.3, "min_new_tokens": 10},
    # No effect on an argmax by design (log-softmax; the tiny model has no inf/nan): checked, not guarded.
    "renormalize+remove_invalid": lambda u: {"renormalize_logits": True, "remove_invalid_values": True},
}
NO_EFFECT_BY_DESIGN = {"renormalize+remove_invalid"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_with_generate_processors_equals_hf_generate(case):
    """With an EOS the model emits early (min_new_tokens, min_length, decay bite) and without one
    (n-gram bans and prefix constraints need the longer output to bite)."""
    model = cached_model("llama", VOCAB)
    options = CASES[case](free_run(model, PROMPT))
    constrained = False
    for eos in (likely_eos(model, PROMPT), None):
        if eos is None and "exponential_decay_length_penalty" in options:  # HF fails without EOS; draftkit says why
            with pytest.raises(InvalidInputError, match="needs an EOS"):
                draftkit.PlainDecoder(model).generate([PROMPT], max_new_tokens=4, eos_token_id=None, **options)
            continue
        reference = hf_generate(model, PROMPT, 24, eos, **options)
        constrained |= reference != hf_generate(model, PROMPT, 24, eos)
        plain = draftkit.PlainDecoder(model).generate([PROMPT], max_new_tokens=24, eos_token_id=eos, **options)
        assert plain.sequences[0].tolist() == reference
        for source in sources_for(reference, len(PROMPT)):
            decoder = draftkit.SpeculativeDecoder(model, source=source, budget=8)
            out = decoder.generate([PROMPT], max_new_tokens=24, do_sample=False, eos_token_id=eos, **options)
            assert out.sequences[0].tolist() == reference, (source, eos)
    # Else this test would prove nothing about the processor.
    assert constrained or case in NO_EFFECT_BY_DESIGN, f"{case} does not constrain the test model"


def test_forced_eos_ends_at_max_length_like_hf():
    model = cached_model("llama", VOCAB)
    u = free_run(model, PROMPT, 10)
    forced = next(t for t in range(VOCAB) if t not in u)
    reference = hf_generate(model, PROMPT, 10, None, forced_eos_token_id=forced)
    assert reference[-1] == forced and reference[-2] == u[-2]
    out = draftkit.SpeculativeDecoder(model, source=OracleSource(PROMPT + u, decoys=1), budget=8).generate(
        [PROMPT], max_new_tokens=10, do_sample=False, eos_token_id=None, forced_eos_token_id=forced)
    assert out.sequences[0].tolist() == reference


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures, prompt=prompts(), options=generate_processor_options(), budget=st.sampled_from([4, 12]))
def test_property_greedy_processors_equal_hf(arch, prompt, options, budget):
    model = cached_model(arch, VOCAB)
    eos = likely_eos(model, prompt)
    reference = hf_generate(model, prompt, 16, eos, **options)
    for source in sources_for(reference, len(prompt)):
        decoder = draftkit.SpeculativeDecoder(model, source=source, budget=budget)
        out = decoder.generate([prompt], max_new_tokens=16, do_sample=False, eos_token_id=eos, **options)
        assert out.sequences[0].tolist() == reference, (source, options)


def hf_probs(model, sequence: list[int], prompt_len: int, eos: int, options: dict, logits: torch.Tensor,
             max_new_tokens: int) -> torch.Tensor:
    """The next-token law Hugging Face's own processors give after ``sequence``."""
    config = GenerationConfig(do_sample=True, top_k=0, max_length=prompt_len + max_new_tokens, **options)
    config._eos_token_tensor = torch.tensor([eos])
    processors = model._get_logits_processor(config, input_ids_seq_length=prompt_len, device="cpu",
                                             model_kwargs={})
    return processors(torch.tensor([sequence]), logits[None].clone())[0].softmax(-1)


@settings(max_examples=30, deadline=None)
@given(prompt=prompts(), options=generate_processor_options(sampling=True), cut=st.integers(0, 6),
       tokens=st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8))
def test_processed_law_is_hf_law_and_splits_at_any_path(prompt, options, cut, tokens):
    """draftkit's law after ``prompt + tokens`` is HF's, whether the tokens are context or a tree path."""
    model = cached_model("llama", VOCAB)
    eos = 3
    plan = plan_request(TargetModel(model), [prompt], 12, 0, do_sample=True, top_k=0, eos_token_id=eos, **options)
    sequence = prompt + tokens
    logits = torch.randn(VOCAB, dtype=torch.float64, generator=torch.Generator().manual_seed(len(sequence))) * 3
    whole = LogitsPipeline(plan.sampling, np.array(sequence)).probs(logits[None], [np.empty(0, np.int64)])[0]
    k = len(prompt) + min(cut, len(tokens))
    split = LogitsPipeline(plan.sampling, np.array(sequence[:k])).probs(logits[None], [np.array(sequence[k:])])[0]
    assert torch.equal(whole, split)
    expected = hf_probs(model, sequence, len(prompt), eos, options, logits, 12)
    torch.testing.assert_close(whole, expected.to(torch.float64), rtol=1e-9, atol=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=prompts(), options=generate_processor_options(sampling=True), seed=st.integers(0, 2**31 - 1))
def test_seeded_sampling_with_processors_equals_plain_sampling(prompt, options, seed):
    model = cached_model("llama", VOCAB)
    kwargs = dict(max_new_tokens=14, do_sample=True, seed=seed, eos_token_id=3, **options)
    plain = draftkit.PlainDecoder(model).generate([prompt], **kwargs).sequences[0].tolist()
    for source in sources_for(plain, len(prompt)):
        out = draftkit.SpeculativeDecoder(model, source=source, budget=8).generate([prompt], **kwargs)
        assert out.sequences[0].tolist() == plain, (source, options)


def test_options_in_the_generation_config_are_followed_like_model_generate():
    model = cached_model("llama", VOCAB, seed=5)
    prompt = PROMPT
    eos = likely_eos(model, prompt)
    reference = hf_generate(model, prompt, 20, eos, no_repeat_ngram_size=1, min_new_tokens=10)
    assert reference != hf_generate(model, prompt, 20, eos)
    try:
        model.generation_config.no_repeat_ngram_size = 1
        model.generation_config.min_new_tokens = 10
        assert hf_generate(model, prompt, 20, eos) == reference
        out = draftkit.SpeculativeDecoder(model, source="pld").generate([prompt], max_new_tokens=20,
                                                                       do_sample=False, eos_token_id=eos)
        assert out.sequences[0].tolist() == reference
    finally:
        model.generation_config.no_repeat_ngram_size = None
        model.generation_config.min_new_tokens = None


def test_generation_config_argument_replaces_the_models():
    model = cached_model("llama", VOCAB, seed=6)
    prompt = [1, 2, 3, 1, 2, 3]
    config = GenerationConfig(max_new_tokens=15, no_repeat_ngram_size=1, do_sample=False, eos_token_id=None)
    ids = torch.tensor([prompt])
    reference = model.generate(ids, generation_config=config, attention_mask=torch.ones_like(ids),
                               pad_token_id=0)[0].tolist()
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(ids, generation_config=config)
    assert out.sequences[0].tolist() == reference
    assert len(reference) == len(prompt) + 15
    with pytest.raises(InvalidInputError, match="GenerationConfig"):
        draftkit.PlainDecoder(model).generate(ids, generation_config={"max_new_tokens": 3})


def test_hf_streamer_receives_the_prompt_then_every_new_token():
    class Recorder:
        def __init__(self) -> None:
            self.puts: list[list[int]] = []
            self.ended = False

        def put(self, value: torch.Tensor) -> None:
            self.puts.append(value.reshape(-1).tolist())

        def end(self) -> None:
            self.ended = True

    model = cached_model("llama", VOCAB)
    prompt = [4, 5, 6, 4, 5, 6, 4]
    recorder = Recorder()
    out = draftkit.SpeculativeDecoder(model, source="pld").generate([prompt], max_new_tokens=20, streamer=recorder)
    assert recorder.ended and recorder.puts[0] == prompt
    assert sum(recorder.puts[1:], []) == out.new_tokens[0].tolist()


def test_a_streamer_is_ended_when_generation_fails():
    """A TextIteratorStreamer's consumer thread must not wait forever for a generation that raised."""

    class Recorder:
        ended = False

        def put(self, value: torch.Tensor) -> None:
            pass

        def end(self) -> None:
            self.ended = True

    def fail_on_third_call(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if ids.shape[-1] >= 6:
            raise RuntimeError("boom")
        return scores

    recorder = Recorder()
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source="pld")
    with pytest.raises(RuntimeError, match="boom"):
        decoder.generate([[1, 2, 3]], max_new_tokens=8, logits_processor=[fail_on_third_call], streamer=recorder)
    assert recorder.ended


def test_text_streamer_prints_the_answer(capsys):
    from transformers import TextStreamer

    from draftkit.testing.tokenizers import char_tokenizer

    tokenizer = char_tokenizer(VOCAB)
    model = cached_model("llama", VOCAB)
    prompt = tokenizer("abcabc")["input_ids"]
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(
        [prompt], max_new_tokens=12, streamer=TextStreamer(tokenizer, skip_prompt=True))
    printed = capsys.readouterr().out
    assert printed.rstrip("\n") == tokenizer.decode(out.new_tokens[0].tolist()).rstrip("\n")


def test_path_dependent_processors_with_a_stochastic_source_are_refused_by_name():
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source=RandomQSource.random(VOCAB))
    with pytest.raises(UnsupportedSamplingError, match="no_repeat_ngram_size=2"):
        decoder.generate([[1, 2, 3]], max_new_tokens=4, do_sample=True, no_repeat_ngram_size=2, seed=0)
    # Greedy decoding verifies any draft with the greedy verifier: allowed.
    decoder.generate([[1, 2, 3]], max_new_tokens=4, do_sample=False, no_repeat_ngram_size=2)


@pytest.mark.parametrize(("options", "match"), [
    ({"suppress_tokens": "abc"}, "suppress_tokens must be a list of token ids"),
    ({"bad_words_ids": [[5, 1000]]}, "bad_words_ids holds 1000, which is not a token id"),
    ({"sequence_bias": {(1000,): 2.0}}, "sequence_bias holds 1000"),
    ({"forced_eos_token_id": 3, "suppress_tokens": [3, 4]}, "also in suppress_tokens"),
    ({"typical_p": 0.0, "do_sample": True}, "typical_p"),
    ({"exponential_decay_length_penalty": 1.5}, "exponential_decay_length_penalty must be"),
    ({"logits_processor": ["not callable"]}, "callables"),
])
def test_bad_processor_options_are_clear_errors_when_called(options, match):
    """Refused when generate() / stream() is called, before any step (a stream consumer never hangs)."""
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source="pld")
    with pytest.raises(InvalidInputError, match=match):
        decoder.stream([[1, 2, 3]], max_new_tokens=4, eos_token_id=3, **options)


def test_off_values_switch_a_processor_off_like_model_generate():
    """generate's own tests decide: no_repeat_ngram_size <= 0, min_new_tokens <= 0, ... mean off."""
    model = cached_model("llama", VOCAB)
    off = {"no_repeat_ngram_size": 0, "min_new_tokens": -1, "min_length": 0, "epsilon_cutoff": 0.0,
           "remove_invalid_values": False, "suppress_tokens": []}
    reference = hf_generate(model, PROMPT, 12, None, **off)
    assert reference == hf_generate(model, PROMPT, 12, None)
    out = draftkit.SpeculativeDecoder(model, source="pld").generate([PROMPT], max_new_tokens=12, eos_token_id=None,
                                                                   do_sample=False, **off)
    assert out.sequences[0].tolist() == reference


def test_processors_must_return_scores_of_the_shape_they_got():
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source="pld")
    with pytest.raises(InvalidInputError, match="returned \\(97,\\)"):
        decoder.generate([[1, 2, 3]], max_new_tokens=4, logits_processor=[lambda ids, scores: scores[0]])


def test_sampling_with_every_token_removed_is_a_clear_error():
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source="pld")
    with pytest.raises(InvalidInputError, match="no token is left"):
        decoder.generate([[1, 2, 3]], max_new_tokens=4, do_sample=True, seed=0, suppress_tokens=list(range(VOCAB)))


def test_min_new_tokens_supersedes_min_length_like_model_generate():
    model = cached_model("llama", VOCAB)
    eos = likely_eos(model, PROMPT)
    options = {"min_new_tokens": 2, "min_length": len(PROMPT) + 15}
    reference = hf_generate(model, PROMPT, 20, eos, **options)
    assert reference != hf_generate(model, PROMPT, 20, eos, min_length=len(PROMPT) + 15)
    for decoder in (draftkit.PlainDecoder(model), draftkit.SpeculativeDecoder(model, source="pld")):
        out = decoder.generate([PROMPT], max_new_tokens=20, do_sample=False, eos_token_id=eos, **options)
        assert out.sequences[0].tolist() == reference


def test_a_users_processor_replaces_the_built_in_of_its_type_like_model_generate():
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        SequenceBiasLogitsProcessor,
    )

    model = cached_model("llama", VOCAB)
    u = free_run(model, PROMPT)
    cases = [
        {"repetition_penalty": 1.8, "logits_processor": [RepetitionPenaltyLogitsProcessor(1.0)]},
        {"repetition_penalty": 1.0, "logits_processor": [RepetitionPenaltyLogitsProcessor(2.0)]},
        {"sequence_bias": [[[u[1]], -20.0]], "logits_processor": [SequenceBiasLogitsProcessor([[[u[2]], -20.0]])]},
    ]
    for options in cases:
        reference = hf_generate(model, PROMPT, 16, None, **options)
        for source in sources_for(reference, len(PROMPT)):
            out = draftkit.SpeculativeDecoder(model, source=source, budget=8).generate(
                [PROMPT], max_new_tokens=16, do_sample=False, eos_token_id=None, **options)
            assert out.sequences[0].tolist() == reference, (options, source)
    # The first case is really a replacement: applying both would differ.
    assert hf_generate(model, PROMPT, 16, None, **cases[0]) != hf_generate(model, PROMPT, 16, None,
                                                                           repetition_penalty=1.8)


def test_an_explicit_none_switches_a_configured_option_off_like_model_generate():
    model = cached_model("llama", VOCAB, seed=7)
    eos = likely_eos(model, PROMPT)
    try:
        model.generation_config.eos_token_id = eos
        model.generation_config.no_repeat_ngram_size = 1
        for options in ({"eos_token_id": None}, {"no_repeat_ngram_size": None}, {}):
            ids = torch.tensor([PROMPT])
            reference = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=0,
                                       attention_mask=torch.ones_like(ids), **options)[0].tolist()
            out = draftkit.SpeculativeDecoder(model, source="pld").generate(ids, max_new_tokens=16, do_sample=False,
                                                                           **options)
            assert out.sequences[0].tolist() == reference, options
        model.generation_config.top_k = 5
        with_config = plan_request(TargetModel(model), [PROMPT], 4, 0, do_sample=True).sampling
        switched_off = plan_request(TargetModel(model), [PROMPT], 4, 0, do_sample=True, top_k=None).sampling
        assert (with_config.top_k, switched_off.top_k) == (5, None)
    finally:
        model.generation_config.eos_token_id = None
        model.generation_config.no_repeat_ngram_size = None
        model.generation_config.top_k = None


def test_a_call_can_switch_off_an_unsupported_option_of_the_generation_config():
    model = cached_model("llama", VOCAB, seed=8)
    try:
        model.generation_config.num_beams = 4
        with pytest.raises(UnsupportedSamplingError, match="num_beams=4"):
            draftkit.PlainDecoder(model).generate([[1, 2, 3]], max_new_tokens=3)
        draftkit.PlainDecoder(model).generate([[1, 2, 3]], max_new_tokens=3, num_beams=1)
    finally:
        model.generation_config.num_beams = None


def test_min_new_tokens_holds_back_stop_token_ids_too():
    model = cached_model("llama", VOCAB)
    stop = likely_eos(model, PROMPT)
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(
        [PROMPT], max_new_tokens=20, eos_token_id=None, stop_token_ids=[stop], min_new_tokens=12)
    assert out.new_tokens.shape[1] >= 12


def test_hf_call_conventions_are_accepted():
    """``inputs=``, ``return_dict_in_generate`` and ``output_scores=False`` as in model.generate; what
    cannot be returned is refused by name with the reason."""
    model = cached_model("llama", VOCAB)
    decoder = draftkit.SpeculativeDecoder(model, source="pld")
    ids = torch.tensor([[1, 2, 3, 1, 2]])
    reference = decoder.generate(ids, max_new_tokens=6).sequences
    out = decoder.generate(inputs=ids, max_new_tokens=6, return_dict_in_generate=True, output_scores=False)
    assert torch.equal(out.sequences, reference) and torch.equal(out["sequences"], reference)
    with pytest.raises(KeyError, match="with output_scores=True"):
        out["scores"]
    with pytest.raises(UnsupportedSamplingError, match="output_attentions=True.*sequences, scores"):
        decoder.generate(ids, max_new_tokens=6, output_attentions=True)
    with pytest.raises(TypeError, match="twice"):
        decoder.generate(ids, inputs=ids, max_new_tokens=6)
    with pytest.raises(TypeError, match="option of generate"):
        decoder.stream(ids, max_new_tokens=6, streamer=object())
    config = GenerationConfig(max_new_tokens=6, do_sample=False)
    assert torch.equal(decoder.generate(ids, config).sequences, reference)  # model.generate(ids, config)
    with pytest.raises(InvalidInputError, match="no prompt"):
        decoder.generate(max_new_tokens=6)


def test_max_time_ends_with_a_prefix_of_the_full_output(monkeypatch):
    """A deadline already passed after the first step (the clock is made to jump) ends generation there."""
    import draftkit.engine.stopping as stopping

    model = cached_model("llama", VOCAB)
    decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=4)
    full = decoder.generate([[1, 2, 3, 1, 2, 3]], max_new_tokens=30, eos_token_id=None).new_tokens[0].tolist()
    clock = iter(range(0, 10**6, 1000))  # every reading is 1000 s after the previous one
    monkeypatch.setattr(stopping.time, "perf_counter", lambda: float(next(clock)))
    out = decoder.generate([[1, 2, 3, 1, 2, 3]], max_new_tokens=30, eos_token_id=None, max_time=5.0)
    new = out.new_tokens[0].tolist()
    assert out.stats.finish_reason == "time" and out.stats.steps == 1
    assert 1 <= len(new) < len(full) and new == full[: len(new)]
    with pytest.raises(InvalidInputError, match="max_time"):
        decoder.generate([[1, 2]], max_new_tokens=3, max_time=-1)


def test_token_ids_may_be_numpy_or_torch_integers():
    model = cached_model("llama", VOCAB)
    options = {"suppress_tokens": [np.int64(5)], "bad_words_ids": [[np.int64(7)]], "forced_eos_token_id": torch.tensor(3),
               "sequence_bias": [[[np.int64(4)], 2.0]]}
    plain = {"suppress_tokens": [5], "bad_words_ids": [[7]], "forced_eos_token_id": 3, "sequence_bias": [[[4], 2.0]]}
    reference = hf_generate(model, PROMPT, 8, None, **plain)
    out = draftkit.SpeculativeDecoder(model, source="pld").generate([PROMPT], max_new_tokens=8, do_sample=False,
                                                                   eos_token_id=None, **options)
    assert out.sequences[0].tolist() == reference
