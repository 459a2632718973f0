"""Unit tests of the sampling verifiers' parts: the draws, the reference twins, q validation,
and the shared logits processing against Hugging Face's own processors (float64 throughout)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from draftkit.errors import ContractViolationError, IncompatiblePartsError, UnsupportedSamplingError
from draftkit.logits import LogitsPipeline, sample_from_probs
from draftkit.types import Draft, DraftKind, SamplingParams, SourceCapabilities, TokenTree
from draftkit.verify.random import RandomStream
from draftkit.verify.reference import exact_law, speculative_reference, walk_reference
from draftkit.verify.sampling import StreamDraws, target_probs
from draftkit.verify.speculative import (
    SpeculativeVerifier,
    check_stochastic_draft,
    proposal_law,
    speculative_walk,
)
from draftkit.verify.walk import SampleWalkVerifier, sample_walk
from strategies import trees

SMALL_V = 6


# --------------------------------------------------------------------------- the draws


@given(seed=st.integers(0, 2**63 - 1), position=st.integers(0, 10_000), level=st.integers(0, 8),
       attempt=st.integers(0, 12), prob=st.floats(0.0, 1.0))
def test_accept_is_a_uniform_below_the_probability(seed, position, level, attempt, prob):
    stream = RandomStream(seed)
    u = stream.extra_uniforms(position + level, attempt + 1)[attempt]
    assert StreamDraws(stream, position).accept(level, attempt, prob) == (u < prob)


@given(seed=st.integers(0, 2**63 - 1), position=st.integers(0, 10_000), level=st.integers(0, 8))
def test_choose_uses_the_plain_samplers_uniform(seed, position, level):
    stream = RandomStream(seed)
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64)
    want = sample_from_probs(probs, stream.token_uniform(position + level))
    assert StreamDraws(stream, position).choose(level, probs) == want


@given(weights=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1.0)), min_size=1, max_size=8).filter(
    lambda w: sum(w) > 0))
def test_inverse_cdf_gives_each_token_an_interval_of_its_probability(weights):
    """``choose`` returns k on [c_{k-1}, c_k) of the normalised CDF (up to 1e-12 at the ends),
    which is what ``exact_law`` assumes; zero-probability tokens are never returned."""
    probs = torch.tensor(weights, dtype=torch.float64)
    cdf = np.cumsum(np.asarray(weights)) / sum(weights)
    lo = 0.0
    for k, w in enumerate(weights):
        hi = float(cdf[k])
        if w > 0:
            for u in (lo + 1e-12, (lo + hi) / 2, min(hi - 1e-12, np.nextafter(1.0, 0.0))):
                assert sample_from_probs(probs, float(u)) == k
        lo = hi
    for u in [*np.linspace(0.0, 1.0, 101)[:-1], *cdf[:-1], np.nextafter(1.0, 0.0)]:
        assert weights[sample_from_probs(probs, float(u))] > 0


# --------------------------------------------------------------------------- fast vs reference


def random_law(gen: np.random.Generator, zeros: float) -> np.ndarray:
    w = gen.dirichlet(np.ones(SMALL_V) * 0.7)
    w[gen.random(SMALL_V) < zeros] = 0.0
    if w.sum() == 0:
        w[gen.integers(SMALL_V)] = 1.0
    return w / w.sum()


@st.composite
def stochastic_cases(draw):
    """A random tree whose siblings are draws from their parent's q, with p rows that have zeros."""
    _, parents = draw(trees(vocab=SMALL_V, max_nodes=10))
    n = len(parents)
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q_of_parent = {parent: random_law(gen, 0.3) for parent in range(-1, n)}
    tokens = [int(gen.choice(SMALL_V, p=q_of_parent[parent])) for parent in parents]
    q = np.stack([q_of_parent[parent] for parent in parents]) if n else np.zeros((0, SMALL_V))
    p = np.stack([random_law(gen, 0.4) for _ in range(n + 1)])
    return tokens, parents, p, q


@given(case=stochastic_cases(), seed=st.integers(0, 2**63 - 1), position=st.integers(0, 1000))
def test_speculative_walk_matches_the_reference(case, seed, position):
    tokens, parents, p, q = case
    tree = TokenTree.from_parents(tokens, parents)
    fast = speculative_walk(tree, torch.from_numpy(p), torch.from_numpy(q), StreamDraws(RandomStream(seed), position))
    slow = speculative_reference(tokens, parents, p.tolist(), q.tolist(), StreamDraws(RandomStream(seed), position))
    assert (fast.accepted_nodes, fast.bonus_token) == slow


@given(case=stochastic_cases(), seed=st.integers(0, 2**63 - 1), position=st.integers(0, 1000))
def test_sample_walk_matches_the_reference(case, seed, position):
    tokens, parents, p, _ = case
    tree = TokenTree.from_parents(tokens, parents)
    fast = sample_walk(tree, torch.from_numpy(p), StreamDraws(RandomStream(seed), position))
    slow = walk_reference(tokens, parents, p.tolist(), StreamDraws(RandomStream(seed), position))
    assert (fast.accepted_nodes, fast.bonus_token) == slow


