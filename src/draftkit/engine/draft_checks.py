"""What the engine checks of every draft before building a tree from it.

Shared by the decoder (for its source) and the composite source (for each of
its members), so a member's broken draft is named and refused exactly like a
source's, instead of being silently truncated or failing deep in the merge.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import ContractViolationError, DraftkitError, SourceError
from ..types import Draft

__all__ = ["require_draft", "blaming_source"]


@contextmanager
def blaming_source(source: str, method: str, *, member_of: str | None = None, origin: str = "") -> Iterator[None]:
    """Name the source when its ``method`` raises: a bug in a third-party source would otherwise
    surface as a bare traceback from deep inside the decoder, with nothing saying whose it is.

    draftkit's own errors pass through (they already say what to do); numpy's bare "read-only"
    error becomes a contract violation (the source wrote to the shared context); anything else
    becomes a :class:`~draftkit.errors.SourceError` with the original as its cause. ``origin``
    says who provides the source (e.g. "plugin 'x', package y").
    """
    who = f"source {source!r}" + (f" (a member of {member_of!r})" if member_of else "") + (
        f" ({origin})" if origin else "")
    try:
        yield
    except DraftkitError:
        raise
    except ValueError as exc:
        if "read-only" in str(exc):
            raise ContractViolationError(
                f"{who} wrote to a read-only array in {method}() ({exc}), most likely the context, "
                "which is shared and read-only: copy it (np.array(context)) before changing it"
            ) from exc
        raise SourceError(f"{who} failed in {method}(): ValueError: {exc}", source) from exc
    except Exception as exc:
        raise SourceError(f"{who} failed in {method}(): {type(exc).__name__}: {exc}", source) from exc


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
