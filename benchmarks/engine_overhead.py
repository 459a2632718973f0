"""Time the engine spends per step outside the model forward (and outside the source).

`DecodeStats.time_other` covers tree building, masks, verification logic, stop
checks and KV-cache compaction. Measured on a tiny random Llama (vocabulary
8192, 2 layers, float32, one thread) so the model forward stays small.

    python benchmarks/engine_overhead.py
"""

from __future__ import annotations

import statistics

import torch

import draftkit
from draftkit.testing.models import tiny_model
from draftkit.testing.sources import OracleSource


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = tiny_model("llama", vocab_size=8192, layers=2, dtype=torch.float32)
    prompt = torch.randint(0, 8192, (1, 100))
    prompt[0, 50:] = prompt[0, :50]  # repetitive, so prompt lookup finds drafts
    reference = draftkit.PlainDecoder(model).generate(prompt, max_new_tokens=128).sequences[0].tolist()
    cases = [
        ("plain loop", draftkit.PlainDecoder(model)),
        ("pld, trie, budget 32", draftkit.SpeculativeDecoder(model, source="pld", budget=32)),
        ("oracle + 3 decoys, trie, budget 32",
         draftkit.SpeculativeDecoder(model, source=OracleSource(reference, decoys=3), budget=32)),
        ("oracle, chain, budget 8",
         draftkit.SpeculativeDecoder(model, source=OracleSource(reference), budget=8, tree="chain")),
    ]
    for name, decoder in cases:
        other, forward, per_step = [], [], 0.0
        for _ in range(5):
            stats = decoder.generate(prompt, max_new_tokens=128).stats
            other.append(stats.time_other / stats.steps * 1e6)
            forward.append(stats.time_verify / stats.steps * 1e3)
            per_step = stats.mean_accepted_tokens
        print(f"{name}: engine {statistics.median(other):.0f} us/step outside the forward, "
              f"forward {statistics.median(forward):.2f} ms/step, {per_step:.2f} tokens/step")


if __name__ == "__main__":
    main()
