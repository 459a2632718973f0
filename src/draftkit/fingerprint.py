"""A stable identity for a tokenizer, stored in every on-disk artefact built with it.

A retrieval datastore or an n-gram matrix holds token *ids*; read with another
tokenizer they are silently wrong drafts (never wrong output, since verification
is lossless, but zero speed-up and a puzzling one). Storing a fingerprint of the
tokenizer next to the ids lets a loader refuse the mismatch with a clear message.

The fingerprint is the SHA-256 of the vocabulary (token string -> id, sorted by
id) and of the added tokens (id, content, special flag), serialised as canonical
JSON. It ignores everything that does not change which id a string maps to in the
stored artefacts (padding side, chat template, model max length), so saving and
reloading a tokenizer keeps its fingerprint.

:func:`file_sha256` is the identity of a file's bytes (datastore checksums, the
cache key of corpus artefacts built from a file).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["tokenizer_fingerprint", "require_fingerprint", "check_built_for", "file_sha256", "FINGERPRINT_PREFIX"]

#: Fingerprints are written as ``"sha256:<64 hex digits>"`` so the scheme can change later.
FINGERPRINT_PREFIX = "sha256:"


def _vocab_of(tokenizer: Any) -> dict[str, int]:
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        raise TypeError(
            f"cannot fingerprint {type(tokenizer).__name__}: expected a Hugging Face tokenizer "
            "(transformers PreTrainedTokenizer(Fast) or tokenizers.Tokenizer) with get_vocab()"
        )
    try:  # tokenizers.Tokenizer needs the flag to include added tokens
        vocab = get_vocab(with_added_tokens=True)
    except TypeError:
        vocab = get_vocab()
    return {str(k): int(v) for k, v in vocab.items()}


def _added_tokens_of(tokenizer: Any) -> list[list[Any]]:
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if decoder is None:
        get = getattr(tokenizer, "get_added_tokens_decoder", None)
        decoder = get() if callable(get) else {}
    out = []
    for idx, tok in dict(decoder).items():
        content = getattr(tok, "content", str(tok))
        special = bool(getattr(tok, "special", False))
        out.append([int(idx), str(content), special])
    out.sort()
    return out


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """``"sha256:<hex>"`` identifying the id assignment of a Hugging Face tokenizer.

    Accepts a ``transformers`` tokenizer or a ``tokenizers.Tokenizer``. Two
    tokenizers with the same fingerprint map every token string to the same id.
    """
    vocab = sorted(_vocab_of(tokenizer).items(), key=lambda kv: (kv[1], kv[0]))
    payload = {"vocab": [[tok, idx] for tok, idx in vocab], "added": _added_tokens_of(tokenizer)}
    blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return FINGERPRINT_PREFIX + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def require_fingerprint(what: str, recorded: str | None, expected: str, fix: str, *, must_be_recorded: bool = True) -> None:
    """Refuse an artefact (``what``) whose recorded tokenizer fingerprint differs from ``expected``.

    The one comparison every loader makes (ADED matrices, REST datastores, a
    decoder's source). ``must_be_recorded``: an artefact that records no
    fingerprint is refused too (it cannot be checked), else it passes. ``fix``
    ends the message with what to do.
    """
    from .errors import MismatchedDataFileError

    if not recorded:
        if must_be_recorded:
            raise MismatchedDataFileError(
                f"{what} records no tokenizer fingerprint, so it cannot be checked against the given tokenizer; {fix}"
            )
        return
    if recorded != expected:
        raise MismatchedDataFileError(
            f"{what} was built with another tokenizer (fingerprint {recorded[:19]}..., the given tokenizer has "
            f"{expected[:19]}...): its token ids would be meaningless drafts. {fix}"
        )


def check_built_for(what: str, recorded: str | None, tokenizer: Any, vocab_size: int, model_vocab: int,
                    *, largest_id: int | None = None) -> None:
    """Refuse an artefact (``what``, e.g. "the ADED matrix m.aded") that was built for another tokenizer.

    ``recorded`` is the fingerprint stored at build time (``None`` or ``""``:
    unknown, only the vocabulary is checked); ``tokenizer`` may be ``None``
    (nothing to compare). ``vocab_size`` is the artefact's vocabulary,
    ``model_vocab`` the model's number of logits. ``largest_id``: for an
    artefact whose ids, not its declared vocabulary, must fit the model (a
    retrieval datastore), the largest id it holds; ``vocab_size`` is then only
    named in the message.
    """
    from .errors import MismatchedDataFileError

    if largest_id is not None and largest_id >= model_vocab:
        raise MismatchedDataFileError(
            f"{what} holds token id {largest_id} (built for a vocabulary of {vocab_size} tokens), but the "
            f"model has {model_vocab}; it was built for another tokenizer. Rebuild it with this model's tokenizer"
        )
    if largest_id is None and vocab_size > model_vocab:
        raise MismatchedDataFileError(
            f"{what} was built for a vocabulary of {vocab_size} tokens, but the model has {model_vocab}; "
            "it was built for another tokenizer. Rebuild it with this model's tokenizer"
        )
    if tokenizer is None or not recorded:
        return
    try:
        actual = tokenizer_fingerprint(tokenizer)
    except TypeError:  # not a Hugging Face tokenizer: nothing to compare
        return
    require_fingerprint(what, recorded, actual, "Rebuild it with this model's tokenizer")


def file_sha256(path: Any, block: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks so a large file never sits in memory whole."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
    return h.hexdigest()
