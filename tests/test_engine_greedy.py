"""Greedy losslessness of the engine: identical tokens to plain greedy decoding.

All models are tiny *float64* random models: a tree forward and a sequence of
single-token forwards use different matrix shapes, and in float32 a near-tie
between two logits could flip the argmax between them. In float64 the rounding
is far below the gaps between random logits, so any difference is a real bug.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import draftkit
from draftkit.testing.models import ARCHITECTURES
from draftkit.testing.sources import EmptySource, OracleSource, RandomSource
from helpers import cached_model, hf_greedy
from strategies import VOCAB, architectures, prompts

SOURCES = ("pld", "oracle", "oracle-tree", "random", "empty")


def make_source(kind: str, reference: list[int]) -> object:
    if kind == "pld":
        return "pld"
    if kind == "oracle":
        return OracleSource(reference)
    if kind == "oracle-tree":
        return OracleSource(reference, decoys=3)
    if kind == "random":
        return RandomSource(seed=len(reference))
    return EmptySource()


@given(
    arch=architectures,
    prompt=prompts(),
    max_new=st.integers(1, 64),
    use_eos=st.booleans(),
    source=st.sampled_from(SOURCES),
    tree=st.sampled_from(["trie", "chain"]),
    budget=st.sampled_from([1, 4, 16, 64]),
)
def test_greedy_matches_plain_and_hf(arch, prompt, max_new, use_eos, source, tree, budget):
    eos = 3 if use_eos else None
    model = cached_model(arch, eos=eos)
    expected = hf_greedy(model, prompt, max_new, eos)
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=max_new)
    assert plain.sequences[0].tolist() == expected
    decoder = draftkit.SpeculativeDecoder(
        model, source=make_source(source, expected), tree=tree, budget=budget
    )
    out = decoder.generate([prompt], max_new_tokens=max_new)
    assert out.sequences[0].tolist() == expected
    n_new = len(expected) - len(prompt)
    assert out.stats.emitted == n_new <= max_new
    assert sum(out.stats.accept_lengths) == n_new
    assert out.stats.accepted == n_new - out.stats.steps
    if source.startswith("oracle"):
        # A perfect draft: every step emits budget + 1 tokens until the end is near.
        for got in out.stats.accept_lengths[:-1]:
            assert got == budget + 1
    if source == "empty":
        assert out.stats.steps == n_new


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_oracle_step_count_each_architecture(arch):
    """With a perfect chain of budget 7, 64 tokens take ceil(64 / 8) steps."""
    model = cached_model(arch)
    prompt = [1, 2, 3, 4]
    expected = hf_greedy(model, prompt, 64, None)
    out = draftkit.SpeculativeDecoder(model, source=OracleSource(expected), tree="chain", budget=7).generate(
        [prompt], max_new_tokens=64
    )
    assert out.sequences[0].tolist() == expected
    assert out.stats.steps == 8
    assert out.stats.mean_accepted_tokens == 8.0


@given(arch=architectures, prompt=prompts(), max_new=st.integers(1, 40))
def test_stream_yields_the_generated_tokens(arch, prompt, max_new):
    model = cached_model(arch)
    decoder = draftkit.SpeculativeDecoder(model, source="pld")
    streamed = [t for chunk in decoder.stream([prompt], max_new_tokens=max_new) for t in chunk]
    out = decoder.generate([prompt], max_new_tokens=max_new)
    assert streamed == out.new_tokens[0].tolist()
    assert len(streamed) == max_new  # no EOS configured: exactly max_new_tokens


def test_eos_inside_an_accepted_block_ends_generation():
    """The oracle drafts past the EOS; nothing after it may be emitted or fed back."""
    model = cached_model("llama")
    prompt = [7, 8, 9]
    free_run = hf_greedy(model, prompt, 30, None)
    eos = free_run[len(prompt) + 5]  # the 6th generated token becomes the EOS
    expected = hf_greedy(model, prompt, 30, eos)
    assert expected[-1] == eos and len(expected) <= len(prompt) + 6
    seen = []

    class Recorder(OracleSource):
        def observe(self, feedback):
            seen.append(feedback.emitted.tolist())

    out = draftkit.SpeculativeDecoder(model, source=Recorder(free_run), tree="chain", budget=16).generate(
        [prompt], max_new_tokens=30, eos_token_id=eos
    )
    assert out.sequences[0].tolist() == expected
    assert out.stats.finish_reason == "eos"
    fed_back = [t for step in seen for t in step]
    assert fed_back == expected[len(prompt):]
    assert out.stats.emitted == len(expected) - len(prompt)


def test_max_new_tokens_never_overshot_with_long_drafts():
    model = cached_model("gpt2")
    prompt = [1, 2, 3]
    expected = hf_greedy(model, prompt, 60, None)
    for max_new in (1, 2, 5, 9):
        out = draftkit.SpeculativeDecoder(model, source=OracleSource(expected), budget=64).generate(
            [prompt], max_new_tokens=max_new
        )
        assert out.sequences.shape[1] == len(prompt) + max_new
        assert out.sequences[0].tolist() == expected[: len(prompt) + max_new]


def test_context_window_clamps_drafts():
    """Drafts never reach past the model's position limit; generation stops at it."""
    model = cached_model("gpt2", context=32)
    prompt = list(range(1, 21))
    out = draftkit.SpeculativeDecoder(model, source=RandomSource(width=4, length=30), budget=64).generate(
        [prompt], max_new_tokens=50
    )
    assert out.sequences.shape[1] == 33  # the last position (31) still predicts one more token
    assert out.stats.finish_reason == "context"
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=50)
    assert plain.sequences.tolist() == out.sequences.tolist()


def test_vocab_constant():
    assert cached_model("llama").config.vocab_size == VOCAB
