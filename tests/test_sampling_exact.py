"""Exact output laws of the sampling verifiers, without Monte Carlo.

Tiny vocabularies (V = 4), float64 throughout. A toy target gives the processed
law p after any context (a bigram table of logits put through
:class:`draftkit.logits.LogitsPipeline`); a toy draft gives q the same way. For
every case the test

1. enumerates every outcome of the draft (each sampled token, with its q
   probability) or takes the deterministic draft,
2. builds the tree with the real builders (``trie`` merges identical prefixes),
3. runs the *production* verifier function down every branch of its random
   decisions (:func:`draftkit.verify.reference.exact_law`), and
4. recurses into the next decoding step when a step emitted fewer tokens than
   asked,

which gives the exact law of the first one and two emitted tokens. It must equal
p (``p(x)`` and ``p(x) p(y | x)``) within 1e-9. Deliberately wrong verifiers
(the mutants below) must fail the same comparison.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from draftkit.logits import LogitsPipeline
from draftkit.trees import ChainBuilder, TrieBuilder
from draftkit.types import Draft, SamplingParams, TokenTree, Verdict
from draftkit.verify.reference import exact_law
from draftkit.verify.sampling import Draws, child_lists
from draftkit.verify.speculative import speculative_walk
from draftkit.verify.walk import sample_walk

V = 4
TOL = 1e-9
NEG = float("-inf")

VerifyFn = Callable[[TokenTree, torch.Tensor, torch.Tensor, Draws], Verdict]


# --------------------------------------------------------------------------- the toy world


def table(seed: int, *, scale: float = 1.5, masked: tuple[tuple[int, int], ...] = ()) -> torch.Tensor:
    """Bigram logits [V, V] (row = last token); ``masked`` entries are -inf (probability 0)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn((V, V), generator=gen, dtype=torch.float64) * scale
    for a, b in masked:
        t[a, b] = NEG
    return t


@dataclass(frozen=True)
class World:
    """Target and draft laws after any context.

    ``q_table`` gives the law drafts are drawn from (after ``q_sampling``);
    ``reported`` is what the source reports to the verifier: ``"processed"``
    (correct) or ``"raw"`` (the softmax of the unprocessed draft logits, a bug).
    """

    p_table: torch.Tensor
    q_table: torch.Tensor
    sampling: SamplingParams = SamplingParams(do_sample=True)
    q_sampling: SamplingParams | None = None  #: the draft's processing; defaults to ``sampling``
    reported: str = "processed"

    def _law(self, t: torch.Tensor, ctx: tuple[int, ...], params: SamplingParams) -> torch.Tensor:
        seq = np.asarray(ctx, dtype=np.int64)
        return LogitsPipeline(params, seq).probs(t[ctx[-1]][None], [np.empty(0, np.int64)])[0]

    def p(self, ctx: tuple[int, ...]) -> torch.Tensor:
        return self._law(self.p_table, ctx, self.sampling)

    def q(self, ctx: tuple[int, ...]) -> torch.Tensor:
        return self._law(self.q_table, ctx, self.q_sampling or self.sampling)

    def q_reported(self, ctx: tuple[int, ...]) -> torch.Tensor:
        if self.reported == "raw":
            return self._law(self.q_table, ctx, SamplingParams(do_sample=True))
        return self.q(ctx)


def make_world(kind: str) -> World:
    p_table = table(1, masked=((0, 1), (1, 3), (2, 0), (3, 0), (3, 2)))  # p with zeros
    if kind == "general":
        return World(p_table, table(2))
    if kind == "p=q":
        return World(p_table, p_table)
    if kind == "disjoint":
        # p lives on {0, 1}, q on {2, 3}: every draft token is rejected.
        p_only = table(3, masked=tuple((a, b) for a in range(V) for b in (2, 3)))
        q_only = table(4, masked=tuple((a, b) for a in range(V) for b in (0, 1)))
        return World(p_only, q_only)
    if kind == "one-hot-q":
        # A degenerate proposal: q puts all its mass on one token after every context.
        return World(p_table, table(5), q_sampling=SamplingParams(do_sample=True, top_k=1))
    if kind == "processed":
        # Both laws go through temperature / top-k / top-p / min-p.
        params = SamplingParams(do_sample=True, temperature=0.7, top_k=3, top_p=0.95, min_p=0.02)
        return World(table(6, scale=1.0), table(7, scale=1.0), params)
    raise ValueError(kind)


# --------------------------------------------------------------------------- drafts and trees


