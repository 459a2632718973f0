"""Token Recycling (arXiv 2408.08696) as a draftkit draft source, ``source="recycling"``.

The target model's own top-k predictions, which plain decoding throws away,
are kept per token in a small adjacency matrix and drafted again through a
static tree template. Installed as a separate package; draftkit finds it
through the ``draftkit`` entry point (:mod:`draftkit_recycling.plugin`).
"""

from __future__ import annotations

from .matrix import UNKNOWN, empty_matrix, rank_hits, record, rows_to_record, top_candidates
from .source import Recycling, draft_from_expansion
from .template import DEFAULT_RANK_PROBS, Expansion, Template, build_template, estimate_rank_probs, expand

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RANK_PROBS",
    "Expansion",
    "Recycling",
    "Template",
    "UNKNOWN",
    "__version__",
    "build_template",
    "draft_from_expansion",
    "empty_matrix",
    "estimate_rank_probs",
    "expand",
    "rank_hits",
    "record",
    "rows_to_record",
    "top_candidates",
]
