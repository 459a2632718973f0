"""Layer-skip self-speculative drafting (Draft & Verify, Zhang et al., ACL 2024).

The target drafts for itself with some attention / MLP sub-blocks skipped
(:class:`LayerSkip`, registered as the source ``layerskip``). Which sub-blocks to
skip is a :class:`SkipSet`: a middle band by default, or one found for a model by
Bayesian optimisation of measured decoding speed (:func:`search_skip_set`).
"""

from .discover import find_layout
from .exiting import ExitRule, ExitState, should_stop, update_threshold
from .layers import ModelLayout, model_layout, supported_architectures
from .skipset import ModelFingerprint, SkipSet
from .source import LayerSkip

__all__ = [
    "ExitRule",
    "ExitState",
    "LayerSkip",
    "ModelFingerprint",
    "ModelLayout",
    "SkipSet",
    "find_layout",
    "model_layout",
    "search_skip_set",
    "should_stop",
    "supported_architectures",
    "update_threshold",
]


def __getattr__(name: str):  # the search pulls in bayes_opt (optional): import it on use only
    if name in ("search_skip_set", "SearchResult"):
        from . import search

        return getattr(search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
