"""``draftkit layerskip search``: the command-line front of :func:`search_skip_set`.

The main CLI wires it in as a subcommand::

    sub = layerskip_parsers.add_parser("search", help=...)
    add_search_arguments(sub)
    sub.set_defaults(func=run_search)     # run_search(args) -> exit code

It also runs standalone: ``python -m draftkit.sources.layerskip.command --model PATH -o skip.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ... import argtypes
from ...errors import DraftkitError, InvalidInputError

__all__ = ["add_search_arguments", "run_search", "read_prompts", "DEFAULT_PROMPTS", "main"]

#: Calibration prompts used when ``--prompts`` is not given: short, varied requests
#: in the spirit of the paper's 8 calibration prompts.
DEFAULT_PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a hash table works and when it is a poor choice.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Summarise the causes of the French Revolution in a few sentences.",
    "List five tips for writing clear technical documentation.",
    "Translate to French: The weather is nice today and we are going to the park.",
    "What is the difference between a process and a thread?",
    "Once upon a time, in a small village at the edge of a forest,",
)


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``draftkit layerskip search``."""
    parser.add_argument("--model", required=True,
                        help="local model folder (AutoModelForCausalLM), or 'demo' for the shipped demo target")
    parser.add_argument(
        "--prompts",
        type=Path,
        help="calibration prompts: a text file (one prompt per line) or JSONL with 'prompt', 'text' "
        "or 'input_ids' per line (default: 8 built-in prompts)",
    )
    parser.add_argument("--iterations", type=argtypes.positive, default=None, help="number of new trials (default 50)")
    parser.add_argument("--seconds", type=float, default=None, help="time budget in seconds")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="where to write the skip set (JSON; its folder is created)")
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help="search state file, written after every trial and resumed if it exists "
        "(default: OUTPUT with suffix .search.json)",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore an existing state file and start over")
    parser.add_argument("--max-new-tokens", type=argtypes.positive, default=32, help="tokens generated per prompt per trial")
    parser.add_argument("--max-draft", type=int, default=None, help="longest draft of the layerskip source")
    parser.add_argument("--dtype", default="float32", help="torch dtype to load the model in (default float32)")
    parser.add_argument("--threads", type=argtypes.threads, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the optimiser")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time trials by wall clock (default) or by this process's CPU time (steadier on a busy machine)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def read_prompts(path: Path | None, tokenizer: Any) -> list[list[int]]:
    """Token ids of the calibration prompts (see ``--prompts``)."""
    texts: list[str] = []
    ids: list[list[int]] = []
    if path is None:
        texts = list(DEFAULT_PROMPTS)
    elif not path.is_file():
        raise InvalidInputError(f"--prompts {path} {'is a folder' if path.is_dir() else 'does not exist'}; "
                                "give a text file (one prompt per line) or a JSONL file")
    else:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        for n, line in enumerate(lines, 1):
            if path.suffix in (".jsonl", ".json"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{path}:{n}: not valid JSON ({exc})") from None
                if "input_ids" in row:
                    ids.append([int(t) for t in row["input_ids"]])
                    continue
                text = row.get("prompt", row.get("text"))
                if not isinstance(text, str):
                    raise InvalidInputError(f"{path}:{n}: expected a 'prompt', 'text' or 'input_ids' field")
                texts.append(text)
            else:
                texts.append(line.replace("\\n", "\n"))
    if texts:
        if tokenizer is None:
            raise InvalidInputError(
                "the model has no tokenizer to encode text prompts; give --prompts as JSONL with "
                "'input_ids' per line"
            )
        ids.extend(tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts)
    ids = [p for p in ids if p]
    if not ids:
        raise InvalidInputError(f"no calibration prompts in {path}; give a non-empty --prompts file")
    return ids


def _require_optimizer() -> None:
    """Refuse at once, before a model is loaded, when the optional Bayesian optimiser is missing."""
    try:
        import bayes_opt  # noqa: F401
    except ImportError:
        raise DraftkitError(
            "layerskip search needs the optional 'bayesian-optimization' package: "
            "pip install 'draftkit[layerskip]' (or pip install bayesian-optimization)"
        ) from None


def run_search(args: argparse.Namespace) -> int:
    """Run the search described by parsed ``args``; print the result; return an exit code.

    Input errors raise :class:`~draftkit.errors.DraftkitError`, which the
    ``draftkit`` command prints as one line.
    """
    import torch

    from ...demo import resolve_model_path
    from ...loading import check_causal_lm, load_model, load_tokenizer
    from .search import search_skip_set

    _require_optimizer()
    if args.output.is_dir():
        raise InvalidInputError(f"-o {args.output} is a folder; give the skip-set file to write, "
                                f"e.g. {args.output / 'skip.json'}")
    dtype = getattr(torch, str(args.dtype), None)
    if not isinstance(dtype, torch.dtype):
        raise InvalidInputError(f"unknown --dtype {args.dtype!r}; use float32, bfloat16 or float16")
    if args.threads:
        torch.set_num_threads(args.threads)
    # A local folder or 'demo', as `draftkit generate --model`: a mistyped path must not try a model hub.
    model_path = str(resolve_model_path(args.model))
    check_causal_lm(Path(model_path))  # before the prompts: a T5 folder's first problem is not its tokenizer
    try:
        tokenizer = load_tokenizer(model_path)
    except InvalidInputError:
        tokenizer = None  # fine when --prompts gives input_ids
    prompts = read_prompts(args.prompts, tokenizer)
    model = load_model(model_path, str(args.dtype))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    state = args.state if args.state is not None else args.output.with_suffix(".search.json")
    state.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh and state.exists():
        state.unlink()
    if state.exists():
        print(f"resuming the search from {state}", file=sys.stderr)
    options = {"max_draft": args.max_draft} if args.max_draft else {}
    result = search_skip_set(
        model,
        prompts,
        budget_iterations=args.iterations,
        budget_seconds=args.seconds,
        resume_from=state,
        progress=not args.no_progress,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        clock=args.clock,
        source_options=options,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    result.skip_set.save(args.output)
    print(f"best skip set: {result.skip_set.describe()}")
    print(
        f"speed-up {result.speedup:.2f}x over plain decoding "
        f"({result.tokens_per_second:.1f} vs {result.baseline_tokens_per_second:.1f} tokens/s), "
        f"{result.mean_accepted_tokens:.2f} tokens per step; {result.trials} trials, "
        f"{result.seconds:.0f} s this run"
    )
    if result.speedup < 1.0:
        print(
            "note: no skip set beat plain decoding on this machine; more iterations may find one, "
            "or layer skipping does not pay off for this model here",
            file=sys.stderr,
        )
    print(f"written to {args.output} (search state: {state})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m draftkit.sources.layerskip.command ...``: ``draftkit layerskip search ...``, same errors."""
    from ...cli import main as cli_main

    return cli_main(["layerskip", "search", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
