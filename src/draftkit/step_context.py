"""The context a decode step leaves for the next one: how much of the last draft was accepted.

Drafting succeeds in runs (a quoted passage, a loop, boilerplate) and fails in
runs (new text), so what the previous step accepted says much about the next
one. The cost-aware budget conditions its acceptance statistics on it, and a
composite source conditions each member's rates on that member's own last match.

A source can add its own judgement of each draft (``Draft.evidence``, e.g. the
length of the n-gram a lookup matched): a 3-gram match in code is accepted
far more often than a 1-gram one, and the step's context alone cannot tell
them apart. Both go into the statistics.
"""

from __future__ import annotations

__all__ = ["START", "MISSED", "SOME", "RUN", "N_CONTEXTS", "EVIDENCE_LEVELS", "context_after", "evidence_class"]

#: The request's first step; then: nothing accepted, 1-2 accepted, 3 or more accepted.
START, MISSED, SOME, RUN = range(4)
N_CONTEXTS = 4


def context_after(accepted: int) -> int:
    """The context a step that accepted (or matched) ``accepted`` draft tokens gives to the next step."""
    if accepted <= 0:
        return MISSED
    return SOME if accepted < 3 else RUN


#: Classes of a draft's own evidence (``Draft.evidence``): 0 = none given, 3 = strongest.
EVIDENCE_LEVELS = 4


def evidence_class(evidence: int) -> int:
    """``Draft.evidence`` clipped to the classes the statistics keep."""
    return min(max(int(evidence), 0), EVIDENCE_LEVELS - 1)
