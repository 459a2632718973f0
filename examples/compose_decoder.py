"""Compose a speculative decoder from parts and check it against plain decoding.

Run:  python examples/compose_decoder.py [--model PATH]

Without --model it uses the shipped demo model when present, otherwise a small
random Llama built locally (model hubs are never contacted).
"""

from __future__ import annotations

import argparse

import torch

import draftkit
from draftkit.trees import TrieBuilder


def load(path: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path is None:
        try:
            from draftkit.demo import resolve_model_path

            path = str(resolve_model_path("demo"))
        except draftkit.DraftkitError:
            path = None
    if path is None:
        from draftkit.testing.models import tiny_model

        return tiny_model("llama", vocab_size=97, dtype=torch.float32), None
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load(args.model)
    if tokenizer is not None:
        prompt = tokenizer("def fibonacci(n):\n    ", return_tensors="pt").input_ids
    else:
        prompt = torch.tensor([[5, 6, 7, 8, 5, 6, 7, 8, 5, 6]])

    # Parts by name (resolved through the plugin registry) or as instances.
    decoder = draftkit.SpeculativeDecoder(model, source="pld", tree=TrieBuilder(), budget=16)
    # do_sample=False: greedy even for a model whose generation config samples.
    out = decoder.generate(prompt, max_new_tokens=64, do_sample=False)
    plain = draftkit.PlainDecoder(model).generate(prompt, max_new_tokens=64, do_sample=False)

    assert torch.equal(out.sequences, plain.sequences), "speculative output differs from plain decoding"
    s = out.stats
    print(f"identical to plain decoding: {s.emitted} tokens in {s.steps} target steps "
          f"({s.mean_accepted_tokens:.2f} tokens/step, plain needs {plain.stats.steps})")
    if tokenizer is not None:
        print(tokenizer.decode(out.sequences[0]))


if __name__ == "__main__":
    main()
