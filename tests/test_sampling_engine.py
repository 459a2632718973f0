"""Sampling through the engine: seeded reproducibility, supports, default verifiers, refusals.

Models are tiny *float64* random models: the sample-and-walk verifier reproduces
plain sampling token for token only when the tree forward and the one-token
forwards give the same probabilities; in float64 their rounding differences
(~1e-16) essentially never move a uniform across a CDF boundary, so any
difference here is a real bug.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import draftkit
from draftkit.errors import (
    ContractViolationError,
    IncompatiblePartsError,
    UnsupportedSamplingError,
)
from draftkit.testing.sources import OracleSource, RandomQSource, RandomSource, ScriptedSource
from draftkit.types import Draft, DraftKind, SamplingParams, SourceCapabilities
from draftkit.verify.speculative import SpeculativeVerifier
from draftkit.verify.walk import SampleWalkVerifier
from helpers import cached_model
from strategies import VOCAB, architectures, prompts


@st.composite
def sampling_settings(draw: st.DrawFn, penalty: bool = True) -> dict:
    settings: dict = {"temperature": draw(st.sampled_from([0.5, 0.7, 1.0, 1.3]))}
    if draw(st.booleans()):
        settings["top_k"] = draw(st.integers(1, 20))
    if draw(st.booleans()):
        settings["top_p"] = draw(st.floats(0.3, 1.0))
    if draw(st.booleans()):
        settings["min_p"] = draw(st.floats(0.0, 0.3))
    if penalty and draw(st.booleans()):
        settings["repetition_penalty"] = draw(st.floats(1.05, 1.8))
    return settings


def hf_support_check(model: torch.nn.Module, sequence: list[int], prompt_len: int, settings: dict) -> None:
    """Every new token has a finite score under Hugging Face's own processors (an independent
    implementation of temperature / top-k / top-p / min-p / repetition penalty)."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if settings.get("repetition_penalty"):
        procs.append(RepetitionPenaltyLogitsProcessor(float(settings["repetition_penalty"])))
    if settings.get("temperature", 1.0) != 1.0:
        procs.append(TemperatureLogitsWarper(settings["temperature"]))
    if settings.get("top_k"):
        procs.append(TopKLogitsWarper(settings["top_k"]))
    if settings.get("top_p") is not None and settings["top_p"] < 1.0:
        procs.append(TopPLogitsWarper(settings["top_p"]))
    if settings.get("min_p") is not None:
        procs.append(MinPLogitsWarper(settings["min_p"]))
    with torch.no_grad():
        logits = model(torch.tensor([sequence[:-1]])).logits[0]
    for t in range(prompt_len, len(sequence)):
        scores = procs(torch.tensor([sequence[:t]]), logits[t - 1][None].clone())[0]
        assert torch.isfinite(scores[sequence[t]]), f"token {sequence[t]} at {t} is outside the support"


def make_source(kind: str, reference: list[int]) -> object:
    if kind == "pld":
        return "pld"
    if kind == "oracle":
        return OracleSource(reference)
    if kind == "oracle-tree":
        return OracleSource(reference, decoys=3)
    return RandomSource(seed=len(reference))


@given(
    arch=architectures,
    prompt=prompts(),
    max_new=st.integers(1, 24),
    seed=st.integers(0, 2**63 - 1),
    settings=sampling_settings(),
    kind=st.sampled_from(["pld", "oracle", "oracle-tree", "random"]),
    tree=st.sampled_from(["trie", "chain"]),
    budget=st.integers(1, 12),
)
def test_walk_reproduces_plain_sampling_token_for_token(arch, prompt, max_new, seed, settings, kind, tree, budget):
    model = cached_model(arch, VOCAB)
    kwargs = dict(max_new_tokens=max_new, do_sample=True, seed=seed, eos_token_id=[], **settings)
    plain = draftkit.PlainDecoder(model).generate([prompt], **kwargs).sequences[0].tolist()
    decoder = draftkit.SpeculativeDecoder(model, source=make_source(kind, plain), tree=tree, budget=budget)
    out = decoder.generate([prompt], **kwargs)
    assert out.sequences[0].tolist() == plain
    if kind.startswith("oracle"):
        # The oracle drafts exactly what plain sampling drew with these uniforms: all accepted.
        room = [max_new - sum(out.stats.accept_lengths[:i]) for i in range(out.stats.steps)]
        assert out.stats.accept_lengths == [min(budget + 1, r) for r in room]
    hf_support_check(model, plain, len(prompt), settings)


