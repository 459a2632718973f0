"""The layer-skip draft forward: layout discovery and the explicit sub-layer forward.

Models are tiny *float64* random models (4 layers, so that skipping a band leaves
layers on both sides): with nothing skipped the explicit forward must reproduce
the model's own logits to rounding, which float64 makes a sharp test.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from transformers import DynamicCache

from draftkit.errors import UnsupportedModelError
from draftkit.sources.layerskip import LayerSkip, SkipSet, find_layout, model_layout, supported_architectures
from draftkit.sources.layerskip.forward import causal_mask, skip_forward
from draftkit.testing.models import ARCHITECTURES
from helpers import cached_model

ALL_ARCHS = (*ARCHITECTURES, "phi")


@functools.lru_cache(maxsize=4)
def tiny_phi(layers: int = 4) -> torch.nn.Module:
    """Phi is not in draftkit.testing.models; a tiny float64 one built the same way."""
    from transformers import AutoModelForCausalLM, PhiConfig

    config = PhiConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                       num_attention_heads=4, max_position_embeddings=256, tie_word_embeddings=False,
                       bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
    return model.to(torch.float64).eval()


def model_for(arch: str, layers: int = 4) -> torch.nn.Module:
    return tiny_phi(layers) if arch == "phi" else cached_model(arch, layers=layers)


def test_supported_architectures_are_the_documented_ones() -> None:
    assert set(supported_architectures()) == {"llama", "qwen2", "mistral", "gpt2", "gpt_neox", "phi"}


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_layout_finds_every_layer(arch: str) -> None:
    model = model_for(arch)
    layout = model_layout(model)
    assert layout.architecture == arch
    assert layout.num_layers == 4
    assert layout.head is model.get_output_embeddings()
    attn_ids = {id(b.attention) for b in layout.layers}
    assert len(attn_ids) == 4  # four distinct modules, in order
    assert layout.parallel == (arch in ("gpt_neox", "phi"))


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_empty_skip_set_reproduces_the_model(arch: str) -> None:
    """Prefill in two chunks through the explicit forward == one model forward."""
    model = model_for(arch)
    layout = model_layout(model)
    ids = torch.randint(0, 97, (1, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(ids).logits[0]
    cache = DynamicCache()
    first = skip_forward(layout, SkipSet.empty(4), ids[:, :7], torch.arange(7)[None], cache,
                         causal_mask(7, 0, torch.float64))
    second = skip_forward(layout, SkipSet.empty(4), ids[:, 7:], torch.arange(7, 11)[None], cache,
                          causal_mask(4, 7, torch.float64))
    torch.testing.assert_close(torch.cat([first, second]), expected, rtol=0, atol=1e-10)
    # The cache written along the way equals the model's own.
    with torch.no_grad():
        ref_cache = model(ids, use_cache=True).past_key_values
    for mine, ref in zip(cache.layers, ref_cache.layers, strict=True):
        torch.testing.assert_close(mine.keys, ref.keys, rtol=0, atol=1e-10)
        torch.testing.assert_close(mine.values, ref.values, rtol=0, atol=1e-10)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_skipped_blocks_change_the_output_and_write_no_cache(arch: str) -> None:
    model = model_for(arch)
    layout = model_layout(model)
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(5))
    full = skip_forward(layout, SkipSet.empty(4), ids, torch.arange(6)[None], DynamicCache(),
                        causal_mask(6, 0, torch.float64))
    for skip in (SkipSet(4, {1}, set()), SkipSet(4, set(), {2}), SkipSet(4, {0, 3}, {1, 2})):
        cache = DynamicCache()
        out = skip_forward(layout, skip, ids, torch.arange(6)[None], cache, causal_mask(6, 0, torch.float64))
        assert not torch.allclose(out, full), skip
        for i, layer in enumerate(cache.layers):
            assert layer.get_seq_length() == (0 if i in skip.attention else 6)
        assert len(cache.layers) <= 4


def test_single_token_steps_equal_a_masked_prefill() -> None:
    """Drafting feeds one token at a time without a mask; same numbers as a causal chunk."""
    model = cached_model("llama", layers=4)
    layout = model_layout(model)
    skip = SkipSet(4, {1, 2}, {2})
    ids = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(7))
    chunk = skip_forward(layout, skip, ids, torch.arange(5)[None], DynamicCache(), causal_mask(5, 0, torch.float64))
    cache = DynamicCache()
    steps = [skip_forward(layout, skip, ids[:, i:i + 1], torch.tensor([[i]]), cache) for i in range(5)]
    torch.testing.assert_close(torch.cat(steps), chunk, rtol=0, atol=1e-10)


def test_drafting_never_mutates_the_model() -> None:
    """No config edit, no module replaced, no weight touched."""
    import draftkit

    model = cached_model("gpt_neox", layers=4)
    config_before = copy.deepcopy(model.config.to_dict())
    modules_before = [(name, id(mod), type(mod)) for name, mod in model.named_modules()]
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    forwards_before = {name: mod.forward for name, mod in model.named_modules()}
    draftkit.SpeculativeDecoder(model, source=LayerSkip()).generate(torch.tensor([[1, 2, 3, 4]]), max_new_tokens=12)
    assert model.config.to_dict() == config_before
    assert [(name, id(mod), type(mod)) for name, mod in model.named_modules()] == modules_before
    assert all(torch.equal(v, state_before[k]) for k, v in model.state_dict().items())
    assert {name: mod.forward for name, mod in model.named_modules()} == forwards_before


def test_unsupported_architecture_is_refused_with_its_name() -> None:
    """OPT is not built like Llama: the Llama layout fails the reproduction check, refused at construction."""
    from transformers import AutoModelForCausalLM, OPTConfig

    import draftkit

    config = OPTConfig(vocab_size=97, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=128, word_embed_proj_dim=32)
    model = AutoModelForCausalLM.from_config(config).to(torch.float64).eval()
    with pytest.raises(UnsupportedModelError, match=r"model type 'opt'.*supported: gpt2, gpt_neox, llama"):
        model_layout(model)
    with pytest.raises(UnsupportedModelError, match=r"model type 'opt'.*Llama layout.*does not reproduce"):
        LayerSkip().prepare(model)
    with pytest.raises(UnsupportedModelError, match="source='pld'"):
        draftkit.SpeculativeDecoder(model, source="layerskip")
    with pytest.raises(UnsupportedModelError, match="'opt'"):  # inside a composite too
        draftkit.SpeculativeDecoder(model, source=["pld", "layerskip"])


@pytest.mark.parametrize("arch", ["qwen3", "phi3", "gemma", "starcoder2", "olmo"])
def test_llama_built_families_are_accepted_once_the_layout_reproduces_them(arch: str) -> None:
    """Families outside the table that are built like Llama: proven on the model, then lossless."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    import draftkit
    from draftkit.testing.models import tiny_model

    if arch not in CONFIG_MAPPING:
        pytest.skip(f"{arch} is not in this transformers version")
    model = tiny_model(arch, layers=4)
    assert arch not in supported_architectures()
    assert find_layout(model).num_layers == 4
    decoder = draftkit.SpeculativeDecoder(model, source="layerskip", budget=8)  # fixed: stats are asserted
    plain = draftkit.PlainDecoder(model)
    for prompt in ([1, 2, 3, 4], [5, 9, 5, 9, 5, 9, 7]):
        ids = torch.tensor([prompt])
        out = decoder.generate(ids, max_new_tokens=20)
        assert out.sequences.tolist() == plain.generate(ids, max_new_tokens=20).sequences.tolist()
        assert out.stats.drafted > 0


def test_a_family_that_computes_something_else_is_refused() -> None:
    """Granite scales each residual branch: the Llama layout would draft from another model, so it is refused."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from draftkit.testing.models import tiny_model

    if "granite" not in CONFIG_MAPPING:
        pytest.skip("granite is not in this transformers version")
    assert find_layout(tiny_model("granite", layers=4)).num_layers == 4  # multipliers of 1: Llama exactly
    model = tiny_model("granite", layers=4, residual_multiplier=0.5)
    with pytest.raises(UnsupportedModelError, match=r"'granite'.*does not reproduce"):
        find_layout(model)


def test_missing_sub_block_is_named() -> None:
    from draftkit.testing.models import tiny_model

    model = tiny_model("llama", layers=3)  # a private copy: the test edits it
    del model.model.layers[1].mlp
    with pytest.raises(UnsupportedModelError, match=r"`model\.layers\[1\]\.mlp`"):
        model_layout(model)
