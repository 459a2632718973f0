"""Composite sources and cost-aware budgets: still lossless, and they adapt."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import draftkit
from draftkit.engine.budget import CostAwareBudget, node_ranks, prune_tree
from draftkit.errors import IncompatiblePartsError
from draftkit.sources.composite import Composite, matched_prefix
from draftkit.testing.sources import EmptySource, OracleSource, RandomSource, ScriptedSource
from draftkit.trees import TrieBuilder
from draftkit.types import Draft, DraftKind, DraftRequest, SourceCapabilities, TokenTree, Verdict
from helpers import cached_model, hf_greedy
from strategies import architectures, prompts, token_sequences


@given(arch=architectures, prompt=prompts(), max_new=st.integers(1, 48),
       budget=st.sampled_from([2, 8, 32, "auto"]))
def test_composite_is_lossless(arch, prompt, max_new, budget):
    """float64 models: composite drafts never change the greedy output."""
    model = cached_model(arch)
    expected = hf_greedy(model, prompt, max_new, None)
    members = ["pld", RandomSource(seed=3), OracleSource(expected, decoys=1), EmptySource()]
    out = draftkit.SpeculativeDecoder(model, source=members, budget=budget).generate([prompt], max_new_tokens=max_new)
    assert out.sequences[0].tolist() == expected


def test_composite_moves_the_budget_to_the_useful_member():
    model = cached_model("llama")
    prompt = [9, 8, 7]
    expected = hf_greedy(model, prompt, 60, None)
    composite = Composite([RandomSource(seed=1, width=4, length=8), OracleSource(expected)])
    out = draftkit.SpeculativeDecoder(model, source=composite, budget=8, tree="trie").generate(
        [prompt], max_new_tokens=60)
    assert out.sequences[0].tolist() == expected
    shares = composite.shares()
    assert shares[1] > 0.8 > shares[0] > 0
    rates = composite.acceptance()
    assert rates[1, 0] > 0.8 and rates[0, 0] < 0.2  # the oracle is right, random drafts are not
    assert np.all(np.diff(rates, axis=1) <= 0)  # matching d+1 tokens is never likelier than d
    assert composite.name == "random+oracle"


def test_composite_weighs_tokens_by_depth_and_counts_censored_depths_right():
    """Token weights fall with depth; depths beyond the emitted tokens are not counted as misses."""
    first, second = OracleSource([0, 1, 2, 3, 4, 5, 6]), OracleSource([0, 7, 8, 9])
    composite = Composite([first, second])
    composite.begin(np.array([0]))
    request = DraftRequest(context=np.array([0]), prompt_length=1, max_depth=8, max_nodes=8, vocab_size=16)
    draft = composite.propose(request)
    assert draft.token_weights is not None
    assert all(np.all(np.diff(w) < 0) for w in draft.token_weights)  # prior 0.5 ** d
    before = composite.acceptance().copy()
    # The target emitted 1, 2 (all the first member drafted that was verified): depths 1-2 hit,
    # deeper depths of the first member are unknown; the second member missed at depth 1, so
    # all its depths are observed misses.
    composite._update_statistics(np.array([1, 2]))
    after = composite.acceptance()
    assert after[0, 0] > before[0, 0] and after[0, 1] > before[0, 1]
    assert after[0, 2] == before[0, 2]  # censored: not counted
    assert after[1, 0] < before[1, 0] and after[1, 2] < before[1, 2]


def test_composite_refuses_stochastic_members():
    class Sampled(EmptySource):
        capabilities = SourceCapabilities(draft_kind=DraftKind.STOCHASTIC)

    with pytest.raises(IncompatiblePartsError, match="deterministic"):
        Composite([EmptySource(), Sampled()])


def test_matched_prefix():
    seqs = (np.array([1, 2, 3]), np.array([1, 5]))
    assert matched_prefix(seqs, np.array([1, 2, 9])) == 2
    assert matched_prefix(seqs, np.array([1, 5, 6])) == 2
    assert matched_prefix(seqs, np.array([4])) == 0


drafts = st.lists(st.tuples(token_sequences, st.floats(0.1, 10.0)), min_size=1, max_size=8).map(
    lambda items: Draft(tuple(np.array(s) for s, _ in items), tuple(w for _, w in items)))


weighted_drafts = drafts.flatmap(
    lambda d: st.tuples(*[st.lists(st.floats(0.0, 5.0), min_size=len(s), max_size=len(s)) for s in d.sequences]).map(
        lambda ws: Draft(d.sequences, d.weights, token_weights=tuple(np.array(w) for w in ws))))


@given(draft=weighted_drafts, budget=st.integers(1, 30))
def test_trie_with_token_weights_keeps_a_tree_of_the_heaviest_nodes(draft, budget):
    """Token weights (even ones that grow along a candidate) still give a tree under any budget."""
    tree = TrieBuilder().build(draft, budget, 12)
    assert tree.size == min(budget, TrieBuilder().build(draft, 10_000, 12).size)
    assert np.all(tree.parents < np.arange(tree.size))  # topological, connected to the root
    parent_scores = tree.scores[np.maximum(tree.parents, 0)]
    assert np.all((tree.parents < 0) | (parent_scores >= tree.scores))


@given(draft=drafts, budget=st.integers(0, 30))
def test_pruning_keeps_the_best_nodes_as_a_tree(draft, budget):
    full = TrieBuilder().build(draft, 64, 12)
    pruned = prune_tree(full, budget)
    assert pruned.size == min(budget, full.size)
    # Same result as building with the smaller budget directly.
    direct = TrieBuilder().build(draft, budget, 12) if budget else TokenTree.empty()
    paths = {tuple(pruned.path_tokens(i).tolist()) for i in range(pruned.size)}
    assert paths == {tuple(direct.path_tokens(i).tolist()) for i in range(direct.size)}
    ranks = node_ranks(full)
    assert sorted(ranks.tolist()) == list(range(full.size))


def test_cost_aware_budget_follows_the_cost_curve():
    grid = np.array([0, 1, 2, 4, 8, 16, 32, 64])
    chain = TokenTree.from_parents(np.arange(64), np.arange(-1, 63))
    always_right = Verdict(tuple(range(64)), 0)  # every drafted token accepted
    flat = CostAwareBudget(grid, np.full(grid.size, 0.01), explore=0)
    steep = CostAwareBudget(grid, 0.01 * (1 + grid / 4), explore=0)  # cost grows with the tree size
    for _ in range(30):
        flat.observe(chain, always_right, 64, 0.0)
        steep.observe(chain, always_right, 64, 0.0)
    assert flat.choose(64) == 64
    assert steep.choose(64) == 64  # perfect drafts pay for their cost...
    never = Verdict((), 0)
    for _ in range(60):
        steep.observe(chain, never, 64, 0.0)
    assert steep.choose(64) == 0  # ... useless ones do not: verify nothing


def test_cost_aware_budget_explores_near_its_choice_and_sometimes_the_largest():
    grid = np.array([0, 1, 2, 4, 8, 16, 32, 64])
    policy = CostAwareBudget(grid, 0.01 * (1 + grid / 4), explore=4)
    policy._choice[:] = 8
    policy._verified_count[:] = policy._pooled_count[:] = 1  # as if observed
    policy._on_path[:] = np.where(np.arange(64) < 8, 0.9, 0.0)  # the best 8 nodes pay, no more
    chosen = [policy.choose(40) for _ in range(32)]
    explored = chosen[3::4]
    assert explored == [16, 16, 16, 64, 16, 16, 16, 64]
    assert all(c == 8 for i, c in enumerate(chosen) if i % 4 != 3)
    assert policy.choose(0) == 0  # nothing drafted: nothing to verify
    assert policy.choose(5) == 5  # a small draft: verify all of it rather than a grid budget


def test_measured_verify_costs_never_fall_with_size():
    from draftkit.engine.budget import measure_verify_costs
    from draftkit.engine.target import TargetModel

    target = TargetModel(cached_model("llama"))
    costs = measure_verify_costs(target, [0, 1, 4, 16], prefix_len=16, repeats=2)
    assert costs.shape == (4,) and np.all(costs > 0) and np.all(np.diff(costs) >= 0)
    # Past the time limit only the warm-up and one measured round run: still a full, usable curve.
    calls = []
    forward = target.start

    def counting_start(prompt):
        session = forward(prompt)
        inner = session.forward_tree_hidden if target.head is not None else session.forward_tree
        name = "forward_tree_hidden" if target.head is not None else "forward_tree"
        setattr(session, name, lambda *a, **k: calls.append(1) or inner(*a, **k))
        return session

    target.start = counting_start
    quick = measure_verify_costs(target, [0, 1, 4, 16], prefix_len=16, repeats=5, time_limit=0.0)
    assert len(calls) == 2 * 4
    assert quick.shape == (4,) and np.all(quick > 0) and np.all(np.diff(quick) >= 0)


def test_cost_aware_budget_is_not_misled_by_small_poor_drafts():
    """Big drafts whose first 12 nodes are right, alternating with small drafts that are all wrong.

    The right budget for a big draft is about 12. An estimator that learnt big budgets only from
    steps whose whole draft fitted (the small, poor ones) would never leave small budgets.
    """
    grid = np.array([0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64])
    policy = CostAwareBudget(grid, 0.01 * (1 + grid / 16), explore=16)
    for step in range(200):
        drafted = 64 if step % 2 == 0 else 4
        k = min(policy.choose(drafted), drafted)
        tree = TokenTree.from_parents(np.arange(k), np.arange(-1, k - 1))
        right = min(12, k) if drafted == 64 else 0
        policy.observe(tree, Verdict(tuple(range(right)), 0), drafted, 0.0)
    assert policy.choose(64) in (12, 16)
    assert policy.choose(4) == 4  # cheap enough to verify a small draft whole


def test_cost_aware_budget_learns_from_the_previous_step_of_the_request():
    """Drafts come right in runs: after a step that accepted something the next draft's first 16
    nodes are right; after a miss the next draft is wrong, except at each request's 6th step, where
    a run starts with one right token. The policy must verify big trees inside a run and next to
    nothing after a miss, which one pooled estimate cannot do."""
    grid = np.array([0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64])
    policy = CostAwareBudget(grid, 0.01 * (1 + grid / 16), explore=16)
    chain = TokenTree.from_parents(np.arange(64), np.arange(-1, 63))

    def step(k: int, right: int) -> None:
        policy.observe(prune_tree(chain, k), Verdict(tuple(range(min(right, k))), 0), 64, 0.0)

    for _request in range(40):
        policy.begin()
        previous = 0
        for i in range(12):
            k = policy.choose(64)
            right = 16 if previous else 1 if i == 5 else 0
            step(k, right)
            previous = min(right, k)
    policy.begin()
    step(8, 8)
    policy._step = 1  # keep exploration out of the two checks below
    policy._grow = False  # and the growth that follows a fully accepted tree
    assert policy.choose(64) in (16, 24)  # inside a run
    step(8, 0)
    policy._step = 1
    assert policy.choose(64) <= 1  # after a miss


def test_a_custom_policy_needs_no_begin_and_keeps_the_output_exact():
    """Float64 model: any policy only changes how many nodes are verified, never the tokens."""

    class EveryOtherStep:
        max_budget = 6

        def __init__(self):
            self.calls = 0

        def choose(self, drafted):
            self.calls += 1
            return 0 if self.calls % 2 else 6

        def observe(self, tree, verdict, drafted, overhead):
            pass

    model = cached_model("llama")
    prompt = [3, 4, 5, 3, 4, 5, 3, 4]
    policy = EveryOtherStep()
    out = draftkit.SpeculativeDecoder(model, source="pld", budget=policy).generate([prompt], max_new_tokens=20)
    assert out.sequences[0].tolist() == hf_greedy(model, prompt, 20, None)
    assert policy.calls == out.stats.steps


def test_composite_rates_depend_on_the_members_previous_step():
    """A member right after a hit and wrong after a miss gets a high rate in a run, a low one after a miss."""
    member = OracleSource([0, 1, 2, 3, 4, 5, 6, 7, 8])
    composite = Composite([member, EmptySource()])
    request = DraftRequest(context=np.array([0]), prompt_length=1, max_depth=8, max_nodes=8, vocab_size=16)
    for _request in range(30):
        composite.begin(np.array([0]))
        for step in range(8):
            composite.propose(request)  # drafts 1..8
            in_run = composite._context[0] in (2, 3)  # the member matched on its last step
            composite._update_statistics(np.array([1, 2, 3, 4]) if in_run or step == 3 else np.array([9]))
    run_rates = composite.acceptance(contexts=[3, 0])
    missed_rates = composite.acceptance(contexts=[1, 0])
    assert run_rates[0, 2] > 0.9 and missed_rates[0, 0] < 0.4  # after a miss: right 1 time in 3
    pooled = Composite([member, EmptySource()], by_context=False)
    pooled._hits[:, 0], pooled._tries[:, 0] = composite._hits.sum(axis=1), composite._tries.sum(axis=1)
    assert missed_rates[0, 0] < pooled.acceptance()[0, 0] < run_rates[0, 0]


def test_auto_budget_stops_asking_a_slow_useless_source():
    """Drafts that take 5 ms and are never right: after a few steps the decoder stops asking the
    source, except on exploration steps, and the output stays plain decoding's (float64 model)."""
    import time

    from draftkit.testing.sources import ScriptedSource

    calls = []

    def slow_wrong(request):
        calls.append(1)
        time.sleep(0.005)
        wrong = (int(request.context[-1]) + 1) % 50
        return Draft.chain([wrong] * min(4, request.max_depth))

    model = cached_model("llama")
    prompt = [3, 1, 4, 1, 5]
    out = draftkit.SpeculativeDecoder(model, source=ScriptedSource(slow_wrong)).generate([prompt], max_new_tokens=48)
    assert out.sequences[0].tolist() == hf_greedy(model, prompt, 48, None)
    assert len(calls) < out.stats.steps / 2


