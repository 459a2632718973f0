"""What the engine checks of every draft before building a tree from it.

Shared by the decoder (for its source) and the composite source (for each of
its members), so a member's broken draft is named and refused exactly like a
source's, instead of being silently truncated or failing deep in the merge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ContractViolationError
from ..types import Draft

__all__ = ["require_draft"]


def require_draft(draft: Any, source: str, *, member_of: str | None = None) -> Draft:
    """``draft`` itself if it is a :class:`Draft` of 1-D integer sequences, else a named error
    (``member_of``: the composite the source drafts for)."""
    who = f"source {source!r}" + (f" (a member of {member_of!r})" if member_of else "")
    if not isinstance(draft, Draft):
        raise ContractViolationError(
            f"{who} returned {type(draft).__name__} from propose(); "
            "it must return a draftkit.Draft (Draft.empty() when it has nothing)"
        )
    for seq in draft.sequences:
        array = np.asarray(seq)
        if array.dtype.kind not in "iu":
            raise ContractViolationError(
                f"{who} drafted a sequence of dtype {array.dtype}; token ids must be integers"
            )
        if array.ndim != 1:
            raise ContractViolationError(
                f"{who} drafted a sequence of shape {array.shape}; each candidate must be a "
                "1-D sequence of token ids"
            )
    return draft
