"""Slow, obviously correct versions of the sampling verifiers, and an exact-law calculator.

Nothing here runs in production. The tests use it to check the fast code twice:

* :func:`walk_reference` and :func:`speculative_reference` restate the two
  algorithms with plain Python lists and loops; fed the same :class:`Draws`, the
  production functions must return the same verdicts.
* :func:`exact_law` runs any function of a :class:`Draws` down *every* branch of
  its random decisions, multiplying the branch probabilities. Applied to the
  production functions it gives the exact law of their output (no Monte Carlo),
  which the tests compare with the target law p to 1e-9.

``exact_law`` relies on the two primitives meaning what :class:`StreamDraws`
implements: ``accept(prob)`` is true with probability ``min(max(prob, 0), 1)``
(``u < prob``) and ``choose(probs)`` returns ``k`` with probability
``probs[k] / sum(probs)`` (inverse CDF); the tests check that mapping separately.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch

from .sampling import Draws

__all__ = ["exact_law", "walk_reference", "speculative_reference"]

T = TypeVar("T", bound=Hashable)


class _ScriptedDraws:
    """A :class:`Draws` that follows a script of branch indices and records new branch points."""

    def __init__(self, script: tuple[int, ...]) -> None:
        self.script = script
        self.taken: list[int] = []
        self.probability = 1.0
        self.new_points: list[tuple[int, int]] = []  # (decision index, number of options)

    def _decide(self, options: list[tuple[object, float]]) -> object:
        i = len(self.taken)
        if i < len(self.script):
            k = self.script[i]
        else:
            k = 0
            if len(options) > 1:
                self.new_points.append((i, len(options)))
        value, prob = options[k]
        self.taken.append(k)
        self.probability *= prob
        return value

    def accept(self, level: int, attempt: int, probability: float) -> bool:
        prob = min(max(float(probability), 0.0), 1.0)
        options = [(v, w) for v, w in ((True, prob), (False, 1.0 - prob)) if w > 0.0]
        return bool(self._decide(options))

    def choose(self, level: int, probs: torch.Tensor) -> int:
        values = [float(v) for v in probs.tolist()]
        total = sum(values)
        options = [(k, v / total) for k, v in enumerate(values) if v > 0.0]
        return int(self._decide(options))  # type: ignore[call-overload]


def exact_law(run: Callable[[Draws], T]) -> dict[T, float]:
    """The exact distribution of ``run(draws)`` over every outcome of the random decisions.

    ``run`` must be deterministic given the answers it receives. Branches of
    probability zero are never taken (an impossible token is never explored).
    """
    law: dict[T, float] = defaultdict(float)
    stack: list[tuple[int, ...]] = [()]
    while stack:
        script = stack.pop()
        draws = _ScriptedDraws(script)
        outcome = run(draws)
        law[outcome] += draws.probability
        for index, count in draws.new_points:
            prefix = tuple(draws.taken[:index])
            stack.extend(prefix + (k,) for k in range(1, count))
    return dict(law)


def _children(parents: Sequence[int], node: int) -> list[int]:
    return [i for i, p in enumerate(parents) if p == node]


def walk_reference(
    tokens: Sequence[int], parents: Sequence[int], p_rows: Sequence[Sequence[float]], draws: Draws
) -> tuple[tuple[int, ...], int]:
    """Sample from p at the current node; follow the first child with that token, else stop."""
    accepted: list[int] = []
    node, level = -1, 0
    while True:
        token = draws.choose(level, torch.tensor(list(p_rows[node + 1]), dtype=torch.float64))
        follow = [c for c in _children(parents, node) if tokens[c] == token]
        if not follow:
            return tuple(accepted), token
        node = follow[0]
        accepted.append(node)
        level += 1


def speculative_reference(
    tokens: Sequence[int],
    parents: Sequence[int],
    p_rows: Sequence[Sequence[float]],
    q_rows: Sequence[Sequence[float]],
    draws: Draws,
) -> tuple[tuple[int, ...], int]:
    """Recursive rejection sampling over distinct siblings, proposals drawn without replacement."""
    accepted: list[int] = []
    node, level = -1, 0
    while True:
        residual = [float(v) for v in p_rows[node + 1]]
        vocab = len(residual)
        kids = _children(parents, node)
        tried: list[int] = []
        chosen = -1
        for child in kids:
            token = tokens[child]
            if token in tried:
                continue
            q = q_rows[kids[0]]
            left = sum(q[v] for v in range(vocab) if v not in tried)
            q_now = [0.0 if v in tried else q[v] / left for v in range(vocab)]
            if draws.accept(level, len(tried), min(1.0, residual[token] / q_now[token])):
                chosen = child
                break
            excess = [max(r - s, 0.0) for r, s in zip(residual, q_now, strict=True)]
            total = sum(excess)
            if total > 0.0:
                residual = [e / total for e in excess]
            tried.append(token)
        if chosen < 0:
            return tuple(accepted), draws.choose(level, torch.tensor(residual, dtype=torch.float64))
        accepted.append(chosen)
        node = chosen
        level += 1