def test_wants_draft_compares_what_asking_earned_with_a_plain_step():
    grid = np.array([0, 1, 2, 4, 8])
    policy = CostAwareBudget(grid, 0.01 * (1 + grid / 8), explore=0)
    chain = TokenTree.from_parents(np.arange(8), np.arange(-1, 7))

    def step(right: int, overhead: float) -> bool:
        asked = policy.wants_draft()
        policy.choose(8 if asked else 0)
        tree = chain if asked else TokenTree.empty()
        policy.observe(tree, Verdict(tuple(range(right if asked else 0)), 0), 8 if asked else 0, overhead)
        return asked

    assert all(step(4, 0.02) for _ in range(20))  # 5 tokens per 40 ms beat 1 per 10 ms: keep asking
    asked = [step(0, 0.02) for _ in range(40)]  # now drafts cost 20 ms and are never right
    assert not any(asked[-30:])  # ... so the source sits out


def test_a_skipped_source_is_asked_again_once_its_usual_budget_would_pay():
    """Drafts are useless for 60 steps, then their first 3 tokens are always right.

    Verifying costs 1 + k/2 plain steps, so 2-4 nodes pay but the oversized trees of
    exploration steps do not. A skipped source is re-examined only on exploration steps;
    were they charged the cost of their oversized trees, it would stay skipped for good.
    They are charged what the usual budget would have cost and earned instead.
    """
    grid = np.array([0, 1, 2, 4, 8, 16, 32, 64])
    policy = CostAwareBudget(grid, 0.01 * (1 + grid / 2), explore=8, by_previous_step=False)
    chain = TokenTree.from_parents(np.arange(64), np.arange(-1, 63))
    asked = []
    for step in range(400):
        ask = policy.wants_draft()
        k = policy.choose(64 if ask else 0)
        tree = prune_tree(chain, k) if ask else TokenTree.empty()
        right = 0 if step < 60 or not ask else min(3, tree.size)
        policy.observe(tree, Verdict(tuple(range(right)), 0), 64 if ask else 0, 0.002)
        asked.append(ask)
    assert not all(asked[20:60])  # the useless source was skipped...
    assert all(asked[300:])  # ... and is asked every step once it pays
    policy._step = 1  # keep exploration out of the check
    assert 2 <= policy.choose(64) <= 4


