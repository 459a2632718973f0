"""Greedy verification with a separable LM head: logits only for the rows the walk reaches.

float64 tiny models (no near-ties can flip an argmax): the lazy path must give
exactly plain decoding's tokens, compute fewer logits rows than the tree has
(a few rows ahead along the drafted path per product of the head), and be
switched off for models whose forward does more than apply the head.
"""

from __future__ import annotations

import pytest
import torch

import draftkit
from draftkit.engine.target import SeparableHead, TargetModel
from draftkit.testing.models import ARCHITECTURES, tiny_model
from draftkit.testing.sources import OracleSource
from helpers import hf_greedy


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_tested_architecture_has_a_separable_head(arch):
    assert TargetModel(tiny_model(arch)).head is not None


class _RowCounter:
    """Rows per product of the LM head, whether the model's forward applies it or the engine's
    lazy logits do (:meth:`SeparableHead.logits`, which may bypass the module for a linear head)."""

    def __init__(self, model, monkeypatch):
        self.rows = []
        self._inside = False
        module = model.get_output_embeddings()
        self._hook = module.register_forward_hook(self._module_called)
        original = SeparableHead.logits

        def counted(head, hidden):
            if head.head is module:
                self.rows.append(hidden.shape[0])
            self._inside = True
            try:
                return original(head, hidden)
            finally:
                self._inside = False

        monkeypatch.setattr(SeparableHead, "logits", counted)

    def _module_called(self, _module, args, _out):
        if not self._inside:
            self.rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])

    def remove(self):
        self._hook.remove()


def _count_head_rows(model, monkeypatch):
    counter = _RowCounter(model, monkeypatch)
    return counter.rows, counter


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_greedy_steps_compute_only_the_walked_rows(arch, monkeypatch):
    model = tiny_model(arch)
    prompt = [5, 6, 7, 8]
    expected = hf_greedy(model, prompt, 40, None)
    decoder = draftkit.SpeculativeDecoder(model, source=OracleSource(expected, decoys=3), budget=16)
    rows, handle = _count_head_rows(model, monkeypatch)
    try:
        out = decoder.generate([prompt], max_new_tokens=40)
    finally:
        handle.remove()
    assert out.sequences[0].tolist() == expected
    # Rows along the drafted path come in one product: at most one product per emitted token,
    # at least one per step, and far fewer rows than the trees have.
    assert out.stats.steps <= len(rows) < out.stats.emitted  # the oracle's long walks read chains
    assert sum(rows) < out.stats.drafted + out.stats.steps
    assert out.stats.drafted > out.stats.emitted


@pytest.mark.parametrize("repetition_penalty", [1.0, 1.3])
def test_seeded_sampling_walks_lazy_rows_and_matches_plain_sampling(repetition_penalty, monkeypatch):
    model = tiny_model("llama")
    prompt = [1, 2, 3, 1, 2, 3, 1, 2]
    options = dict(do_sample=True, seed=3, temperature=0.7, top_p=0.9, repetition_penalty=repetition_penalty)
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=24, **options)
    decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    rows, handle = _count_head_rows(model, monkeypatch)
    try:
        out = decoder.generate([prompt], max_new_tokens=24, **options)
    finally:
        handle.remove()
    assert out.sequences.tolist() == plain.sequences.tolist()
    assert out.stats.steps <= len(rows) <= out.stats.emitted  # rows come in chains along the path
    assert sum(rows) <= out.stats.drafted + out.stats.steps


def test_sources_reading_node_logits_keep_whole_tree_logits(monkeypatch):
    from draftkit.testing.sources import ScriptedSource
    from draftkit.types import Draft, SourceCapabilities

    source = ScriptedSource(lambda request: Draft.chain([1, 2, 3]))
    source.capabilities = SourceCapabilities(wants_node_logits=True)
    model = tiny_model("llama")
    decoder = draftkit.SpeculativeDecoder(model, source=source, budget=8)
    rows, handle = _count_head_rows(model, monkeypatch)
    try:
        out = decoder.generate([[4, 5, 6]], max_new_tokens=12)
    finally:
        handle.remove()
    assert sum(rows) == out.stats.drafted + out.stats.steps  # every row of every verified tree
    assert all(f.node_logits is not None for f in source.feedback[:-1])


def test_a_model_with_extra_logit_processing_falls_back_and_stays_exact():
    """A forward that changes logits after the head (like soft-capping) must not be split."""
    model = tiny_model("llama")
    bias = torch.linspace(-3.0, 3.0, model.config.vocab_size, dtype=torch.float64)
    inner = model.forward

    def biased_forward(*args, **kwargs):
        out = inner(*args, **kwargs)
        out.logits = out.logits + bias
        return out

    model.forward = biased_forward
    target = TargetModel(model)
    assert target.head is None
    prompt = [9, 8, 7, 9, 8, 7]
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=30)
    out = draftkit.SpeculativeDecoder(model, source="pld", budget=8).generate([prompt], max_new_tokens=30)
    assert out.sequences.tolist() == plain.sequences.tolist()


