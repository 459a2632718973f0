"""How many draft nodes to verify per step: fixed, or chosen from measured costs.

Verifying a bigger tree accepts more tokens per step but makes the forward pass
slower, and how much slower depends on the model *and* the machine (a 64-node
tree is nearly free for a 12M model on a CPU, costly for a 250M one). The
cost-aware policy measures the target's verify-cost curve once, keeps running
acceptance statistics per node rank and per context (what the request's
previous step accepted), and each step picks the budget that maximises
expected tokens per second.

Counterfactual acceptance comes for free: tree builders rank nodes so the best
``k`` nodes of a tree form a tree (see :func:`node_ranks`), so a step verified
with budget ``B`` also tells how many tokens budget ``k < B`` would have
accepted. Larger budgets are re-explored now and then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from .. import step_context
from ..types import TokenTree, Verdict

__all__ = [
    "BudgetPolicy",
    "FixedBudget",
    "CostAwareBudget",
    "node_ranks",
    "prune_tree",
    "measure_verify_costs",
]


class BudgetPolicy(Protocol):
    max_budget: int

    def begin(self) -> None:
        """A new request starts (policies that condition on the request's recent steps reset here).

        Optional: the decoder calls it only when the policy has it."""
        ...

    def wants_draft(self) -> bool:
        """Whether this step should draft at all (False: a plain step, the source is not asked).

        Optional: without it every step drafts."""
        ...

    def draft_nodes(self) -> int:
        """Most draft nodes this step may verify, asked before the source drafts (1..max_budget);
        the source is asked for no more (``DraftRequest.max_nodes``), so it does not search for
        nodes that would be cut. Optional: without it the source may draft ``max_budget`` nodes."""
        ...

    def note_prefill(self, rows: int) -> None:
        """This step's forward also runs ``rows`` prompt tokens (the request's prefill, fused with
        its first step); called before :meth:`wants_draft`. Optional."""
        ...

    def note_verify(self, seconds: float, nodes: int) -> None:
        """The step's verification of a ``nodes``-node tree took ``seconds`` (its forward, and the
        LM head on the rows the walk read); called before :meth:`observe`. Optional."""
        ...

    def note_draft(self, evidence: int) -> None:
        """The step's draft came with this evidence class (``Draft.evidence``, 0-3); called before :meth:`choose`.

        Optional: policies that do not weigh the source's own judgement skip it."""
        ...

    def choose(self, drafted: int) -> int:
        """Budget for this step (0 <= budget <= max_budget), given a draft of at most ``drafted`` nodes.

        For deterministic drafts on models that verify trees, ``drafted`` is an
        upper bound: the draft's tokens, capped by what the source was asked for
        (:meth:`draft_nodes`); the tree is then built with the chosen number of
        nodes. Otherwise it is the built tree's size."""
        ...

    def observe(self, tree: TokenTree, verdict: Verdict, drafted: int, overhead: float) -> None:
        """``tree`` is the verified tree; ``drafted`` is its size when it holds the whole draft and
        more when the budget cut the draft; ``overhead`` the seconds spent outside the verify
        forward this step."""
        ...


def node_ranks(tree: TokenTree) -> np.ndarray:
    """Rank of every node (0 = kept first); any prefix of the ranking is a tree.

    With builder scores, nodes go by descending score, then depth, then index
    (a parent never scores below its child, so parents come first); without
    scores, node order is used, which is topological.
    """
    n = tree.size
    if tree.scores is None or tree.scores.shape != (n,):
        return np.arange(n)
    order = np.lexsort((np.arange(n), tree.depths, -tree.scores))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    # Guarantee ancestor closure even for odd scores: a node ranks after its parent.
    parents = tree.parents
    has_parent = parents >= 0
    if np.any(ranks[has_parent] < ranks[parents[has_parent]]):
        return np.arange(n)
    return ranks