def test_steps_that_did_not_explore_are_charged_the_tree_they_verified():
    """Stochastic drafts are never pruned, so a step can verify more nodes than the policy chose;
    only exploration steps are credited with the usual budget's outcome instead."""
    grid = np.array([0, 1, 2, 4, 8, 16, 32])
    policy = CostAwareBudget(grid, np.array([1.0, 1.05, 1.1, 1.2, 1.5, 2.5, 4.5]), explore=0)
    parents = [p for c in range(4) for p in [-1] + [8 * c + i for i in range(7)]]  # 4 chains of 8
    tree = TokenTree.from_parents(np.arange(1, 33), parents)
    for _ in range(30):
        policy.begin()
        policy.wants_draft()
        policy.choose(tree.size)
        policy.observe(tree, Verdict((0, 1), 5), tree.size, 0.1)  # 3 tokens for a 32-node verify
    assert policy.choose(tree.size) < tree.size  # it would have verified fewer nodes...
    policy.begin()
    assert not policy.wants_draft()  # ... but 3 tokens per 4.6 units is below a plain step's 1 per 1.0


def test_cost_aware_budget_learns_per_evidence_class_of_the_draft():
    """Drafts with evidence 3 are right 16 deep, drafts with evidence 1 never, in a mixed order the
    previous step cannot predict. The policy must verify a big tree for the first and next to
    nothing for the second; with the split switched off it cannot tell them apart."""
    grid = np.array([0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64])
    chain = TokenTree.from_parents(np.arange(64), np.arange(-1, 63))

    def trained(by_evidence: bool) -> CostAwareBudget:
        policy = CostAwareBudget(grid, 0.01 * (1 + grid / 16), explore=16, by_evidence=by_evidence)
        rng = np.random.default_rng(0)
        for _request in range(30):
            policy.begin()
            for _ in range(12):
                strong = bool(rng.integers(2))
                policy.note_draft(3 if strong else 1)
                k = policy.choose(64)
                right = 16 if strong else 0
                policy.observe(prune_tree(chain, k), Verdict(tuple(range(min(right, k))), 0), 64, 0.0)
        return policy

    def choice(policy: CostAwareBudget, evidence: int) -> int:
        policy.begin()
        policy._step = 1  # keep exploration out of the check
        policy.note_draft(evidence)
        return policy.choose(64)

    split = trained(True)
    assert choice(split, 3) >= 16
    assert choice(split, 1) <= 1
    pooled = trained(False)
    assert choice(pooled, 3) == choice(pooled, 1)


