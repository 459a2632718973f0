"""Give a small target the verify-cost curve of a bigger model, for budget experiments.

The tree budget trades acceptance (a property of the target's predictions)
against verify cost (a property of the target's size on this machine). We have
no trained 60M model, but cost does not depend on training: a random-weights
Llama of that size costs exactly what a trained one does. ``add_cost_shadow``
makes every forward of the demo target's body also run the same-shaped forward
(same input ids, tree mask, position ids, and a KV cache of the same length)
through such a "shadow" model's body, and every use of its LM head run the
shadow's head on as many rows; the shadow's outputs are discarded. Decoding then accepts exactly
what the demo target accepts, at the cost of both models together, dominated
by the shadow.

Benchmark use only: the shadow's cache is kept the same *length* as the real
one (cropped before each call), not the same content, which is all its cost
depends on.
"""

from __future__ import annotations

from typing import Any

import torch


def shadow_llama(vocab_size: int, *, hidden: int = 512, layers: int = 13, intermediate: int = 2048,
                 heads: int = 8, context: int = 2048, seed: int = 0) -> Any:
    """A random-weights float32 Llama (defaults: about 59M parameters with an 8k vocabulary)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                         intermediate_size=intermediate, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=context, tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


def add_cost_shadow(model: Any, shadow: Any) -> None:
    """Make ``model``'s body and head also run ``shadow``'s on the same shapes (in place).

    The body is patched rather than the whole forward because draftkit runs the
    body alone when it can (prefill, greedy verification) and then the head on
    a few rows only.
    """
    from transformers.cache_utils import DynamicCache

    body, shadow_body = model.base_model, shadow.base_model
    shadow_head = shadow.get_output_embeddings()
    inner = body.forward
    state: dict[str, Any] = {"cache": None, "owner": None}

    @torch.inference_mode()
    def forward(input_ids: torch.Tensor | None = None, attention_mask: Any = None, position_ids: Any = None,
                past_key_values: Any = None, use_cache: bool | None = None, **kwargs: Any) -> Any:
        before = 0 if past_key_values is None else int(past_key_values.get_seq_length())
        out = inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=past_key_values, use_cache=use_cache, **kwargs)
        if past_key_values is None:
            shadow_body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                        use_cache=False)
            return out
        cache = state["cache"]
        if state["owner"] is not past_key_values or cache is None or cache.get_seq_length() < before:
            cache = DynamicCache()
            if before:  # a cache we have not followed from the start: fill it to the same length
                shadow_body(input_ids=torch.zeros((1, before), dtype=torch.long), past_key_values=cache,
                            use_cache=True)
        elif cache.get_seq_length() > before:
            cache.crop(-(cache.get_seq_length() - before))
        shadow_body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=cache, use_cache=True)
        state["cache"], state["owner"] = cache, past_key_values
        return out

    def head_hook(_module: Any, args: tuple[Any, ...], _out: Any) -> None:
        rows = args[0].reshape(-1, args[0].shape[-1]).shape[0]
        with torch.inference_mode():
            shadow_head(torch.zeros((rows, shadow.config.hidden_size)))

    body.forward = forward
    model.get_output_embeddings().register_forward_hook(head_hook)


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