def prune_tree(tree: TokenTree, budget: int) -> TokenTree:
    """The best ``budget`` nodes of ``tree``, as a tree."""
    if tree.size <= budget:
        return tree
    ranks = node_ranks(tree)
    keep = np.sort(np.nonzero(ranks < budget)[0])
    remap = np.full(tree.size, -1, dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    parents = np.where(tree.parents[keep] >= 0, remap[np.maximum(tree.parents[keep], 0)], -1)
    probs = tree.probs[torch.from_numpy(keep)] if tree.probs is not None else None
    scores = tree.scores[keep] if tree.scores is not None else None
    return TokenTree.from_parents(tree.tokens[keep], parents, probs=probs, scores=scores)


@dataclass
class FixedBudget:
    max_budget: int

    def begin(self) -> None:
        return None

    def wants_draft(self) -> bool:
        return True

    def note_draft(self, evidence: int) -> None:
        return None

    def choose(self, drafted: int) -> int:
        return self.max_budget

    def observe(self, tree: TokenTree, verdict: Verdict, drafted: int, overhead: float) -> None:
        return None


#: Logits rows a greedy walk typically reads (accepted tokens + 1) when costs are calibrated.
_TYPICAL_WALK_ROWS = 4


def measure_verify_costs(
    target: object, sizes: list[int], prefix_len: int = 128, repeats: int = 5, time_limit: float = 3.0
) -> np.ndarray:
    """Seconds of a verify forward with ``k`` tree nodes, for each ``k`` in ``sizes``.

    Uses a chain tree after a synthetic prefix, on the target's real cache
    path. The sizes are timed in interleaved rounds (all sizes once, then
    again), and each size keeps its fastest round: on a shared machine a
    forward pass can only be slowed down by other work, never sped up, so the
    minimum is the stable estimate (a median of a few rounds still let one
    disturbed size distort the whole curve). The curve is then made
    non-decreasing from the right, since verifying more nodes never costs
    less. With a separable LM head the forward is timed the way greedy
    verification runs it (hidden states for the whole tree, logits for a
    typical walk's rows, in one product).

    Rounds stop early once ``time_limit`` seconds have passed (after the warm-up
    and one measured round): a big model on a CPU still starts in seconds.
    """
    window = getattr(target, "context_window", None) or 4096
    prefix_len = max(2, min(prefix_len, window - max(sizes) - 2))
    prompt = torch.arange(prefix_len) % max(2, getattr(target, "vocab_size", 2))
    times = np.zeros((repeats + 1, len(sizes)))
    trees = [TokenTree.from_parents(np.zeros(k, np.int64), np.arange(-1, k - 1)) for k in sizes]
    lazy_rows = getattr(target, "head", None) is not None
    session = target.start(prompt)  # type: ignore[attr-defined]
    started = time.perf_counter()
    rounds = repeats + 1
    try:
        for r in range(repeats + 1):  # round 0 warms up every shape
            if r >= 2 and time.perf_counter() - started > time_limit:
                rounds = r
                break
            for i, tree in enumerate(trees):
                t0 = time.perf_counter()
                if lazy_rows:  # as greedy verification runs it: the head on a walk's rows, ahead along the path
                    hidden = session.forward_tree_hidden(0, tree)
                    logits = target.lazy_logits(hidden, tree)  # type: ignore[attr-defined]
                    for row in range(min(tree.size + 1, _TYPICAL_WALK_ROWS)):
                        logits[row : row + 1]
                else:
                    session.forward_tree(0, tree)
                times[r, i] = time.perf_counter() - t0
                session.commit(())
                session.cache.crop(-1)  # undo the committed pending token
    finally:
        session.end()
    # Interference from other processes only ever adds time: the fastest run of each size is the
    # best estimate of its cost, and a size that still looks dearer than a bigger one was disturbed
    # in every round, so it takes the bigger one's cost (a suffix minimum, never a raise).
    fastest = times[1:rounds].min(axis=0)
    return np.minimum.accumulate(fastest[::-1])[::-1]


@dataclass
class CostAwareBudget:
    """Pick the budget that maximises expected emitted tokens per second.

    ``costs[i]`` is the measured verify time with ``grid[i]`` nodes; the draft
    time per step is tracked separately. Every ``explore`` steps a bigger budget
    is verified to keep the statistics of bigger trees fresh: usually the next
    grid budget at least twice the current choice (cheap, and where a better
    choice most likely is), every fourth time the largest one.

    Acceptance is estimated per node *rank* (0 = the node a builder keeps
    first). Ranks respect ancestry, so the tokens budget ``k`` accepts are the
    accepted-path nodes of rank < k, and their expectation is the sum over
    ranks r < k of P(rank r is on the accepted path). Each step the policy knows
    how many nodes the current draft has, so it only weighs budgets up to that
    size. P(rank r on the path) is learnt on the steps that verified rank r;
    whether a step verifies it depends on earlier steps and on the current
    draft's size, never on whether its nodes are right, so the estimate is not
    skewed the way it would be if big budgets were learnt only from steps
    whose whole draft fitted a small budget (small drafts are the poor ones).

    Acceptance is also conditioned on the request's previous step (first step,
    nothing accepted, 1-2 accepted, 3+ accepted): drafting succeeds in runs
    (a quoted passage, a loop, boilerplate) and fails in runs (new text), so
    the last step says much about the next one. It is further split by the
    draft's own evidence class (``Draft.evidence``, e.g. the n-gram length a
    lookup matched), which the source knows only once it has drafted: that
    splits the choice of budget, not the choice to ask the source. The
    statistics of each context are shared by all requests, and a context's
    rank starts from the pooled estimate of all contexts (worth one
    observation) until it has its own. ``by_previous_step=False`` and
    ``by_evidence=False`` drop either split.

    The start-up curve is measured in a tight loop, where the weights stay in
    the CPU's caches; inside decoding, drafting and bookkeeping evict them
    between forwards, a tree's extra rows cost a different share, and the
    machine's load changes after start-up (on the demo model, verification
    in decoding cost up to twice the start-up figure, and the start-up slope
    over tree size was up to twice the one seen in decoding). The policy therefore
    corrects the curve by what the steps' verifications really took
    (:meth:`note_verify`): per grid point, a moving average of measured over
    calibrated seconds; a point not measured yet takes its nearest measured
    neighbour's ratio, so the curve's shape comes from the calibration and its
    level from decoding, and the corrected curve never falls with size.
    ``measured_costs=False`` keeps the start-up curve.
    """

    grid: np.ndarray
    costs: np.ndarray
    decay: float = 0.95
    explore: int = 16
    by_previous_step: bool = True
    by_evidence: bool = True
    measured_costs: bool = True
    max_budget: int = field(init=False)
    _on_path: np.ndarray = field(init=False, repr=False)  # per context: moving average of P(rank r accepted)
    _verified_count: np.ndarray = field(init=False, repr=False)  # per context: steps that verified rank r
    _pooled: np.ndarray = field(init=False, repr=False)  # all contexts together
    _pooled_count: np.ndarray = field(init=False, repr=False)
    _state: int = field(default=step_context.START, init=False, repr=False)
    _evidence: int = field(default=0, init=False, repr=False)  # this step's draft's evidence class
    _step: int = field(default=0, init=False, repr=False)
    _choice: np.ndarray = field(init=False, repr=False)  # last choice per context
    _usual: int = field(default=0, init=False, repr=False)  # this step's choice had it not explored
    _explored: bool = field(default=False, init=False, repr=False)  # whether this step explored
    _grow: bool = field(default=False, init=False, repr=False)  # the last step accepted its whole pruned tree
    _prefill_rows: int = field(default=0, init=False, repr=False)  # prompt rows fused into this step's forward
    _overhead: float | None = field(default=None, init=False, repr=False)  # per step that drafted
    _plain_overhead: float | None = field(default=None, init=False, repr=False)  # per step the source sat out
    _asked: bool = field(default=True, init=False, repr=False)  # whether this step asked the source
    _ask_tokens: np.ndarray = field(init=False, repr=False)  # per context: tokens per step that asked
    _ask_seconds: np.ndarray = field(init=False, repr=False)  # per context: seconds per step that asked
    _ask_count: np.ndarray = field(init=False, repr=False)
    _ratio: np.ndarray = field(init=False, repr=False)  # per grid point: measured / calibrated verify seconds
    _ratio_count: np.ndarray = field(init=False, repr=False)
    _curve: np.ndarray = field(init=False, repr=False)  # the costs in use: calibrated, corrected by measurements

    def __post_init__(self) -> None:
        self.grid = np.asarray(self.grid, dtype=np.int64)
        self.costs = np.asarray(self.costs, dtype=float)
        self._ratio = np.ones(self.grid.size)
        self._ratio_count = np.zeros(self.grid.size)
        self._curve = self.costs.copy()
        self.max_budget = int(self.grid.max())
        ranks = np.arange(self.max_budget, dtype=float)
        # Prior (worth one observation): the r-th node is accepted with chance ~0.7 / (r + 1).
        self._pooled = np.minimum(1.0, 0.72 / (ranks + 1.0))
        self._pooled_count = np.zeros(self.max_budget)
        cells = step_context.N_CONTEXTS * step_context.EVIDENCE_LEVELS
        self._on_path = np.tile(self._pooled, (cells, 1))
        self._verified_count = np.zeros((cells, self.max_budget))
        # Until something is observed, verify the largest budget: one big step informs every smaller one.
        self._choice = np.full(cells, self.max_budget)
        self._ask_tokens = np.zeros(step_context.N_CONTEXTS)
        self._ask_seconds = np.zeros(step_context.N_CONTEXTS)
        self._ask_count = np.zeros(step_context.N_CONTEXTS)

    @classmethod
    def calibrate(cls, target: object, max_budget: int = 64, **options: Any) -> CostAwareBudget:
        window = getattr(target, "context_window", None)
        if window is not None:  # a calibration tree must fit in the model's positions
            max_budget = max(1, min(max_budget, window // 2 - 2))
        grid = [0] + [k for k in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128) if k <= max_budget]
        if grid[-1] != max_budget:
            grid.append(max_budget)
        return cls(np.asarray(grid), measure_verify_costs(target, grid), **options)

    def begin(self) -> None:
        self._state = step_context.START
        self._evidence = 0
        self._grow = False  # the last request's last step says nothing about this one
        self._prefill_rows = 0

    def note_draft(self, evidence: int) -> None:
        self._evidence = step_context.evidence_class(evidence) if self.by_evidence else 0

    def note_prefill(self, rows: int) -> None:
        self._prefill_rows = max(0, int(rows))

    def note_verify(self, seconds: float, nodes: int) -> None:
        """Learn the verify cost of ``nodes``-node trees from a step that verified one.

        A step that also ran the prompt's prefill says nothing about the tree's
        cost and is skipped. One measurement moves its grid point's ratio by
        at most a factor of two, so a stalled step (the machine busy elsewhere)
        cannot swing the curve.
        """
        if not self.measured_costs or self._prefill_rows or not (seconds > 0):
            return
        calibrated = float(np.interp(nodes, self.grid, self.costs))
        if calibrated <= 0:
            return
        g = int(np.argmin(np.abs(self.grid - nodes)))
        if self._ratio_count[g] == 0 and self.costs[g] > 0:
            # A first measurement starts from the ratio this point already borrows from its measured
            # neighbours: clamping it around 1 would let one stalled step move the whole curve.
            self._ratio[g] = self._curve[g] / self.costs[g]
        self._ratio_count[g] += 1
        weight = max(1 - self.decay, 1.0 / self._ratio_count[g])
        current = self._ratio[g]
        ratio = min(max(seconds / calibrated, 0.5 * current), 2.0 * current)
        self._ratio[g] = current + weight * (ratio - current)
        self._curve = self._corrected_curve()

    def _corrected_curve(self) -> np.ndarray:
        measured = np.nonzero(self._ratio_count > 0)[0]
        if measured.size == 0:
            return self.costs.copy()
        # Every grid point takes the ratio of the nearest measured one (itself, once measured).
        nearest = measured[np.argmin(np.abs(self.grid[:, None] - self.grid[measured][None, :]), axis=1)]
        return np.maximum.accumulate(self.costs * self._ratio[nearest])

    @property
    def verify_costs(self) -> np.ndarray:
        """Verify seconds per grid budget in use: the start-up curve corrected by measured steps."""
        return self._curve.copy()

    def step_costs(self, budgets: np.ndarray) -> np.ndarray:
        """Verify seconds of this step with each budget, as far as the budget decides them.

        Usually the measured curve. A step that also runs the prompt's prefill
        is already a wide matrix product, where a node costs what a row of a
        big tree costs (the slope of the curve's top, far below the first
        nodes' cost on a CPU): bigger trees pay there. The prefill itself is
        left out, as every budget pays it: counted in, it would make any tree
        look free next to a long prompt.
        """
        costs = self._curve
        curve = np.interp(budgets, self.grid, costs)
        if not self._prefill_rows or self.grid.size < 3:
            return curve
        slope = max(0.0, float(costs[-1] - costs[-2]) / float(self.grid[-1] - self.grid[-2]))
        return costs[0] + slope * np.asarray(budgets, dtype=float)

    def draft_nodes(self) -> int:
        """The largest budget :meth:`choose` may pick this step, whatever the draft's evidence."""
        if self._grow or not self._pooled_count.any() or (self.explore and (self._step + 1) % self.explore == 0):
            return self.max_budget
        # The usual choice for a full-size draft in every evidence class of this context, at once.
        classes = step_context.EVIDENCE_LEVELS if self.by_evidence else 1
        on_path = self._estimates(self._cell(evidence=np.arange(classes)))
        accepted = np.concatenate([np.zeros((classes, 1)), np.cumsum(on_path, axis=1)], axis=1)[:, self.grid]
        rates = (1.0 + accepted) / (self.step_costs(self.grid) + (self._overhead or 0.0))
        return max(1, int(self.grid[np.argmax(rates, axis=1)].max()))

    def _cell(self, state: int | None = None, evidence: Any = None) -> Any:
        """Row of a (context, evidence class) in the statistics (rows, for an array of classes)."""
        s = self._state if state is None else state
        e = self._evidence if evidence is None else evidence
        return s * step_context.EVIDENCE_LEVELS + e

    def on_path(self, state: int | None = None, evidence: int | None = None) -> np.ndarray:
        """P(rank r is on the accepted path) in a context and evidence class (default: the current ones)."""
        return self._estimates(self._cell(state, evidence))

    def _estimates(self, cells: Any) -> np.ndarray:
        """Each cell's own estimates where it has observations, the pooled ones elsewhere."""
        return np.where(self._verified_count[cells] > 0, self._on_path[cells], self._pooled)

    def expected_accepted(self, budgets: np.ndarray | None = None) -> np.ndarray:
        """Expected accepted draft tokens per step with each budget (default: the grid), given a draft that big."""
        budgets = self.grid if budgets is None else np.asarray(budgets, dtype=np.int64)
        cumulative = np.concatenate([[0.0], np.cumsum(self.on_path())])
        return cumulative[np.minimum(budgets, self.max_budget)]

    def expected_rate(self, budgets: np.ndarray | None = None) -> np.ndarray:
        """Expected emitted tokens per second with each budget (verify cost + step overhead)."""
        budgets = self.grid if budgets is None else np.asarray(budgets, dtype=np.int64)
        return (1.0 + self.expected_accepted(budgets)) / (self.step_costs(budgets) + (self._overhead or 0.0))

    def wants_draft(self) -> bool:
        """Ask the source unless, in the current context, steps that asked it emitted fewer
        tokens per second than a plain step would.

        The comparison is empirical: a step that asks pays for drafting (a
        forward pass of layer-skip, a datastore lookup, nothing found), for the
        tree it verifies and for the bookkeeping, and a slow or rarely useful
        source then sits out where it does not pay. Exploration steps always
        ask, so a context is re-examined (and are credited with what the usual
        budget would have earned, see :meth:`_usual_outcome`), and a context is
        asked at least three times before it can be skipped.
        """
        self._asked = True
        if self.explore and (self._step + 1) % self.explore == 0:
            return True
        s = self._state
        if self._ask_count[s] < 3 or self._ask_seconds[s] <= 0:
            return True
        plain_rate = 1.0 / (self._curve[0] + (self._plain_overhead or 0.0))
        self._asked = bool(self._ask_tokens[s] / self._ask_seconds[s] > plain_rate)
        return self._asked

    def choose(self, drafted: int) -> int:
        self._step += 1
        self._usual = self._usual_choice(drafted)
        grow, self._grow = self._grow, False
        if grow and drafted > self._usual:
            # The last step accepted all the depth its pruned tree had: the budget, not the draft,
            # was the limit. Verify twice as much now (an exploration step, credited as one).
            self._explored = True
            bigger = self.grid[self.grid >= max(1, 2 * self._usual)]
            return min(drafted, int(bigger[0]) if bigger.size else self.max_budget)
        self._explored = bool(drafted > 0 and self.explore and self._step % self.explore == 0)
        if self._explored:
            if (self._step // self.explore) % 4 == 0:
                return self.max_budget
            bigger = self.grid[self.grid >= max(1, 2 * self._choice[self._cell()])]
            return int(bigger[0]) if bigger.size else self.max_budget
        if drafted > 0:
            self._choice[self._cell()] = self._usual
        return self._usual

    def _usual_choice(self, drafted: int) -> int:
        """The budget with the best expected rate for a ``drafted``-node draft (no exploration)."""
        if drafted <= 0:
            return 0
        if not self._pooled_count.any():
            return self.max_budget
        size = min(drafted, self.max_budget)
        candidates = np.append(self.grid[self.grid < size], size)
        return int(candidates[np.argmax(self.expected_rate(candidates))])

    def _usual_outcome(self, tree: TokenTree, verdict: Verdict) -> tuple[int, int]:
        """Tokens emitted and nodes verified had this step verified its usual budget.

        An exploration step verifies a deliberately oversized tree; charging
        its cost to the context would make drafting there look unprofitable
        and keep a skipped context skipped (it is re-examined only on such
        steps). Ranks respect ancestry, so the usual budget's outcome is read
        off the same verdict: the accepted nodes of rank below it. Other steps,
        and stochastic drafts (never pruned, and whose rejection sampling
        depends on every sibling present), count as they were verified.
        """
        if not self._explored or tree.probs is not None:
            return len(verdict.accepted_nodes) + 1, tree.size
        size = min(tree.size, self._usual)
        if size == tree.size or not verdict.accepted_nodes:
            return len(verdict.accepted_nodes) + 1, size
        ranks = node_ranks(tree)[list(verdict.accepted_nodes)]
        return int(np.count_nonzero(ranks < size)) + 1, size

    def observe(self, tree: TokenTree, verdict: Verdict, drafted: int, overhead: float) -> None:
        d = self.decay
        if drafted > 0:
            self._overhead = overhead if self._overhead is None else d * self._overhead + (1 - d) * overhead
        if not self._asked:
            self._plain_overhead = (
                overhead if self._plain_overhead is None else d * self._plain_overhead + (1 - d) * overhead
            )
        else:  # what asking the source earned in this context (moving averages; plain means at first)
            s = self._state
            self._ask_count[s] += 1
            w = max(1 - d, 1.0 / self._ask_count[s])
            tokens, size = self._usual_outcome(tree, verdict)
            seconds = float(self.step_costs(np.asarray([size]))[0]) + overhead
            self._ask_tokens[s] += w * (tokens - self._ask_tokens[s])
            self._ask_seconds[s] += w * (seconds - self._ask_seconds[s])
        self._asked = True
        self._explored = False
        self._prefill_rows = 0
        pruned = 0 < tree.size < drafted and tree.probs is None
        self._grow = bool(pruned and verdict.accepted_nodes and len(verdict.accepted_nodes) >= tree.max_depth)
        s = self._cell()
        self._evidence = 0  # a step that does not draft gives no evidence
        verified = min(tree.size, self.max_budget)
        if not verified:
            return  # nothing verified: no news about acceptance, the context stays
        on_path = np.zeros(verified)
        if verdict.accepted_nodes:
            path_ranks = node_ranks(tree)[list(verdict.accepted_nodes)]
            on_path[path_ranks[path_ranks < verified]] = 1.0
        # Plain means while a rank has few observations (the prior counts as one), then moving averages.
        fresh = self._verified_count[s, :verified] == 0
        self._on_path[s, :verified][fresh] = self._pooled[:verified][fresh]  # a context starts from the pool
        for estimate, count in ((self._on_path[s], self._verified_count[s]), (self._pooled, self._pooled_count)):
            count[:verified] += 1
            weights = np.maximum(1 - d, 1.0 / (count[:verified] + 1))
            estimate[:verified] += weights * (on_path - estimate[:verified])
        if self.by_previous_step:
            self._state = step_context.context_after(len(verdict.accepted_nodes))
