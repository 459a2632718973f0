"""Lossless greedy output on many decoder-only families, and clear refusals where it cannot be.

The property tests run on five hand-written architectures; this module casts a
wider net with tiny *float64* random models of every family in
:data:`draftkit.testing.models.MORE_ARCHITECTURES` (float64, so that near-ties
cannot flip an argmax between a tree forward and single-token forwards). Each
family decodes a few repetitive prompts (so the drafts are accepted and
rejected in branching trees) with the speculative decoder, and the tokens must
equal draftkit's plain loop and Hugging Face ``generate`` (greedy), and plain
sampling with the same seed (sampling).

Attention restricted by position (sliding windows, Llama 4's chunks) gets the
same restriction in the tree mask, per layer type where layers differ (Gemma 2's
full and sliding layers): the output must match far past the window. GPT-Neo's
local layers restrict by cache *slot*, which a tree step pushes past the
positions: exact only while the request stays inside the window, refused past
it with a message that says why.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import draftkit
from draftkit.errors import UnsupportedModelError
from draftkit.testing.models import MORE_ARCHITECTURES, tiny_model
from helpers import hf_greedy

VOCAB = 131


def _available(arch: str) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return arch in CONFIG_MAPPING


@functools.lru_cache(maxsize=4)
def _model(arch: str, **overrides: object) -> torch.nn.Module:
    return tiny_model(arch, VOCAB, **overrides)


def _prompts(seed: int, count: int = 3, longest: int = 40) -> list[torch.Tensor]:
    """Short repeated patterns with a little noise: prompt lookup finds drafts, some of them wrong."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        length = int(rng.integers(5, longest + 1))
        ids = np.resize(rng.integers(0, VOCAB, size=int(rng.integers(2, 7))), length)
        ids[int(rng.integers(0, length))] = int(rng.integers(0, VOCAB))
        out.append(torch.tensor(ids)[None])
    return out


def _hf_greedy(model: torch.nn.Module, ids: torch.Tensor, new: int) -> list[int]:
    return hf_greedy(model, ids[0].tolist(), new, None)


@pytest.mark.parametrize("arch", MORE_ARCHITECTURES)
def test_speculative_decoding_equals_plain_and_hf(arch: str) -> None:
    if not _available(arch):
        pytest.skip(f"{arch} is not in this transformers version")
    model = _model(arch)
    spec = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    plain = draftkit.PlainDecoder(model)
    for ids in _prompts(seed=len(arch)):
        got = spec.generate(ids, max_new_tokens=30).sequences[0].tolist()
        assert got == plain.generate(ids, max_new_tokens=30).sequences[0].tolist(), arch
        assert got == _hf_greedy(model, ids, 30), arch
    # Seeded sampling: the same tokens as plain sampling (the walk verifier), whatever the drafts.
    options = dict(do_sample=True, temperature=0.9, top_k=30, seed=7)
    for ids in _prompts(seed=len(arch) + 1, count=2):
        got = spec.generate(ids, max_new_tokens=24, **options).sequences.tolist()
        assert got == plain.generate(ids, max_new_tokens=24, **options).sequences.tolist(), arch


def test_chunked_attention_is_exact_across_chunks() -> None:
    """Llama 4's chunked layers: each tree node sees only the keys of its own position's chunk."""
    if not _available("llama4_text"):
        pytest.skip("llama4_text is not in this transformers version")
    model = _model("llama4_text", attention_chunk_size=8)
    spec = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    for ids in _prompts(seed=4, longest=12):
        got = spec.generate(ids, max_new_tokens=30).sequences[0].tolist()
        assert got == _hf_greedy(model, ids, 30)


#: Families with sliding-window layers (all of them, or mixed with full layers), as tiny configs.
SLIDING = [
    ("mistral", {}), ("phi3", {}), ("starcoder2", {}), ("gemma2", {}), ("gemma3_text", {}), ("cohere2", {}),
    ("qwen3", {"use_sliding_window": True, "max_window_layers": 1}), ("olmo3", {}), ("exaone4", {}),
]


@pytest.mark.parametrize(("arch", "overrides"), SLIDING)
def test_sliding_window_attention_is_exact_past_the_window(arch: str, overrides: dict) -> None:
    """A window of 6 tokens, requests of up to 70: every tree step crosses it."""
    if not _available(arch):
        pytest.skip(f"{arch} is not in this transformers version")
    from draftkit.testing.models import tiny_config

    config = tiny_config(arch, VOCAB, **overrides) if arch != "mistral" else None
    if arch == "mistral":
        from transformers import MistralConfig

        config = MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                               sliding_window=6)
    else:
        config.sliding_window = 6
    model = _from_config(config)
    assert draftkit.SpeculativeDecoder(model, source="pld").target.sliding_window == 6
    spec = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    for ids in _prompts(seed=len(arch) + 8, count=2):
        got = spec.generate(ids, max_new_tokens=30).sequences[0].tolist()
        assert got == _hf_greedy(model, ids, 30), arch


