"""The draft model's forward: the target's own modules with some sub-blocks left out.

``embeddings -> for each decoder layer: (attention unless skipped) and (MLP
unless skipped), with the family's norms and residuals -> final norm -> LM head``.

Nothing of the user's model is changed (no config edit, no patched module): the
forward calls the existing sub-modules directly, in the order the family's own
``forward`` does (see :mod:`.layers`). With nothing skipped it computes the same
numbers as the model's ``forward``.

KV cache: a kept attention sub-block reads and appends to its own slot of the
``DynamicCache`` it is given (slot = layer index); a skipped one neither reads nor
writes its slot. The caller decides what happens to those entries afterwards
(the draft source crops them, see :mod:`.source`).

Dropout modules between sub-blocks are not applied: drafting runs in inference,
where they are the identity.
"""

from __future__ import annotations

from typing import Any

import torch

from .layers import ModelLayout
from .skipset import SkipSet

__all__ = ["skip_forward", "causal_mask"]


def causal_mask(
    query_len: int, past_len: int, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """Additive mask [1, 1, q, past + q] for ``query_len`` new tokens after ``past_len`` cached ones.

    ``None`` for a single token: it attends to everything, which every attention
    implementation does without a mask (and faster).
    """
    if query_len == 1:
        return None
    allowed = torch.ones((query_len, past_len + query_len), dtype=torch.bool).tril(diagonal=past_len)
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None].to(device)


def _attention(layout: ModelLayout, i: int, normed: torch.Tensor, mask: torch.Tensor | None,
               position_embeddings: Any, cache: Any) -> torch.Tensor:
    kwargs: dict[str, Any] = {"hidden_states": normed, "attention_mask": mask, layout.cache_kwarg: cache}
    if position_embeddings is not None:
        kwargs["position_embeddings"] = position_embeddings
    out = layout.layers[i].attention(**kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.inference_mode()
def skip_forward(
    layout: ModelLayout,
    skip: SkipSet,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    cache: Any,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits float [n, V] of the draft model for ``input_ids`` int64 [1, n].

    ``position_ids`` int64 [1, n] are absolute positions (the cache holds the
    positions before them for every kept attention layer). ``attention_mask`` is
    an additive [1, 1, n, past + n] mask; ``None`` means causal for one token
    (use :func:`causal_mask` for more).
    """
    hidden = layout.embed(input_ids)
    if layout.positions is not None:
        hidden = hidden + layout.positions(position_ids).to(hidden.device)
    position_embeddings = None
    if layout.rotary is not None:
        position_embeddings = layout.rotary(hidden, position_ids=position_ids)
    skip_attn, skip_mlp = skip.attention, skip.mlp
    for i, blocks in enumerate(layout.layers):
        run_attn = i not in skip_attn
        run_mlp = i not in skip_mlp
        if not (run_attn or run_mlp):
            continue
        if layout.parallel:
            # Both branches read the layer input; their outputs are summed, then the residual added.
            shared = blocks.attention_norm(hidden) if (run_attn or blocks.mlp_norm is None) else None
            branches: dict[str, torch.Tensor] = {}
            if run_attn:
                branches["attention"] = _attention(layout, i, shared, attention_mask, position_embeddings, cache)
            if run_mlp:
                mlp_in = shared if blocks.mlp_norm is None else blocks.mlp_norm(hidden)
                branches["mlp"] = blocks.mlp(mlp_in)
            delta: torch.Tensor | None = None
            for name in layout.parallel_order:
                if name in branches:
                    delta = branches[name] if delta is None else delta + branches[name]
            hidden = delta + hidden
        else:
            if run_attn:
                normed = blocks.attention_norm(hidden)
                hidden = hidden + _attention(layout, i, normed, attention_mask, position_embeddings, cache)
            if run_mlp:
                hidden = hidden + blocks.mlp(blocks.mlp_norm(hidden))
    hidden = layout.final_norm(hidden)
    return layout.head(hidden)[0]
