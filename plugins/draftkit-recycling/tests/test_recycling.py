"""Tests of the ``recycling`` source, run the way a third-party plugin author would.

* Discovery: the source is found through the package's ``draftkit`` entry point
  (the package must be installed, e.g. ``pip install -e plugins/draftkit-recycling``).
* Losslessness: greedy output equals :class:`draftkit.PlainDecoder` and Hugging
  Face ``model.generate(do_sample=False)``; seeded sampling equals plain seeded
  sampling. The models are tiny random **float64** models
  (:func:`draftkit.testing.models.tiny_model`), so near-ties between logits
  cannot flip an argmax between a tree pass and single-token passes.
* The matrix: fast top-k equals its readable specification (ties included); an
  observed step writes exactly the documented rows.
* The template and its expansion: budget, depth, connectivity, distinct
  siblings, no expansion past a stop token, and a trie rebuilds the tree.
* State: acceptance rises on a repeated workload; ``persist=False`` and
  ``reset()`` really forget.
* Public API only: the package imports nothing private from draftkit.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from draftkit_recycling import (
    UNKNOWN,
    Recycling,
    Template,
    build_template,
    draft_from_expansion,
    empty_matrix,
    estimate_rank_probs,
    expand,
    rank_hits,
    record,
    rows_to_record,
    top_candidates,
)
from draftkit_recycling.matrix import record_reference, top_candidates_reference
from draftkit_recycling.template import default_rank_probs
from hypothesis import given, settings
from hypothesis import strategies as st

import draftkit
from draftkit.interfaces import DraftSource
from draftkit.testing.models import tiny_model
from draftkit.types import Draft, DraftRequest, StepFeedback, TokenTree, Verdict

VOCAB = 97
#: A fixed budget: the default ("auto") adapts per decoder, and several tests compare runs step by step.
BUDGET = 32
PACKAGE_SRC = Path(__file__).resolve().parents[1] / "src" / "draftkit_recycling"


@functools.lru_cache(maxsize=16)
def model(arch: str, vocab: int = VOCAB, eos: int | None = None, seed: int = 0) -> torch.nn.Module:
    """Tiny float64 model; cached because building one costs more than a test example."""
    return tiny_model(arch, vocab, seed=seed, eos_token_id=eos)


def hf_greedy(m: torch.nn.Module, prompt: list[int], max_new_tokens: int, eos: int | None) -> list[int]:
    """Hugging Face's own greedy decoding, cut after the first EOS."""
    ids = torch.tensor([prompt])
    out = m.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                     pad_token_id=eos if eos is not None else 0, attention_mask=torch.ones_like(ids))
    seq = out[0].tolist()
    if eos is not None and eos in seq[len(prompt):]:
        seq = seq[: seq.index(eos, len(prompt)) + 1]
    return seq


# --------------------------------------------------------------------------- discovery


def test_keeps_draftkits_source_contract() -> None:
    """draftkit's packaged checks for third-party sources (greedy, stops, seeded sampling, three architectures)."""
    from draftkit.testing.contract import check_source

    report = check_source(Recycling, prompts=3)
    assert report.mean_tokens_per_step > 1.0
    static = check_source(lambda: Recycling(adapt_template=False), architectures=("llama",), prompts=3)
    assert static.mean_tokens_per_step > 1.0


def test_entry_point_registers_the_source() -> None:
    registry = draftkit.build_registry(load_entry_points=True)
    info = registry.info("source", "recycling")
    assert info.distribution == "draftkit-recycling"
    assert info.plugin == "recycling"
    assert not [f for f in registry.failures if f.plugin == "recycling"]
    source = registry.source("recycling", k=4, tree_size=10)
    assert isinstance(source, Recycling) and isinstance(source, DraftSource)
    assert (source.k, source.template.size) == (4, 10)


def test_source_comes_from_the_entry_point_not_from_draftkit() -> None:
    assert "recycling" not in draftkit.build_registry(load_entry_points=False).names("source")


def test_decoder_resolves_the_name_with_options() -> None:
    decoder = draftkit.SpeculativeDecoder(model("llama"), source="recycling",
                                          source_options={"k": 4, "tree_size": 12, "persist": False}, budget=BUDGET)
    assert isinstance(decoder.source, Recycling)
    assert decoder.source.persist is False and decoder.source.template.max_fanout <= 4