def test_draft_evidence_must_be_a_non_negative_integer():
    assert Draft.chain([1, 2], evidence=2).evidence == 2
    assert Draft((np.array([1]),), evidence=7).evidence == 7  # counted as the strongest class
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="evidence"):
            Draft((np.array([1]),), evidence=bad)


def test_prompt_lookup_gives_the_matched_ngram_length_as_evidence():
    from draftkit.sources.pld.source import PromptLookup

    def evidence(context: list[int]) -> int:
        request = DraftRequest(context=np.array(context), prompt_length=len(context), max_depth=4,
                               max_nodes=8, vocab_size=32)
        return PromptLookup().propose(request).evidence

    assert evidence([5, 6, 7, 8, 9, 5, 6, 7]) == 3
    assert evidence([5, 6, 7, 8, 9, 1, 6, 7]) == 2
    assert evidence([5, 6, 7, 8, 9, 1, 2, 7]) == 1


def test_composite_rates_depend_on_the_members_evidence_and_the_draft_carries_the_strongest():
    """A member right when it claims evidence 3 and wrong when it claims 1 (in a mixed order) gets a
    high rate for the first and a low one for the second; the merged draft carries the evidence of
    the member expected to match longest."""
    rng = np.random.default_rng(1)
    claim = {"evidence": 3}

    def script(request: DraftRequest) -> Draft:
        return Draft.chain([1, 2, 3, 4], evidence=claim["evidence"])

    member = ScriptedSource(script)
    composite = Composite([member, EmptySource()])
    request = DraftRequest(context=np.array([0]), prompt_length=1, max_depth=8, max_nodes=8, vocab_size=16)
    for _request in range(30):
        composite.begin(np.array([0]))
        for _ in range(8):
            claim["evidence"] = 3 if rng.integers(2) else 1
            composite.propose(request)
            composite._update_statistics(np.array([1, 2, 3, 4]) if claim["evidence"] == 3 else np.array([9]))
    strong = composite.acceptance(contexts=[1, 0], evidence=[3, 0])
    weak = composite.acceptance(contexts=[1, 0], evidence=[1, 0])
    assert strong[0, 2] > 0.9 and weak[0, 0] < 0.1
    claim["evidence"] = 3
    assert composite.propose(request).evidence == 3
    weak_member = ScriptedSource(lambda request: Draft.chain([7], evidence=1))
    mixed = Composite([member, weak_member])
    assert mixed.propose(request).evidence == 3  # the longer expected match wins


