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

    ``before_penalty`` runs before the repetition penalty (``sequence_bias``),
    ``before_warpers`` after it and before temperature (also in greedy mode),
    ``after_warpers`` after min-p (sampling only), ``final`` last.
    Every processor takes ``(input_ids [1, L], scores [1, V])``.
    """

    before_penalty: tuple[Processor, ...] = ()
    before_warpers: tuple[Processor, ...] = ()
    after_warpers: tuple[Processor, ...] = ()
    final: tuple[Processor, ...] = ()
    #: ``name=value`` of each option in use, for messages.
    described: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.before_penalty or self.before_warpers or self.after_warpers or self.final)


def _is_default(name: str, value: Any, defaults: Mapping[str, Any]) -> bool:
    if value is None or value == defaults.get(name):
        return True
    if name in ("no_repeat_ngram_size", "min_length", "min_new_tokens"):
        return not value
    if name in ("epsilon_cutoff", "eta_cutoff"):
        return not value
    if name == "typical_p":
        return value >= 1.0
    if name in ("remove_invalid_values", "renormalize_logits"):
        return value is False
    if name == "logits_processor":
        return len(value) == 0
    return isinstance(value, (list, tuple, dict)) and len(value) == 0


def _hf_defaults() -> dict[str, Any]:
    try:
        from transformers import GenerationConfig

        return dict(GenerationConfig._get_default_generation_params())
    except (ImportError, AttributeError):  # pragma: no cover - older transformers
        return {}


def configured_processor_options(model: torch.nn.Module, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options in effect: the call's, else the model's generation config's (like ``model.generate``).

    Options left at Hugging Face's defaults (which switch the processor off) are dropped.
    """
    config = getattr(model, "generation_config", None)
    defaults = _hf_defaults()
    out: dict[str, Any] = {}
    for name in PROCESSOR_OPTIONS:
        value = given.get(name)
        if value is None and name in _CONFIGURABLE and config is not None:
            value = getattr(config, name, None)
        if not _is_default(name, value, defaults):
            out[name] = value
    return out


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return value


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
    device: torch.device | str = "cpu",
) -> ExtraProcessors | None:
    """Hugging Face's processors for ``options`` (see :func:`configured_processor_options`), or ``None``.

    The arguments are the ones ``generate`` passes: the prompt length (for
    ``min_new_tokens``, ``begin_suppress_tokens`` and the decay penalty), the
    maximum length ``prompt_length + max_new_tokens`` (``forced_eos_token_id``)
    and the EOS ids (processors that protect or forbid EOS; as in Hugging Face,
    ``min_length`` / ``min_new_tokens`` do nothing without EOS ids).
    """
    if not options:
        return None
    from transformers.generation import logits_process as lp

    eos = sorted(int(e) for e in eos_token_ids)
    eos_tensor = torch.tensor(eos, dtype=torch.long, device=device) if eos else None
    o = dict(options)
    first: list[Processor] = []
    before: list[Processor] = []
    after: list[Processor] = []
    final: list[Processor] = []
    try:
        if "sequence_bias" in o:
            bias = o["sequence_bias"]
            if isinstance(bias, Mapping):  # HF 4.x form {(tokens...): bias}
                bias = [[list(k), float(v)] for k, v in bias.items()]
            first.append(lp.SequenceBiasLogitsProcessor(sequence_bias=bias))
        if "no_repeat_ngram_size" in o:
            before.append(lp.NoRepeatNGramLogitsProcessor(_positive_int("no_repeat_ngram_size",
                                                                        o["no_repeat_ngram_size"])))
        if "bad_words_ids" in o:
            before.append(lp.NoBadWordsLogitsProcessor(o["bad_words_ids"], eos_tensor))
        if "min_length" in o and eos_tensor is not None:
            before.append(lp.MinLengthLogitsProcessor(_positive_int("min_length", o["min_length"]), eos_tensor,
                                                      device=device))
        if "min_new_tokens" in o and eos_tensor is not None:
            before.append(lp.MinNewTokensLengthLogitsProcessor(
                prompt_length, _positive_int("min_new_tokens", o["min_new_tokens"]), eos_tensor, device=device))
        if "prefix_allowed_tokens_fn" in o:
            before.append(lp.PrefixConstrainedLogitsProcessor(o["prefix_allowed_tokens_fn"], 1))
        if "forced_bos_token_id" in o:
            before.append(lp.ForcedBOSTokenLogitsProcessor(int(o["forced_bos_token_id"])))
        if "forced_eos_token_id" in o:
            before.append(lp.ForcedEOSTokenLogitsProcessor(prompt_length + max_new_tokens, o["forced_eos_token_id"],
                                                           device=device))
        if "remove_invalid_values" in o:
            before.append(lp.InfNanRemoveLogitsProcessor())
        if "exponential_decay_length_penalty" in o:
            if eos_tensor is None:
                raise InvalidInputError("exponential_decay_length_penalty needs an EOS token id to favour")
            before.append(lp.ExponentialDecayLengthPenalty(tuple(o["exponential_decay_length_penalty"]), eos_tensor,
                                                           prompt_length))
        if "suppress_tokens" in o:
            before.append(lp.SuppressTokensLogitsProcessor(list(o["suppress_tokens"]), device=device))
        if "begin_suppress_tokens" in o:
            begin = prompt_length + 1 if prompt_length == 1 and "forced_bos_token_id" in o else prompt_length
            before.append(lp.SuppressTokensAtBeginLogitsProcessor(list(o["begin_suppress_tokens"]), begin,
                                                                  device=device))
        if "logits_processor" in o:
            before = _merge_custom(before, list(o["logits_processor"]))
        if do_sample:
            if "typical_p" in o:
                after.append(lp.TypicalLogitsWarper(mass=_unit_interval("typical_p", o["typical_p"])))
            if "epsilon_cutoff" in o:
                after.append(lp.EpsilonLogitsWarper(epsilon=_unit_interval("epsilon_cutoff", o["epsilon_cutoff"])))
            if "eta_cutoff" in o:
                after.append(lp.EtaLogitsWarper(epsilon=_unit_interval("eta_cutoff", o["eta_cutoff"]), device=device))
        if "renormalize_logits" in o:
            final.append(lp.LogitNormalization())
    except InvalidInputError:
        raise
    except (ValueError, TypeError) as exc:  # Hugging Face's own argument checks
        raise InvalidInputError(f"invalid generate() option: {exc}") from exc
    described = tuple(f"{k}={'<function>' if callable(v) else v!r}" for k, v in o.items())
    extra = ExtraProcessors(tuple(first), tuple(before), tuple(after), tuple(final), described)
    return extra if extra else None


def _merge_custom(defaults: list[Processor], custom: list[Processor]) -> list[Processor]:
    """A user's processors join the built-in ones as in ``generate``: one of a built-in's type
    replaces it in place, the others follow."""
    for p in custom:
        if not callable(p):
            raise InvalidInputError(f"logits_processor entries must be callables (input_ids, scores) -> scores, "
                                    f"got {type(p).__name__}")
    merged = []
    for d in defaults:
        same = next((c for c in custom if type(c) is type(d)), None)
        merged.append(same if same is not None else d)
    merged.extend(c for c in custom if all(c is not m for m in merged))
    return merged
