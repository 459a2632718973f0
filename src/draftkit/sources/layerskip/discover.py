"""Find the layer layout of a model: the family table, or the Llama layout proven on the model.

Most decoder-only families in ``transformers`` are built like Llama (``model.layers[i]``
with ``input_layernorm -> self_attn`` and ``post_attention_layernorm -> mlp``, a final
``model.norm``), under their own ``model_type``. Listing each one by hand would lag
behind every release, and guessing blindly could give a useless draft model (a
family that scales its embeddings or adds extra norms computes something else).
So a family missing from :data:`.layers.ARCHITECTURES` gets the Llama layout *on
probation*: it is kept only if the explicit forward with nothing skipped reproduces
the model's own logits, over a prefill and a cached continuation, to rounding.
Known families are checked the same way, which also catches custom variants.
"""

from __future__ import annotations

from typing import Any

import torch

from ...engine.model_config import chunked_attention_size, sliding_window
from ...errors import UnsupportedModelError
from .forward import causal_mask, skip_forward
from .layers import ARCHITECTURES, LLAMA_LAYOUT, ModelLayout, model_layout, supported_architectures
from .skipset import SkipSet

__all__ = ["find_layout", "reproduces_model"]

#: Relative tolerance of the reproduction check, by parameter dtype.
_TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-4}


def reproduces_model(model: Any, layout: ModelLayout) -> bool:
    """Whether the explicit forward, nothing skipped, gives the model's logits.

    Seven tokens: a prefill of five through a fresh cache, then two more reading it,
    against one ordinary forward of all seven. Fewer on a model whose attention is
    restricted to a shorter window or chunk: the explicit forward attends without the
    restriction (drafts only, which the target verifies), so the probe stays inside it.
    """
    from transformers import DynamicCache

    config = getattr(model, "config", None)
    span = min(w for w in (7, sliding_window(config), chunked_attention_size(config)) if w is not None)
    if span < 3:  # too short a window for the two-part check; this forward cannot model it
        return False
    param = next(model.parameters())
    vocab = int(layout.head.weight.shape[0]) if hasattr(layout.head, "weight") else 2
    ids = (torch.arange(3, 3 + span) % max(2, vocab)).to(param.device)[None]
    positions = torch.arange(span, device=param.device)[None]
    split = span - 2
    empty = SkipSet.empty(layout.num_layers)
    try:
        with torch.inference_mode():
            expected = model(input_ids=ids).logits[0]
            cache = DynamicCache()
            first = skip_forward(layout, empty, ids[:, :split], positions[:, :split], cache,
                                 causal_mask(split, 0, param.dtype, param.device))
            second = skip_forward(layout, empty, ids[:, split:], positions[:, split:], cache,
                                  causal_mask(2, split, param.dtype, param.device))
    except Exception:  # a module that does not take the Llama call: not this layout
        return False
    got = torch.cat([first, second])
    if got.shape != expected.shape:
        return False
    scale = float(expected.abs().max()) + 1e-6
    return float((got - expected).abs().max()) <= _TOLERANCE.get(param.dtype, 5e-2) * scale


def find_layout(model: Any) -> ModelLayout:
    """The layout of ``model``, checked to reproduce it; :class:`UnsupportedModelError` otherwise."""
    arch = str(getattr(getattr(model, "config", None), "model_type", "") or type(model).__name__)
    known = arch in ARCHITECTURES
    if known:
        layout = model_layout(model)  # names a missing sub-block precisely
    else:
        try:
            layout = model_layout(model, LLAMA_LAYOUT)
        except UnsupportedModelError:
            layout = None
    if layout is not None and reproduces_model(model, layout):
        return layout
    config = getattr(model, "config", None)
    windows = [w for w in (sliding_window(config), chunked_attention_size(config)) if w is not None]
    what = (
        f"the model's attention window of {min(windows)} tokens is too short for layer skipping's check"
        if windows and min(windows) < 3 else
        f"the {arch} layout layer skipping knows does not reproduce this model's logits (a customised "
        "variant?)" if known else
        f"layer skipping does not know the layer layout of model type {arch!r}, and the Llama layout "
        "tried on it does not reproduce the model's logits"
    )
    raise UnsupportedModelError(
        f"{what}; families with a known layout: {', '.join(supported_architectures())}. Use another "
        "draft source (e.g. source='pld'), or add an ArchSpec for this family to "
        "draftkit.sources.layerskip.layers.ARCHITECTURES"
    )
