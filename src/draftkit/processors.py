"""Hugging Face ``generate`` logits processors beyond draftkit's own sampling settings.

Users of ``model.generate`` pass ``no_repeat_ngram_size``, ``min_new_tokens``,
``bad_words_ids``, ``suppress_tokens``, ``typical_p``, their own
``logits_processor`` list, ... Each is a function of the sequence so far and the
next-token scores, so it can be verified losslessly: a tree row's scores are
processed with the context *plus that row's own path*, exactly the sequence plain
decoding would have at that position.

The processors are Hugging Face's own classes, built once per request with the
arguments ``generate`` gives them, and applied in ``generate``'s order (see
``GenerationMixin._get_logits_processor``): reusing them, not re-implementing
them, is what makes draftkit's distribution the one ``model.generate`` samples
from. :class:`draftkit.logits.LogitsPipeline` runs the stages between its own
repetition penalty and sampling warpers.

A user's ``logits_processor`` must be a pure function of ``(input_ids, scores)``
(the Hugging Face contract): it is called once per verified tree row, with that
row's sequence, not once per emitted token.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InvalidInputError

__all__ = ["PROCESSOR_OPTIONS", "ExtraProcessors", "build_extra_processors", "configured_processor_options"]

#: ``generate()`` options handled here, in the order Hugging Face builds their processors.
PROCESSOR_OPTIONS = (
    "sequence_bias",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "min_length",
    "min_new_tokens",
    "prefix_allowed_tokens_fn",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "remove_invalid_values",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
    "logits_processor",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "renormalize_logits",
)

#: Options a call-site ``None`` leaves to the model's generation config (not callables).
_CONFIGURABLE = tuple(o for o in PROCESSOR_OPTIONS if o not in ("prefix_allowed_tokens_fn", "logits_processor"))

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class ExtraProcessors:
    """One request's Hugging Face processors, by where ``generate`` applies them.

    ``before_penalty`` runs before the repetition penalty (``sequence_bias``);
    ``penalty`` is a user's processor that takes the repetition penalty's place
    (see ``replaces_repetition_penalty``); ``before_warpers`` runs after it and
    before temperature (also in greedy mode); ``after_warpers`` after min-p
    (sampling only); ``final`` last. Every processor takes
    ``(input_ids [1, L], scores [1, V])``.
    """

    before_penalty: tuple[Processor, ...] = ()
    penalty: tuple[Processor, ...] = ()
    before_warpers: tuple[Processor, ...] = ()
    after_warpers: tuple[Processor, ...] = ()
    final: tuple[Processor, ...] = ()
    #: A user's ``RepetitionPenaltyLogitsProcessor`` replaces the built-in penalty, as in
    #: ``generate``; the request's ``repetition_penalty`` is then not applied.
    replaces_repetition_penalty: bool = False
    #: ``name=value`` of each option in use, for messages.
    described: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.before_penalty or self.penalty or self.before_warpers or self.after_warpers or self.final)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    return float(value)


def _is_off(name: str, value: Any) -> bool:
    """Whether ``value`` switches the option's processor off, by ``generate``'s own tests."""
    if value is None:
        return True
    if name in ("no_repeat_ngram_size", "min_length", "min_new_tokens"):
        return not _number(name, value) > 0
    if name in ("epsilon_cutoff", "eta_cutoff"):
        return not 0.0 < _number(name, value) < 1.0
    if name == "typical_p":
        return not _number(name, value) < 1.0
    if name in ("remove_invalid_values", "renormalize_logits"):
        return value is not True
    if name in ("logits_processor", "suppress_tokens", "begin_suppress_tokens", "sequence_bias"):
        return hasattr(value, "__len__") and len(value) == 0
    return False


def configured_processor_options(model: torch.nn.Module, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options in effect, resolved like ``model.generate``: the call's (an explicit ``None``
    included, which switches an option off), else the model's generation config's.

    Options whose value switches their processor off are dropped; ``min_new_tokens``
    supersedes ``min_length`` (``generate`` turns it into the same bound).
    """
    config = getattr(model, "generation_config", None)
    out: dict[str, Any] = {}
    for name in PROCESSOR_OPTIONS:
        if name in given:
            value = given[name]
        else:
            value = getattr(config, name, None) if name in _CONFIGURABLE and config is not None else None
        if not _is_off(name, value):
            out[name] = value
    if "min_new_tokens" in out:
        out.pop("min_length", None)
    return out


def _token_id(name: str, t: Any, vocab_size: int) -> int:
    try:
        tok = operator.index(t)  # int, NumPy and 0-d torch integers; not floats
    except TypeError:
        tok = -1
    if isinstance(t, bool) or not 0 <= tok < vocab_size:
        raise InvalidInputError(f"{name} holds {t!r}, which is not a token id of this model (0 to {vocab_size - 1})")
    return tok