def forest(seqs: list[list[int]], rows: list[torch.Tensor] | None, max_depth: int) -> TokenTree:
    """An unmerged tree: each candidate is its own branch (siblings may repeat tokens)."""
    tokens: list[int] = []
    parents: list[int] = []
    probs: list[torch.Tensor] = []
    for s, seq in enumerate(seqs):
        parent = -1
        for j, tok in enumerate(seq[:max_depth]):
            tokens.append(tok)
            parents.append(parent)
            parent = len(tokens) - 1
            if rows is not None:
                probs.append(rows[s][j])
    return TokenTree.from_parents(tokens, parents, probs=torch.stack(probs) if rows is not None else None)


def build(shape: str, seqs: list[list[int]], rows: list[torch.Tensor] | None, max_depth: int) -> TokenTree:
    arrays = tuple(np.asarray(s, dtype=np.int64) for s in seqs)
    draft = Draft(arrays, probs=tuple(rows) if rows is not None else None)
    if shape == "chain":
        return ChainBuilder().build(draft, 64, max_depth)
    if shape == "trie":
        return TrieBuilder().build(draft, 64, max_depth)
    if shape == "forest":
        return forest(seqs, rows, max_depth)
    raise ValueError(shape)


def stochastic_drafts(world: World, ctx: tuple[int, ...], width: int, length: int):
    """Every outcome of ``width`` independent sequences of ``length`` tokens drawn from q."""
    per_seq: list[tuple[float, list[int], list[torch.Tensor]]] = []

    def grow(prefix: list[int], prob: float, rows: list[torch.Tensor]) -> None:
        if len(prefix) == length:
            per_seq.append((prob, prefix, rows))
            return
        q = world.q(ctx + tuple(prefix))
        reported = world.q_reported(ctx + tuple(prefix))
        for tok in range(V):
            if float(q[tok]) > 0.0:
                grow(prefix + [tok], prob * float(q[tok]), rows + [reported])

    grow([], 1.0, [])
    for combo in itertools.product(per_seq, repeat=width):
        prob = float(np.prod([c[0] for c in combo]))
        yield prob, [c[1] for c in combo], [torch.stack(c[2]) for c in combo]


def deterministic_draft(kind: str, ctx: tuple[int, ...]) -> list[list[int]]:
    """Hand-shaped deterministic drafts that depend on the context."""
    a = ctx[-1]
    if kind == "chain":
        return [[(a + 1) % V, (a + 2) % V, (a + 3) % V]]
    if kind == "tree":
        return [[(a + 1) % V, a], [a, (a + 2) % V], [(a + 1) % V, (a + 3) % V], [(a + 2) % V]]
    if kind == "wide":  # every token, each continued two ways (siblings share first tokens)
        return [[t, (t + a + j) % V] for t in range(V) for j in (0, 1)]
    raise ValueError(kind)


# --------------------------------------------------------------------------- the exact law


def node_rows(world: World, ctx: tuple[int, ...], tree: TokenTree) -> torch.Tensor:
    rows = [world.p(ctx)] + [world.p(ctx + tuple(tree.path_tokens(i).tolist())) for i in range(tree.size)]
    return torch.stack(rows)


def step_outcomes(
    world: World, ctx: tuple[int, ...], depth: int, verify: VerifyFn, drafts: Callable
) -> dict[tuple[int, ...], float]:
    """Exact law of the tokens one step emits (truncated to ``depth`` tokens)."""
    # Group draft outcomes by the tree they produce: the verifier only sees the tree.
    trees: dict[tuple, list] = {}
    for prob, tree in drafts(ctx, depth):
        key = (tuple(tree.tokens.tolist()), tuple(tree.parents.tolist()))
        if key in trees:
            trees[key][0] += prob
        else:
            trees[key] = [prob, tree]
    out: dict[tuple[int, ...], float] = defaultdict(float)
    for weight, tree in trees.values():
        p = node_rows(world, ctx, tree)
        q = tree.probs.to(torch.float64) if tree.probs is not None else None
        if q is not None:
            q = q / q.sum(dim=-1, keepdim=True)
        law = exact_law(lambda d, t=tree, p=p, q=q: verify(t, p, q, d))
        for verdict, pv in law.items():
            emitted = tuple(verdict.emitted_tokens(tree))[:depth]
            out[emitted] += weight * pv
    return out


