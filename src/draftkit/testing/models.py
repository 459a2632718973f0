"""Tiny random causal LMs for tests.

The models are float64 so that equality tests are not at the mercy of near-ties:
a verification forward over k tokens and k single-token forwards use different
matrix shapes, and in float32 two almost-equal logits can swap their order
between the two. In float64 the gaps between random logits dwarf the rounding.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ARCHITECTURES", "MORE_ARCHITECTURES", "tiny_config", "tiny_model"]

#: Architectures covered by the engine's property tests.
ARCHITECTURES = ("llama", "gpt2", "qwen2", "mistral", "gpt_neox")

#: More decoder-only families, built by the generic recipe of :func:`tiny_config`
#: and checked for lossless greedy output by ``tests/test_architectures.py``.
#: Names missing from the installed ``transformers`` are skipped there.
MORE_ARCHITECTURES = (
    "qwen3", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "opt", "falcon", "gptj", "codegen",
    "stablelm", "olmo", "olmo2", "starcoder2", "gpt_bigcode", "cohere", "granite", "smollm3", "mixtral",
    "qwen2_moe", "gpt_neo", "biogpt", "persimmon", "nemotron", "glm", "helium", "llama4_text",
    "deepseek_v2", "deepseek_v3", "minicpm3", "qwen3_moe", "gpt_oss", "glm4", "ernie4_5", "exaone4", "bitnet",
    "seed_oss", "hunyuan_v1_dense", "internlm3", "ministral", "granitemoe", "jetmoe", "apertus",
)

# Size fields of the generic recipe: every name a config class has gets the value.
_GENERIC_SIZES: dict[str, Any] = {
    "hidden_size": 32, "n_embd": 32, "d_model": 32,
    "num_hidden_layers": 2, "n_layer": 2, "num_layers": 2,
    "num_attention_heads": 4, "n_head": 4, "num_heads": 4,
    "num_key_value_heads": 2, "head_dim": 8,
    "intermediate_size": 64, "n_inner": 64, "ffn_dim": 64,
    "moe_intermediate_size": 16, "shared_expert_intermediate_size": 16,
    "num_local_experts": 4, "num_experts": 4, "num_experts_per_tok": 2,
}
# Per-family fixes that make the tiny generic config consistent.
_GENERIC_FIXES: dict[str, dict[str, Any]] = {
    "gptj": {"rotary_dim": 4}, "codegen": {"rotary_dim": 4},
    "gpt_bigcode": {"multi_query": True},
    "falcon": {"new_decoder_architecture": False, "multi_query": True, "alibi": False},
    "llama4_text": {"intermediate_size_mlp": 64, "interleave_moe_layer_step": 1, "num_local_experts": 2,
                    "num_experts_per_tok": 1},
    # Multi-head latent attention: consistent latent and rotary sizes, no key/value head grouping.
    **dict.fromkeys(("deepseek_v2", "deepseek_v3", "minicpm3"), {
        "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8, "kv_lora_rank": 16, "q_lora_rank": 16,
        "num_key_value_heads": 4, "head_dim": 8, "first_k_dense_replace": 1, "n_routed_experts": 4,
        "n_group": 1, "topk_group": 1}),
}
#: Mixture-of-experts families: their default experts kernel has no float64 CPU path.
_EAGER_EXPERTS = frozenset({"mixtral", "qwen2_moe", "qwen3_moe", "llama4_text", "granitemoe", "gpt_oss", "deepseek_v2",
                            "deepseek_v3", "jetmoe"})


def tiny_config(arch: str, vocab_size: int = 97, *, layers: int = 2, context: int = 256,
                eos_token_id: int | None = None, **overrides: Any) -> Any:
    """A small config of ``arch``: one of :data:`ARCHITECTURES` (hand-written configs), or any
    other ``model_type`` of the installed ``transformers`` (a generic recipe, see
    :data:`MORE_ARCHITECTURES`). ``overrides`` are extra config fields (generic recipe only)."""
    import transformers as tf

    common: dict[str, Any] = dict(vocab_size=vocab_size, eos_token_id=eos_token_id, bos_token_id=None,
                                  pad_token_id=None, tie_word_embeddings=False)
    if arch == "llama":
        return tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                              num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=context, **common)
    if arch == "mistral":
        return tf.MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=context, sliding_window=None, **common)
    if arch == "qwen2":
        return tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                              num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=context, **common)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=32, n_layer=layers, n_head=4, n_positions=context, **common)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                num_attention_heads=4, max_position_embeddings=context, **common)
    return _generic_config(arch, layers, context, common, **overrides)


def _generic_config(arch: str, layers: int, context: int, common: dict[str, Any], **overrides: Any) -> Any:
    """A tiny config of any ``model_type``: the size fields its class has, plus per-family fixes."""
    import dataclasses
    import inspect

    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if arch not in CONFIG_MAPPING:
        raise ValueError(f"unknown architecture {arch!r} in this transformers version")
    cls = CONFIG_MAPPING[arch]
    fields = set(inspect.signature(cls.__init__).parameters)
    if dataclasses.is_dataclass(cls):
        fields |= {f.name for f in dataclasses.fields(cls)}
    sizes = dict(_GENERIC_SIZES, max_position_embeddings=context, n_positions=context,
                 num_hidden_layers=layers, n_layer=layers, num_layers=layers)
    kwargs = {k: v for k, v in sizes.items() if k in fields}
    kwargs.update({k: v for k, v in common.items() if k in fields})
    kwargs.update(_GENERIC_FIXES.get(arch, {}))
    if arch == "gpt_neo":  # alternating global / local layers, as many as asked
        kwargs.update(attention_types=[[["global", "local"], layers // 2]] + [[["global"], 1]] * (layers % 2),
                      window_size=256)
    kwargs.update(overrides)
    return cls(**kwargs)


def tiny_model(arch: str = "llama", vocab_size: int = 97, *, seed: int = 0, layers: int = 2,
               context: int = 256, eos_token_id: int | None = None,
               dtype: torch.dtype = torch.float64, **overrides: Any) -> torch.nn.Module:
    """A random model of ``arch`` in eval mode, deterministic for a seed.

    Random weights give nearly uniform next-token distributions; the logits are
    scaled up (output embeddings x 8) so that greedy decoding has structure and
    drafts get accepted at realistic rates.
    """
    from transformers import AutoModelForCausalLM

    config = tiny_config(arch, vocab_size, layers=layers, context=context, eos_token_id=eos_token_id,
                         **overrides)
    torch.manual_seed(seed)
    extra = {"experts_implementation": "eager"} if arch in _EAGER_EXPERTS else {}
    model = AutoModelForCausalLM.from_config(config, **extra)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.mul_(8.0)
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = eos_token_id
    return model.to(dtype).eval()
