"""Tree attention: the 4-D mask and position ids for one verification forward.

The forward input is ``[pending, node_0, ..., node_{n-1}]`` where ``pending`` is
the last context token, not yet in the KV cache. Row 0 sees the whole cache and
itself; node ``i`` sees the cache, ``pending`` and its own root path. Positions
continue the context: ``pending`` sits at ``cache_len`` and a node of depth ``d``
at ``cache_len + d``, exactly where it would be in a plain causal forward.
"""

from __future__ import annotations

import numpy as np
import torch

from ..types import TokenTree

__all__ = ["tree_attention_inputs"]


def tree_attention_inputs(
    tree: TokenTree,
    cache_len: int,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    *,
    sliding_window: int | None = None,
    attention_chunk: int | None = None,
    fresh_prefix: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(mask, position_ids)``.

    * ``mask``: float [1, 1, f + n + 1, cache_len + f + n + 1], 0 where attention is
      allowed and the dtype's most negative value elsewhere (not ``-inf``, which
      turns fully masked rows into NaN in some kernels).
    * ``position_ids``: int64 [1, f + n + 1].

    ``fresh_prefix`` (``f``): context tokens not in the cache yet, fed before
    ``pending`` in the same forward (a prompt's prefill fused with the first
    tree step); they attend causally, and ``pending`` and every node see them.

    ``sliding_window`` / ``attention_chunk``: the mask of a layer whose
    attention is restricted by position, as Hugging Face restricts it in plain
    decoding (a query at position ``p`` sees keys at positions ``> p - window``;
    or only keys of its own chunk ``p // chunk``). Cache slot ``s < cache_len``
    holds position ``s`` (the committed context); a tree node holds the
    position of its depth, so the restriction follows each node's own path.
    """
    # Built in numpy (each operation on these small arrays costs a fraction of torch's dispatch;
    # this runs every step), then turned into the model's dtype with two torch operations.
    n, f = tree.size, fresh_prefix
    allowed = np.zeros((f + n + 1, cache_len + f + n + 1), dtype=bool)
    allowed[:, :cache_len] = True  # the cache
    if f:  # the fresh prefix and pending: causal among themselves
        allowed[: f + 1, cache_len : cache_len + f + 1] = np.tri(f + 1, dtype=bool)
    allowed[f:, cache_len + f] = True  # pending, seen by itself and every node
    allowed[f + 1 :, cache_len : cache_len + f] = True  # nodes see the fresh prefix
    if n:
        allowed[f + 1 :, cache_len + f + 1 :] = tree.ancestors
    base = cache_len + f  # pending's position
    positions = np.empty(f + n + 1, dtype=np.int64)
    positions[: f + 1] = np.arange(cache_len, base + 1)
    if n:
        positions[f + 1 :] = tree.depths + base
    if sliding_window is not None or attention_chunk is not None:
        key_positions = np.concatenate([np.arange(cache_len), positions])
        query, key = positions[:, None], key_positions[None, :]
        if sliding_window is not None:
            allowed &= key > query - sliding_window
        if attention_chunk is not None:
            allowed &= key // attention_chunk == query // attention_chunk
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(torch.from_numpy(~allowed), torch.finfo(dtype).min)
    return mask[None, None].to(device), torch.from_numpy(positions)[None].to(device)