class RecordingPolicy:
    """A fixed budget (``give`` nodes of at most ``max_budget``) that records the decoder's calls."""

    def __init__(self, give=4, max_budget=4, draft_nodes=None):
        self.give, self.max_budget = give, max_budget
        self.events = []
        if draft_nodes is not None:
            self.draft_nodes = lambda: draft_nodes

    def note_draft(self, evidence):
        self.events.append(("evidence", evidence))

    def note_prefill(self, rows):
        self.events.append(("prefill", rows))

    def choose(self, drafted):
        self.events.append(("choose", drafted))
        return self.give

    def observe(self, tree, verdict, drafted, overhead):
        self.events.append(("observe", (tree.size, drafted)))

    def seen(self, kind):
        return [value for what, value in self.events if what == kind]


def test_the_decoder_hands_each_drafts_evidence_to_the_policy():
    """Float64 model: the policy sees the evidence of every step's draft (0 when nothing was drafted)."""
    model = cached_model("llama")
    prompt = [3, 4, 5, 3, 4, 5, 3, 4]
    source = ScriptedSource(lambda request: Draft.chain([5, 6], evidence=len(request.context) % 2 + 1)
                            if len(request.context) % 3 else Draft.empty())
    policy = RecordingPolicy()
    out = draftkit.SpeculativeDecoder(model, source=source, budget=policy).generate([prompt], max_new_tokens=12)
    assert out.sequences[0].tolist() == hf_greedy(model, prompt, 12, None)
    drafted = [len(r.context) % 2 + 1 if len(r.context) % 3 else 0 for r in source.requests]
    seen = policy.seen("evidence")
    assert len(seen) == out.stats.steps  # steps that asked no source count as evidence 0
    assert seen[: len(drafted)] == drafted and not any(seen[len(drafted) :])