@given(seed=st.integers(0, 2**32 - 1), width=st.integers(1, 3), merge=st.booleans())
def test_first_token_law_is_p_over_all_draws(seed, width, merge):
    """Average over every draw of ``width`` root candidates from q (merged as a trie would, or
    not) and over the verifier's decisions: the first token is distributed as p, for the fast
    and for the reference function."""
    gen = np.random.default_rng(seed)
    p0, q0 = random_law(gen, 0.4), random_law(gen, 0.3)
    support = [t for t in range(SMALL_V) if q0[t] > 0]
    laws = {"fast": np.zeros(SMALL_V), "slow": np.zeros(SMALL_V)}
    for combo in itertools.product(support, repeat=width):
        weight = float(np.prod([q0[t] for t in combo]))
        tokens = list(dict.fromkeys(combo)) if merge else list(combo)
        parents = [-1] * len(tokens)
        tree = TokenTree.from_parents(tokens, parents)
        p = np.stack([p0] + [random_law(gen, 0.0) for _ in tokens])
        q = np.stack([q0] * len(tokens))
        pt, qt = torch.from_numpy(p), torch.from_numpy(q)

        def fast(d, tree=tree, pt=pt, qt=qt):
            return speculative_walk(tree, pt, qt, d).emitted_tokens(tree)[0]

        def slow(d, tokens=tokens, parents=parents, p=p, q=q):
            accepted, bonus = speculative_reference(tokens, parents, p.tolist(), q.tolist(), d)
            return tokens[accepted[0]] if accepted else bonus

        for name, run in (("fast", fast), ("slow", slow)):
            for token, prob in exact_law(run).items():
                laws[name][token] += weight * prob
    for law in laws.values():
        assert np.abs(law - p0).max() < 1e-9


# --------------------------------------------------------------------------- q validation


def chain_tree(tokens, probs):
    return TokenTree.from_parents(tokens, list(range(-1, len(tokens) - 1)), probs=probs)


def test_missing_probs_are_refused():
    with pytest.raises(ContractViolationError, match="probs"):
        proposal_law(TokenTree.from_parents([1], [-1]), 4)


def test_empty_tree_needs_no_probs():
    assert proposal_law(TokenTree.empty(), 4).shape == (0, 4)


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (torch.tensor([[0.5, 0.5, 0.5, 0.0]], dtype=torch.float64), "sums to"),
        (torch.tensor([[2.0, -1.0, 0.0, 0.0]], dtype=torch.float64), "negative"),
        (torch.tensor([[float("nan"), 0.5, 0.5, 0.0]], dtype=torch.float64), "non-finite"),
        (torch.tensor([[0.5, 0.0, 0.5, 0.0]], dtype=torch.float64), "probability 0"),
        (torch.tensor([[0.25] * 5], dtype=torch.float64), "shape"),
    ],
)
def test_improper_q_is_refused(probs, match):
    with pytest.raises(ContractViolationError, match=match):
        proposal_law(chain_tree([1], probs), 4)


def test_siblings_must_share_q():
    q1 = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    q2 = torch.tensor([0.25, 0.25, 0.5, 0.0], dtype=torch.float64)
    tree = TokenTree.from_parents([0, 1], [-1, -1], probs=torch.stack([q1, q2]))
    with pytest.raises(ContractViolationError, match="sibling"):
        proposal_law(tree, 4)


def test_float32_q_is_accepted_and_renormalised_in_float64():
    q = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float32)
    law = proposal_law(chain_tree([2], q), 4)
    assert law.dtype == torch.float64
    assert abs(float(law.sum()) - 1.0) < 1e-15


@pytest.mark.parametrize(
    ("draft", "match"),
    [
        (Draft((np.array([1, 2]),)), "without probs"),
        (Draft((np.array([1]), np.array([2])), (1.0, 2.0), probs=(torch.ones(1, 4) / 4,) * 2), "weights"),
        (Draft((np.array([1, 2, 3]), np.array([2, 1, 0])), probs=(torch.ones(3, 4) / 4,) * 2), "budget"),
    ],
)
def test_stochastic_drafts_that_would_be_biased_by_a_builder_are_refused(draft, match):
    with pytest.raises(ContractViolationError, match=match):
        check_stochastic_draft(draft, max_nodes=5, max_depth=3)


def test_depth_clamped_drafts_count_only_what_is_kept():
    draft = Draft((np.array([1, 2, 3]), np.array([2, 1, 0])), probs=(torch.ones(3, 4) / 4,) * 2)
    check_stochastic_draft(draft, max_nodes=4, max_depth=2)  # 2 + 2 tokens kept: fits


