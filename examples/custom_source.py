"""A draft source written in a few lines, used in-process without any plugin.

The source below guesses that the text continues like the previous line
(indentation and all), which is often right in code. Whatever it guesses, the
output is exactly plain decoding's; the source only changes the speed.

Run:  python examples/custom_source.py [--model PATH]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import draftkit
from draftkit.types import Draft, DraftRequest, SourceCapabilities, StepFeedback


class PreviousLine:
    """Drafts what followed the start of the previous line that begins like the current one."""

    name = "previous-line"
    capabilities = SourceCapabilities()

    def __init__(self, newline_ids: set[int], max_len: int = 12) -> None:
        self.newline_ids = newline_ids
        self.max_len = max_len

    def begin(self, prompt: np.ndarray) -> None:
        pass

    def observe(self, feedback: StepFeedback) -> None:
        pass

    def reset(self) -> None:
        pass

    def propose(self, request: DraftRequest) -> Draft:
        ctx = request.context
        starts = [i + 1 for i, t in enumerate(ctx.tolist()) if t in self.newline_ids]
        if len(starts) < 2:
            return Draft.empty()
        current = ctx[starts[-1]:]
        for start in reversed(starts[:-1]):
            line = ctx[start : start + current.size + self.max_len]
            if line.size > current.size and np.array_equal(line[: current.size], current):
                return Draft.chain(line[current.size : current.size + request.max_depth])
        return Draft.empty()


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from draftkit.demo import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = resolve_model_path(args.model)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    newline_ids = {i for tok, i in tokenizer.get_vocab().items() if tokenizer.convert_tokens_to_string([tok]).endswith("\n")}
    prompt = "class Point:\n    def __init__(self, x, y):\n        self.x = x\n"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = draftkit.SpeculativeDecoder(model, source=PreviousLine(newline_ids), tree="chain").generate(
        ids, max_new_tokens=64, do_sample=False)
    plain = draftkit.PlainDecoder(model).generate(ids, max_new_tokens=64, do_sample=False)
    assert torch.equal(out.sequences, plain.sequences)
    print(tokenizer.decode(out.sequences[0]))
    print(f"{out.stats.mean_accepted_tokens:.2f} tokens per step with the previous-line source")


if __name__ == "__main__":
    main()
