"""The ``draftkit`` command line.

Each subcommand is a small function; heavy imports (torch, transformers, the
sources) happen inside them so ``draftkit --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import argtypes
from .errors import DraftkitError, InvalidInputError
from .loading import load_model_and_tokenizer

__all__ = ["main", "build_parser"]

EPILOG = """\
examples:
  draftkit generate --model demo --source aded "def fibonacci(n):"
  draftkit plugins
  draftkit bench                      # every source vs plain decoding on the demo model
"""



#: ``--dtype`` choices: the weights and compute dtype a model is loaded in.
DTYPES = ("float32", "bfloat16", "float16", "float64")


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults in --help, except where the help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return text
        return super()._get_help_string(action)


#: How ``--source-option`` spells a switch.
_SWITCHES = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as JSON when possible (numbers, booleans), and the usual
    spellings of a switch (yes/no, on/off, True/False) are booleans: ``persist=no`` was once the string
    "no", which a source reads as true."""
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise DraftkitError(f"--source-option expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        switch = _SWITCHES.get(raw.strip().lower())
        if switch is not None:
            options[key] = switch
            continue
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options



def _source_spec(spec: str, options: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """``--source`` and its options as decoder arguments; ``a+b`` is a composite of sources a and b.

    A composite's options name their member: ``--source-option aded.matrix=m.aded``.
    """
    names = spec.split("+")
    if len(names) == 1:
        return spec, options or None
    from .plugins import default_registry

    registry = default_registry()
    per_member: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in options.items():
        member, dot, option = key.partition(".")
        if not dot or member not in per_member:
            option = key if not dot else option
            takers = [n for n in names if _takes_option(registry, n, option)]
            example = takers[0] if len(takers) == 1 else "MEMBER"
            raise InvalidInputError(
                f"with the composite source {spec!r}, prefix each option with the member it is for "
                f"({', '.join(names)}), e.g. {example}.{option}={value}"
            )
        per_member[member][option] = value
    return [registry.source(name, **per_member[name]) if per_member[name] else name for name in names], None


def _takes_option(registry: Any, source: str, option: str) -> bool:
    """Whether the registered ``source`` takes ``option``: its factory names it, or passes ``**options``
    on to a class that does (asked by building the part without options; only for error messages)."""
    import inspect

    try:
        parameters = inspect.signature(registry.info("source", source).factory).parameters
        if option in parameters and parameters[option].kind is not inspect.Parameter.VAR_KEYWORD:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return False
        return option in inspect.signature(type(registry.source(source))).parameters
    except Exception:  # a part that cannot be built without options: unknown
        return False


def _note(message: str) -> None:
    print(f"draftkit: {message}", file=sys.stderr)


def encode_prompt(tokenizer: Any, text: str, chat: bool = False) -> Any:
    """Token ids [1, T] of a prompt; with ``chat``, of one user turn in the tokenizer's chat template.

    Chat models answer a question well only inside their template (Spec-Bench's
    questions are meant for it); the template's text carries its own special
    tokens, so none are added on top. An empty prompt becomes the BOS token.
    """
    import torch

    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidInputError("--chat: the model's tokenizer has no chat template (tokenizer_config.json "
                                    "'chat_template'); drop --chat to use the prompt as plain text")
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
        input_ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    else:
        input_ids = tokenizer(text, return_tensors="pt").input_ids
    if input_ids.numel() == 0:
        if tokenizer.bos_token_id is None:
            raise InvalidInputError("the prompt is empty and the tokenizer has no BOS token to start from; "
                                    "give a prompt of at least one character")
        input_ids = torch.tensor([[tokenizer.bos_token_id]])
    return input_ids


#: Limits of the sampling flags, checked before the model loads so that an error names the flag (the
#: library's own errors name keyword arguments): (option, valid, requirement, hint).
_SAMPLING_LIMITS: tuple[tuple[str, Any, str, str], ...] = (
    ("temperature", lambda v: 0 <= v < float("inf"), "a finite number >= 0", "; --temperature 0 decodes greedily"),
    ("top_p", lambda v: 0 <= v <= 1, "in [0, 1]", ""),
    ("top_k", lambda v: v >= 0, ">= 0", " (0 keeps every token, as in Hugging Face generate)"),
    ("min_p", lambda v: 0 <= v <= 1, "in [0, 1]", ""),
    ("repetition_penalty", lambda v: v > 0, "> 0", ""),
)


def _check_sampling_flags(args: argparse.Namespace) -> None:
    """Refuse an out-of-range sampling flag of ``generate`` or ``bench`` by its command-line name."""
    for name, valid, requirement, hint in _SAMPLING_LIMITS:
        value = getattr(args, name, None)
        if value is not None and not valid(value):
            raise InvalidInputError(f"--{name.replace('_', '-')} must be {requirement}, got {value:g}{hint}")


def _sampling_options(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """Decoding options of ``generate``: greedy, sampling, or what the model's generation config says.

    ``--temperature 0`` means greedy (as in vLLM and the OpenAI API). Without any
    sampling option the model's ``generation_config`` decides, as in
    ``model.generate``; a note says so when that means sampling.
    """
    from .engine.request import default_do_sample

    asked = any(v is not None for v in (args.temperature, args.top_p, args.top_k, args.min_p))
    if args.temperature == 0:
        options: dict[str, Any] = {"do_sample": False}
        ignored = [f"--{n.replace('_', '-')}" for n in ("top_p", "top_k", "min_p") if getattr(args, n) is not None]
        if ignored:
            _note(f"{', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect on greedy decoding")
    elif asked:
        # Options not given stay unset (the generation config's, then HF's defaults); None would switch them off.
        given = dict(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p)
        options = {"do_sample": True, **{k: v for k, v in given.items() if v is not None}}
    elif default_do_sample(model):
        _note("sampling, as the model's generation_config asks (do_sample: true); --temperature 0 decodes "
              "greedily")
        options = {}
    else:
        options = {"do_sample": False}
    if options.get("do_sample") is False:
        if args.seed is not None:
            _note("--seed has no effect on greedy decoding")
    elif args.seed is not None:
        options["seed"] = args.seed
    # Processors that apply to greedy decoding and sampling alike.
    for name in ("repetition_penalty", "no_repeat_ngram_size", "min_new_tokens"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


class _ContinuationPrinter:
    """Writes to stdout what the new tokens add to the prompt's text, as they come.

    ``decode(new_ids)`` alone drops a SentencePiece (Metaspace) token's leading
    space, since decode strips it from the first token, and would glue the first
    word to the prompt. So the prompt and the new ids are decoded together and
    what follows the prompt's own decode is printed. A trailing U+FFFD is a
    character whose bytes are still coming: it waits for the next chunk.
    """

    def __init__(self, tokenizer: Any, prompt_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.prompt_ids = prompt_ids
        self.prompt_text = self._decode(prompt_ids)
        self.shown = ""

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def continuation(self, new_ids: list[int]) -> str:
        """The text ``new_ids`` add after the prompt (their own decode if the prompt's text changed)."""
        text = self._decode(self.prompt_ids + new_ids)
        return text[len(self.prompt_text):] if text.startswith(self.prompt_text) else self._decode(new_ids)

    def show(self, new_ids: list[int], final: bool = False) -> None:
        """Print the part of the continuation not printed yet (a held-back partial character too if ``final``)."""
        text = self.continuation(new_ids)
        if text.startswith(self.shown) and (final or not text.endswith("\ufffd")):
            sys.stdout.write(text[len(self.shown):])
            sys.stdout.flush()
            self.shown = text


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from .engine import SpeculativeDecoder

    _check_sampling_flags(args)
    torch.set_num_threads(args.threads) if args.threads else None
    model, tokenizer = load_model_and_tokenizer(args.model, args.dtype)
    prompt = args.prompt if args.prompt != "-" else sys.stdin.read()
    input_ids = encode_prompt(tokenizer, prompt, args.chat)
    source, source_options = _source_spec(args.source, _parse_options(args.source_option))
    decoder = SpeculativeDecoder(
        model,
        source=source,
        tree=args.tree,
        budget=args.budget,
        tokenizer=tokenizer,
        source_options=source_options,
    )
    sampling = _sampling_options(args, model)
    new_ids: list[int] = []
    if args.stop:  # else the generation config's stop strings apply, as in model.generate
        sampling["stop_strings"] = args.stop
    stream = decoder.stream(input_ids, args.max_new_tokens, **sampling)
    sys.stdout.write(prompt)  # after the request was validated: an error prints nothing on stdout
    printer = _ContinuationPrinter(tokenizer, input_ids[0].tolist())
    try:
        for chunk in stream:
            new_ids.extend(chunk)
            printer.show(new_ids)
        printer.show(new_ids, final=True)
    finally:  # also when a step fails: the error's line must not run on from the printed text
        sys.stdout.write("\n")
        sys.stdout.flush()
    s = stream.output.stats
    print(
        f"[{decoder.source.name}] {s.emitted} tokens in {s.steps} steps, "
        f"{s.mean_accepted_tokens:.2f} tokens/step, "
        f"acceptance {f'{s.acceptance_rate:.1%}' if s.drafted else '- (nothing drafted)'}, "
        f"{s.tokens_per_second:.1f} tokens/s (draft {s.time_draft:.3f}s, verify {s.time_verify:.3f}s, "
        f"other {s.time_other:.3f}s), finish: {s.finish_reason}",
        file=sys.stderr,
    )
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    import warnings

    from .plugins import build_registry

    with warnings.catch_warnings():  # the failures are listed below, once
        warnings.filterwarnings("ignore", message="draftkit plugin ")
        registry = build_registry()
    rows = [(p.kind, p.name, p.plugin, p.distribution) for p in registry.all_parts()]
    if args.json:
        print(json.dumps({
            "parts": [dict(zip(("kind", "name", "plugin", "package"), r, strict=True)) for r in rows],
            "failures": [f.__dict__ for f in registry.failures],
        }, indent=2))
        return 0
    widths = [max(len(str(r[i])) for r in rows + [("kind", "name", "plugin", "package")]) for i in range(4)]
    header = ("kind", "name", "plugin", "package")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    for f in registry.failures:
        print(f"FAILED plugin {f.plugin!r} (package {f.distribution}) at {f.stage}: {f.error}")
    return 0


def _bench_answers(args: argparse.Namespace) -> Path | None:
    """The model's own answers to add to the bench corpus: --answers, else the shipped ones for --model demo."""
    if args.answers is None:
        if args.model not in ("demo", "demo-target"):
            return None
        from .demo.answers import demo_answers_path

        return demo_answers_path()
    if args.answers == "none":
        return None
    if args.no_corpus:
        raise InvalidInputError("--answers are added to the corpus, which --no-corpus leaves out; drop one of them")
    path = Path(args.answers).expanduser()
    if not path.is_file():
        raise InvalidInputError(f"--answers {path}: no such file (make one with `draftkit answers build`, "
                                "or pass --answers none)")
    return path


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench.methods import GenSettings
    from .bench.prompts import load_prompt_set
    from .bench.report import earlier_methods, format_table, write_answers, write_chart, write_results
    from .bench.runner import BenchConfig, run_benchmark
    from .bench.setup import build_methods
    from .plugins import build_registry

    _check_sampling_flags(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # say so before minutes of benchmarking, not after
        raise InvalidInputError(f"--out {out} is a file; the benchmark writes a folder there")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model, args.dtype)
    if args.chat:
        encode_prompt(tokenizer, "", chat=True)  # no chat template: say so before building anything
    draft_model = None
    draft_name = args.draft_model or ("demo-draft" if args.model == "demo" else None)
    if draft_name:
        draft_model, _ = load_model_and_tokenizer(draft_name, args.dtype)
    registry = build_registry()
    names = [n.strip() for n in args.methods.split(",") if n.strip()] if args.methods is not None else None
    if names == []:
        raise InvalidInputError("--methods lists no method; leave it out to run every method")
    from .bench.setup import check_method_names

    check_method_names(names, registry)
    answers = _bench_answers(args)  # a missing file is said before any prompt runs
    prompts = load_prompt_set(args.prompts, args.limit)
    corpus_sources = {}
    if not args.no_corpus:
        from .bench.corpus import corpus_sources_for

        corpus_sources = corpus_sources_for(tokenizer, registry, model.config.vocab_size, cache_dir=args.cache_dir,
                                            log=lambda m: print(m, file=sys.stderr),
                                            answers=answers)
    methods = build_methods(model, tokenizer, names, registry=registry, draft_model=draft_model,
                            budget=args.budget, corpus_sources=corpus_sources,
                            warn=lambda m: print(m, file=sys.stderr))
    sampling = (args.temperature is not None or args.top_p is not None) and args.temperature != 0
    temperature = 1.0 if args.temperature is None else args.temperature
    settings = GenSettings(max_new_tokens=args.max_new_tokens, do_sample=sampling,
                           temperature=temperature, top_p=args.top_p, seed=args.seed)
    from .engine.model_config import context_window

    config = BenchConfig(settings=settings, repeats=args.repeats, context_window=context_window(model.config))

    def encode(text: str) -> torch.Tensor:
        if args.chat or tokenizer.bos_token_id is not None:
            return encode_prompt(tokenizer, text, args.chat)
        ids = tokenizer(text, return_tensors="pt").input_ids
        return ids if ids.numel() else torch.tensor([[tokenizer.eos_token_id]])

    print(f"draftkit bench: {len(prompts)} prompts ({args.prompts}), {len(methods)} methods "
          f"({', '.join(m.name for m in methods)}), {args.max_new_tokens} new tokens, "
          f"{'sampling' if sampling else 'greedy'}, repeats {args.repeats}", file=sys.stderr)
    result = run_benchmark(methods, prompts, encode, config, progress=not args.quiet,
                           warn=lambda m: print(f"draftkit bench: {m}", file=sys.stderr))
    table = format_table(result)
    print(table)
    meta = {"model": args.model, "prompts": args.prompts, "n_prompts": len({r.prompt.id for r in result.runs}),
            "command": "draftkit " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("draftkit") else None}
    if result.failed:
        meta["failed_methods"] = result.failed
        print("left out, failed: " + "; ".join(f"{name} ({error})" for name, error in result.failed.items()),
              file=sys.stderr)
    earlier = earlier_methods(out)  # an earlier benchmark in this folder: its files are replaced
    path = write_results(result, out, meta)
    write_answers(result, out, lambda ids: tokenizer.decode(ids, skip_special_tokens=True), earlier)
    chart = None if args.no_chart else write_chart(
        result, out, f"draftkit bench: {args.model}, {args.prompts} ({meta['n_prompts']} prompts), "
        f"{args.max_new_tokens} new tokens, {'sampling' if sampling else 'greedy'}")
    if chart is None and earlier and (out / "chart.png").exists():  # the earlier run's chart would not match
        (out / "chart.png").unlink()
    (out / "table.txt").write_text(table + "\n")
    print(f"results: {path}" + (f", chart: {chart}" if chart else ""), file=sys.stderr)
    failed = [s for s in result.summaries if s.mismatches and s.kind in ("draftkit", "bound")]
    return 1 if (failed or result.failed) and args.strict else 0


def _unescape(text: str) -> str:
    r"""``\n``, ``\t``, ``\r`` and ``\\`` in a command-line stop string, as a user types them."""
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapes:
            out.append(escapes[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _lazy(module: str, name: str) -> Any:
    """A subcommand function imported only when the subcommand runs."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), name)(args) or 0)

    return run


def _check_datastore_inputs(args: argparse.Namespace) -> None:
    """``datastore build`` without ``--tokenizer``: say which flag is missing (the library names keywords)."""
    from .sources.rest.corpus import corpus_kind

    if args.tokenizer is not None:
        return
    text = [f for f in args.corpus if corpus_kind(f) != "npy"]
    if text:
        raise InvalidInputError(f"{text[0]} is text; pass --tokenizer FOLDER (the target model's tokenizer) "
                                "to tokenise it")
    if args.vocab_size is None:
        raise InvalidInputError("with only .npy inputs and no --tokenizer, pass --vocab-size N (the target "
                                "tokenizer's len(tokenizer)), or --tokenizer FOLDER")


def _datastore_command(action: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from .sources.rest import commands

        if action == "build":
            _check_datastore_inputs(args)
            text = commands.datastore_build(
                args.corpus, args.output, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                jsonl_field=args.jsonl_field, chunk_tokens=args.chunk_tokens, overwrite=args.overwrite,
                progress=not args.no_progress)
        elif action == "info":
            text = commands.datastore_info(args.path)
        else:
            text = commands.datastore_verify(args.path, tokenizer=args.tokenizer, progress=not args.no_progress)
        print(text)
        return 0

    return run


def _add_lazy_arguments(parser: argparse.ArgumentParser) -> None:
    """Let the owning module declare its arguments (imports it, which is cheap: no Numba compile)."""
    import importlib

    module, name = parser.get_default("add_arguments")
    getattr(importlib.import_module(module), name)(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="draftkit",
        description="Lossless speculative decoding for Hugging Face causal LMs: drafts are proposed "
        "by pluggable sources and verified by the model itself, so the output is exactly what plain "
        "decoding produces, only faster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = sub.add_parser(
        "generate", help="stream a completion and print decoding statistics",
        description="Generate a continuation of PROMPT with speculative decoding, streaming the text to "
        "stdout and the statistics (tokens per step, acceptance, time split) to stderr.",
        formatter_class=_DefaultsHelpFormatter,
    )
    gen.add_argument("prompt", help="prompt text, or - to read it from stdin")
    gen.add_argument("--model", default="demo", help="model folder, or 'demo' for the shipped demo model")
    gen.add_argument("--source", default="pld",
                     help="draft source name (see `draftkit plugins`); a+b merges sources a and b")
    gen.add_argument("--source-option", action="append", default=[], metavar="KEY=VALUE",
                     help="option passed to the source factory (repeatable), e.g. matrix=m.aded (aded) or "
                     "path=STORE (rest); with a+b, name the member: aded.matrix=m.aded")
    gen.add_argument("--tree", default="trie", help="tree builder: trie or chain")
    gen.add_argument("--budget", type=argtypes.budget, default="auto",
                     help="draft nodes verified per step: an integer, or 'auto' to pick per step from the "
                     "model's measured verify cost")
    gen.add_argument("--max-new-tokens", type=argtypes.positive, default=None,
                     help="never more new tokens than this (default: the model's generation_config "
                     "max_new_tokens or max_length, as model.generate; else 128)")
    gen.add_argument("--temperature", type=float,
                     help="sample with this temperature; 0 decodes greedily (default: greedy, unless the "
                     "model's generation_config sets do_sample, as model.generate does)")
    gen.add_argument("--top-p", type=float, help="nucleus sampling: keep the smallest set of this mass")
    gen.add_argument("--top-k", type=int, help="sample among the k likeliest tokens only")
    gen.add_argument("--min-p", type=float, help="sample among tokens at least this fraction as likely as the top one")
    gen.add_argument("--seed", type=int, help="seed of the sampling stream (default: a random one)")
    gen.add_argument("--repetition-penalty", type=float,
                     help="divide the scores of tokens already in the text by this (greedy too; HF semantics)")
    gen.add_argument("--no-repeat-ngram-size", type=int,
                     help="never repeat an n-gram of this size (greedy too; HF semantics)")
    gen.add_argument("--min-new-tokens", type=int, help="no EOS before this many new tokens")
    gen.add_argument("--stop", action="append", type=_unescape,
                     help="stop string (repeatable); \\n, \\t and \\\\ are read as newline, tab and "
                     "backslash, so --stop '\\n\\n' stops at a blank line. The stop string is kept in "
                     "the output, as in Hugging Face generate")
    gen.add_argument("--chat", action="store_true",
                     help="wrap the prompt as one user turn in the tokenizer's chat template (chat models)")
    gen.add_argument("--dtype", default="float32", choices=DTYPES,
                     help="weights and compute dtype of the model")
    gen.add_argument("--threads", type=argtypes.threads, default=0, help="torch threads (0: torch's default)")
    gen.set_defaults(func=cmd_generate)

    bench = sub.add_parser(
        "bench", help="benchmark every draft source against plain decoding and HF generate",
        description="Run plain decoding, Hugging Face generate (plain, prompt lookup, assisted) and one "
        "speculative decoder per registered source side by side on the same prompts, in one process. "
        "Reports tokens/s, speedup over the faster plain baseline (median of per-prompt ratios), mean "
        "accepted tokens per step, acceptance, time split, peak memory, the share of outputs ending "
        "in a repetition loop and the speedup over the prompts whose baseline output does not loop, "
        "and checks that greedy outputs are token-identical to plain decoding. "
        "Writes results.json, Spec-Bench-style answers/*.jsonl, table.txt and chart.png to --out.",
        formatter_class=_DefaultsHelpFormatter,
    )
    bench.add_argument("--model", default="demo", help="model folder, or 'demo'")
    bench.add_argument("--draft-model", help="draft model folder for hf-assisted (default: the demo draft "
                       "model with --model demo)")
    bench.add_argument("--prompts", default="quick",
                       help="quick (20 HumanEval), humaneval (164), stdlib (held-out library files), mixed, "
                       "or a Spec-Bench question.jsonl")
    bench.add_argument("--limit", type=argtypes.positive, help="use at most this many prompts")
    bench.add_argument("--methods", help="comma-separated subset, e.g. plain,hf,pld,aded; 'a+b' is a composite "
                       "source; 'oracle' drafts plain decoding's own answer, the ceiling of any source "
                       "(default: all)")
    bench.add_argument("--max-new-tokens", type=argtypes.positive, default=128, help="new tokens per prompt (at most)")
    bench.add_argument("--temperature", type=float, help="sample at this temperature; 0 is greedy (default: greedy)")
    bench.add_argument("--top-p", type=float, help="nucleus sampling (implies sampling)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the sampling streams (with --temperature)")
    bench.add_argument("--repeats", type=argtypes.positive, default=1, help="runs per prompt and method; the median counts")
    bench.add_argument("--budget", type=argtypes.budget, help="draft nodes per step for every source: an integer or "
                       "'auto' (default: the decoder's default)")
    bench.add_argument("--out", default="bench-results", help="output folder")
    bench.add_argument("--cache-dir", default=None, help="where corpus artefacts (ADED matrix, retrieval "
                       "store) are cached (default: ~/.cache/draftkit)")
    bench.add_argument("--no-corpus", action="store_true", help="do not build corpus-backed sources")
    bench.add_argument("--answers", metavar="FILE",
                       help="a jsonl of the model's own answers (`draftkit answers build`) added to the corpus of the "
                       "ADED matrix and retrieval datastore; 'none' for the corpus alone (default: the shipped "
                       "answers with --model demo, none otherwise)")
    bench.add_argument("--chat", action="store_true",
                       help="wrap each prompt as one user turn in the tokenizer's chat template (chat models; "
                       "Spec-Bench questions are meant for it)")
    bench.add_argument("--dtype", default="float32", choices=DTYPES,
                       help="weights and compute dtype of the models")
    bench.add_argument("--threads", type=argtypes.threads, default=0, help="torch threads (0: torch's default)")
    bench.add_argument("--no-chart", action="store_true", help="do not draw chart.png")
    bench.add_argument("--strict", action="store_true", help="exit 1 if a draftkit output differs or a method fails")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=cmd_bench)

    aded = sub.add_parser("aded", help="ADED tri-gram matrices (build)",
                          description="Tools for the ADED draft source's tri-gram matrix.")
    aded_sub = aded.add_subparsers(dest="aded_command", metavar="ACTION")
    aded_build = aded_sub.add_parser(
        "build", help="build a tri-gram matrix from text / jsonl / .npy token files with the target's tokenizer",
        description="Tokenise a corpus with the target model's tokenizer (or read pre-tokenised .npy id arrays) "
        "and write a versioned tri-gram matrix file (header with format version, vocabulary size, tokenizer fingerprint and checksum). "
        "Use it with SpeculativeDecoder(model, source=draftkit.sources.Aded.load(PATH)) or "
        "`draftkit generate --source aded --source-option matrix=PATH`.")
    aded_build.set_defaults(func=_lazy("draftkit.sources.aded.cli", "build_matrix_cli"),
                            add_arguments=("draftkit.sources.aded.cli", "add_build_arguments"))
    _add_lazy_arguments(aded_build)
    aded.set_defaults(func=lambda args: (aded.print_help(), 2)[1])

    answers = sub.add_parser("answers", help="a corpus of the model's own answers, to warm aded / rest (build)",
                             description="Corpora of the target model's own greedy answers.")
    answers_sub = answers.add_subparsers(dest="answers_command", metavar="ACTION")
    answers_build = answers_sub.add_parser(
        "build", help="answer prompts cut from a corpus with the model, greedily, and write them as jsonl",
        description="Cut prompts at random line ends of a corpus (seeded), let the model continue each one greedily "
        "and write the answers as jsonl records {\"text\": ...}. A matrix (`draftkit aded build`) or datastore "
        "(`draftkit datastore build`) built from them plus the corpus drafts what this model writes, not only what "
        "the corpus says: ADED learns that online, this gives it up front. Keep evaluation prompts out of the "
        "corpus. Appends as it goes; --resume continues an interrupted run with the same options.")
    answers_build.set_defaults(func=_lazy("draftkit.sources.own_answers_cli", "build_answers_cli"),
                               add_arguments=("draftkit.sources.own_answers_cli", "add_build_arguments"))
    _add_lazy_arguments(answers_build)
    answers.set_defaults(func=lambda args: (answers.print_help(), 2)[1])

    store = sub.add_parser("datastore", help="retrieval datastores for the rest source (build, info, verify)",
                           description="Build and check the memory-mapped suffix-array datastores of the `rest` "
                           "(retrieval) draft source.")
    store_sub = store.add_subparsers(dest="store_command", metavar="ACTION")
    sb = store_sub.add_parser(
        "build", help="build a datastore from text / jsonl / .npy token files",
        description="Tokenise a corpus with the target's tokenizer (or read pre-tokenised .npy id arrays) and "
        "write a datastore folder of memory-mapped token and suffix arrays, with a header holding the format "
        "version, vocabulary size, tokenizer fingerprint and checksums. Prints tokens, size on disk and time.")
    sb.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help="text, .jsonl or .npy files")
    sb.add_argument("-o", "--output", required=True, help="datastore folder to create")
    sb.add_argument("--tokenizer", help="tokenizer folder (required unless every input is .npy)")
    sb.add_argument("--vocab-size", type=int, help="vocabulary size (only needed when every input is .npy)")
    sb.add_argument("--jsonl-field", default="text", help="field holding the text in jsonl records")
    sb.add_argument("--chunk-tokens", type=int, default=2**26, help="tokens per chunk (bounds build memory)")
    sb.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    sb.add_argument("--no-progress", action="store_true", help="no progress bar")
    sb.set_defaults(func=_datastore_command("build"))
    si = store_sub.add_parser("info", help="print a datastore's header (after the cheap integrity checks)",
                              description="Print a datastore's header: format, vocabulary size, tokens and documents, "
                              "chunks, size on disk, tokenizer fingerprint, creation time and corpus description. "
                              "Only the cheap integrity checks run (header, file sizes); 'datastore verify' reads "
                              "every byte.")
    si.add_argument("path", help="datastore folder")
    si.set_defaults(func=_datastore_command("info"))
    sv = store_sub.add_parser("verify", help="check every checksum and token id of a datastore",
                              description="Read a whole datastore and check every file's SHA-256 checksum and every "
                              "chunk's tokens and suffix array; with --tokenizer, also that the store was built "
                              "with that tokenizer. Exit 0 if it is intact, 1 naming the first problem found.")
    sv.add_argument("path", help="datastore folder")
    sv.add_argument("--tokenizer", help="also check the store was built with this tokenizer")
    sv.add_argument("--no-progress", action="store_true", help="no progress bar")
    sv.set_defaults(func=_datastore_command("verify"))
    store.set_defaults(func=lambda args: (store.print_help(), 2)[1])

    ls = sub.add_parser("layerskip", help="layer-skip self-speculation (search a skip set)",
                        description="Tools for the layerskip draft source (Draft & Verify).")
    ls_sub = ls.add_subparsers(dest="layerskip_command", metavar="ACTION")
    ls_search = ls_sub.add_parser(
        "search", help="find which sub-layers to skip by Bayesian optimisation of measured speed",
        description="Search the attention / MLP sub-layers to skip when the model drafts for itself, by "
        "Bayesian optimisation (Gaussian process) over per-layer switches, with the paper's objective: the "
        "measured tokens/s of self-speculative greedy decoding on a few calibration prompts. Resumable (the "
        "state is saved after every trial); prints the best set and its speedup; the result file records the "
        "model it was searched for. Needs `pip install 'draftkit[layerskip]'`.")
    ls_search.set_defaults(func=_lazy("draftkit.sources.layerskip.command", "run_search"),
                           add_arguments=("draftkit.sources.layerskip.command", "add_search_arguments"))
    _add_lazy_arguments(ls_search)
    ls.set_defaults(func=lambda args: (ls.print_help(), 2)[1])

    plug = sub.add_parser(
        "plugins", help="list every source, tree builder and verifier with the package providing it",
        description="List the registered parts and any plugin that failed to load.",
    )
    plug.add_argument("--json", action="store_true", help="machine-readable output")
    plug.set_defaults(func=cmd_plugins)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """Warnings on the command line as one line each, like errors (not Python's file:line and source)."""
    return f"draftkit: warning: {str(message).removeprefix('draftkit: ').removeprefix('draftkit ')}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    formatwarning = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `draftkit datastore info store | head`
        return 0
    except (DraftkitError, OSError) as exc:  # OSError: a missing or unreadable file or folder
        print(f"draftkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