def test_a_fully_accepted_pruned_tree_doubles_the_next_budget():
    """Accepting every level of a cut tree means the budget, not the draft, was the limit: the next
    step verifies twice the usual budget (counted as exploration). A step that stopped short of the
    tree's bottom, or whose draft was not cut, changes nothing."""
    grid = np.array([0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64])
    chain = TokenTree.from_parents(np.arange(64), np.arange(-1, 63))

    def policy_after(verified: int, right: int, drafted: int = 64) -> tuple[CostAwareBudget, int]:
        policy = CostAwareBudget(grid, 0.01 * (1 + grid / 16), explore=0)
        for _ in range(50):  # the usual choice settles at a small budget: drafts are right 4 deep
            k = policy.choose(64)
            policy.observe(prune_tree(chain, k), Verdict(tuple(range(min(4, k))), 0), 64, 0.0)
        policy.begin()
        usual = policy.choose(64)
        policy.observe(prune_tree(chain, verified), Verdict(tuple(range(right)), 0), drafted, 0.0)
        return policy, usual

    grown, usual = policy_after(8, 8)
    assert 0 < usual < 32 and grown.choose(64) >= 2 * usual
    assert grown._explored  # credited as an exploration step
    assert grown.choose(64) == grown._usual_choice(64)  # one step only
    short, usual = policy_after(8, 5)
    assert short.choose(64) == usual
    whole, usual = policy_after(8, 8, drafted=8)
    assert whole.choose(64) == usual