@given(
    arch=architectures,
    prompt=prompts(),
    max_new=st.integers(1, 16),
    seed=st.integers(0, 2**63 - 1),
    settings=sampling_settings(penalty=False),
    width=st.integers(1, 3),
    tree=st.sampled_from(["trie", "chain"]),
)
def test_speculative_sampling_is_seeded_and_stays_in_the_support(arch, prompt, max_new, seed, settings, width, tree):
    model = cached_model(arch, VOCAB)
    source = RandomQSource.random(VOCAB, table_seed=seed % 97, width=width, length=3)
    decoder = draftkit.SpeculativeDecoder(model, source=source, tree=tree, budget=9)
    kwargs = dict(max_new_tokens=max_new, do_sample=True, seed=seed, eos_token_id=[], **settings)
    first = decoder.generate([prompt], **kwargs)
    again = decoder.generate([prompt], **kwargs)
    assert first.sequences.tolist() == again.sequences.tolist()
    assert first.stats.emitted == max_new
    hf_support_check(model, first.sequences[0].tolist(), len(prompt), settings)


# --------------------------------------------------------------------------- the default verifier


def test_registered_sampling_verifiers_cover_each_draft_kind_exactly_once():
    registry = draftkit.build_registry(load_entry_points=False)
    for kind in DraftKind:
        caps = SourceCapabilities(draft_kind=kind)
        lossless = [
            name for name in registry.names("verifier")
            if (v := registry.verifier(name)).samples and v.supports(caps)
        ]
        assert len(lossless) == 1, (kind, lossless)


@pytest.mark.parametrize(
    ("source", "expected"),
    [("pld", SampleWalkVerifier), (RandomQSource.random(VOCAB), SpeculativeVerifier)],
)
def test_the_engine_picks_the_lossless_sampling_verifier(source, expected):
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source=source)
    assert isinstance(decoder._pick_verifier(SamplingParams(do_sample=True)), expected)
    assert decoder._pick_verifier(SamplingParams()).name == "greedy"


def test_stochastic_source_with_greedy_decoding_uses_the_greedy_verifier():
    model = cached_model("llama", VOCAB)
    decoder = draftkit.SpeculativeDecoder(model, source=RandomQSource.random(VOCAB, width=2, length=3))
    out = decoder.generate([[1, 2, 3]], max_new_tokens=12, eos_token_id=[])
    plain = draftkit.PlainDecoder(model).generate([[1, 2, 3]], max_new_tokens=12, eos_token_id=[])
    assert out.sequences.tolist() == plain.sequences.tolist()


# --------------------------------------------------------------------------- refusals


def test_greedy_verifier_refuses_sampling():
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), verifier="greedy")
    with pytest.raises(IncompatiblePartsError, match="sampling"):
        decoder.generate([[1, 2, 3]], max_new_tokens=4, do_sample=True, seed=0)


def test_walk_refuses_greedy_decoding():
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), verifier="walk")
    with pytest.raises(IncompatiblePartsError, match="greedy"):
        decoder.generate([[1, 2, 3]], max_new_tokens=4)


def test_walk_refuses_stochastic_sources():
    with pytest.raises(IncompatiblePartsError, match="walk"):
        draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source=RandomQSource.random(VOCAB), verifier="walk")


def test_speculative_refuses_deterministic_sources():
    with pytest.raises(IncompatiblePartsError, match="speculative"):
        draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source="pld", verifier="speculative")


def test_repetition_penalty_with_a_stochastic_source_is_refused():
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source=RandomQSource.random(VOCAB))
    with pytest.raises(UnsupportedSamplingError, match="repetition_penalty"):
        decoder.generate([[1, 2, 3]], max_new_tokens=4, do_sample=True, repetition_penalty=1.3, seed=0)


class _StochasticScript(ScriptedSource):
    capabilities = SourceCapabilities(draft_kind=DraftKind.STOCHASTIC)


UNIFORM = torch.full((VOCAB,), 1.0 / VOCAB, dtype=torch.float64)


