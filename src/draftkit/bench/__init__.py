"""The benchmark harness behind ``draftkit bench``.

Baselines and methods run side by side in one process on the same prompts,
interleaved prompt by prompt so that machine noise hits them alike; speedups are
medians of per-prompt time ratios; greedy outputs are compared token for token.
"""

from .loops import ends_in_loop
from .prompts import PromptCase, load_prompt_set
from .runner import BenchConfig, MethodSummary, run_benchmark

__all__ = ["BenchConfig", "MethodSummary", "PromptCase", "ends_in_loop", "load_prompt_set", "run_benchmark"]
