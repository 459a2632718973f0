"""A byte-level BPE tokenizer for the demo models, trained on the corpus.

Why byte-level BPE: every string round-trips (no unknown token), which
speculative decoding relies on when it compares draft and target tokens.
Why a modest vocabulary (~8k): the demo models are tiny and trained on a CPU,
so the embedding matrix and the output projection must stay cheap; a smaller
vocabulary also gives each token more training examples.

The tokenizer is saved through :class:`transformers.PreTrainedTokenizerFast`
so the ordinary ``AutoTokenizer.from_pretrained(folder)`` loads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "EOS_TOKEN",
    "encode_documents",
    "train_tokenizer",
]

#: The single special token; it separates files, so it serves as BOS, EOS and PAD.
EOS_TOKEN = "<|endoftext|>"

#: Target vocabulary size, special token included.
DEFAULT_VOCAB_SIZE = 8192


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    The 256 byte symbols are always in the vocabulary (``initial_alphabet``),
    so any text encodes even if a byte never occurred in training. ``<|endoftext|>``
    gets id 0. No post-processor adds tokens automatically (as with GPT-2):
    callers decide where a file starts, and encoding ``text`` gives exactly
    the tokens of ``text``. Training is deterministic for the same texts.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_as_iterator(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=None,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def _as_iterator(texts: Iterable[str]) -> Iterator[str]:
    yield from texts


def encode_documents(
    tokenizer: PreTrainedTokenizerFast,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    separator_id: int | None = None,
) -> np.ndarray:
    """Encode ``texts`` into one token stream, each document preceded by EOS.

    The stream is ``EOS doc0 EOS doc1 ... EOS docN`` (an EOS before each
    document and one at the end), so every document is seen starting right
    after the separator it will follow at generation time, and every document
    end is followed by EOS. Uses the Rust batch encoder (fast; it runs in
    parallel unless ``TOKENIZERS_PARALLELISM=false``). Returns ``uint16`` when
    the vocabulary fits, halving the cache size, else ``int32``.

    ``separator_id``: the EOS id of another tokenizer than the demo's (whose
    EOS is :data:`EOS_TOKEN`). A tokenizer without the Rust backend (a "slow"
    one) encodes through its own ``__call__``.
    """
    import numpy as np

    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN) if separator_id is None else separator_id
    if eos_id is None:
        raise ValueError(f"the tokenizer has no {EOS_TOKEN!r} token: pass separator_id")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    dtype = np.uint16 if max(len(tokenizer), int(eos_id) + 1) <= 65536 else np.int32
    parts: list[np.ndarray] = []
    sep = np.array([eos_id], dtype=dtype)
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        if backend is not None:
            encoded = [enc.ids for enc in backend.encode_batch(batch, add_special_tokens=False)]
        else:
            encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
        for ids in encoded:
            parts.append(sep)
            parts.append(np.asarray(ids, dtype=dtype))
    parts.append(sep)
    return np.concatenate(parts)