def test_bad_options_say_what_to_do() -> None:
    with pytest.raises(draftkit.InvalidInputError, match="k must be"):
        Recycling(k=0)
    with pytest.raises(draftkit.InvalidInputError, match="rank_probs has 3 ranks"):
        Recycling(k=2, rank_probs=(0.5, 0.2, 0.1))
    with pytest.raises(draftkit.InvalidInputError, match="disjoint events"):
        Recycling(rank_probs=(0.9, 0.5))
    with pytest.raises(draftkit.InvalidInputError, match="persist must be true or false, got 'no'"):
        Recycling(persist="no")  # as `--source-option persist=no` gives it; it once read as True
    with pytest.raises(draftkit.InvalidInputError, match="adapt_template must be true or false"):
        Recycling(adapt_template=1)
    with pytest.raises(draftkit.PluginError, match="recycling"):
        draftkit.SpeculativeDecoder(model("llama"), source="recycling", source_options={"depth": 3}, budget=BUDGET)


def test_package_uses_only_public_draftkit_api() -> None:
    """An outside author only has draftkit's public modules; so does this package."""
    public = {"draftkit", "draftkit.types", "draftkit.interfaces"}
    imported: set[str] = set()
    for path in PACKAGE_SRC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    private = {m for m in imported if m.split(".")[0] == "draftkit" and m not in public
               and not m.startswith("draftkit.testing")}
    assert "draftkit" in imported and not private


# --------------------------------------------------------------------------- losslessness


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
@given(
    prompt=st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=16),
    max_new=st.integers(1, 40),
    budget=st.sampled_from([1, 3, 16, 64]),
    max_depth=st.sampled_from([None, 1, 4]),
    use_eos=st.booleans(),
)
def test_greedy_matches_plain_and_hf(arch: str, prompt: list[int], max_new: int, budget: int,
                                     max_depth: int | None, use_eos: bool) -> None:
    """One source instance is shared by every example of an architecture, so the
    matrix carries over between requests, as it does for users (persist=True)."""
    eos = 3 if use_eos else None
    m = model(arch, eos=eos)
    source = _shared_source(arch, eos)
    decoder = draftkit.SpeculativeDecoder(m, source=source, budget=budget, max_depth=max_depth)
    out = decoder.generate([prompt], max_new_tokens=max_new, eos_token_id=eos)
    plain = draftkit.PlainDecoder(m).generate([prompt], max_new_tokens=max_new, eos_token_id=eos)
    assert out.sequences.tolist() == plain.sequences.tolist()
    assert out.sequences[0].tolist() == hf_greedy(m, prompt, max_new, eos)


@functools.lru_cache(maxsize=8)
def _shared_source(arch: str, eos: int | None) -> Recycling:
    if arch == "gpt2":
        return Recycling(adapt_template=False)  # the paper's static template
    if arch != "qwen2":
        return Recycling()  # the default adaptive template
    return Recycling(adapt_every=24)  # one architecture re-shapes its template often


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_drafts_are_accepted_and_output_is_exact(arch: str) -> None:
    """Guards the equality tests against vacuity: drafts really get verified and accepted."""
    m = model(arch)
    prompt = [[11, 12, 13, 14, 15, 16]]
    decoder = draftkit.SpeculativeDecoder(m, source="recycling", budget=BUDGET)
    plain = draftkit.PlainDecoder(m).generate(prompt, max_new_tokens=48)
    for _ in range(2):
        out = decoder.generate(prompt, max_new_tokens=48)
        assert out.sequences.tolist() == plain.sequences.tolist()
    assert out.stats.accepted > 0 and out.stats.steps < plain.stats.steps


