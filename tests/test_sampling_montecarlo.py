"""Monte-Carlo check of the whole engine: sampled sequences follow the target's exact law.

For a tiny float64 model (vocabulary 8), the exact law of the first three new
tokens is enumerated from the model itself (one forward per prefix in the
support, processed by the same :class:`~draftkit.logits.LogitsPipeline`). The
speculative decoder is then run end to end with seeds ``0 .. N-1`` and the
frequencies of the sequences are compared with that law by a G-test (cells with
expected count below 5 pooled) at ``alpha = 1e-4``.

False failures: for a correct sampler each G-test rejects with probability about
1e-4 (the chi-square approximation of G), so the five passing checks below fail
spuriously with probability about 5e-4 for a random choice of seeds. The seeds
are fixed, so the outcome is deterministic in CI: a failure after a change is a
change of behaviour, not bad luck. The mutant checks assert the opposite (the
p-value is *below* 1e-4) for deliberately wrong verifiers; they use the same
fixed seeds.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy.stats import chi2

import draftkit
from draftkit.logits import LogitsPipeline, sample_from_probs
from draftkit.testing.sources import RandomQSource, ScriptedSource
from draftkit.types import Draft, DraftKind, SamplingParams, SourceCapabilities, TokenTree, Verdict
from draftkit.verify.random import RandomStream
from draftkit.verify.sampling import StreamDraws, require_stream, target_probs
from draftkit.verify.speculative import proposal_law
from helpers import cached_model
from test_sampling_exact import mutant_per_row, mutant_resample_from_p

VOCAB = 8
NEW = 3
ALPHA = 1e-4
PROMPT = [3, 5, 1, 3, 5, 1, 3, 5]  # repetitive: prompt lookup drafts at every step


def model() -> torch.nn.Module:
    return cached_model("llama", VOCAB, seed=3, layers=1)


@functools.lru_cache(maxsize=8)
def sequence_law(settings: tuple[tuple[str, object], ...]) -> dict[tuple[int, ...], float]:
    """Exact law of the first ``NEW`` tokens under plain sampling with these settings."""
    params = SamplingParams(do_sample=True, **dict(settings))
    m = model()
    law: dict[tuple[int, ...], float] = {}

    def grow(seq: list[int], prob: float) -> None:
        if len(seq) == len(PROMPT) + NEW:
            law[tuple(seq[len(PROMPT):])] = prob
            return
        with torch.no_grad():
            logits = m(torch.tensor([seq])).logits[0, -1:]
        probs = LogitsPipeline(params, np.asarray(seq, np.int64)).probs(logits, [np.empty(0, np.int64)])[0]
        for tok in torch.nonzero(probs > 0)[:, 0].tolist():
            grow(seq + [tok], prob * float(probs[tok]))

    grow(list(PROMPT), 1.0)
    return law


def g_test(counts: Counter, law: dict[tuple[int, ...], float]) -> float:
    """p-value of a G-test of ``counts`` against ``law``; 0 if an impossible sequence was drawn."""
    n = sum(counts.values())
    if any(seq not in law for seq in counts):
        return 0.0
    cells = sorted(law, key=law.get)
    observed, expected = [], []
    pool_o, pool_e = 0.0, 0.0
    for seq in cells:
        e = law[seq] * n
        if e < 5.0:
            pool_o += counts.get(seq, 0)
            pool_e += e
        else:
            observed.append(counts.get(seq, 0))
            expected.append(e)
    if pool_e > 0:
        observed.append(pool_o)
        expected.append(pool_e)
    o = np.asarray(observed, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    nz = o > 0
    g = 2.0 * float(np.sum(o[nz] * np.log(o[nz] / e[nz])))
    return float(chi2.sf(g, len(o) - 1))


def sample_counts(decoder: draftkit.SpeculativeDecoder, runs: int, settings: dict) -> Counter:
    counts: Counter = Counter()
    ids = torch.tensor([PROMPT])
    for seed in range(runs):
        out = decoder.generate(ids, max_new_tokens=NEW, do_sample=True, seed=seed, eos_token_id=[], **settings)
        counts[tuple(out.new_tokens[0].tolist())] += 1
    return counts


def draft_table() -> torch.Tensor:
    """Bigram proposal logits taken from the target itself (q overlaps p, as a real draft would)."""
    with torch.no_grad():
        return model()(torch.arange(VOCAB)[:, None]).logits[:, -1].clone()


def wide_source() -> ScriptedSource:
    """Every token as a root candidate, each continued in four ways (40 nodes once merged).

    Many candidates share each first token, which is where per-row sampling (one
    independent target sample per candidate) inflates acceptance the most.
    """
    seqs = tuple(np.array([t, (t + j) % VOCAB], dtype=np.int64) for t in range(VOCAB) for j in range(1, 5))
    draft = Draft(seqs)
    return ScriptedSource(lambda request: draft)


@dataclass(frozen=True)
class Case:
    source: Callable[[], object]
    tree: str
    settings: tuple[tuple[str, object], ...]
    budget: int = 8

    def decoder(self, verifier: object = None) -> draftkit.SpeculativeDecoder:
        return draftkit.SpeculativeDecoder(
            model(), source=self.source(), tree=self.tree, verifier=verifier, budget=self.budget
        )


FLAT = (("temperature", 1.5), ("top_k", 3))  # three competing tokens per position: 27 sequences
NUCLEUS = (("temperature", 1.2), ("top_k", 4), ("top_p", 0.9), ("min_p", 0.05))

CASES = {
    "walk-pld": Case(lambda: "pld", "trie", FLAT),
    "walk-wide-tree": Case(wide_source, "trie", FLAT, budget=40),
    "speculative-trie": Case(lambda: RandomQSource(draft_table(), width=3, length=2), "trie", NUCLEUS),
    "speculative-chain": Case(
        lambda: RandomQSource.random(VOCAB, table_seed=3, scale=2.0, width=1, length=2), "chain", FLAT
    ),
}
RUNS = 250
MUTANT_RUNS = 200


@pytest.mark.parametrize("name", sorted(CASES))
def test_sequence_frequencies_match_the_exact_law(name: str) -> None:
    case = CASES[name]
    counts = sample_counts(case.decoder(), RUNS, dict(case.settings))
    p_value = g_test(counts, sequence_law(case.settings))
    assert p_value > ALPHA, f"{name}: G-test p-value {p_value:.3g}"


def test_plain_sampler_matches_the_exact_law() -> None:
    """The reference itself (and the exact-law enumeration) pass the same test."""
    plain = draftkit.PlainDecoder(model())
    counts: Counter = Counter()
    for seed in range(RUNS):
        out = plain.generate(torch.tensor([PROMPT]), max_new_tokens=NEW, do_sample=True, seed=seed,
                             eos_token_id=[], **dict(FLAT))
        counts[tuple(out.new_tokens[0].tolist())] += 1
    assert g_test(counts, sequence_law(FLAT)) > ALPHA


# --------------------------------------------------------------------------- mutants end to end


class _PerRowDraws(StreamDraws):
    """Independent target samples per candidate row, as REST and ADED draw them: the k-th
    categorical draw of a level uses its own uniform instead of the position's token uniform."""

    def __init__(self, random: RandomStream, position: int) -> None:
        super().__init__(random, position)
        self.calls: Counter = Counter()

    def choose(self, level: int, probs: torch.Tensor) -> int:
        k = self.calls[level]
        self.calls[level] += 1
        return sample_from_probs(probs, float(self.random.extra_uniforms(self.position + level, k + 1)[k]))


