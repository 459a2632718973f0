"""Greedy losslessness of the ``rest`` source through the engine.

The models are tiny random *float64* models (see ``draftkit.testing.models``): a
tree forward and single-token forwards use different matrix shapes, and in
float32 a near-tie could flip an argmax between them; in float64 any difference
is a real bug. Stores are built from text the model itself generates (so drafts
are accepted often) and from random tokens (drafts mostly rejected); either way
the output must equal plain greedy decoding and Hugging Face ``generate``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import draftkit
from draftkit.sources.rest import Rest, build_datastore
from helpers import cached_model, hf_greedy
from strategies import VOCAB, prompts

ARCHS = ("llama", "gpt2", "qwen2")
EOS = 3


def generated_corpus(arch: str, eos: int | None, n_docs: int = 6, length: int = 48) -> list[list[int]]:
    """What the model says after a few seed prompts: a corpus on which its drafts hit."""
    model = cached_model(arch, VOCAB, eos=eos)
    rng = np.random.default_rng(7)
    docs = []
    for _ in range(n_docs):
        seed = rng.integers(0, VOCAB, size=3).tolist()
        out = draftkit.PlainDecoder(model).generate([seed], max_new_tokens=length, eos_token_id=eos)
        docs.append(out.sequences[0].tolist())
    return docs


@cache
def store_path(kind: str, arch: str, root: str) -> str:
    path = Path(root) / f"{kind}-{arch}"
    if kind == "generated":
        docs = generated_corpus(arch, None)
    elif kind == "generated-eos":
        docs = generated_corpus(arch, EOS)
        docs = [d + [EOS] + d[:5] for d in docs]  # EOS inside documents: drafts must stop there
    else:
        rng = np.random.default_rng(3)
        docs = [rng.integers(0, VOCAB, size=200).tolist() for _ in range(10)]
    build_datastore(path, docs, VOCAB, chunk_tokens=150)  # several chunks
    return str(path)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("rest-stores"))


def check_lossless(arch: str, source: Rest, prompt: list[int], n: int, eos: int | None) -> draftkit.DecodeStats:
    model = cached_model(arch, VOCAB, eos=eos)
    plain = draftkit.PlainDecoder(model).generate([prompt], max_new_tokens=n, eos_token_id=eos)
    spec = draftkit.SpeculativeDecoder(model, source=source, budget=16).generate(
        [prompt], max_new_tokens=n, eos_token_id=eos
    )
    assert spec.sequences.tolist() == plain.sequences.tolist()
    assert spec.sequences[0].tolist() == hf_greedy(model, prompt, n, eos)
    return spec.stats


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("include_context", [False, True])
def test_generated_store_is_lossless_and_hits(arch: str, include_context: bool, root: str):
    source = Rest.open(store_path("generated", arch, root), include_context=include_context)
    accepted = 0
    for seed_doc in generated_corpus(arch, None)[:3]:
        prompt = seed_doc[:6]  # the model will say what the store holds
        stats = check_lossless(arch, source, prompt, 40, None)
        accepted += stats.accepted
    assert accepted > 40  # the store really drafts (many tokens per step)


@pytest.mark.parametrize("arch", ARCHS)
def test_random_store_is_lossless(arch: str, root: str):
    source = Rest.open(store_path("random", arch, root))
    check_lossless(arch, source, [5, 6, 7, 8], 30, None)


@pytest.mark.parametrize("arch", ARCHS)
def test_eos_in_store_and_output(arch: str, root: str):
    source = Rest.open(store_path("generated-eos", arch, root))
    for seed_doc in generated_corpus(arch, EOS)[:2]:
        check_lossless(arch, source, seed_doc[:5], 40, EOS)


@given(prompt=prompts(), arch=st.sampled_from(ARCHS), n=st.integers(1, 24),
       kind=st.sampled_from(["generated", "random"]), include_context=st.booleans())
def test_random_prompts_are_lossless(root, prompt, arch, n, kind, include_context):
    source = Rest.open(store_path(kind, arch, root), include_context=include_context)
    check_lossless(arch, source, prompt, n, None)


def test_registered_by_name(root: str):
    model = cached_model("llama", VOCAB)
    prompt = generated_corpus("llama", None)[0][:6]
    dec = draftkit.SpeculativeDecoder(model, source="rest", budget=16,
                                      source_options={"path": store_path("generated", "llama", root)})
    assert dec.source.name == "rest"
    out = dec.generate([prompt], max_new_tokens=20)
    assert out.sequences[0].tolist() == hf_greedy(model, prompt, 20, None)
    assert out.stats.accepted > 0