def test_default_decoder_settings_are_exact() -> None:
    """With the decoder's default budget policy, which may prune the tree by node score."""
    m = model("llama")
    prompt = [[21, 22, 23, 24, 25]]
    decoder = draftkit.SpeculativeDecoder(m, source="recycling")
    plain = draftkit.PlainDecoder(m).generate(prompt, max_new_tokens=40)
    for _ in range(2):
        assert decoder.generate(prompt, max_new_tokens=40).sequences.tolist() == plain.sequences.tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_seeded_sampling_matches_plain(seed: int) -> None:
    """Drafts are a deterministic function of past steps, so sample-and-walk is exact."""
    m = model("llama")
    prompt = [[5, 6, 7, 8, 9]]
    kwargs = dict(max_new_tokens=40, do_sample=True, temperature=0.7, top_k=20, seed=seed)
    plain = draftkit.PlainDecoder(m).generate(prompt, **kwargs)
    decoder = draftkit.SpeculativeDecoder(m, source="recycling", budget=BUDGET)
    for _ in range(2):  # the second run drafts from a warm matrix
        assert decoder.generate(prompt, **kwargs).sequences.tolist() == plain.sequences.tolist()


def test_one_source_across_models_of_different_vocabularies() -> None:
    """A matrix is tied to one vocabulary; logits of another width start a new one."""
    source = Recycling()
    for vocab in (97, 61, 97):
        m = model("llama", vocab=vocab, seed=1)
        prompt = [[1, 2, 3, 4, 5]]
        out = draftkit.SpeculativeDecoder(m, source=source, budget=BUDGET).generate(prompt, max_new_tokens=30)
        assert out.sequences.tolist() == draftkit.PlainDecoder(m).generate(prompt, max_new_tokens=30).sequences.tolist()
        assert source.matrix is not None and source.matrix.shape == (vocab, source.k)


# --------------------------------------------------------------------------- the matrix


@st.composite
def logit_rows(draw: st.DrawFn) -> np.ndarray:
    """Small integer logits (many ties), some -inf (masked tokens)."""
    m = draw(st.integers(1, 6))
    v = draw(st.integers(1, 12))
    values = draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, float("-inf")]), min_size=m * v, max_size=m * v))
    return np.asarray(values, dtype=np.float64).reshape(m, v)


@given(logits=logit_rows(), k=st.integers(1, 10))
def test_top_candidates_match_the_reference_with_ties(logits: np.ndarray, k: int) -> None:
    got = top_candidates(torch.from_numpy(logits), k)
    assert got.dtype == np.int32 and got.shape == (logits.shape[0], k)
    assert np.array_equal(got, top_candidates_reference(logits, k))


def test_top_candidates_breaks_ties_by_smaller_id() -> None:
    logits = torch.tensor([[1.0, 5.0, 5.0, 0.0, 5.0]])
    assert top_candidates(logits, 2).tolist() == [[1, 2]]
    assert top_candidates(logits, 4).tolist() == [[1, 2, 4, 0]]


