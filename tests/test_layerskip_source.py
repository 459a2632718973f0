"""The ``layerskip`` draft source: losslessness, KV-cache hygiene, exiting, sampled drafts.

All models are tiny *float64* random models with 4 layers: a verification forward
over k tokens and k single-token draft forwards use different matrix shapes, and
in float32 a near-tie could flip an argmax between them; in float64 the rounding
is far below the gaps between random logits, so any difference is a real bug.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import draftkit
from draftkit import DraftKind, DraftRequest, SamplingParams, StepFeedback, TokenTree, Verdict
from draftkit.engine import TargetModel
from draftkit.errors import ContractViolationError, InvalidInputError
from draftkit.logits import LogitsPipeline
from draftkit.sources.layerskip import ExitState, LayerSkip, SkipSet, update_threshold
from draftkit.sources.layerskip import source as source_module
from draftkit.testing.models import ARCHITECTURES
from helpers import cached_model, hf_greedy
from strategies import VOCAB, prompts

LAYERS = 4


@st.composite
def skip_sets(draw: st.DrawFn) -> SkipSet:
    idx = st.integers(0, LAYERS - 1)
    return SkipSet(LAYERS, frozenset(draw(st.sets(idx))), frozenset(draw(st.sets(idx))))


def model4(arch: str, eos: int | None = None) -> torch.nn.Module:
    return cached_model(arch, eos=eos, layers=LAYERS)


def plain(model: torch.nn.Module, prompt: list[int], max_new: int, eos: int | None = None) -> list[int]:
    return draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=max_new, eos_token_id=eos).sequences[0].tolist()


# -- losslessness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
@settings(max_examples=8)
@given(data=st.data())
def test_greedy_output_equals_plain_decoding(arch: str, data: st.DataObject) -> None:
    eos = data.draw(st.sampled_from([None, 5]), label="eos")
    model = model4(arch, eos)
    prompt = data.draw(prompts(), label="prompt")
    max_new = data.draw(st.integers(1, 40), label="max_new")
    skip = data.draw(skip_sets(), label="skip")
    tree = data.draw(st.sampled_from(["chain", "trie"]), label="tree")
    source = LayerSkip(
        skip,
        threshold=data.draw(st.floats(0.0, 1.0), label="threshold"),
        adaptive=data.draw(st.booleans(), label="adaptive"),
        max_draft=data.draw(st.integers(1, 12), label="max_draft"),
        branch_k=data.draw(st.sampled_from([1, 3]), label="branch_k") if tree == "trie" else 1,
        branch_below=data.draw(st.floats(0.0, 1.0), label="branch_below"),
    )
    budget = data.draw(st.integers(1, 32), label="budget")
    out = draftkit.SpeculativeDecoder(model, source=source, tree=tree, budget=budget).generate(
        [prompt], max_new_tokens=max_new, eos_token_id=eos
    )
    assert out.sequences[0].tolist() == plain(model, prompt, max_new, eos)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_default_source_by_name_equals_hf_generate(arch: str) -> None:
    """``source="layerskip"`` works out of the box (default middle band) and matches HF."""
    model = model4(arch)
    prompt = [3, 14, 15, 92, 65, 35, 89, 79]
    decoder = draftkit.SpeculativeDecoder(model, source="layerskip", budget=8)  # fixed: stats are asserted
    out = decoder.generate([prompt], max_new_tokens=30)
    assert out.sequences[0].tolist() == hf_greedy(model, prompt, 30, None)
    assert decoder.source.prepare(model) == SkipSet.middle_band(LAYERS)
    assert out.stats.drafted > 0


def test_a_sliding_window_shorter_than_the_layout_check_is_supported() -> None:
    """Mistral with a window of 4: the layout check once used 7 tokens and refused the model
    ("a customised variant?"); drafts attend without the window, the output stays HF's."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=4)).to(torch.float64).eval()
    model.generation_config.eos_token_id = None
    prompt = [5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 7, 8]
    out = draftkit.SpeculativeDecoder(model, source="layerskip", budget=6).generate([prompt], max_new_tokens=20)
    assert out.sequences[0].tolist() == hf_greedy(model, prompt, 20, None)


