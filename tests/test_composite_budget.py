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
from draftkit.testing.sources import EmptySource, OracleSource, RandomSource
from draftkit.trees import TrieBuilder
from draftkit.types import Draft, DraftKind, SourceCapabilities, TokenTree, Verdict
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
    assert shares[1] > 0.8 > shares[0] >= composite.floor * 0.9
    assert composite.name == "random+oracle"


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
    assert flat.choose() == 64
    assert steep.choose() == 64  # perfect drafts pay for their cost...
    never = Verdict((), 0)
    for _ in range(60):
        steep.observe(chain, never, 64, 0.0)
    assert steep.choose() == 0  # ... useless ones do not: verify nothing
