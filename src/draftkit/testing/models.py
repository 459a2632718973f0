"""Tiny random causal LMs for tests.

The models are float64 so that equality tests are not at the mercy of near-ties:
a verification forward over k tokens and k single-token forwards use different
matrix shapes, and in float32 two almost-equal logits can swap their order
between the two. In float64 the gaps between random logits dwarf the rounding.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ARCHITECTURES", "tiny_config", "tiny_model"]

#: Architectures covered by the engine's tests.
ARCHITECTURES = ("llama", "gpt2", "qwen2", "mistral", "gpt_neox")


def tiny_config(arch: str, vocab_size: int = 97, *, layers: int = 2, context: int = 256,
                eos_token_id: int | None = None) -> Any:
    """A small config of ``arch`` (one of :data:`ARCHITECTURES`)."""
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
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def tiny_model(arch: str = "llama", vocab_size: int = 97, *, seed: int = 0, layers: int = 2,
               context: int = 256, eos_token_id: int | None = None,
               dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A random model of ``arch`` in eval mode, deterministic for a seed.

    Random weights give nearly uniform next-token distributions; the logits are
    scaled up (output embeddings x 8) so that greedy decoding has structure and
    drafts get accepted at realistic rates.
    """
    from transformers import AutoModelForCausalLM

    config = tiny_config(arch, vocab_size, layers=layers, context=context, eos_token_id=eos_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.mul_(8.0)
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = eos_token_id
    return model.to(dtype).eval()