def test_options_by_name_with_a_skip_set_file(tmp_path) -> None:
    model = model4("qwen2")
    path = SkipSet(LAYERS, {1}, {1, 2}).for_model(model).save(tmp_path / "skip.json")
    decoder = draftkit.SpeculativeDecoder(
        model, source="layerskip", source_options={"skip_set": str(path), "max_draft": 4}
    )
    out = decoder.generate([[1, 2, 3]], max_new_tokens=20)
    assert out.sequences[0].tolist() == plain(model, [1, 2, 3], 20)
    assert decoder.source.prepare(model).key == ((1,), (1, 2))
    assert max(out.stats.accept_lengths) <= 5


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("tree", ["chain", "trie"])
def test_empty_skip_set_drafts_exactly_the_target(arch: str, tree: str) -> None:
    """Nothing skipped = the draft is the target: every step emits max_draft + 1 tokens."""
    model = model4(arch)
    max_draft, max_new = 6, 45
    source = LayerSkip(SkipSet.empty(LAYERS), max_draft=max_draft, threshold=0.0, adaptive=False)
    out = draftkit.SpeculativeDecoder(model, source=source, tree=tree, budget=16).generate(
        [[7, 8, 9, 10]], max_new_tokens=max_new
    )
    lengths = out.stats.accept_lengths
    full, rest = divmod(max_new, max_draft + 1)
    assert lengths == [max_draft + 1] * full + ([rest] if rest else [])
    assert out.sequences[0].tolist() == plain(model, [7, 8, 9, 10], max_new)


def test_one_token_prompt_with_an_empty_cache() -> None:
    """With a 1-token prompt the cache starts empty; drafting must still leave it consistent."""
    for arch in ("llama", "gpt2"):
        model = model4(arch)
        source = LayerSkip(SkipSet(LAYERS, {0}, {2}), threshold=0.0, adaptive=False, max_draft=4)
        out = draftkit.SpeculativeDecoder(model, source=source).generate([[42]], max_new_tokens=25)
        assert out.sequences[0].tolist() == plain(model, [42], 25)


# -- KV cache -------------------------------------------------------------------------------------


class Recording(LayerSkip):
    """LayerSkip that keeps the feedback it is given."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.feedback: list[StepFeedback] = []

    def observe(self, feedback: StepFeedback) -> None:
        self.feedback.append(feedback)
        super().observe(feedback)


def assert_cache_is_prefill_of(model: torch.nn.Module, cache, tokens: list[int]) -> None:
    with torch.no_grad():
        fresh = model(torch.tensor([tokens]), use_cache=True).past_key_values
    assert len(cache.layers) == len(fresh.layers)
    for i, (mine, ref) in enumerate(zip(cache.layers, fresh.layers, strict=True)):
        assert mine.keys.shape == ref.keys.shape, f"layer {i}"
        torch.testing.assert_close(mine.keys, ref.keys, rtol=0, atol=1e-10, msg=f"keys of layer {i}")
        torch.testing.assert_close(mine.values, ref.values, rtol=0, atol=1e-10, msg=f"values of layer {i}")


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("tree, branch_k", [("chain", 1), ("trie", 4)])
def test_cache_after_draft_and_verify_equals_a_fresh_prefill(arch: str, tree: str, branch_k: int) -> None:
    model = model4(arch)
    prompt = [11, 12, 13, 11, 12, 60, 2]
    max_new = 40
    source = Recording(SkipSet(LAYERS, {1, 2}, {1}), branch_k=branch_k, branch_below=1.0, threshold=0.3)
    # A fixed budget: budget="auto" sizes trees from timings, so which branches get verified would vary.
    decoder = draftkit.SpeculativeDecoder(model, source=source, tree=tree, budget=16)
    sequence = list(prompt)
    checked = 0
    for emitted in decoder.stream([prompt], max_new_tokens=max_new):
        sequence.extend(emitted)
        if len(sequence) - len(prompt) >= max_new:
            break  # the last step ends generation and is not committed
        # Invariant: every context token but the pending last one, in every layer.
        assert_cache_is_prefill_of(model, decoder.target.cache, sequence[:-1])
        checked += 1
    assert checked >= 3
    assert sequence == plain(model, prompt, max_new)
    assert sum(len(f.verdict.accepted_nodes) for f in source.feedback) > 0  # drafts were accepted
    if branch_k > 1:  # some accepted path went through an alternative branch
        assert any(
            f.verdict.accepted_nodes != tuple(range(len(f.verdict.accepted_nodes))) for f in source.feedback
        )


def start_target(arch: str, prompt: list[int]) -> tuple[TargetModel, list[tuple[torch.Tensor, torch.Tensor]]]:
    target = TargetModel(model4(arch))
    target.start(torch.tensor(prompt))
    snapshot = [(layer.keys.clone(), layer.values.clone()) for layer in target.cache.layers]
    return target, snapshot


def request_for(target: TargetModel, prompt: list[int], **kw) -> DraftRequest:
    fields = dict(context=np.asarray(prompt, dtype=np.int64), prompt_length=len(prompt), max_depth=16,
                  max_nodes=32, vocab_size=VOCAB, target=target)
    fields.update(kw)
    return DraftRequest(**fields)


def assert_unchanged(target: TargetModel, snapshot) -> None:
    assert len(target.cache.layers) == len(snapshot)
    for (keys, values), layer in zip(snapshot, target.cache.layers, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_propose_restores_every_cache_layer_exactly(arch: str) -> None:
    prompt = [5, 6, 7, 8, 9]
    target, snapshot = start_target(arch, prompt)
    source = LayerSkip(SkipSet(LAYERS, {0, 2}, {3}), threshold=0.0, adaptive=False, max_draft=5)
    draft = source.propose(request_for(target, prompt))
    assert len(draft.sequences[0]) == 5
    assert_unchanged(target, snapshot)


def test_cache_is_restored_when_drafting_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = [5, 6, 7, 8, 9]
    target, snapshot = start_target("llama", prompt)
    real = source_module.skip_forward
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(source_module, "skip_forward", failing)
    source = LayerSkip(SkipSet.empty(LAYERS), threshold=0.0, adaptive=False)
    with pytest.raises(RuntimeError, match="boom"):
        source.propose(request_for(target, prompt))
    assert_unchanged(target, snapshot)


def test_draft_respects_depth_nodes_and_eos() -> None:
    prompt = [5, 6, 7]
    target, _ = start_target("gpt2", prompt)
    source = LayerSkip(SkipSet.empty(LAYERS), threshold=0.0, adaptive=False, max_draft=10)
    assert len(source.propose(request_for(target, prompt, max_depth=3)).sequences[0]) == 3
    assert len(source.propose(request_for(target, prompt, max_nodes=2)).sequences[0]) == 2
    every = frozenset(range(VOCAB))  # any token is an end token: stop after the first
    assert len(source.propose(request_for(target, prompt, eos_token_ids=every)).sequences[0]) == 1


def test_needs_the_target() -> None:
    source = LayerSkip()
    assert source.capabilities.needs_target
    with pytest.raises(ContractViolationError, match="needs the target"):
        source.propose(DraftRequest(np.asarray([1, 2]), 2, 4, 4, VOCAB))


# -- adaptive draft-exiting -----------------------------------------------------------------------


def paper_rule(th: float, steps: list[tuple[int, int]], max_draft: int) -> float:
    """Draft & Verify's update, transcribed step by step (auto_parameters = [1, 0.5, 0.9, 1e-2, 0.9])."""
    matchness = 0.0
    for accepted, drafted in steps:
        matchness = 0.5 * matchness + 0.5 * (accepted / drafted)
        if matchness < 0.9:
            new = th + 0.01
        elif drafted == max_draft:
            new = th
        else:
            new = th - 0.01
        th = 0.9 * th + 0.1 * new
    return th