@pytest.mark.parametrize(
    ("script", "match"),
    [
        (lambda r: Draft.chain([1, 2]), "without probs"),
        (lambda r: Draft((np.array([1]), np.array([2])), (1.0, 3.0), probs=(UNIFORM[None],) * 2), "weights"),
        (lambda r: Draft((np.array([1, 2]),) * 3, probs=(torch.stack([UNIFORM] * 2),) * 3), "budget"),
        (lambda r: Draft((np.array([1, 2]),), probs=(torch.stack([UNIFORM * 2] * 2),)), "tree node 0 .* sums to 2,"),
        (lambda r: Draft((np.array([1, 2]),), probs=(torch.stack([UNIFORM, UNIFORM * float("nan")]),)),
         "non-finite"),
    ],
)
def test_broken_stochastic_drafts_are_refused_naming_the_source(script, match):
    source = _StochasticScript(script)
    decoder = draftkit.SpeculativeDecoder(cached_model("llama", VOCAB), source=source, budget=5)
    with pytest.raises(ContractViolationError, match=f"{source.name!r}.*{match}"):
        decoder.generate([[1, 2, 3]], max_new_tokens=6, do_sample=True, seed=0)


def test_greedy_decoding_does_not_constrain_stochastic_drafts():
    """The contract only matters for rejection sampling; greedy verification is exact for any tree."""
    model = cached_model("llama", VOCAB)
    over_budget = _StochasticScript(lambda r: Draft((np.array([1, 2]),) * 3, (1.0, 2.0, 3.0)))
    decoder = draftkit.SpeculativeDecoder(model, source=over_budget, budget=5)
    out = decoder.generate([[1, 2, 3]], max_new_tokens=6, eos_token_id=[])
    plain = draftkit.PlainDecoder(model).generate([[1, 2, 3]], max_new_tokens=6, eos_token_id=[])
    assert out.sequences.tolist() == plain.sequences.tolist()


@given(seed=st.integers(0, 2**63 - 1), width=st.integers(1, 4), length=st.integers(1, 4),
       max_nodes=st.integers(1, 12), max_depth=st.integers(1, 4))
def test_random_q_source_follows_the_stochastic_contract(seed, width, length, max_nodes, max_depth):
    from draftkit.types import DraftRequest
    from draftkit.verify.speculative import check_stochastic_draft

    source = RandomQSource.random(VOCAB, table_seed=3, width=width, length=length)
    sampling = SamplingParams(do_sample=True, temperature=0.8, top_k=5, seed=seed)
    context = np.array([4, 8, 15, 16, 23, 42], dtype=np.int64)
    request = DraftRequest(context=context, prompt_length=6, max_depth=max_depth, max_nodes=max_nodes,
                           vocab_size=VOCAB, sampling=sampling)
    draft = source.propose(request)
    check_stochastic_draft(draft, max_nodes, max_depth)
    for seq, rows in zip(draft.sequences, draft.probs, strict=True):
        assert len(seq) <= min(length, max_depth)
        for j, token in enumerate(seq.tolist()):
            want = source.law(np.concatenate([context, seq[:j]]), sampling)
            assert torch.equal(rows[j], want) and float(want[token]) > 0
            assert int(torch.isfinite(torch.log(want)).sum()) <= 5  # the request's top-k applies to q
    again = source.propose(request)
    assert [s.tolist() for s in again.sequences] == [s.tolist() for s in draft.sequences]


def test_a_generation_config_that_samples_is_followed_when_the_call_does_not_say():
    """Like model.generate: do_sample, temperature and top-k come from generation_config when omitted."""
    from draftkit.testing.models import tiny_model

    model = tiny_model("llama")  # a private copy: the test edits its generation config
    model.generation_config.do_sample = True
    model.generation_config.temperature = 1.5
    model.generation_config.top_k = 20
    prompt = [[1, 2, 3, 1, 2, 3, 1]]
    plain = draftkit.PlainDecoder(model)
    spec = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    for seed in range(3):
        implicit = spec.generate(prompt, max_new_tokens=20, seed=seed).sequences.tolist()
        explicit = plain.generate(prompt, max_new_tokens=20, do_sample=True, temperature=1.5, top_k=20,
                                  seed=seed).sequences.tolist()
        assert implicit == explicit
    greedy = plain.generate(prompt, max_new_tokens=20, do_sample=False).sequences.tolist()
    assert spec.generate(prompt, max_new_tokens=20, do_sample=False).sequences.tolist() == greedy
    sampled = {tuple(spec.generate(prompt, max_new_tokens=20, seed=s).sequences[0].tolist()) for s in range(4)}
    assert len(sampled) > 1
