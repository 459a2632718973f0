"""The ``aded`` source through the engine: lossless output and the persistence semantics.

Models are tiny random float64 transformers (``draftkit.testing.models``): in
float64 a k-token verification pass and k single-token passes give the same
argmax, so "identical to plain decoding" is an exact check.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from draftkit import PlainDecoder, SpeculativeDecoder
from draftkit.sources.aded import Aded, build_matrix
from draftkit.testing.models import tiny_model

JIT = not numba.config.DISABLE_JIT
VOCAB = 97
EOS = 5
NEW = 40 if JIT else 24
ITER = 150 if JIT else 30
PROMPTS = [
    [11, 12, 13, 14, 15, 16, 11, 12, 13],
    [40, 41, 42, 40, 41, 42, 40],
    [7, 90, 33, 2, 60, 61, 62, 63, 64, 65, 66],
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen2"])
def model(request):
    return tiny_model(request.param, VOCAB, seed=1, eos_token_id=EOS)


@pytest.fixture(scope="module")
def plain_outputs(model):
    dec = PlainDecoder(model)
    return [dec.generate(torch.tensor([p]), max_new_tokens=NEW).sequences for p in PROMPTS]


def matrices(plain_outputs):
    """Corpus-built (the model's own outputs: drafts hit), empty and adversarial (random) matrices."""
    own = build_matrix([s[0].numpy() for s in plain_outputs], VOCAB, eos_token_ids=[EOS])
    rng = np.random.default_rng(0)
    noise = build_matrix([rng.integers(0, VOCAB, 20_000)], VOCAB, top_k=12)
    return {"corpus": own, "empty": None, "adversarial": noise}


@pytest.mark.parametrize("kind", ["corpus", "empty", "adversarial"])
def test_greedy_output_identical_to_plain_decoding(model, plain_outputs, kind):
    matrix = matrices(plain_outputs)[kind]
    source = Aded(matrix=matrix, iterations=ITER) if matrix is not None else Aded(iterations=ITER)
    dec = SpeculativeDecoder(model, source=source, tree="trie", budget=32)
    total_accepted = 0
    for prompt, want in zip(PROMPTS, plain_outputs, strict=True):
        out = dec.generate(torch.tensor([prompt]), max_new_tokens=NEW)
        assert torch.equal(out.sequences, want)
        assert out.stats.emitted == want.shape[1] - len(prompt)
        total_accepted += out.stats.accepted
    if kind == "corpus":
        assert total_accepted > 0  # the drafts do hit: the test exercises accepted trees


def test_identical_to_hf_generate(model, plain_outputs):
    source = Aded(matrix=matrices(plain_outputs)["corpus"], iterations=ITER)
    dec = SpeculativeDecoder(model, source=source, budget=64)
    for prompt in PROMPTS[:2]:
        ids = torch.tensor([prompt])
        want = model.generate(ids, max_new_tokens=NEW, do_sample=False, eos_token_id=EOS, pad_token_id=EOS)
        got = dec.generate(ids, max_new_tokens=NEW, eos_token_id=EOS)
        assert torch.equal(got.sequences, want)


def test_registered_name_and_chain_builder(model, plain_outputs):
    dec = SpeculativeDecoder(model, source="aded", tree="chain", source_options={"iterations": ITER})
    out = dec.generate(torch.tensor([PROMPTS[0]]), max_new_tokens=NEW)
    assert torch.equal(out.sequences, plain_outputs[0])


def test_reset_per_request_gives_identical_runs(model):
    source = Aded(persist=False, iterations=ITER)
    dec = SpeculativeDecoder(model, source=source, budget=32)  # fixed: "auto" learns across requests
    first = dec.generate(torch.tensor([PROMPTS[1]]), max_new_tokens=NEW).stats
    second = dec.generate(torch.tensor([PROMPTS[1]]), max_new_tokens=NEW).stats
    assert (first.steps, first.drafted, first.accepted, first.accept_lengths) == (
        second.steps, second.drafted, second.accepted, second.accept_lengths)


def test_persistence_raises_acceptance_on_a_repeated_workload(model):
    source = Aded(persist=True, iterations=ITER)
    dec = SpeculativeDecoder(model, source=source, budget=32)  # fixed: "auto" learns across requests
    prompt = torch.tensor([PROMPTS[2]])
    first = dec.generate(prompt, max_new_tokens=NEW)
    second = dec.generate(prompt, max_new_tokens=NEW)
    assert torch.equal(first.sequences, second.sequences)
    assert second.stats.accepted > first.stats.accepted
    assert second.stats.steps < first.stats.steps
    assert source.num_inserted > 0
    source.reset()  # back to the (empty) corpus state: the first run again
    again = dec.generate(prompt, max_new_tokens=NEW)
    assert again.stats.accept_lengths == first.stats.accept_lengths


def test_nothing_after_eos_is_learnt(model):
    """A prompt with an EOS inside: no learnt trigram starts with, or continues after, the EOS."""
    source = Aded(vocab_size=VOCAB, iterations=ITER)
    dec = SpeculativeDecoder(model, source=source)
    dec.generate(torch.tensor([[20, 21, EOS, 22, 23, 24]]), max_new_tokens=NEW, eos_token_id=EOS)
    for a, b, _ in source.to_matrix().rows():
        assert a != EOS and b != EOS


@pytest.mark.parametrize("matrix", [False, True])
def test_prompt_is_learnt_with_this_requests_eos_when_nothing_is_drafted(model, matrix):
    """max_new_tokens=1 leaves no room for a draft, so propose never runs and observe learns
    the prompt: it must use this request's EOS ids, not the source's stale (here: empty) set."""
    prompt = [20, 21, EOS, 22, 23, 24]
    source = Aded(matrix=build_matrix([np.arange(30, 60)], VOCAB)) if matrix else Aded(vocab_size=VOCAB)
    dec = SpeculativeDecoder(model, source=source)
    out = dec.generate(torch.tensor([prompt]), max_new_tokens=1, eos_token_id=EOS)
    assert out.stats.steps == 1 and out.stats.drafted == 0
    learnt = {(a, b): [c for c, _ in succ] for a, b, succ in source.to_matrix().rows()}
    assert learnt[(20, 21)] == [EOS]  # the prompt was learnt ...
    assert (21, EOS) not in learnt and (EOS, 22) not in learnt  # ... but nothing across its EOS
    assert learnt[(22, 23)] == [24]