def emitted_law(
    world: World, ctx: tuple[int, ...], k: int, verify: VerifyFn, drafts: Callable, cache: dict | None = None
) -> dict[tuple[int, ...], float]:
    """Exact law of the first ``k`` tokens of decoding from ``ctx`` (over as many steps as needed)."""
    cache = {} if cache is None else cache
    if (ctx, k) in cache:
        return cache[(ctx, k)]
    out: dict[tuple[int, ...], float] = defaultdict(float)
    for emitted, prob in step_outcomes(world, ctx, k, verify, drafts).items():
        if len(emitted) >= k:
            out[emitted[:k]] += prob
        else:
            rest = emitted_law(world, ctx + emitted, k - len(emitted), verify, drafts, cache)
            for tail, pt in rest.items():
                out[emitted + tail] += prob * pt
    cache[(ctx, k)] = dict(out)
    return cache[(ctx, k)]


def true_law(world: World, ctx: tuple[int, ...], k: int) -> dict[tuple[int, ...], float]:
    out: dict[tuple[int, ...], float] = {}
    p = world.p(ctx)
    for x in range(V):
        px = float(p[x])
        if px <= 0.0:
            continue
        if k == 1:
            out[(x,)] = px
        else:
            for tail, pt in true_law(world, ctx + (x,), k - 1).items():
                out[(x,) + tail] = px * pt
    return out


def law_error(got: dict, want: dict) -> float:
    keys = set(got) | set(want)
    return max(abs(got.get(key, 0.0) - want.get(key, 0.0)) for key in keys)


CTX = (2, 0)


def stochastic_error(world: World, shape: str, width: int, length: int, verify: VerifyFn, k: int) -> float:
    def drafts(ctx: tuple[int, ...], depth: int):
        for prob, seqs, rows in stochastic_drafts(world, ctx, width, min(length, depth)):
            yield prob, build(shape, seqs, rows, depth)

    return law_error(emitted_law(world, CTX, k, verify, drafts), true_law(world, CTX, k))


def deterministic_error(world: World, kind: str, shape: str, verify: VerifyFn, k: int) -> float:
    def drafts(ctx: tuple[int, ...], depth: int):
        yield 1.0, build(shape, deterministic_draft(kind, ctx), None, depth)

    return law_error(emitted_law(world, CTX, k, verify, drafts), true_law(world, CTX, k))


def walk_fn(tree: TokenTree, p: torch.Tensor, q: torch.Tensor | None, draws: Draws) -> Verdict:
    return sample_walk(tree, p, draws)


# --------------------------------------------------------------------------- mutants


def mutant_resample_from_p(tree: TokenTree, p: torch.Tensor, q: torch.Tensor, draws: Draws) -> Verdict:
    """Rejection sampling that, after a rejection, draws from p instead of the residual."""
    children, tokens = child_lists(tree), tree.tokens.tolist()
    accepted: list[int] = []
    row = level = 0
    while True:
        chosen = -1
        for attempt, child in enumerate(children[row]):
            tok = tokens[child]
            if draws.accept(level, attempt, min(1.0, float(p[row][tok] / q[child][tok]))):
                chosen = child
                break
        if chosen < 0:
            return Verdict(tuple(accepted), draws.choose(level, p[row]))
        accepted.append(chosen)
        row, level = chosen + 1, level + 1


def _rejection(tree: TokenTree, p: torch.Tensor, q: torch.Tensor, draws: Draws, ratio: Callable) -> Verdict:
    """i.i.d. multi-draft rejection sampling with a pluggable acceptance ratio."""
    children, tokens = child_lists(tree), tree.tokens.tolist()
    accepted: list[int] = []
    row = level = 0
    while True:
        residual = p[row]
        chosen = -1
        for attempt, child in enumerate(children[row]):
            tok = tokens[child]
            qrow = q[child]
            if draws.accept(level, attempt, min(1.0, ratio(float(residual[tok]), float(qrow[tok])))):
                chosen = child
                break
            excess = (residual - qrow).clamp_min(0.0)
            if float(excess.sum()) > 0:
                residual = excess / excess.sum()
        if chosen < 0:
            return Verdict(tuple(accepted), draws.choose(level, residual))
        accepted.append(chosen)
        row, level = chosen + 1, level + 1


def mutant_q_over_p(tree: TokenTree, p: torch.Tensor, q: torch.Tensor, draws: Draws) -> Verdict:
    """Accepts with min(1, q / p): the ratio upside down."""
    return _rejection(tree, p, q, draws, lambda pv, qv: float("inf") if pv == 0 else qv / pv)


def iid_multidraft(tree: TokenTree, p: torch.Tensor, q: torch.Tensor, draws: Draws) -> Verdict:
    """Textbook i.i.d. multi-draft rule (every sibling tested against the same q).

    Exact on unmerged trees of i.i.d. draws, biased once a trie has merged duplicates.
    """
    return _rejection(tree, p, q, draws, lambda pv, qv: pv / qv)


