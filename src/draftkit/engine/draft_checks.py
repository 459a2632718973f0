"""What the engine checks of every source and draft before building a tree from it.

Shared by the decoder (for its source) and the composite source (for each of
its members), so a member's broken draft is named and refused exactly like a
source's, instead of being silently truncated or failing deep in the merge.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import ContractViolationError, DraftkitError, SourceError
from ..types import Draft, SourceCapabilities

__all__ = ["require_draft", "require_source", "blaming_source", "source_error"]


class blaming_source:  # noqa: N801 - used like a function: with blaming_source(...)
    """Name the source when its ``method`` raises: a bug in a third-party source would otherwise
    surface as a bare traceback from deep inside the decoder, with nothing saying whose it is.

    draftkit's own errors pass through (they already say what to do), and so do running out of
    memory (not a bug of the source; callers may retry smaller) and ``BaseException``s such as
    ``KeyboardInterrupt``. numpy's bare "read-only" error becomes a contract violation (the
    source wrote to the shared context); anything else becomes a
    :class:`~draftkit.errors.SourceError` with the original as its cause and the line that raised
    it in the message (the command line prints one line, not the traceback).

    ``origin_of(name)`` says which plugin and package provide a registered source, ``None`` for
    draftkit's own; the decoder also uses it to complete a composite member's error.

    A class rather than ``contextlib.contextmanager``: the latter hands back a ``StopIteration``
    raised inside the block instead of the error made from it.
    """

    def __init__(self, source: str, method: str, *, member_of: str | None = None,
                 origin_of: Callable[[str], tuple[str, str] | None] | None = None) -> None:
        self.source, self.method, self.member_of, self.origin_of = source, method, member_of, origin_of

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, _OUT_OF_MEMORY):
            return False
        if isinstance(exc, SourceError):
            if exc.origin is None and exc.member_of is not None and self.origin_of is not None:
                origin = self.origin_of(exc.source)  # a composite's member: the decoder knows its plugin
                if origin is not None:
                    raise source_error(exc.source, exc.method, exc.__cause__, member_of=exc.member_of,
                                       origin=origin) from exc.__cause__
            return False
        if isinstance(exc, DraftkitError):
            return False
        if isinstance(exc, ValueError) and "read-only" in str(exc):
            who = f"source {self.source!r}" + (f" (a member of {self.member_of!r})" if self.member_of else "")
            raise ContractViolationError(
                f"{who} wrote to a read-only array in {self.method}() ({exc}), most likely the context, "
                "which is shared and read-only: copy it (np.array(context)) before changing it"
            ) from exc
        origin = self.origin_of(self.source) if self.origin_of is not None else None
        raise source_error(self.source, self.method, exc, member_of=self.member_of, origin=origin) from exc


#: Errors that are the machine's, not the source's: they pass through unchanged.
_OUT_OF_MEMORY: tuple[type[BaseException], ...] = (MemoryError,) + (
    (torch.OutOfMemoryError,) if hasattr(torch, "OutOfMemoryError") else ())


def source_error(source: str, method: str, cause: BaseException | None, *, member_of: str | None = None,
                 origin: tuple[str, str] | None = None) -> SourceError:
    """The :class:`SourceError` for ``cause`` raised by ``source.method()``, saying where and what to do."""
    who = f"source {source!r}" + (f" (a member of {member_of!r})" if member_of else "")
    packaged = origin is not None and not origin[1].startswith("(")  # else registered in-process
    if origin is not None:
        who += f" (plugin {origin[0]!r} from package {origin[1]})" if packaged else f" (plugin {origin[0]!r})"
    frames = traceback.extract_tb(cause.__traceback__) if cause is not None else []
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    advice = (f"report it to the authors of {origin[1]}, and leave the source out meanwhile "
              f"(DRAFTKIT_BLOCK_PLUGINS={origin[0]} switches the plugin off)" if packaged and origin is not None
              else "it is most likely a bug in the source; leave it out, or fix it")
    return SourceError(f"{who} failed in {method}(): {type(cause).__name__}: {cause} (raised{where}); {advice}",
                       source, method=method, member_of=member_of, origin=origin)


def require_source(obj: Any, who: str) -> None:
    """Refuse ``obj`` unless it follows the :class:`~draftkit.interfaces.DraftSource` protocol, saying
    what it lacks (``who`` names it: the decoder's source, or a composite's member)."""
    missing = [m for m in ("propose", "observe", "begin", "reset") if not callable(getattr(obj, m, None))]
    if missing:
        raise ContractViolationError(
            f"{who} is not a draft source: it lacks {', '.join(missing)}(); see draftkit.interfaces")
    if not isinstance(getattr(obj, "capabilities", None), SourceCapabilities):
        raise ContractViolationError(
            f"{who} is not a draft source: it has no capabilities (a draftkit.SourceCapabilities, e.g. "
            "SourceCapabilities() for deterministic drafts); see draftkit.interfaces")


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
