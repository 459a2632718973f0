"""What a model's config says about the spans and state it supports.

Pure functions of a Hugging Face model and its config, read once when a
:class:`~draftkit.engine.target.TargetModel` is built: how many logits it
produces, how long its context is, which attention is restricted (sliding
windows and chunks, which tree masks reproduce; GPT-Neo's slot-local layers,
where tree steps are exact only inside the window), and, when a model fails
the tree-verification probe, what most likely keeps it from working (ALiBi,
recurrent state).
"""

from __future__ import annotations

__all__ = [
    "chunked_attention_size",
    "context_window",
    "layer_mask_kinds",
    "logits_size",
    "sliding_window",
    "slot_local_window",
    "unsupported_hint",
]


def logits_size(model: object) -> int:
    """Number of logits the model produces per position (its LM head's rows, else ``config.vocab_size``)."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    weight = getattr(head, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    return int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)


def context_window(config: object) -> int | None:
    """Longest sequence the model was built for, or ``None`` when unbounded."""
    for attr in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def sliding_window(config: object) -> int | None:
    """Effective sliding-window size of the attention layers, ``None`` if all are full."""
    window = getattr(config, "sliding_window", None)
    if getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and not any("sliding" in str(t) for t in layer_types):
        return None
    return window if isinstance(window, int) and window > 0 else None


def layer_mask_kinds(config: object) -> tuple[str, ...]:
    """The distinct ``layer_types`` of a model whose layers take different attention masks
    (Gemma 2: ``("sliding_attention", "full_attention")``), in order; ``()`` when one mask serves all."""
    layer_types = getattr(config, "layer_types", None)
    if not isinstance(layer_types, (list, tuple)):
        return ()
    kinds = tuple(dict.fromkeys(str(t) for t in layer_types))
    return kinds if len(kinds) > 1 else ()


def chunked_attention_size(config: object) -> int | None:
    """Chunk size of chunked attention layers (Llama 4), ``None`` without them.

    A token in such a layer sees only the earlier tokens of its own chunk. A
    tree step passes its own 4-D mask, which the model uses as it is, so the
    tree mask must apply the chunks itself (by each node's position).
    """
    chunk = getattr(config, "attention_chunk_size", None)
    if not isinstance(chunk, int) or chunk <= 0:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and not any("chunk" in str(t) for t in layer_types):
        return None
    return chunk


def slot_local_window(config: object) -> int | None:
    """Window of local attention applied by KV-cache *slot* (GPT-Neo), ``None`` without it.

    GPT-Neo masks keys more than ``window_size`` cache slots before the query.
    In a tree step, node ``i`` sits in slot ``cache_len + 1 + i`` but at the
    position of its depth, so once slots pass the window the model masks keys
    that plain decoding at that position would still see.
    """
    layers = getattr(config, "attention_layers", None)
    window = getattr(config, "window_size", None)
    if not isinstance(window, int) or window <= 0 or not isinstance(layers, (list, tuple)):
        return None
    return window if any(str(kind) == "local" for kind in layers) else None


def unsupported_hint(config: object) -> str | None:
    """What most likely keeps a model from tree verification, read from its config."""
    attn_config = getattr(config, "attn_config", None)
    if getattr(config, "alibi", False) or getattr(attn_config, "alibi", False) or (
        getattr(config, "model_type", None) == "bloom"
    ):
        return "its ALiBi position biases are built from a 2-D padding mask, which cannot express a token tree"
    layer_types = [str(t) for t in getattr(config, "layer_types", None) or ()]
    recurrent_fields = ("mamba_d_state", "ssm_state_size", "state_size", "layers_block_type", "block_types",
                        "lru_width", "linear_num_value_heads")
    if any(hasattr(config, f) for f in recurrent_fields) or any(
        "mamba" in t or "linear" in t or "recurrent" in t for t in layer_types
    ):
        return ("it keeps recurrent or state-space state besides a key/value cache, which cannot be rolled "
                "back to one branch of a tree")
    return None
