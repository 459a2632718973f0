"""A tiny character tokenizer built locally (no hub), for stop-string tests.

97 tokens: 89 printable characters (space and newline first), a few multi-character tokens (so stop
strings can straddle and overhang token boundaries), newline and an EOS.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["char_tokenizer"]

MULTI = ["de", "ef", "f(", "\nd", "  ", "in", "re"]


def char_tokenizer(vocab_size: int = 97) -> Any:
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = [" ", "\n"] + [c for c in string.printable if c not in " \t\n\r\x0b\x0c"]
    pieces = MULTI + ["<eos>"]
    tokens = (chars[: vocab_size - len(pieces)] + pieces)[:vocab_size]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = []
    for tok in MULTI:
        merges.append((tok[0], tok[1]))
    model = models.BPE(vocab=vocab, merges=merges)
    raw = Tokenizer(model)
    raw.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>")
    return tok