def mutant_per_row(tree: TokenTree, p: torch.Tensor, q: torch.Tensor | None, draws: Draws) -> Verdict:
    """REST/ADED-style tree sampling: each candidate path is checked against its own target
    samples and the longest match wins, which is biased whenever siblings compete."""
    children, tokens = child_lists(tree), tree.tokens.tolist()
    leaves = [i for i in range(tree.size) if not children[i + 1]]
    best: tuple[int, tuple[int, ...], int] | None = None
    for leaf in leaves:
        path = tree.path(leaf).tolist()
        row, matched = 0, []
        for level, node in enumerate(path):
            sample = draws.choose(level, p[row])
            if sample != tokens[node]:
                bonus = sample
                break
            matched.append(node)
            row = node + 1
        else:
            bonus = draws.choose(len(path), p[row])
        if best is None or len(matched) > best[0]:
            best = (len(matched), tuple(matched), bonus)
    if best is None:
        return Verdict((), draws.choose(0, p[0]))
    return Verdict(best[1], best[2])


# --------------------------------------------------------------------------- tests


WORLDS = ("general", "p=q", "disjoint", "one-hot-q", "processed")


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize(("shape", "width", "length"), [("chain", 1, 3), ("trie", 2, 2), ("forest", 2, 2)])
def test_speculative_law_is_p(world: str, shape: str, width: int, length: int) -> None:
    w = make_world(world)
    for k in (1, 2):
        assert stochastic_error(w, shape, width, length, speculative_walk, k) < TOL


def test_speculative_law_is_p_on_a_wide_trie() -> None:
    """Three independent candidates merged by the trie: up to three distinct siblings and duplicates."""
    w = make_world("general")
    assert stochastic_error(w, "trie", 3, 2, speculative_walk, 2) < TOL


@pytest.mark.parametrize("world", ("general", "processed"))
@pytest.mark.parametrize("kind", ("chain", "tree", "wide"))
@pytest.mark.parametrize("shape", ("trie", "forest"))
def test_walk_law_is_p(world: str, kind: str, shape: str) -> None:
    w = make_world(world)
    for k in (1, 2):
        assert deterministic_error(w, kind, shape, walk_fn, k) < TOL


def test_exact_law_sees_every_branch() -> None:
    """The explorer's probabilities add up to one and match a hand computation."""
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    tree = TokenTree.from_parents([0], [-1])
    law = exact_law(lambda d: sample_walk(tree, p, d))
    assert law == {Verdict((0,), 1): 0.5, Verdict((), 1): 0.25, Verdict((), 2): 0.25}


# The mutants: each must be caught by the exact-law comparison.

MUTANT_CASES = [
    ("resample-from-p chain", lambda: stochastic_error(make_world("general"), "chain", 1, 2, mutant_resample_from_p, 1)),
    ("resample-from-p tree", lambda: stochastic_error(make_world("general"), "forest", 2, 1, mutant_resample_from_p, 1)),
    ("q/p chain", lambda: stochastic_error(make_world("general"), "chain", 1, 2, mutant_q_over_p, 1)),
    (
        "raw q",
        lambda: stochastic_error(replace(make_world("processed"), reported="raw"), "chain", 1, 2, speculative_walk, 1),
    ),
    ("per-row tree", lambda: deterministic_error(make_world("general"), "wide", "trie", mutant_per_row, 1)),
    ("per-row tree 2 tokens", lambda: deterministic_error(make_world("general"), "tree", "trie", mutant_per_row, 2)),
    ("i.i.d. rule on a merged trie", lambda: stochastic_error(make_world("general"), "trie", 3, 1, iid_multidraft, 1)),
]


@pytest.mark.parametrize(("name", "error"), MUTANT_CASES, ids=[c[0] for c in MUTANT_CASES])
def test_mutants_are_caught(name: str, error: Callable[[], float]) -> None:
    assert error() > 1e-3, f"the exact-law test did not catch the mutant {name!r}"


def test_per_row_sampling_is_exact_on_a_chain() -> None:
    """Positive control: REST/ADED's rule is only wrong when siblings compete."""
    assert deterministic_error(make_world("general"), "chain", "trie", mutant_per_row, 2) < TOL


def test_iid_rule_is_exact_without_merging() -> None:
    """Positive control: the textbook i.i.d. rule is right on an unmerged tree of i.i.d. draws,
    so the bias above comes from merging, which draftkit's without-replacement rule handles."""
    w = make_world("general")
    assert stochastic_error(w, "forest", 3, 1, iid_multidraft, 1) < TOL
    assert stochastic_error(w, "forest", 2, 2, iid_multidraft, 2) < TOL
