"""Small helpers shared by the tests (cached tiny models, HF reference runs)."""

from __future__ import annotations

import functools

import torch

from draftkit.testing.models import tiny_model


@functools.lru_cache(maxsize=32)
def cached_model(arch: str, vocab: int = 97, seed: int = 0, eos: int | None = None, layers: int = 2,
                 context: int = 256) -> torch.nn.Module:
    """Tiny float64 model; cached because building one costs more than a test example."""
    return tiny_model(arch, vocab, seed=seed, eos_token_id=eos, layers=layers, context=context)


def hf_greedy(model: torch.nn.Module, prompt: list[int], max_new_tokens: int,
              eos: int | None) -> list[int]:
    """Hugging Face's own greedy decoding, the external reference."""
    ids = torch.tensor([prompt])
    out = model.generate(
        ids,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos if eos is not None else 0,
        attention_mask=torch.ones_like(ids),
    )
    seq = out[0].tolist()
    if eos is not None and eos in seq[len(prompt):]:
        # HF pads nothing for batch 1, but stop exactly after the first EOS to be explicit.
        cut = seq.index(eos, len(prompt)) + 1
        seq = seq[:cut]
    return seq
