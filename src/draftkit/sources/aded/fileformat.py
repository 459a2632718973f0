"""The on-disk format of a tri-gram matrix, and tokenizer fingerprints.

One file, little-endian: a 128-byte header followed by the four CSR arrays::

    offset size  field
    0      8     magic b"DKADEDTM"
    8      4     format version (uint32) = 1
    12     4     header size (uint32) = 128
    16     8     vocabulary size (uint64)
    24     8     bigrams B (uint64)
    32     8     entries E (uint64)
    40     4     top_k used at build time (uint32; 0 = unknown)
    44     4     flags (uint32; bit 0: a tokenizer fingerprint is recorded)
    48     8     corpus tokens counted (uint64)
    56     32    tokenizer fingerprint (the sha256 digest of
                 :func:`draftkit.fingerprint.tokenizer_fingerprint`; zeros when none)
    88     8     reserved (zeros)
    96     32    sha256 of header bytes [0, 96) followed by the payload
    128          keys int64[B], offsets int64[B+1], successors int32[E], weights float32[E]

Loading fails closed: every inconsistency raises
:class:`~draftkit.errors.CorruptDataFileError` (damaged file) or
:class:`~draftkit.errors.MismatchedDataFileError` (intact, but for another
format version, vocabulary or tokenizer), with a message saying what to do.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CorruptDataFileError, InvalidInputError, MismatchedDataFileError
from ...fingerprint import FINGERPRINT_PREFIX, require_fingerprint, tokenizer_fingerprint
from .table import TrigramMatrix

__all__ = ["MAGIC", "FORMAT_VERSION", "save_matrix", "load_matrix", "tokenizer_fingerprint"]

MAGIC = b"DKADEDTM"
FORMAT_VERSION = 1
HEADER_SIZE = 128
_HEAD = struct.Struct("<8sIIQQQIIQ32s8s")  # the 96 bytes covered by the checksum with the payload
_FLAG_FINGERPRINT = 1
_REBUILD = "rebuild it with `draftkit aded build` (or draftkit.sources.aded.build_matrix)"


def _digest(fingerprint: str) -> bytes:
    """The 32 bytes stored in the header for a ``"sha256:<hex>"`` fingerprint."""
    if not (isinstance(fingerprint, str) and fingerprint.startswith(FINGERPRINT_PREFIX)
            and len(fingerprint) == len(FINGERPRINT_PREFIX) + 64):
        raise InvalidInputError(
            f"a tokenizer fingerprint looks like 'sha256:<64 hex digits>' (draftkit.fingerprint), got {fingerprint!r}"
        )
    return bytes.fromhex(fingerprint[len(FINGERPRINT_PREFIX) :])


def _payload_size(nb: int, ne: int) -> int:
    return 8 * nb + 8 * (nb + 1) + 4 * ne + 4 * ne


def save_matrix(matrix: TrigramMatrix, path: str | os.PathLike[str]) -> Path:
    """Write ``matrix`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    fp = _digest(matrix.fingerprint) if matrix.fingerprint else b""
    head = _HEAD.pack(
        MAGIC, FORMAT_VERSION, HEADER_SIZE, matrix.vocab_size, matrix.num_bigrams, matrix.num_entries,
        matrix.top_k, _FLAG_FINGERPRINT if fp else 0, matrix.tokens, fp or bytes(32), bytes(8),
    )
    parts = [
        np.ascontiguousarray(matrix.keys, dtype="<i8").tobytes(),
        np.ascontiguousarray(matrix.offsets, dtype="<i8").tobytes(),
        np.ascontiguousarray(matrix.successors, dtype="<i4").tobytes(),
        np.ascontiguousarray(matrix.weights, dtype="<f4").tobytes(),
    ]
    digest = hashlib.sha256(head)
    for p in parts:
        digest.update(p)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(head)
        f.write(digest.digest())
        for p in parts:
            f.write(p)
    os.replace(tmp, path)
    return path


def load_matrix(
    path: str | os.PathLike[str],
    *,
    vocab_size: int | None = None,
    tokenizer: Any = None,
    fingerprint: str | None = None,
) -> TrigramMatrix:
    """Read and validate a matrix file.

    ``vocab_size``, ``tokenizer`` (or a precomputed ``fingerprint``) are checked
    against the header when given.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no ADED matrix at {path}; {_REBUILD}") from None
    except IsADirectoryError:  # e.g. a retrieval datastore's folder given as the matrix
        raise CorruptDataFileError(f"{path} is a folder, not an ADED matrix file; {_REBUILD}") from None
    where = f"ADED matrix {path}"
    if len(data) < HEADER_SIZE:
        raise CorruptDataFileError(
            f"{where} is truncated: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header; {_REBUILD}"
        )
    if data[:8] != MAGIC:
        raise CorruptDataFileError(f"{where} is not an ADED matrix file (bad magic number); {_REBUILD}")
    (_, version, header_size, vocab, nb, ne, top_k, flags, tokens, fp, _) = _HEAD.unpack_from(data, 0)
    if version != FORMAT_VERSION:
        raise MismatchedDataFileError(
            f"{where} has format version {version}; this draftkit reads version {FORMAT_VERSION}. "
            f"Use the draftkit that wrote it, or {_REBUILD}"
        )
    if header_size != HEADER_SIZE:
        raise CorruptDataFileError(f"{where} has a damaged header (header size {header_size}); {_REBUILD}")
    expected = HEADER_SIZE + _payload_size(nb, ne) if nb < 1 << 40 and ne < 1 << 40 else -1
    if len(data) != expected:
        kind = "truncated" if 0 <= len(data) < expected else "damaged (wrong length)"
        raise CorruptDataFileError(
            f"{where} is {kind}: the header announces {expected} bytes, the file has {len(data)}; {_REBUILD}"
        )
    digest = hashlib.sha256(data[:96])
    digest.update(memoryview(data)[HEADER_SIZE:])
    if digest.digest() != data[96:128]:
        raise CorruptDataFileError(f"{where} fails its checksum: the file is corrupted; {_REBUILD}")
    buf = bytearray(data)  # writable arrays: the kernels take them as they are
    pos = HEADER_SIZE
    keys = np.frombuffer(buf, "<i8", nb, pos).astype(np.int64)
    pos += 8 * nb
    offsets = np.frombuffer(buf, "<i8", nb + 1, pos).astype(np.int64)
    pos += 8 * (nb + 1)
    successors = np.frombuffer(buf, "<i4", ne, pos).astype(np.int32)
    pos += 4 * ne
    weights = np.frombuffer(buf, "<f4", ne, pos).astype(np.float32)
    _validate(where, vocab, keys, offsets, successors, weights)
    stored_fp = FINGERPRINT_PREFIX + bytes(fp).hex() if flags & _FLAG_FINGERPRINT else ""
    if vocab_size is not None and int(vocab_size) != vocab:
        raise MismatchedDataFileError(
            f"{where} was built for a vocabulary of {vocab} tokens, not {vocab_size}; build a matrix with "
            "this model's tokenizer"
        )
    if tokenizer is not None and fingerprint is None:
        fingerprint = tokenizer_fingerprint(tokenizer)
    if fingerprint is not None:
        require_fingerprint(where, stored_fp, fingerprint,
                            "load it without tokenizer= if you know it matches, or build a matrix with this "
                            "model's tokenizer (draftkit aded build --tokenizer ...)")
    return TrigramMatrix(vocab, keys, offsets, successors, weights, int(top_k), int(tokens), stored_fp)


def _validate(where: str, vocab: int, keys: np.ndarray, offsets: np.ndarray, successors: np.ndarray,
              weights: np.ndarray) -> None:
    def bad(what: str) -> CorruptDataFileError:
        return CorruptDataFileError(f"{where} is inconsistent ({what}) although its checksum matches; {_REBUILD}")

    if not (1 <= vocab <= 2_097_151):
        raise bad(f"vocabulary size {vocab}")
    if keys.size and (keys[0] < 0 or keys[-1] >= vocab * vocab or np.any(np.diff(keys) <= 0)):
        raise bad("bigram keys out of range or not strictly increasing")
    if offsets[0] != 0 or offsets[-1] != successors.size or np.any(np.diff(offsets) <= 0):
        raise bad("row offsets")
    if successors.size and (successors.min() < 0 or successors.max() >= vocab):
        raise bad("successor ids outside the vocabulary")
    if not np.all(np.isfinite(weights)) or (weights.size and weights.min() < 0):
        raise bad("weights not finite and non-negative")