def test_lazy_rows_come_in_chains_along_the_preferred_path():
    import numpy as np

    from draftkit.engine.target import LazyLogits, preferred_next_rows
    from draftkit.types import TokenTree

    # Root children: node 0 (score 0.2) and node 1 (score 0.9); node 1 -> 2 -> 3; node 0 -> 4.
    tree = TokenTree.from_parents(np.array([10, 11, 12, 13, 14]), np.array([-1, -1, 1, 2, 0]),
                                  scores=np.array([0.2, 0.9, 0.8, 0.7, 0.1]))
    assert preferred_next_rows(tree).tolist() == [2, 5, 3, 4, -1, -1]
    head = torch.nn.Linear(4, 7, bias=False).double()
    hidden = torch.randn(6, 4, dtype=torch.float64)
    lazy = LazyLogits(head, hidden, 7, tree)
    expected = head(hidden)
    assert torch.equal(lazy[0:1], expected[0:1])  # computes rows 0, 2, 3, 4 in one product
    assert lazy.rows_computed == 4
    for row in (2, 3, 4):
        assert torch.allclose(lazy[row : row + 1], expected[row : row + 1])
    assert lazy.rows_computed == 4
    assert torch.allclose(lazy[1:2], expected[1:2])  # off the path: computed with its own chain (1 -> 5)
    assert lazy.rows_computed == 6
    assert torch.allclose(lazy[0:6], expected)
    assert LazyLogits(head, hidden, 7, tree, chain_rows=2)[0:1].shape == (1, 7)


@pytest.mark.parametrize("bias", [False, True])
def test_a_linear_head_is_applied_in_its_stored_layout_with_the_same_logits(bias):
    """``SeparableHead.logits`` multiplies by the weight as stored (faster on CPUs for a few rows);
    float64, so the rows must agree with the module to rounding, bias included."""
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 31, bias=bias).double()
    split = SeparableHead(torch.nn.Identity(), head)
    for rows in (1, 3, 17):
        hidden = torch.randn(rows, 8, dtype=torch.float64)
        got = split.logits(hidden)
        assert got.shape == (rows, 31) and got.is_contiguous()
        assert torch.allclose(got, head(hidden), rtol=0, atol=1e-12)


def test_a_head_that_is_not_a_plain_linear_layer_is_called_as_a_module():
    class ScaledHead(torch.nn.Linear):  # a subclass may change forward: never bypass it
        def forward(self, x):
            return 2.0 * super().forward(x)

    head = ScaledHead(8, 5, bias=False).double()
    hidden = torch.randn(3, 8, dtype=torch.float64)
    assert torch.equal(SeparableHead(torch.nn.Identity(), head).logits(hidden), head(hidden))


def test_a_hook_put_on_the_head_after_the_decoder_is_built_still_runs():
    """A forward hook (here: a token ban) added to the LM head later must act on every step, as it
    does in plain decoding; the fast head product is only for a head with nothing attached (float64)."""
    model = tiny_model("llama")
    prompt = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]
    decoder = draftkit.SpeculativeDecoder(model, source="pld", budget=8)
    banned = hf_greedy(model, prompt, 12, None)[len(prompt) + 3]

    def ban(_module, _args, out):
        out = out.clone()
        out[..., banned] = -1e9
        return out

    handle = model.get_output_embeddings().register_forward_hook(ban)
    try:
        plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=12, eos_token_id=None)
        out = decoder.generate([prompt], max_new_tokens=12, eos_token_id=None)
    finally:
        handle.remove()
    assert out.sequences.tolist() == plain.sequences.tolist()
    assert banned not in out.sequences[0, len(prompt):].tolist()


def test_a_head_whose_weight_is_loaded_around_each_call_keeps_working():
    """Offloading (as accelerate does it) keeps the weight elsewhere between calls and wraps the
    instance's forward to load it; the head must be called as a module, never read directly."""
    import functools

    model = tiny_model("llama")
    head = model.get_output_embeddings()
    stored = head.weight.detach().clone()
    original = head.forward

    def offloaded(module, *args, **kwargs):
        module.weight = torch.nn.Parameter(stored, requires_grad=False)
        try:
            return original(*args, **kwargs)
        finally:
            module.weight = torch.nn.Parameter(torch.empty_like(stored, device="meta"), requires_grad=False)

    head.weight = torch.nn.Parameter(torch.empty_like(stored, device="meta"), requires_grad=False)
    head.forward = functools.partial(offloaded, head)
    prompt = [9, 8, 7, 9, 8, 7, 9]
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=16, eos_token_id=None)
    out = draftkit.SpeculativeDecoder(model, source="pld", budget=8).generate([prompt], max_new_tokens=16, eos_token_id=None)
    assert out.sequences.tolist() == plain.sequences.tolist()