@given(
    th=st.floats(0.1, 0.9),
    steps=st.lists(st.integers(1, 8).flatmap(lambda d: st.tuples(st.integers(0, d), st.just(d))), max_size=40),
)
def test_threshold_update_is_the_papers_rule(th: float, steps: list[tuple[int, int]]) -> None:
    state = ExitState(th)
    for accepted, drafted in steps:
        state = update_threshold(state, accepted, drafted, 8)
    assert state.threshold == pytest.approx(paper_rule(th, steps, 8), abs=1e-12)


def test_threshold_adapts_to_acceptance() -> None:
    model = model4("llama")
    prompt = [[4, 8, 15, 16, 23, 42]]
    good = LayerSkip(SkipSet.empty(LAYERS), threshold=0.5, max_draft=12)  # always right, stops early
    draftkit.SpeculativeDecoder(model, source=good).generate(prompt, max_new_tokens=60)
    assert good.threshold < 0.5
    everything = set(range(LAYERS))
    bad = LayerSkip(SkipSet(LAYERS, everything, everything), threshold=0.3)  # a bigram model: often wrong
    draftkit.SpeculativeDecoder(model, source=bad).generate(prompt, max_new_tokens=60)
    assert bad.threshold > 0.3
    bad.begin(np.asarray(prompt[0]))  # each request starts afresh
    assert bad.threshold == 0.3


def test_feedback_after_an_eos_is_not_counted() -> None:
    source = LayerSkip(threshold=0.5)
    source._last_cap = 8
    tree = TokenTree.from_parents([1, 2, 3, 4], [-1, 0, 1, 2])
    # The verifier accepted 4 nodes but generation ended at the 2nd (an EOS): only 2 count.
    feedback = StepFeedback(np.asarray([9]), tree, Verdict((0, 1, 2, 3), 7), np.asarray([1, 2]))
    source.observe(feedback)
    assert source.state == update_threshold(ExitState(0.5), 2, 4, 8)


def test_fixed_threshold_when_not_adaptive() -> None:
    source = LayerSkip(threshold=0.7, adaptive=False)
    tree = TokenTree.from_parents([1, 2], [-1, 0])
    source.observe(StepFeedback(np.asarray([9]), tree, Verdict((), 7), np.asarray([7])))
    assert source.threshold == 0.7