class _Mutant:
    """A wrong verifier plugged into the real engine."""

    samples = True

    def __init__(self, name: str, kind: DraftKind, fn: Callable[..., Verdict], draws: type = StreamDraws) -> None:
        self.name = name
        self.kind = kind
        self.fn = fn
        self.draws = draws

    def supports(self, capabilities: SourceCapabilities) -> bool:
        return capabilities.draft_kind is self.kind

    def verify(self, tree: TokenTree, logits, sampling, process, random, position) -> Verdict:
        stream = require_stream(random, sampling, self.name)
        p = target_probs(tree, logits, sampling, process)
        q = proposal_law(tree, p.shape[-1], p.device) if self.kind is DraftKind.STOCHASTIC else None
        return self.fn(tree, p, q, self.draws(stream, position))


MUTANTS = {
    "per-row": (_Mutant("per-row", DraftKind.DETERMINISTIC, mutant_per_row, _PerRowDraws), "walk-wide-tree"),
    "resample-from-p": (
        _Mutant("resample-from-p", DraftKind.STOCHASTIC, mutant_resample_from_p),
        "speculative-chain",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_monte_carlo_catches_mutants(name: str) -> None:
    """The same cases as above, with a wrong verifier swapped in: the G-test must reject."""
    verifier, case_name = MUTANTS[name]
    case = CASES[case_name]
    counts = sample_counts(case.decoder(verifier), MUTANT_RUNS, dict(case.settings))
    assert g_test(counts, sequence_law(case.settings)) < ALPHA