def _from_config(config: object) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)  # structured greedy output, as tiny_model does
    model.generation_config.eos_token_id = None
    return model.to(torch.float64).eval()


def test_slot_local_attention_is_checked_with_the_tree_slots() -> None:
    """GPT-Neo's local layers mask by cache slot; tree nodes sit in slots past their positions."""
    model = _model("gpt_neo", window_size=32)
    spec = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    for ids in _prompts(seed=6, longest=12):
        new = 32 - 8 - ids.shape[1]
        got = spec.generate(ids, max_new_tokens=new).sequences[0].tolist()
        assert got == _hf_greedy(model, ids, new)
    ids = _prompts(seed=7, count=1, longest=12)[0]
    with pytest.raises(UnsupportedModelError, match="local attention window"):
        spec.generate(ids, max_new_tokens=32 - 8 - ids.shape[1] + 1)
    plain = draftkit.PlainDecoder(model).generate(ids, max_new_tokens=40).sequences[0].tolist()
    assert plain == _hf_greedy(model, ids, 40)


@pytest.mark.parametrize(("arch", "overrides"), [("bloom", {}), ("mpt", {"expansion_ratio": 2}), ("bart", {})])
def test_models_without_tree_masks_verify_chains_exactly(arch: str, overrides: dict) -> None:
    """ALiBi models (Bloom, MPT) and attention that ignores custom masks: one path per step, same tokens."""
    if not _available(arch):
        pytest.skip(f"{arch} is not in this transformers version")
    model = tiny_model(arch, VOCAB, **overrides)
    with pytest.warns(UserWarning, match="verifies one chain per step"):
        spec = draftkit.SpeculativeDecoder(model, source=["pld", "aded"], budget=8)
    assert spec.target.chain_only
    plain = draftkit.PlainDecoder(model)
    accepted = 0
    for ids in _prompts(seed=len(arch) + 20):
        out = spec.generate(ids, max_new_tokens=30)
        got = out.sequences[0].tolist()
        assert got == plain.generate(ids, max_new_tokens=30).sequences[0].tolist() == _hf_greedy(model, ids, 30)
        accepted += out.stats.accepted
    assert accepted > 0  # drafts were verified, not skipped
    options = dict(do_sample=True, temperature=0.9, top_k=30, seed=3)
    ids = _prompts(seed=2, count=1)[0]
    assert spec.generate(ids, max_new_tokens=20, **options).sequences.tolist() == plain.generate(
        ids, max_new_tokens=20, **options).sequences.tolist()


def test_chain_only_models_refuse_sampling_with_stochastic_drafts() -> None:
    from draftkit.errors import UnsupportedSamplingError
    from draftkit.testing.sources import RandomQSource

    model = tiny_model("bloom", VOCAB)
    with pytest.warns(UserWarning):
        spec = draftkit.SpeculativeDecoder(model, source=RandomQSource.random(VOCAB), budget=4)
    with pytest.raises(UnsupportedSamplingError, match="verifies chains only"):
        spec.generate([[1, 2, 3]], max_new_tokens=5, do_sample=True)
    assert spec.generate([[1, 2, 3]], max_new_tokens=5).sequences.shape[1] == 8  # greedy is fine


@pytest.mark.parametrize(
    ("arch", "overrides", "reason"),
    [
        ("mamba", {"state_size": 8, "expand": 2, "conv_kernel": 4}, "recurrent or state-space"),
        ("falcon_h1", {}, "recurrent or state-space"),
        ("openai-gpt", {}, "no key/value cache"),
    ],
)
def test_unsupported_families_are_refused_saying_why(arch: str, overrides: dict, reason: str) -> None:
    if not _available(arch):
        pytest.skip(f"{arch} is not in this transformers version")
    model = tiny_model(arch, VOCAB, **overrides)
    with pytest.raises(UnsupportedModelError, match=reason) as info:
        draftkit.SpeculativeDecoder(model)
    assert type(model).__name__ in str(info.value)
    assert "attn_implementation='sdpa' or 'eager'" not in str(info.value)  # no advice that cannot help