# -- sampled drafts -------------------------------------------------------------------------------


def test_sampled_draft_reports_the_q_it_sampled_from() -> None:
    prompt = [5, 6, 7, 8, 9]
    target, snapshot = start_target("llama", prompt)
    sampling = SamplingParams(do_sample=True, temperature=0.8, top_k=30, seed=11)
    source = LayerSkip(SkipSet.empty(LAYERS), drafting="sample", threshold=0.0, adaptive=False, max_draft=5)
    assert source.capabilities.draft_kind is DraftKind.STOCHASTIC
    request = request_for(target, prompt, sampling=sampling)
    draft = source.propose(request)
    again = source.propose(request)  # seeded request: reproducible
    assert_unchanged(target, snapshot)
    tokens, q = draft.sequences[0], draft.probs[0]
    assert np.array_equal(tokens, again.sequences[0]) and torch.equal(q, again.probs[0])
    assert q.dtype == torch.float64 and q.shape == (len(tokens), VOCAB) == (5, VOCAB)
    torch.testing.assert_close(q.sum(-1), torch.ones(5, dtype=torch.float64))
    assert all(float(q[j, t]) > 0 for j, t in enumerate(tokens.tolist()))
    assert int((q > 0).sum(-1).max()) <= 30  # top-k was applied, as for the target
    # Nothing skipped: q is the target's own processed distribution p at the same rows.
    tree = TokenTree.from_parents(tokens, np.arange(-1, len(tokens) - 1))
    logits = target.forward_tree(prompt[-1], tree)
    p = LogitsPipeline(sampling, request.context).probs(logits, [np.empty(0, np.int64)] * (len(tokens) + 1))
    torch.testing.assert_close(q, p[: len(tokens)], rtol=0, atol=1e-9)


def test_sampled_mode_drafts_greedily_for_greedy_requests() -> None:
    prompt = [5, 6, 7, 8, 9]
    target, _ = start_target("qwen2", prompt)
    greedy = LayerSkip(SkipSet(LAYERS, {1}, {2}), threshold=0.0, adaptive=False, max_draft=4)
    sampled = LayerSkip(SkipSet(LAYERS, {1}, {2}), drafting="sample", threshold=0.0, adaptive=False, max_draft=4)
    a = greedy.propose(request_for(target, prompt, sampling=SamplingParams()))
    b = sampled.propose(request_for(target, prompt, sampling=SamplingParams()))
    assert np.array_equal(a.sequences[0], b.sequences[0]) and b.probs is None


def test_branching_needs_greedy_drafting() -> None:
    with pytest.raises(InvalidInputError, match="greedy"):
        LayerSkip(drafting="sample", branch_k=2)
    with pytest.raises(InvalidInputError):
        LayerSkip(drafting="beam")


# -- end to end under sampling (the engine picks the verifier by draft kind) ---------------------


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_greedy_drafts_under_sampling_reproduce_plain_sampling(arch: str) -> None:
    """A deterministic draft is verified by sample-and-walk: same tokens as plain sampling, same seed."""
    model = model4(arch)
    kwargs = dict(max_new_tokens=30, do_sample=True, seed=5, temperature=0.9, top_p=0.9)
    reference = draftkit.PlainDecoder(model).generate([[7, 8, 9, 10]], **kwargs)
    source = LayerSkip(SkipSet(LAYERS, {1}, {2}), threshold=0.2)
    out = draftkit.SpeculativeDecoder(model, source=source).generate([[7, 8, 9, 10]], **kwargs)
    assert out.sequences.tolist() == reference.sequences.tolist()


def test_sampled_drafts_of_the_full_model_are_always_accepted() -> None:
    """Nothing skipped: q = p, so rejection sampling accepts every drafted token.

    (A fixed budget: drafting with the full model costs as much as it saves, so budget="auto"
    would rightly stop drafting.)"""
    model = model4("qwen2")
    source = LayerSkip(SkipSet.empty(LAYERS), drafting="sample", threshold=0.0, adaptive=False, max_draft=6)
    out = draftkit.SpeculativeDecoder(model, source=source, tree="chain", budget=8).generate(
        [[7, 8, 9, 10]], max_new_tokens=45, do_sample=True, seed=3, temperature=0.9, top_k=40
    )
    assert out.stats.accept_lengths == [7] * 6 + [3]


def test_public_names() -> None:
    import draftkit.sources.layerskip as layerskip

    assert isinstance(LayerSkip(), draftkit.DraftSource)
    for name in layerskip.__all__:
        assert getattr(layerskip, name) is not None
    assert draftkit.default_registry().create("source", "layerskip", max_draft=3).max_draft == 3