def test_a_step_fused_with_the_prefill_verifies_a_bigger_tree():
    """With the prompt's rows in the same forward, a node costs what a row of a big tree costs (the
    top of the curve's slope), not the steep price of the first few nodes: the same statistics
    then favour a bigger tree (here 8 nodes instead of 4). Costs: the demo model's measured curve."""
    grid = np.array([0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64])
    costs = 1e-3 * np.array([4.12, 4.39, 4.39, 4.39, 5.11, 5.45, 5.78, 6.42, 6.95, 7.93, 9.11])
    policy = CostAwareBudget(grid, costs, explore=0, by_previous_step=False)
    policy._pooled[:] = 0.5 * 0.7 ** np.arange(64)  # learnt: rank r is on the accepted path this often
    policy._pooled_count[:] = 100
    plain_step = policy.choose(64)
    policy.note_prefill(120)
    fused = policy.choose(64)
    assert (plain_step, fused) == (4, 8)
    chain = TokenTree.from_parents(np.arange(64), np.arange(-1, 63))
    policy.observe(prune_tree(chain, fused), Verdict((), 0), 64, 0.0)
    policy._pooled[:] = 0.5 * 0.7 ** np.arange(64)
    assert policy.choose(64) == plain_step  # the next step is an ordinary one again


def test_the_decoder_reports_a_fused_prefill_to_the_policy_on_the_first_step_only():
    model = cached_model("llama")
    prompt = [3, 4, 5, 3, 4, 5, 3, 4]
    policy = RecordingPolicy()
    out = draftkit.SpeculativeDecoder(model, source="pld", budget=policy).generate([prompt], max_new_tokens=6)
    assert out.sequences[0].tolist() == hf_greedy(model, prompt, 6, None)
    assert policy.events[0] == ("prefill", len(prompt) - 1)
    assert policy.seen("prefill") == [len(prompt) - 1]


def test_the_policy_learns_whether_the_budget_cut_the_draft():
    """Float64 model. ``observe`` gets ``drafted == tree.size`` when the tree holds the whole draft
    (three identical candidates merge into 3 nodes) and more when the budget cut it: the draft went
    deeper than the tree, or a source that honours ``max_nodes`` filled an allowance smaller than
    the budget."""
    model = cached_model("llama")
    prompt = [3, 4, 5, 3, 4, 5, 3, 4]

    def observed(source, **policy_options):
        policy = RecordingPolicy(**policy_options)
        out = draftkit.SpeculativeDecoder(model, source=source, budget=policy).generate([prompt], max_new_tokens=8)
        assert out.sequences[0].tolist() == hf_greedy(model, prompt, 8, None)
        return [value for value in policy.seen("observe") if value[0]]

    same = ScriptedSource(lambda r: Draft((np.array([5, 6, 7]),) * 3) if r.max_depth >= 3 else Draft.empty())
    assert observed(same, give=4) and all(size == drafted == 3 for size, drafted in observed(same, give=4))
    assert all(drafted == size + 1 == 3 for size, drafted in observed(same, give=2))
    honours = ScriptedSource(lambda r: Draft.chain(np.full(min(r.max_nodes, r.max_depth), 9)))
    steps = observed(honours, give=4, max_budget=8, draft_nodes=4)
    assert (4, 5) in steps and all(drafted == (size + 1 if size == 4 else size) for size, drafted in steps)


def test_composite_evidence_comes_from_the_member_expected_to_match_longest_whatever_the_split():
    """Eight agreeing 10-token candidates (evidence 3) against one 2-token chain (evidence 1): the
    first member is expected to match longer, so the draft carries 3, also without the context split."""
    many = ScriptedSource(lambda r: Draft(tuple(np.arange(1, 11) for _ in range(8)), evidence=3))
    short = ScriptedSource(lambda r: Draft.chain([7, 8], evidence=1))
    request = DraftRequest(context=np.array([0]), prompt_length=1, max_depth=16, max_nodes=16, vocab_size=32)
    for by_context in (True, False):
        assert Composite([many, short], by_context=by_context).propose(request).evidence == 3
        assert Composite([short, many], by_context=by_context).propose(request).evidence == 3


