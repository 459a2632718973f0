"""The checks every draft source should pass, packaged for plugin authors.

The engine verifies every drafted token, so no source can change the output by
drafting badly; what a source *can* get wrong is the contract around drafting:
returning ids outside the vocabulary or of the wrong dtype, writing to the
shared context, keeping state that breaks when a second request starts,
crashing on a model it has not been tried on, or (for stochastic sources) a
proposal law that does not match its draws. :func:`check_source` drives a
source through the real engine on tiny float64 models of several
architectures, under several budgets, tree builders and stop settings, and
compares every output with :class:`~draftkit.PlainDecoder`:

* greedy: token for token;
* sampling with a seed, for deterministic sources: token for token as well
  (the ``walk`` verifier makes the same draws as the plain sampler);
* sampling with a stochastic source: that it runs and stays within the
  request; exactness in law needs a statistical test (see
  ``tests/test_sampling_montecarlo.py`` in draftkit's repository).

It also reports how many tokens per step the source got accepted, because a
source whose drafts are never accepted passes every equality check vacuously.

    from draftkit.testing.contract import check_source

    def test_my_source_keeps_the_contract():
        report = check_source(lambda: MySource(option=1))
        assert report.mean_tokens_per_step > 1.0   # it did draft something useful
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..interfaces import DraftSource
from ..types import DraftKind

__all__ = ["ContractReport", "check_source", "contract_prompts"]


@dataclass(frozen=True)
class ContractReport:
    """What :func:`check_source` ran and how much the source helped."""

    source_name: str
    runs: int  #: generate() calls compared with plain decoding
    steps: int  #: verification steps in those calls
    emitted: int  #: tokens they emitted

    @property
    def mean_tokens_per_step(self) -> float:
        """Emitted tokens per verification step (1.0 = the drafts never helped)."""
        return self.emitted / self.steps if self.steps else 0.0


def contract_prompts(vocab_size: int, count: int = 4, seed: int = 0) -> list[list[int]]:
    """Prompts of token ids for tiny models: half repetitive (so lookup-style sources fire), half random."""
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(count):
        if i % 2 == 0:
            unit = rng.integers(0, vocab_size, size=int(rng.integers(3, 9))).tolist()
            prompts.append((unit * 6)[: int(rng.integers(12, 40))])
        else:
            prompts.append(rng.integers(0, vocab_size, size=int(rng.integers(1, 30))).tolist())
    return prompts


def check_source(
    make_source: Callable[[], DraftSource],
    *,
    architectures: Sequence[str] = ("llama", "gpt2", "qwen2"),
    budgets: Sequence[int] = (1, 4, 16),
    trees: Sequence[str] = ("trie", "chain"),
    prompts: int = 4,
    max_new_tokens: int = 32,
    vocab_size: int = 97,
    seed: int = 0,
) -> ContractReport:
    """Run a source through the engine and compare with plain decoding; raise ``AssertionError`` on a difference.

    ``make_source`` builds a fresh source; one instance is kept across the
    prompts of an (architecture, budget, tree) combination, as a user's
    decoder would keep it, so state that leaks between requests is exercised.
    Errors the engine raises for contract violations
    (:class:`~draftkit.errors.ContractViolationError`) propagate as they are:
    they name the source and what it did wrong.
    """
    from ..engine import PlainDecoder, SpeculativeDecoder
    from .models import tiny_model

    name = make_source().name
    runs = steps = emitted = 0
    prompt_list = contract_prompts(vocab_size, prompts, seed)
    for arch in architectures:
        eos = vocab_size - 1
        model = tiny_model(arch, vocab_size, seed=seed, eos_token_id=eos)
        plain = PlainDecoder(model)
        for budget in budgets:
            for tree in trees:
                source = make_source()
                stochastic = source.capabilities.draft_kind is DraftKind.STOCHASTIC
                if stochastic and tree == "chain" and budget > 1:
                    continue  # a stochastic draft is verified as drafted; a chain builder may drop nodes
                decoder = SpeculativeDecoder(model, source=source, tree=tree, budget=budget)
                for p, prompt in enumerate(prompt_list):
                    cases: list[dict[str, object]] = [
                        {"do_sample": False, "eos_token_id": None},
                        {"do_sample": False, "eos_token_id": eos, "stop_token_ids": [prompt[-1]]},
                        {"do_sample": True, "temperature": 0.8, "top_k": 20, "seed": seed + p, "eos_token_id": None},
                    ]
                    for options in cases:
                        where = f"source {name!r}, {arch}, budget {budget}, tree {tree!r}, prompt {p}, {options}"
                        out = decoder.generate([prompt], max_new_tokens=max_new_tokens, **options)
                        got = out.sequences[0].tolist()
                        runs += 1
                        steps += out.stats.steps
                        emitted += out.stats.emitted
                        if options.get("do_sample") and stochastic:
                            new = got[len(prompt) :]
                            assert got[: len(prompt)] == prompt and len(new) <= max_new_tokens, where
                            assert all(0 <= t < vocab_size for t in new), where
                            continue
                        expected = plain.generate([prompt], max_new_tokens=max_new_tokens, **options)
                        want = expected.sequences[0].tolist()
                        if got != want:
                            first = next(
                                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                                min(len(got), len(want)),
                            )
                            raise AssertionError(
                                f"{where}: output differs from plain decoding at position {first} "
                                f"(got {got[first : first + 5]}, expected {want[first : first + 5]})"
                            )
    return ContractReport(name, runs, steps, emitted)