@given(
    tokens=st.lists(st.integers(0, 9), min_size=0, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_record_last_occurrence_wins(tokens: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    cands = rng.integers(0, 10, size=(len(tokens), 3)).astype(np.int32)
    fast, slow = empty_matrix(10, 3), empty_matrix(10, 3)
    record(fast, tokens, cands)
    record_reference(slow, tokens, cands)
    assert np.array_equal(fast, slow)


@st.composite
def verified_steps(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], int, frozenset[int]]:
    """A random tree (tokens from a small alphabet, so tokens repeat), one of its
    root paths as the accepted path, a root token and a stop-token set."""
    n = draw(st.integers(0, 10))
    parents = [draw(st.integers(-1, i - 1)) for i in range(n)]
    tokens = [draw(st.integers(0, 7)) for _ in range(n)]
    path: list[int] = []
    if n and draw(st.booleans()):
        node = draw(st.integers(0, n - 1))
        while node >= 0:
            path.append(node)
            node = parents[node]
        path.reverse()
    root = draw(st.integers(0, 7))
    stops = frozenset(draw(st.lists(st.integers(0, 7), max_size=2)))
    return tokens, parents, path, root, stops


@settings(max_examples=60)
@given(step=verified_steps(), k=st.integers(1, 5), seed=st.integers(0, 2**16), stops_in_feedback=st.booleans())
def test_observe_writes_the_documented_rows(step, k: int, seed: int, stops_in_feedback: bool) -> None:
    """After a step, row t is the top-k of the logits that followed t: for a token seen
    several times, its last occurrence in the order rejected nodes < root < accepted
    path; rows whose prefix holds a stop token stay untouched. The stop tokens come
    with the feedback or, from callers that do not pass them, from the last request."""
    tokens, parents, path, root, stops = step
    vocab = 8
    logits = torch.from_numpy(np.random.default_rng(seed).integers(0, 4, size=(len(tokens) + 1, vocab))
                              .astype(np.float64))
    source = Recycling(k=k, tree_size=5)
    source.begin(np.array([1, root]))
    if not stops_in_feedback:
        source.propose(_request([1, root], vocab, stops))
    tree = TokenTree.from_parents(tokens, parents)
    source.observe(StepFeedback(context=np.array([1, root]), tree=tree, verdict=Verdict(tuple(path), 0),
                                emitted=np.array([0]), node_logits=logits,
                                eos_token_ids=stops if stops_in_feedback else frozenset()))

    # The specification, spelled out independently of rows_to_record.
    def after_stop(i: int) -> bool:
        while i >= 0:
            if tokens[i] in stops:
                return True
            i = parents[i]
        return False

    expected: dict[int, np.ndarray] = {}
    if root not in stops:
        writes = [(tokens[i], i + 1) for i in range(len(tokens)) if i not in path]
        writes += [(root, 0)] + [(tokens[i], i + 1) for i in path]
        for tok, row in writes:
            if row == 0 or not after_stop(row - 1):
                expected[tok] = top_candidates_reference(logits[row : row + 1].numpy(), k)[0]
    matrix = source.matrix
    assert matrix is not None and matrix.shape == (vocab, k)
    for t in range(vocab):
        want = expected.get(t, np.full(k, UNKNOWN))
        assert np.array_equal(matrix[t], want), (t, matrix[t], want)


class _TreeWatcher(Recycling):
    """Recycling that also notes which tokens its verified trees contained."""

    seen: set[int]

    def observe(self, feedback: StepFeedback) -> None:
        self.seen = getattr(self, "seen", set()) | set(feedback.tree.tokens.tolist())
        super().observe(feedback)


def test_nothing_after_eos_is_learnt_in_real_decoding() -> None:
    """The engine passes the stop tokens with the feedback: an EOS drafted into a tree
    (and its descendants) never gets a matrix row."""
    eos = 3
    m = model("llama", eos=eos)
    source = _TreeWatcher(k=8)
    decoder = draftkit.SpeculativeDecoder(m, source=source, budget=64)
    rng = np.random.default_rng(0)
    for _ in range(6):
        prompt = rng.integers(0, VOCAB, 8).tolist()
        out = decoder.generate([prompt], max_new_tokens=40, eos_token_id=eos)
        assert out.sequences.tolist() == draftkit.PlainDecoder(m).generate(
            [prompt], max_new_tokens=40, eos_token_id=eos).sequences.tolist()
    assert eos in source.seen  # EOS was drafted and verified...
    assert source.matrix is not None and np.all(source.matrix[eos] == UNKNOWN)  # ...but never learnt from


@given(mat=st.integers(0, 2**16), sequence=st.lists(st.integers(-1, 9), max_size=12))
def test_rank_hits_counts_the_rank_of_each_next_token(mat: int, sequence: list[int]) -> None:
    rng = np.random.default_rng(mat)
    matrix = empty_matrix(8, 3)
    for t in range(8):
        if rng.random() < 0.7:
            matrix[t] = rng.permutation(10)[:3]
    want = np.zeros(4, dtype=np.int64)
    for a, b in zip(sequence[:-1], sequence[1:], strict=True):
        if 0 <= a < 8 and matrix[a, 0] >= 0:
            row = matrix[a].tolist()
            want[row.index(b) if b in row else 3] += 1
    assert np.array_equal(rank_hits(matrix, sequence), want)


def test_rank_frequencies_are_measured_and_reset() -> None:
    source = Recycling()
    decoder = draftkit.SpeculativeDecoder(model("llama", seed=2), source=source, budget=BUDGET)
    for _ in range(2):
        decoder.generate(PROMPT, max_new_tokens=48)
    freq = source.rank_frequencies
    assert freq.shape == (9,) and abs(freq.sum() - 1.0) < 1e-12 and freq[0] > 0
    source.reset()
    assert not source.rank_frequencies.any()


def test_rows_to_record_prefers_the_accepted_path() -> None:
    # Nodes 0 and 2 both carry token 5; node 2 is on the accepted path (1 -> 2).
    tokens, rows = rows_to_record(9, np.array([5, 6, 5]), np.array([-1, -1, 1]), (1, 2))
    assert tokens.tolist() == [5, 9, 6, 5] and rows.tolist() == [1, 0, 2, 3]


def test_observe_without_node_logits_learns_nothing() -> None:
    """The engine withholds node logits on a request's final step; that is not an error."""
    source = Recycling()
    feedback = StepFeedback(context=np.array([1, 2]), tree=TokenTree.from_parents([4], [-1]),
                            verdict=Verdict((0,), 5), emitted=np.array([4, 5]))
    source.observe(feedback)
    assert source.matrix is None and not source.rank_frequencies.any()


# --------------------------------------------------------------------------- the template


@given(size=st.integers(1, 120), k=st.integers(1, 8), max_depth=st.sampled_from([None, 1, 2, 5]))
def test_template_invariants(size: int, k: int, max_depth: int | None) -> None:
    t = build_template(size, default_rank_probs(k), max_depth=max_depth)
    n = t.size
    reachable = sum(k**d for d in range(1, max_depth + 1)) if max_depth else size
    assert n == min(size, reachable)
    assert np.all(t.parents < np.arange(n)) and np.all(t.parents >= -1)
    parent_depth = np.where(t.parents >= 0, t.depths[np.maximum(t.parents, 0)], 0)
    assert np.array_equal(t.depths, parent_depth + 1)
    assert max_depth is None or t.max_depth <= max_depth
    assert np.all(t.ranks < k)
    # Priority order: priors never increase; a child is strictly less likely than its parent.
    assert np.all(np.diff(t.scores) <= 0)
    has_parent = t.parents >= 0
    assert np.all(t.scores[has_parent] < t.scores[t.parents[has_parent]])
    for node in range(-1, n):
        kids = np.nonzero(t.parents == node)[0]
        ranks = t.ranks[kids]
        assert len(set(ranks.tolist())) == ranks.size  # distinct ranks, hence distinct tokens
        if kids.size:
            assert sorted(ranks.tolist()) == list(range(ranks.size))  # better ranks first
            parent_score = 1.0 if node < 0 else t.scores[node]
            assert t.scores[kids].sum() <= parent_score * (1 + 1e-12)


@given(counts=st.lists(st.integers(0, 10_000), min_size=5, max_size=5), weight=st.floats(0.5, 500))
def test_estimated_rank_probs_are_valid_and_shrink_to_the_prior(counts: list[int], weight: float) -> None:
    prior = default_rank_probs(4)
    probs = estimate_rank_probs(np.array(counts), prior, weight)
    assert all(0 < q < 1 for q in probs) and sum(probs) < 1
    build_template(20, probs)  # accepted as template parameters
    assert np.allclose(estimate_rank_probs(np.zeros(5), prior, weight), prior)
    many = np.array(counts) * 10**6
    if many.sum():
        assert np.allclose(estimate_rank_probs(many, prior, weight), many[:4] / many.sum(), atol=1e-6)


def test_adaptive_template_reshapes_stays_exact_and_resets() -> None:
    m = model("llama", seed=2)
    source = Recycling(adapt_template=True, adapt_every=16)
    initial = source.template.paths()
    decoder = draftkit.SpeculativeDecoder(m, source=source, budget=BUDGET)
    plain = draftkit.PlainDecoder(m).generate(PROMPT, max_new_tokens=48)
    for _ in range(3):
        assert decoder.generate(PROMPT, max_new_tokens=48).sequences.tolist() == plain.sequences.tolist()
    assert source.template.paths() != initial  # this model's rank 0 is right far more often than the prior says
    source.reset()
    assert source.template.paths() == initial
    with pytest.raises(draftkit.InvalidInputError, match="adapt_template"):
        Recycling(template_paths=[(0,)], adapt_template=True)


def test_default_template_is_wide_at_the_root_and_thin_below() -> None:
    t = build_template(80)
    widths = np.bincount(t.depths)[1:]
    assert widths[0] == 8  # root fan-out = k
    assert widths.sum() == 80 and widths.argmax() in (1, 2) and widths[-1] < widths[1]


def test_template_from_paths() -> None:
    t = Template.from_paths([(1,), (0, 0), (0,), (0, 1)])
    assert t.paths() == [(0,), (0, 0), (1,), (0, 1)]  # priority order: 0.5, 0.25, 0.14, 0.07
    with pytest.raises(draftkit.InvalidInputError, match="no parent"):
        Template.from_paths([(0, 1)])


@st.composite
def matrices(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """A k-column matrix over ``rows`` tokens; each row unknown or k distinct candidates."""
    rows = draw(st.integers(2, 12))
    k = draw(st.integers(1, 4))
    matrix = empty_matrix(rows, k)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    for t in range(rows):
        if draw(st.integers(0, 4)):  # mostly known
            matrix[t] = rng.permutation(rows + 2)[:k]  # ids may exceed the vocabulary
    return matrix, k


def expand_reference(template: Template, matrix: np.ndarray, root: int, vocab: int,
                     max_nodes: int, max_depth: int, stops: frozenset[int]) -> list[tuple[int, int]]:
    """Node by node, in priority order: (template node, token) of every drafted node."""
    token_of: dict[int, int] = {}
    out: list[tuple[int, int]] = []
    for i in range(template.size):
        p = int(template.parents[i])
        if p >= 0 and p not in token_of:
            continue
        parent_token = root if p < 0 else token_of[p]
        if parent_token in stops or not (0 <= parent_token < matrix.shape[0]) or matrix[parent_token, 0] < 0:
            continue
        tok = int(matrix[parent_token, template.ranks[i]])
        if 0 <= tok < vocab:
            token_of[i] = tok
            if template.depths[i] <= max_depth:
                out.append((i, tok))
    return out[:max_nodes]


@settings(max_examples=60)  # pure NumPy: cheap enough for more examples
@given(mat=matrices(), data=st.data())
def test_expansion_follows_the_template_within_limits(mat, data) -> None:
    matrix, k = mat
    rows = matrix.shape[0]
    vocab = data.draw(st.integers(1, rows))
    root = data.draw(st.integers(0, rows - 1))
    max_nodes = data.draw(st.integers(0, 40))
    max_depth = data.draw(st.integers(1, 6))
    stops = frozenset(data.draw(st.lists(st.integers(0, rows - 1), max_size=3)))
    choice = data.draw(st.sampled_from(["root", "child", "none"]))
    if choice == "root":
        stops |= {root}
    elif choice == "child":  # a stop token that gets drafted below the root
        stops |= {int(matrix[root, data.draw(st.integers(0, k - 1))])}
    template = build_template(data.draw(st.integers(1, 60)), default_rank_probs(k))
    exp = expand(template, matrix, root, vocab_size=vocab, max_nodes=max_nodes, max_depth=max_depth,
                 stop_tokens=stops)
    want = expand_reference(template, matrix, root, vocab, max_nodes, max_depth, stops)
    assert list(zip(exp.template_nodes.tolist(), exp.tokens.tolist(), strict=True)) == want
    tree = TokenTree.from_parents(exp.tokens, exp.parents)  # validates topological order
    assert tree.size <= max_nodes and tree.max_depth <= max_depth
    assert np.all((tree.tokens >= 0) & (tree.tokens < vocab))
    for node in range(-1, tree.size):
        kids = tree.children(node)
        assert len(set(tree.tokens[kids].tolist())) == kids.size  # distinct siblings
        parent_token = root if node < 0 else int(tree.tokens[node])
        if parent_token in stops:
            assert kids.size == 0  # nothing is drafted past a stop token
        for kid in kids:
            assert tree.tokens[kid] == matrix[parent_token, template.ranks[exp.template_nodes[kid]]]


@given(mat=matrices(), data=st.data())
def test_trie_rebuilds_the_tree_and_cuts_the_least_likely(mat, data) -> None:
    matrix, k = mat
    rows = matrix.shape[0]
    template = build_template(40, default_rank_probs(k))
    exp = expand(template, matrix, data.draw(st.integers(0, rows - 1)), vocab_size=rows,
                 max_nodes=40, max_depth=8)
    draft = draft_from_expansion(exp)
    trie = draftkit.default_registry().tree_builder("trie")
    full = trie.build(draft, max_nodes=max(exp.size, 1), max_depth=8)
    assert np.array_equal(full.tokens, exp.tokens) and np.array_equal(full.parents, exp.parents)
    if exp.size:
        np.testing.assert_allclose(full.scores, exp.scores, rtol=1e-9)
        budget = data.draw(st.integers(1, exp.size))
        cut = trie.build(draft, max_nodes=budget, max_depth=8)
        assert cut.size == budget
        # The kept nodes are the most likely ones (ties may be kept in either order).
        np.testing.assert_allclose(np.sort(cut.scores)[::-1], exp.scores[:budget], rtol=1e-9)


def test_no_draft_before_anything_was_observed() -> None:
    assert Recycling().propose(_request([1, 2, 3], VOCAB)).is_empty


def _request(context: list[int], vocab: int, stops: frozenset[int] = frozenset(), *, max_nodes: int = 32,
             max_depth: int = 8) -> DraftRequest:
    return DraftRequest(context=np.asarray(context, dtype=np.int64), prompt_length=len(context),
                        max_depth=max_depth, max_nodes=max_nodes, vocab_size=vocab, eos_token_ids=stops)


def test_draft_respects_the_request() -> None:
    """A warm source drafts within max_nodes / max_depth / vocab_size of each request."""
    source = Recycling()
    m = model("llama")
    draftkit.SpeculativeDecoder(m, source=source, budget=BUDGET).generate([[4, 5, 6]], max_new_tokens=30)
    ctx = [4, 5, 6]
    for max_nodes, max_depth, vocab in ((32, 8, VOCAB), (5, 2, VOCAB), (80, 1, VOCAB), (32, 8, 40)):
        draft = source.propose(_request(ctx, vocab, max_nodes=max_nodes, max_depth=max_depth))
        assert isinstance(draft, Draft) and len(draft.sequences) <= max_nodes
        assert all(1 <= len(s) <= max_depth and int(s.max()) < vocab for s in draft.sequences)


# --------------------------------------------------------------------------- state


PROMPT = [[7, 8, 9, 10, 11, 12, 13]]


def test_acceptance_rises_on_a_repeated_workload() -> None:
    decoder = draftkit.SpeculativeDecoder(model("llama", seed=2), source="recycling", budget=BUDGET)
    first = decoder.generate(PROMPT, max_new_tokens=48).stats
    second = decoder.generate(PROMPT, max_new_tokens=48).stats
    assert second.accepted > first.accepted
    assert second.mean_accepted_tokens > first.mean_accepted_tokens


def test_persist_false_and_reset_forget() -> None:
    m = model("llama", seed=2)
    cold = draftkit.SpeculativeDecoder(m, source="recycling", source_options={"persist": False}, budget=BUDGET)
    a = cold.generate(PROMPT, max_new_tokens=48).stats.accept_lengths
    b = cold.generate(PROMPT, max_new_tokens=48).stats.accept_lengths
    assert a == b  # every request starts from an empty matrix

    warm = draftkit.SpeculativeDecoder(m, source="recycling", budget=BUDGET)
    assert warm.generate(PROMPT, max_new_tokens=48).stats.accept_lengths == a
    assert warm.source.known_tokens > 0
    warm.source.reset()
    assert warm.source.matrix is None and warm.source.known_tokens == 0
    assert warm.generate(PROMPT, max_new_tokens=48).stats.accept_lengths == a


def test_matrix_view_is_read_only() -> None:
    source = Recycling()
    draftkit.SpeculativeDecoder(model("llama"), source=source, budget=BUDGET).generate([[1, 2]], max_new_tokens=5)
    assert source.matrix is not None
    with pytest.raises(ValueError):
        source.matrix[0, 0] = 1
