"""Retrieval-based drafting (REST) from a memory-mapped suffix-array datastore.

``Rest.open("store/")`` is the draft source; :func:`build_datastore` (token id
documents) and :func:`build_datastore_from_files` (text / jsonl / .npy files and
a Hugging Face tokenizer) write stores; :func:`verify_datastore` checks one fully.
"""

from .corpus import build_datastore_from_files, iter_corpus_documents
from .datastore import (
    FORMAT_VERSION,
    BuildSummary,
    Datastore,
    build_datastore,
    read_header,
    verify_datastore,
)
from .source import Rest

__all__ = [
    "FORMAT_VERSION",
    "BuildSummary",
    "Datastore",
    "Rest",
    "build_datastore",
    "build_datastore_from_files",
    "iter_corpus_documents",
    "read_header",
    "verify_datastore",
]