# --------------------------------------------------------------------------- verifier classes


def test_sampling_verifiers_declare_disjoint_draft_kinds():
    det = SourceCapabilities()
    sto = SourceCapabilities(draft_kind=DraftKind.STOCHASTIC)
    assert SampleWalkVerifier().supports(det) and not SampleWalkVerifier().supports(sto)
    assert SpeculativeVerifier().supports(sto) and not SpeculativeVerifier().supports(det)


@pytest.mark.parametrize("verifier", [SampleWalkVerifier(), SpeculativeVerifier()])
def test_sampling_verifiers_refuse_greedy_requests(verifier):
    sampling = SamplingParams()
    logits = torch.zeros(1, 4, dtype=torch.float64)
    with pytest.raises(IncompatiblePartsError):
        verifier.verify(TokenTree.empty(), logits, sampling, LogitsPipeline(sampling, np.array([0])), None, 0)


def test_speculative_verifier_refuses_repetition_penalty():
    sampling = SamplingParams(do_sample=True, repetition_penalty=1.2)
    logits = torch.zeros(1, 4, dtype=torch.float64)
    with pytest.raises(UnsupportedSamplingError):
        SpeculativeVerifier().verify(
            TokenTree.empty(), logits, sampling, LogitsPipeline(sampling, np.array([0])), RandomStream(0), 0
        )


@given(seed=st.integers(0, 2**63 - 1), position=st.integers(0, 100))
def test_empty_tree_is_one_plain_sampling_step(seed, position):
    sampling = SamplingParams(do_sample=True, temperature=0.8, top_k=3)
    logits = torch.randn(1, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(seed % 1000))
    process = LogitsPipeline(sampling, np.array([1, 2]))
    stream = RandomStream(seed)
    want = sample_from_probs(process(logits, [np.empty(0, np.int64)])[0].softmax(-1), stream.token_uniform(position))
    for verifier in (SampleWalkVerifier(), SpeculativeVerifier()):
        verdict = verifier.verify(TokenTree.empty(), logits, sampling, process, stream, position)
        assert verdict.accepted_nodes == () and verdict.bonus_token == want


def test_walk_applies_repetition_penalty_along_each_path():
    """The walk's law at a node uses that node's own path: a sibling's token is not penalised."""
    tree = TokenTree.from_parents([1, 2], [-1, -1])
    logits = torch.zeros(3, 4, dtype=torch.float64)
    logits[1] = torch.tensor([0.0, 4.0, 4.0, 0.0])  # after token 1
    logits[2] = torch.tensor([0.0, 4.0, 4.0, 0.0])  # after token 2
    sampling = SamplingParams(do_sample=True, repetition_penalty=3.0, top_k=1)
    process = LogitsPipeline(sampling, np.array([0], dtype=np.int64))
    probs = target_probs(tree, logits, sampling, process)
    assert probs[1].tolist() == [0.0, 0.0, 1.0, 0.0]  # 1 is penalised on its own path only
    assert probs[2].tolist() == [0.0, 1.0, 0.0, 0.0]  # 2 is penalised on its own path only


# --------------------------------------------------------------------------- HF parity of the processing


@given(
    seed=st.integers(0, 10_000),
    temperature=st.sampled_from([0.3, 0.7, 1.0, 1.7]),
    top_k=st.one_of(st.none(), st.integers(1, 12)),
    top_p=st.one_of(st.none(), st.floats(0.05, 1.0)),
    min_p=st.one_of(st.none(), st.floats(0.0, 0.5)),
    penalty=st.one_of(st.none(), st.floats(0.5, 2.0)),
)
def test_logits_pipeline_matches_hugging_face_processors(seed, temperature, top_k, top_p, min_p, penalty):
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    gen = torch.Generator().manual_seed(seed)
    vocab = 10
    logits = torch.randn(1, vocab, dtype=torch.float64, generator=gen) * 3
    context = torch.randint(0, vocab, (1, 6), generator=gen)
    params = SamplingParams(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                            repetition_penalty=penalty)
    ours = LogitsPipeline(params, context[0].numpy())(logits, [np.empty(0, np.int64)])
    hf = logits.clone()
    if penalty is not None and penalty != 1.0:
        hf = RepetitionPenaltyLogitsProcessor(float(penalty))(context, hf)
    if temperature != 1.0:
        hf = TemperatureLogitsWarper(temperature)(context, hf)
    if top_k is not None:
        hf = TopKLogitsWarper(top_k)(context, hf)
    if top_p is not None and top_p < 1.0:
        hf = TopPLogitsWarper(top_p)(context, hf)
    if min_p is not None:
        hf = MinPLogitsWarper(min_p)(context, hf)
    assert torch.equal(torch.isinf(ours), torch.isinf(hf))
    finite = torch.isfinite(ours)
    assert torch.allclose(ours[finite], hf[finite], rtol=0, atol=1e-12)