def test_measured_verify_times_correct_the_level_of_the_start_up_curve():
    grid = np.array([0, 1, 2, 4, 8, 16, 32, 64])
    calibrated = 0.01 * (1 + grid / 4)
    policy = CostAwareBudget(grid, calibrated, explore=0)
    assert np.allclose(policy.verify_costs, calibrated)
    for _ in range(40):  # decoding finds 16-node trees cost 1.5 times the start-up figure
        policy.note_verify(1.5 * 0.01 * (1 + 16 / 4), 16)
    # Points not measured take the nearest measured ratio: the start-up shape, the measured level.
    assert np.allclose(policy.verify_costs, 1.5 * calibrated, rtol=1e-3)
    assert np.allclose(policy.step_costs(np.array([16])), [1.5 * 0.01 * 5], rtol=1e-3)
    for _ in range(40):  # ... and 64-node trees only 0.8 times: the curve still never falls with size
        policy.note_verify(0.8 * 0.01 * (1 + 64 / 4), 64)
    costs = policy.verify_costs
    assert np.all(np.diff(costs) >= 0)
    assert np.isclose(costs[grid == 64][0], max(0.8 * 0.01 * 17, costs[grid == 32][0]))
    # measured_costs=False keeps the start-up curve.
    fixed = CostAwareBudget(grid, calibrated, explore=0, measured_costs=False)
    fixed.note_verify(1.0, 16)
    assert np.allclose(fixed.verify_costs, calibrated)


def test_one_stalled_step_or_a_prefill_step_cannot_swing_the_verify_costs():
    grid = np.array([0, 1, 2, 4, 8, 16])
    calibrated = 0.01 * (1 + grid / 4)
    policy = CostAwareBudget(grid, calibrated, explore=0)
    policy.note_verify(100.0, 8)  # the machine stalled for this step
    assert policy.verify_costs[grid == 8][0] <= 2 * calibrated[grid == 8][0] + 1e-12
    before = policy.verify_costs
    policy.note_prefill(500)  # this step's forward also ran 500 prompt rows: not the tree's cost
    policy.note_verify(1.0, 8)
    assert np.array_equal(policy.verify_costs, before)


def test_measured_costs_move_the_choice_where_the_start_up_curve_was_wrong():
    """Start-up says big trees are dear; decoding finds them cheap. With drafts whose first 16
    nodes are right, the policy must move from a small budget to the big one."""
    grid = np.array([0, 1, 2, 4, 8, 16])
    calibrated = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 9.0])
    policy = CostAwareBudget(grid, calibrated, explore=0, by_previous_step=False, by_evidence=False)
    policy._verified_count[:] = policy._pooled_count[:] = 1  # as if observed
    policy._on_path[:] = np.where(np.arange(16) < 16, 0.5, 0.0)
    assert policy.choose(16) <= 4
    for _ in range(30):
        policy.note_verify(1.0, 4)  # small trees cost what start-up said
        policy.note_verify(1.1, 8)
        policy.note_verify(1.1, 16)
    assert policy.choose(16) == 16


def test_a_stalled_first_measurement_of_a_size_moves_the_curve_at_most_twofold():
    grid = np.array([0, 1, 2, 4, 8, 16])
    calibrated = np.array([1.0, 1.0, 1.0, 1.05, 1.1, 1.2]) * 1e-3
    policy = CostAwareBudget(grid, calibrated, explore=0)
    for _ in range(40):  # decoding finds every size 0.6 times the start-up figure (measured at 16)
        policy.note_verify(0.6 * 1.2e-3, 16)
    settled = policy.verify_costs
    assert np.allclose(settled, 0.6 * calibrated, rtol=1e-3)
    policy.note_verify(1.0, 1)  # one stalled step, the first ever at this size
    assert np.all(policy.verify_costs <= 2 * settled + 1e-12)