def _token_ids(name: str, value: Any, vocab_size: int, nested: bool = False) -> list[Any]:
    """``value`` as a list of token ids (``nested``: of lists of ids), each in ``[0, vocab_size)``."""
    items = [value] if not nested and not isinstance(value, (list, tuple, str, bytes)) and hasattr(value, "__index__") \
        else value
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple)):
        what = "a list of lists of token ids" if nested else "a list of token ids"
        raise InvalidInputError(f"{name} must be {what}, got {value!r}")
    if not nested:
        return [_token_id(name, t, vocab_size) for t in items]
    out = []
    for seq in items:
        if not isinstance(seq, (list, tuple)):
            raise InvalidInputError(f"{name} must be a list of lists of token ids, got {value!r}")
        out.append([_token_id(name, t, vocab_size) for t in seq])
    return out


def _unit_interval(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise InvalidInputError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def build_extra_processors(
    options: Mapping[str, Any],
    *,
    prompt_length: int,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    do_sample: bool,
    vocab_size: int,
    repetition_penalty_active: bool = False,
    device: torch.device | str = "cpu",
) -> ExtraProcessors | None:
    """Hugging Face's processors for ``options`` (see :func:`configured_processor_options`), or ``None``.

    The arguments are the ones ``generate`` passes: the prompt length (for
    ``min_new_tokens``, ``begin_suppress_tokens`` and the decay penalty), the
    maximum length ``prompt_length + max_new_tokens`` (``forced_eos_token_id``)
    and the ids that end generation (processors that protect or forbid EOS; as in
    Hugging Face, ``min_length`` / ``min_new_tokens`` do nothing without them).
    Token ids are checked against ``vocab_size`` here, so a bad id fails the call,
    not its first step. ``repetition_penalty_active``: whether the request's own
    repetition penalty runs (a user's processor of that type then replaces it).
    """
    if not options:
        return None
    from transformers.generation import logits_process as lp

    eos = sorted(int(e) for e in eos_token_ids)
    eos_tensor = torch.tensor(eos, dtype=torch.long, device=device) if eos else None
    o = dict(options)
    # Built-ins before the warpers, in generate's order; None marks the repetition penalty's place.
    pre: list[tuple[str, Processor | None]] = []
    after: list[Processor] = []
    final: list[Processor] = []

    def built(name: str, make: Callable[[], Processor]) -> Processor:
        try:
            return make()
        except InvalidInputError:
            raise
        except (ValueError, TypeError, IndexError) as exc:  # Hugging Face's own argument checks
            raise InvalidInputError(f"{name}={o[name]!r} is not valid: {exc}") from exc

    if "sequence_bias" in o:
        bias = o["sequence_bias"]
        if isinstance(bias, Mapping):  # HF 4.x form {(tokens...): bias}
            bias = [[list(k) if isinstance(k, (list, tuple)) else [k], v] for k, v in bias.items()]
        if not isinstance(bias, (list, tuple)) or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in bias):
            raise InvalidInputError(f"sequence_bias must be a list of [token ids, bias] pairs, got {o['sequence_bias']!r}")
        keys = _token_ids("sequence_bias", [e[0] for e in bias], vocab_size, nested=True)
        bias = [[ids, e[1]] for ids, e in zip(keys, bias, strict=True)]
        pre.append(("sequence_bias", built("sequence_bias", lambda: lp.SequenceBiasLogitsProcessor(sequence_bias=bias))))
    if repetition_penalty_active:
        pre.append(("repetition_penalty", None))
    if "no_repeat_ngram_size" in o:
        size = o["no_repeat_ngram_size"]
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidInputError(f"no_repeat_ngram_size must be an integer, got {size!r}")
        pre.append(("no_repeat_ngram_size", lp.NoRepeatNGramLogitsProcessor(size)))
    if "bad_words_ids" in o:
        words = _token_ids("bad_words_ids", o["bad_words_ids"], vocab_size, nested=True)
        pre.append(("bad_words_ids", built("bad_words_ids", lambda: lp.NoBadWordsLogitsProcessor(words, eos_tensor))))
    if "min_length" in o and eos_tensor is not None:
        pre.append(("min_length", built("min_length", lambda: lp.MinLengthLogitsProcessor(
            int(o["min_length"]), eos_tensor, device=device))))
    if "min_new_tokens" in o and eos_tensor is not None:
        pre.append(("min_new_tokens", built("min_new_tokens", lambda: lp.MinNewTokensLengthLogitsProcessor(
            prompt_length, int(o["min_new_tokens"]), eos_tensor, device=device))))
    if "prefix_allowed_tokens_fn" in o:
        if not callable(o["prefix_allowed_tokens_fn"]):
            raise InvalidInputError("prefix_allowed_tokens_fn must be a callable (batch_id, input_ids) -> token ids")
        pre.append(("prefix_allowed_tokens_fn", lp.PrefixConstrainedLogitsProcessor(o["prefix_allowed_tokens_fn"], 1)))
    forced: dict[str, list[int]] = {}
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        if name in o:
            forced[name] = _token_ids(name, o[name], vocab_size)
    if "forced_bos_token_id" in o:
        if len(forced["forced_bos_token_id"]) != 1:
            raise InvalidInputError(f"forced_bos_token_id must be one token id, got {o['forced_bos_token_id']!r}")
        pre.append(("forced_bos_token_id", lp.ForcedBOSTokenLogitsProcessor(forced["forced_bos_token_id"][0])))
    if "forced_eos_token_id" in o:
        pre.append(("forced_eos_token_id", lp.ForcedEOSTokenLogitsProcessor(
            prompt_length + max_new_tokens, forced["forced_eos_token_id"], device=device)))
    if "remove_invalid_values" in o:
        pre.append(("remove_invalid_values", lp.InfNanRemoveLogitsProcessor()))
    if "exponential_decay_length_penalty" in o:
        decay = o["exponential_decay_length_penalty"]
        if not isinstance(decay, (list, tuple)) or len(decay) != 2:
            raise InvalidInputError(f"exponential_decay_length_penalty must be (start_index, decay_factor), got {decay!r}")
        if eos_tensor is None:
            raise InvalidInputError("exponential_decay_length_penalty needs an EOS token id to favour")
        pre.append(("exponential_decay_length_penalty", lp.ExponentialDecayLengthPenalty(
            (int(decay[0]), float(decay[1])), eos_tensor, prompt_length)))
    if "suppress_tokens" in o:
        suppressed = _token_ids("suppress_tokens", o["suppress_tokens"], vocab_size)
        for name, ids in forced.items():  # generate refuses this too: all logits -inf at the forced step
            if set(ids) <= set(suppressed):
                raise InvalidInputError(f"every token of {name} ({ids}) is also in suppress_tokens: forcing a token "
                                        "while suppressing it leaves no token to emit. Remove the overlap (to "
                                        "prevent an early EOS, use min_new_tokens)")
        pre.append(("suppress_tokens", lp.SuppressTokensLogitsProcessor(suppressed, device=device)))
    if "begin_suppress_tokens" in o:
        begin = prompt_length + 1 if prompt_length == 1 and "forced_bos_token_id" in o else prompt_length
        pre.append(("begin_suppress_tokens", lp.SuppressTokensAtBeginLogitsProcessor(
            _token_ids("begin_suppress_tokens", o["begin_suppress_tokens"], vocab_size), begin, device=device)))
    if "logits_processor" in o:
        pre = _merge_custom(pre, o["logits_processor"])
    if do_sample:
        if "typical_p" in o:
            after.append(lp.TypicalLogitsWarper(mass=_unit_interval("typical_p", o["typical_p"])))
        if "epsilon_cutoff" in o:
            after.append(lp.EpsilonLogitsWarper(epsilon=float(o["epsilon_cutoff"])))
        if "eta_cutoff" in o:
            after.append(lp.EtaLogitsWarper(epsilon=float(o["eta_cutoff"]), device=device))
    if "renormalize_logits" in o:
        final.append(lp.LogitNormalization())
    # Split at the repetition penalty's place: draftkit applies its own penalty between the stages.
    marks = [i for i, (name, _) in enumerate(pre) if name in ("repetition_penalty", "custom:repetition_penalty")]
    k = marks[0] if marks else -1
    replaced = bool(marks) and pre[k][0] == "custom:repetition_penalty"
    extra = ExtraProcessors(
        before_penalty=tuple(p for _, p in pre[:k] if p is not None) if marks else (),
        penalty=tuple(p for _, p in pre[k : k + 1] if p is not None) if replaced else (),
        before_warpers=tuple(p for _, p in pre[k + 1 :] if p is not None),
        after_warpers=tuple(after),
        final=tuple(final),
        replaces_repetition_penalty=replaced,
        described=tuple(f"{name}={'<function>' if callable(value) else value!r}" for name, value in o.items()),
    )
    return extra if extra else None


def _merge_custom(defaults: list[tuple[str, Processor | None]], custom: Any) -> list[tuple[str, Processor | None]]:
    """A user's processors join the built-in ones as in ``generate``: one of a built-in's type
    replaces it in place (the repetition penalty included), the others follow."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    if not isinstance(custom, (list, tuple)):
        raise InvalidInputError(f"logits_processor must be a list of processors, got {type(custom).__name__}")
    for p in custom:
        if not callable(p):
            raise InvalidInputError(f"logits_processor entries must be callables (input_ids, scores) -> scores, "
                                    f"got {type(p).__name__}")
    merged: list[tuple[str, Processor | None]] = []
    used: list[Processor] = []
    for name, d in defaults:
        kind = RepetitionPenaltyLogitsProcessor if d is None else type(d)
        same = next((c for c in custom if type(c) is kind), None)
        if same is None:
            merged.append((name, d))
        else:
            merged.append(("custom:repetition_penalty" if d is None else name, same))
            used.append(same)
    merged.extend(("custom", c) for c in custom if all(c is not u for u in used))
    return merged
