"""Tree attention and KV-cache rollback against plain causal forwards (float64 models)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers.cache_utils import DynamicCache

from draftkit.engine.target import TargetModel
from draftkit.types import TokenTree
from helpers import cached_model
from strategies import architectures, prompts, trees


def plain_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0]


@given(arch=architectures, prompt=prompts(), tree=trees())
def test_each_node_sees_exactly_its_root_path(arch, prompt, tree):
    """Logits of every node from one tree forward == a causal forward over its path."""
    model = cached_model(arch)
    target = TargetModel(model)
    target.start(torch.tensor(prompt))
    tt = TokenTree.from_parents(*tree)
    logits = target.forward_tree(prompt[-1], tt)
    assert logits.shape == (tt.size + 1, model.config.vocab_size)
    root = plain_logits(model, prompt)[-1]
    torch.testing.assert_close(logits[0], root, rtol=0, atol=1e-9)
    for i in range(tt.size):
        full = prompt + tt.path_tokens(i).tolist()
        torch.testing.assert_close(logits[i + 1], plain_logits(model, full)[-1], rtol=0, atol=1e-9)


@st.composite
def tree_and_path(draw):
    tokens, parents = draw(trees())
    tt = TokenTree.from_parents(tokens, parents)
    if tt.size == 0 or draw(st.booleans()) is False and tt.size < 3:
        return tokens, parents, ()
    leaf = draw(st.integers(0, tt.size - 1))
    return tokens, parents, tuple(int(i) for i in tt.path(leaf))


def cache_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


@given(arch=architectures, prompt=prompts(), case=tree_and_path(), steps=st.integers(1, 3))
def test_cache_after_commit_equals_fresh_prefill(arch, prompt, case, steps):
    """After any verify + commit, the KV cache equals a prefill of the accepted sequence."""
    tokens, parents, path = case
    model = cached_model(arch)
    target = TargetModel(model)
    target.start(torch.tensor(prompt))
    sequence = list(prompt)
    tt = TokenTree.from_parents(tokens, parents)
    for _ in range(steps):
        target.forward_tree(sequence[-1], tt)
        target.commit(path)
        sequence += [int(tt.tokens[i]) for i in path] + [5]  # 5: an arbitrary bonus token
    fresh = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([sequence[:-1]]), past_key_values=fresh, use_cache=True)
    got = cache_tensors(target.cache)
    want = cache_tensors(fresh)
    assert len(got) == len(want)
    for (k1, v1), (k2, v2) in zip(got, want, strict=True):
        assert k1.shape == k2.shape
        torch.testing.assert_close(k1, k2, rtol=0, atol=1e-9)
        torch.testing.assert_close(v1, v2, rtol=0, atol=1e-9)


def test_tree_validation_rejects_forward_parents():
    import pytest

    with pytest.raises(ValueError, match="earlier node"):
        TokenTree.from_parents([1, 2], [1, -1])
    with pytest.raises(ValueError, match="earlier node"):
        TokenTree.from_parents([1], [0])


def test_ancestor_mask_and_depths():
    tt = TokenTree.from_parents([10, 11, 12, 13], [-1, 0, -1, 1])
    assert tt.depths.tolist() == [1, 2, 1, 3]
    assert tt.path(3).tolist() == [0, 1, 3]
    assert tt.children(-1).tolist() == [0, 2]
    expected = np.array(
        [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 1]], dtype=bool
    )
    assert (tt.ancestors == expected).all()
