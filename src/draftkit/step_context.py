"""The context a decode step leaves for the next one: how much of the last draft was accepted.

Drafting succeeds in runs (a quoted passage, a loop, boilerplate) and fails in
runs (new text), so what the previous step accepted says much about the next
one. The cost-aware budget conditions its acceptance statistics on it, and a
composite source conditions each member's rates on that member's own last match.
"""

from __future__ import annotations

__all__ = ["START", "MISSED", "SOME", "RUN", "N_CONTEXTS", "context_after"]

#: The request's first step; then: nothing accepted, 1-2 accepted, 3 or more accepted.
START, MISSED, SOME, RUN = range(4)
N_CONTEXTS = 4


def context_after(accepted: int) -> int:
    """The context a step that accepted (or matched) ``accepted`` draft tokens gives to the next step."""
    if accepted <= 0:
        return MISSED
    return SOME if accepted < 3 else RUN
