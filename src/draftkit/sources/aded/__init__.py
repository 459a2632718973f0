"""ADED: an adaptive tri-gram matrix and MCTS draft trees (source ``aded``).

Build a matrix from token ids (:func:`build_matrix`) or from text files with the
target's tokenizer (:func:`build_matrix_from_files`, CLI ``draftkit aded
build``), save and load it (:func:`save_matrix`, :func:`load_matrix`), and
decode with ``SpeculativeDecoder(model, source=Aded.load(path))``.
"""

from .config import AdaptConfig, MctsConfig
from .corpus import build_matrix_from_files, iter_documents, tokenize_documents
from .fileformat import FORMAT_VERSION, load_matrix, save_matrix, tokenizer_fingerprint
from .source import Aded, warm_up
from .table import AdaptiveTable, TrigramMatrix, build_matrix

__all__ = [
    "FORMAT_VERSION",
    "AdaptConfig",
    "AdaptiveTable",
    "Aded",
    "MctsConfig",
    "TrigramMatrix",
    "build_matrix",
    "build_matrix_from_files",
    "iter_documents",
    "load_matrix",
    "save_matrix",
    "tokenize_documents",
    "tokenizer_fingerprint",
    "warm_up",
]
