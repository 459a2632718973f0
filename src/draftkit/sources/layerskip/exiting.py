"""Adaptive draft-exiting: when to stop drafting, learnt from what gets accepted.

The draft stops after a token whose top-1 probability under the draft model is
below a threshold ``th`` (that token is still proposed), or at the maximum draft
length. A fixed ``th`` is wrong for most inputs: too low and long drafts get
rejected (wasted draft forwards), too high and drafting stops while the draft is
still right. Draft & Verify (Zhang et al., ACL 2024, section 3.3) adapts ``th``
after every verification from the smoothed acceptance ratio ``match``::

    match = 0.5 * match + 0.5 * accepted / drafted
    new   = th + 0.01   if match < 0.9          (too many rejections: exit earlier)
            th          elif drafted == max     (the cap, not th, ended the draft)
            th - 0.01   otherwise               (all good: draft longer)
    th    = 0.9 * th + 0.1 * new

Pure functions over an immutable :class:`ExitState`, so the rule is testable on
its own and the source holds nothing but the current state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["ExitRule", "ExitState", "update_threshold", "should_stop"]


@dataclass(frozen=True)
class ExitRule:
    """Constants of the update rule (the paper's values by default)."""

    match_decay: float = 0.5  #: weight of the previous ``match``
    target_match: float = 0.9  #: acceptance ratio below which drafts are shortened
    step: float = 0.01  #: threshold change proposed per verification
    momentum: float = 0.9  #: weight of the current threshold against the proposal
    #: The threshold is kept in [low, high]: below 0 or above 1 it stops meaning
    #: anything (a probability is never below 0 nor above 1), and clamping keeps it
    #: from drifting far out of range during a long run of one kind of step.
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class ExitState:
    threshold: float
    match: float = 0.0  #: smoothed share of drafted tokens accepted


def update_threshold(
    state: ExitState, accepted: int, drafted: int, max_draft: int, rule: ExitRule = ExitRule()
) -> ExitState:
    """The state after a verification that accepted ``accepted`` of ``drafted`` tokens.

    A step without a draft (``drafted == 0``) carries no information and leaves
    the state unchanged.
    """
    if drafted <= 0:
        return state
    ratio = min(max(accepted, 0), drafted) / drafted
    match = rule.match_decay * state.match + (1.0 - rule.match_decay) * ratio
    th = state.threshold
    if match < rule.target_match:
        new = th + rule.step
    elif drafted >= max_draft:
        new = th
    else:
        new = th - rule.step
    th = rule.momentum * th + (1.0 - rule.momentum) * new
    return replace(state, threshold=min(max(th, rule.low), rule.high), match=match)


def should_stop(top1_probability: float, state: ExitState) -> bool:
    """Whether drafting stops after a token whose draft top-1 probability is given."""
    return top1_probability < state.threshold
