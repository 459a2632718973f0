"""Validate one ``generate()`` call into an immutable plan.

Both the speculative decoder and the plain baseline go through
:func:`plan_request`, so they agree on defaults (EOS from the model's
generation config, HF sampling semantics) and on every input error.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..checks import is_integer
from ..errors import BatchSizeError, EmptyPromptError, InvalidInputError, UnsupportedSamplingError
from ..processors import PROCESSOR_OPTIONS, build_extra_processors, configured_processor_options
from ..types import SamplingParams
from ..verify.random import RandomStream
from .stopping import StopConditions, StopStringMatcher
from .target import TargetModel

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "RequestPlan", "plan_request", "prepare_prompt", "default_do_sample", "default_eos_ids", "UNSUPPORTED_GENERATE_OPTIONS", "check_tokenizer"]

#: Hugging Face ``generate`` options that draftkit does not implement, with the reason. They are
#: refused by name instead of being silently ignored: ignoring one would change the output (or
#: what is returned) without telling anyone. The logits processors draftkit does apply are
#: listed in :data:`draftkit.processors.PROCESSOR_OPTIONS`.
UNSUPPORTED_GENERATE_OPTIONS: dict[str, str] = {
    **dict.fromkeys(("num_beams", "num_beam_groups", "diversity_penalty", "length_penalty", "early_stopping",
                     "constraints", "force_words_ids"), "beam search is not speculative decoding"),
    "num_return_sequences": "more than one sequence per call needs generate() and do_sample=True",
    "penalty_alpha": "contrastive search is not supported",
    "guidance_scale": "classifier-free guidance needs a second forward pass per token",
    "top_h": "top-h sampling is not implemented",
    **dict.fromkeys(("encoder_repetition_penalty", "encoder_no_repeat_ngram_size"),
                    "draftkit runs decoder-only models"),
    "watermarking_config": "watermarking is not supported",
    **dict.fromkeys(("output_attentions", "output_hidden_states"),
                    "draftkit returns the sequences, scores / logits and decoding statistics only"),
    "dola_layers": "DoLa decoding is not supported",
    "token_healing": "token healing is not supported",
    **dict.fromkeys(("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit"),
                    "draftkit does its own speculative decoding: pick a draft source instead"),
}


def _inert(name: str, value: Any) -> bool:
    """Values of unsupported options that change nothing here (``num_beams=1``, ...): accepted."""
    if value is None:
        return True
    if name in ("num_beams", "num_beam_groups", "num_return_sequences"):
        return value == 1
    if name in ("length_penalty", "early_stopping"):
        return True  # beam search only
    if name in ("diversity_penalty", "penalty_alpha"):
        return not value
    if name in ("guidance_scale", "encoder_repetition_penalty"):
        return value == 1.0
    if name == "encoder_no_repeat_ngram_size":
        return not value
    if name in ("force_words_ids", "constraints"):
        return len(value) == 0
    if name in ("output_attentions", "output_hidden_states", "token_healing"):
        return value is False
    return False


class _Unset:
    """The default of ``generate()`` options the call did not give (``None`` given means "off", as in HF)."""

    def __repr__(self) -> str:
        return "<not given>"


UNSET: Any = _Unset()


def prepare_prompt(input_ids: torch.Tensor | Sequence[int] | np.ndarray) -> torch.Tensor:
    """Validate a prompt and return it as an int64 CPU tensor [T]."""
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids
    else:
        arr = np.asarray(input_ids)
        if arr.dtype.kind in "USa":  # text, where token ids belong: a common first mistake
            raise InvalidInputError(
                "input_ids must be token ids, not text; tokenize it first, e.g. "
                "decoder.generate(**tokenizer(text, return_tensors='pt'))"
            )
        if arr.dtype == object:
            raise InvalidInputError("input_ids must be a tensor or a (nested) list of token ids")
        ids = torch.as_tensor(arr)
    if ids.dim() == 2:
        if ids.shape[0] != 1:
            raise BatchSizeError(
                f"input_ids has batch size {ids.shape[0]}; one request decodes one sequence "
                "(generate() splits a batch into rows itself)"
            )
        ids = ids[0]
    elif ids.dim() != 1:
        raise InvalidInputError(f"input_ids must have shape [1, T] or [T], got {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise EmptyPromptError("the prompt is empty; pass at least one token (e.g. the tokenizer's BOS token)")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise InvalidInputError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    return ids.to(device="cpu", dtype=torch.long)


def default_eos_ids(model: torch.nn.Module) -> frozenset[int]:
    """The EOS ids HF ``generate`` stops at by default for this model.

    Only the generation config counts, as in Hugging Face: setting
    ``model.generation_config.eos_token_id = None`` turns EOS stopping off even
    though ``model.config`` still names an EOS token. A model without a
    generation config falls back to its config.
    """
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        return _id_set(getattr(gen, "eos_token_id", None))
    return _id_set(getattr(getattr(model, "config", None), "eos_token_id", None))


def _id_set(ids: Any, name: str = "eos_token_id") -> frozenset[int]:
    """Token ids given as None, one id, a list or a tensor, as a set (anything else: a clear error)."""
    if ids is None:
        return frozenset()
    if isinstance(ids, torch.Tensor):
        ids = ids.reshape(-1).tolist()
    items = [ids] if isinstance(ids, (int, np.integer, str, bytes)) or not hasattr(ids, "__iter__") else list(ids)
    bad = [e for e in items if not is_integer(e)]
    if bad:
        raise InvalidInputError(f"{name} must be a token id or a list of token ids (integers), got {ids!r}")
    return frozenset(int(e) for e in items)


def _optional_number(name: str, value: Any) -> float | None:
    return None if value is None else _number(name, value)


def _number(name: str, value: Any) -> float:
    """A sampling setting that must be a real number, as a float (else a clear error)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    return float(value)


#: Hugging Face's values for sampling options that neither the call nor the
#: model's generation config sets (``GenerationConfig._get_default_generation_params``).
HF_SAMPLING_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None, "repetition_penalty": 1.0,
}


def generation_defaults(model: torch.nn.Module) -> dict[str, Any]:
    """Sampling options as ``model.generate`` would resolve them when the call omits them.

    The model's ``generation_config`` wins, then Hugging Face's own defaults
    (notably ``top_k=50`` when sampling), so that ``do_sample=True`` means the same
    distribution here as in ``model.generate(do_sample=True)``.
    """
    config = getattr(model, "generation_config", None)
    out = dict(HF_SAMPLING_DEFAULTS)
    for name in out:
        value = getattr(config, name, None) if config is not None else None
        if value is not None:
            out[name] = value
    return out


def default_do_sample(model: torch.nn.Module) -> bool:
    """Whether ``model.generate`` samples when the call does not say (``generation_config.do_sample``).

    Many instruction-tuned checkpoints ship ``do_sample: true`` with their
    temperature and top-p; a call that omits ``do_sample`` samples with them in
    Hugging Face and, the same way, here.
    """
    config = getattr(model, "generation_config", None)
    return bool(getattr(config, "do_sample", False)) if config is not None else False


def _hf_generation_defaults() -> dict[str, Any]:
    """Hugging Face's values for generation options nobody set (``GenerationConfig``'s global defaults)."""
    try:
        from transformers import GenerationConfig

        return dict(GenerationConfig._get_default_generation_params())
    except (ImportError, AttributeError):  # pragma: no cover - older transformers
        return {}


def _refuse_configured_processors(model: torch.nn.Module, overridden: set[str] | frozenset[str] = frozenset()) -> None:
    """Refuse unsupported options switched on in the model's ``generation_config``.

    ``model.generate`` applies them even when the call does not mention them, so
    ignoring them would silently produce different text than the user's
    ``generate`` call.
    """
    config = getattr(model, "generation_config", None)
    if config is None:
        return
    defaults = _hf_generation_defaults()
    active = []
    for name in sorted(set(UNSUPPORTED_GENERATE_OPTIONS) - set(overridden)):
        value = getattr(config, name, None)
        if _inert(name, value) or value == defaults.get(name) or value in ([], {}):
            continue
        active.append(name)
    if active:
        settings = ", ".join(f"{name}={getattr(config, name)!r}" for name in active)
        reasons = "; ".join(dict.fromkeys(UNSUPPORTED_GENERATE_OPTIONS[name] for name in active))
        raise UnsupportedSamplingError(
            f"the model's generation_config sets {settings}, which model.generate would follow and draftkit "
            f"does not support ({reasons}); reset it (e.g. model.generation_config.<name> = None) to decode "
            "without it"
        )


#: New tokens when a call gives neither ``max_new_tokens`` nor ``max_length``.
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class RequestPlan:
    prompt: torch.Tensor  #: int64 [T]
    max_new_tokens: int
    sampling: SamplingParams
    stop: StopConditions
    stop_token_ids: frozenset[int]
    random: RandomStream | None
    #: What to return per new token besides the ids: "scores" (processed, as ``output_scores``),
    #: "logits" (raw, as ``output_logits``).
    record: frozenset[str] = frozenset()
    #: Stopping criteria are shown the recorded scores (HF: with output_scores and return_dict_in_generate).
    criteria_see_scores: bool = False


def plan_request(
    target: TargetModel,
    input_ids: Any,
    max_new_tokens: int | None = None,
    tree_nodes: int = 0,
    /,
    *,
    default_tokenizer: Any = None,
    do_sample: bool | None = UNSET,
    temperature: float | None = UNSET,
    top_k: int | None = UNSET,
    top_p: float | None = UNSET,
    min_p: float | None = UNSET,
    repetition_penalty: float | None = UNSET,
    seed: int | None = None,
    eos_token_id: int | Sequence[int] | None = UNSET,
    stop_token_ids: Sequence[int] | None = None,
    stop_strings: Sequence[str] | str | None = UNSET,
    tokenizer: Any = None,
    max_length: int | None = None,
    attention_mask: Any = None,
    pad_token_id: int | None = None,
    use_cache: bool | None = None,
    generation_config: Any = None,
    max_time: float | None = UNSET,
    return_dict_in_generate: bool | None = None,
    output_scores: bool | None = UNSET,
    output_logits: bool | None = UNSET,
    stopping_criteria: Any = None,
    **unsupported: Any,
) -> RequestPlan:
    """Validate a ``generate()`` call.

    Options resolve like ``model.generate``: a value the call gives wins, an
    option it does not give comes from the generation config in effect, then
    Hugging Face's defaults; an explicit ``None`` switches an option off (no
    EOS, no top-k, ...) even when the generation config sets it.

    ``tree_nodes``: the most draft nodes a step verifies (0 for plain decoding),
    for the attention-span checks of :meth:`TargetModel.check_length`.
    Positional-only, so a ``generate()`` keyword cannot set it.

    ``max_length`` (prompt + new tokens) is used when ``max_new_tokens`` is not
    given, as in Hugging Face. ``attention_mask``, ``pad_token_id`` and
    ``use_cache`` are accepted so that ``decoder.generate(**tokenizer(text,
    return_tensors="pt"))`` works like ``model.generate``: one unpadded sequence
    has nothing to mask or pad (a mask with zeros is refused), and the KV cache
    is always used, which does not change the output. ``generation_config``
    replaces the model's as in Hugging Face (its unset fields are taken from the
    model's; the call's keywords win over both). ``max_time`` (seconds, counted
    from this call) ends generation after the step that passes it, with
    ``finish_reason="time"``: the output is a prefix of the full one.
    ``return_dict_in_generate`` is accepted: ``generate()`` always returns a
    :class:`~draftkit.types.GenerationOutput` (``.sequences``); as in HF, it
    decides with ``output_scores`` whether stopping criteria see the scores.
    ``output_scores`` / ``output_logits`` (from the call or the generation
    config) return each new token's processed scores / raw logits, as
    ``model.generate`` does. ``stopping_criteria`` (Hugging Face
    ``StoppingCriteria`` or any callable ``(input_ids, scores) -> bool``) are
    asked after every new token, as in ``model.generate``; the token that
    makes one say stop is kept.
    """
    started = time.perf_counter()
    del pad_token_id, use_cache  # no effect on one unpadded sequence decoded with a cache
    given = {name: unsupported.pop(name) for name in PROCESSOR_OPTIONS if name in unsupported}
    switched_off = {n for n, v in unsupported.items() if n in UNSUPPORTED_GENERATE_OPTIONS and _inert(n, v)}
    for name in switched_off:  # e.g. num_beams=1: nothing to do, and it overrides the generation config's
        del unsupported[name]
    _refuse_unknown_options(unsupported)
    model = _configured(target.model, generation_config)
    _refuse_configured_processors(model, switched_off)
    prompt = prepare_prompt(input_ids)
    _check_attention_mask(attention_mask, int(prompt.numel()))
    max_new_tokens = _resolve_length(model, prompt, max_new_tokens, max_length)
    criteria = _resolve_stopping_criteria(stopping_criteria)
    # As in model.generate, a user's criterion of a type generate builds itself replaces that one.
    replacing = _replaced_builtin_criteria(criteria)
    if "length" in replacing:
        criterion, padding = replacing["length"]
        max_new_tokens = max(1, int(criterion.max_length) - padding - int(prompt.numel()))
    defaults = generation_defaults(model)
    pick = lambda value, name: defaults[name] if value is UNSET else value  # noqa: E731
    if do_sample is UNSET:  # like model.generate: the model's generation config decides
        do_sample = default_do_sample(model)
    if do_sample:
        temperature, top_k, top_p, min_p = (pick(temperature, "temperature"), pick(top_k, "top_k"),
                                            pick(top_p, "top_p"), pick(min_p, "min_p"))
    else:  # as in model.generate, greedy decoding ignores the sampling settings (a config's temperature=0 too)
        temperature, top_k, top_p, min_p = None, None, None, None
    sampling = SamplingParams(
        do_sample=bool(do_sample),
        temperature=1.0 if temperature is None else _number("temperature", temperature),
        top_k=top_k or None,  # HF: 0 disables top-k
        top_p=_optional_number("top_p", top_p),
        min_p=_optional_number("min_p", min_p),
        repetition_penalty=_optional_number("repetition_penalty", pick(repetition_penalty, "repetition_penalty")),
        seed=seed,
    )
    vocab = target.vocab_size
    bad = prompt[(prompt < 0) | (prompt >= vocab)]
    if bad.numel():
        raise InvalidInputError(f"prompt token id {int(bad[0])} is outside the model's vocabulary [0, {vocab})")
    target.check_length(int(prompt.numel()), max_new_tokens, tree_nodes)
    extra_stops = _id_set(stop_token_ids, "stop_token_ids")
    stop_ids = _resolve_eos(model, eos_token_id) | extra_stops
    matcher = _resolve_stop_strings(model, stop_strings, tokenizer if tokenizer is not None else default_tokenizer)
    if "stop_strings" in replacing:
        matcher = None
    # EOS-aware processors (min_new_tokens, ...) treat stop_token_ids as EOS too, as vLLM's min_tokens does.
    processors = build_extra_processors(
        configured_processor_options(model, given),
        prompt_length=int(prompt.numel()), max_new_tokens=max_new_tokens, eos_token_ids=stop_ids,
        do_sample=sampling.do_sample, vocab_size=vocab, device=target.device,
        repetition_penalty_active=sampling.repetition_penalty not in (None, 1.0),
    )
    if processors is not None:
        sampling = replace(sampling, processors=processors)
        if processors.replaces_repetition_penalty:  # a user's RepetitionPenaltyLogitsProcessor, as in HF
            sampling = replace(sampling, repetition_penalty=None)
    deadline = None if "time" in replacing else _resolve_deadline(model, max_time, started)
    if "eos" in replacing:  # the processors keep the generation config's EOS ids, as in HF
        stop_ids = _id_set(replacing["eos"][0].eos_token_id) | extra_stops
    record = frozenset(name for name, value in (("scores", output_scores), ("logits", output_logits))
                       if _configured_flag(model, f"output_{name}", value))
    # The output always has .sequences and .stats; this only decides what stopping criteria are shown.
    as_dict = _configured_flag(model, "return_dict_in_generate",
                               UNSET if return_dict_in_generate is None else return_dict_in_generate)
    random = None
    if sampling.do_sample:
        random = RandomStream(seed if seed is not None else secrets.randbits(63))
    stop = StopConditions(max_new_tokens, stop_ids, matcher, deadline, criteria)
    return RequestPlan(prompt, max_new_tokens, sampling, stop, stop_ids, random, record,
                       criteria_see_scores="scores" in record and as_dict)


def _refuse_unknown_options(unsupported: dict[str, Any]) -> None:
    """Refuse what is left of a call's keywords: known ``generate`` options with the reason, others as typos."""
    if not unsupported:
        return
    names = sorted(unsupported)
    known = [n for n in names if n in UNSUPPORTED_GENERATE_OPTIONS]
    if known:
        reasons = "; ".join(dict.fromkeys(UNSUPPORTED_GENERATE_OPTIONS[n] for n in known))
        raise UnsupportedSamplingError(
            f"{', '.join(f'{n}={unsupported[n]!r}' for n in known)} {'is' if len(known) == 1 else 'are'} not "
            f"supported by draftkit ({reasons}); remove {'it' if len(known) == 1 else 'them'} or use "
            "model.generate"
        )
    raise TypeError(f"generate() got unexpected keyword argument(s): {', '.join(names)}")


def _resolve_length(model: Any, prompt: torch.Tensor, max_new_tokens: Any, max_length: Any) -> int:
    """New tokens: ``max_new_tokens`` (the call's, else the generation config's: in ``model.generate``
    it wins over any ``max_length``), else ``max_length`` minus the prompt, else the config's length."""
    if max_new_tokens is None:
        configured = getattr(getattr(model, "generation_config", None), "max_new_tokens", None)
        if max_length is not None and configured is None:
            max_new_tokens = _new_tokens_from(max_length, prompt)
        else:  # the config's max_new_tokens first, as there
            max_new_tokens = _configured_length(model, prompt)
    if isinstance(max_new_tokens, np.integer):
        max_new_tokens = int(max_new_tokens)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InvalidInputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    return max_new_tokens


def _resolve_eos(model: Any, eos_token_id: Any) -> frozenset[int]:
    """EOS ids: the call's (``None``: none, as in ``model.generate``), else the generation config's."""
    return default_eos_ids(model) if eos_token_id is UNSET else _id_set(eos_token_id)


def _resolve_stop_strings(model: Any, stop_strings: Any, tokenizer: Any) -> StopStringMatcher | None:
    """The matcher of the call's stop strings, else of the generation config's (``None``: none)."""
    configured = ""
    if stop_strings is UNSET:  # like model.generate: the generation config's, when the call gives none
        stop_strings = getattr(getattr(model, "generation_config", None), "stop_strings", None)
        configured = f" (the generation config sets stop_strings={stop_strings!r})"
    if stop_strings is None:
        return None
    if isinstance(stop_strings, str):
        strings = [stop_strings]  # "" too, as in HF
    elif isinstance(stop_strings, (list, tuple)) and all(isinstance(s, str) for s in stop_strings):
        strings = list(stop_strings)
    else:
        raise InvalidInputError(f"stop_strings must be a string or a list of strings{configured}, got "
                                f"{stop_strings!r:.80}; to stop at token ids, pass eos_token_id=[...]")
    if not strings:
        return None
    if tokenizer is None:
        raise InvalidInputError(
            f"stop_strings need a tokenizer to decode tokens{configured}: pass tokenizer=... to generate() "
            "or to the decoder" + (", or stop_strings=[] to decode without them" if configured else "")
        )
    check_tokenizer(tokenizer, "for stop_strings")
    return StopStringMatcher(tokenizer, strings)


def check_tokenizer(tokenizer: Any, why: str) -> None:
    """Refuse an object that cannot decode token ids, naming it, before a step needs it."""
    if not callable(getattr(tokenizer, "decode", None)):
        load = f"AutoTokenizer.from_pretrained({tokenizer!r:.60})" if isinstance(tokenizer, str) else (
            "AutoTokenizer.from_pretrained(path)")
        raise InvalidInputError(
            f"the tokenizer {why} must be a tokenizer object with a decode() method, got "
            f"{type(tokenizer).__name__} {tokenizer!r:.60}; load one with {load}"
        )


def _configured_flag(model: Any, name: str, value: Any) -> bool:
    """A boolean option: the call's, else the generation config's, else off."""
    if value is UNSET:
        value = getattr(getattr(model, "generation_config", None), name, None)
    return bool(value)


@dataclass(frozen=True)
class PaddedRowCriterion:
    """A user's stopping criterion shown a batch row as ``model.generate`` shows it: left padding
    first, right padding between the prompt (``prompt_length`` tokens) and the new tokens."""

    criterion: Any
    left_padding: torch.Tensor
    right_padding: torch.Tensor | None = None
    prompt_length: int = 0

    @property
    def padding(self) -> int:
        """Padding tokens the row counts in HF (its length criteria see them)."""
        right = 0 if self.right_padding is None else int(self.right_padding.numel())
        return int(self.left_padding.numel()) + right

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> Any:
        if self.right_padding is not None and self.right_padding.numel():
            cut = self.prompt_length
            input_ids = torch.cat([input_ids[:, :cut], self.right_padding[None].to(input_ids), input_ids[:, cut:]], -1)
        if self.left_padding.numel():
            input_ids = torch.cat([self.left_padding[None].to(input_ids), input_ids], dim=-1)
        return self.criterion(input_ids, scores, **kwargs)


def _replaced_builtin_criteria(criteria: tuple[Any, ...]) -> dict[str, tuple[Any, int]]:
    """The user's criteria that replace one ``generate`` builds (``model.generate`` keeps the user's
    when both have the same type): kind -> (criterion, left padding of its batch row)."""
    from transformers.generation import stopping_criteria as hf

    kinds = {"length": "MaxLengthCriteria", "eos": "EosTokenCriteria", "stop_strings": "StopStringCriteria",
             "time": "MaxTimeCriteria"}
    found: dict[str, tuple[Any, int]] = {}
    for item in criteria:
        inner, padding = item, 0
        if isinstance(item, PaddedRowCriterion):
            inner, padding = item.criterion, item.padding
        for kind, name in kinds.items():
            if type(inner) is getattr(hf, name, None) and kind not in found:
                found[kind] = (inner, padding)
    return found


def _resolve_stopping_criteria(criteria: Any) -> tuple[Any, ...]:
    """A ``StoppingCriteriaList`` (or any iterable of callables) as a tuple; each must be callable."""
    if criteria is None:
        return ()
    if isinstance(criteria, (str, bytes)):
        raise InvalidInputError(
            f"stopping_criteria must be a StoppingCriteriaList or a list of callables, got {type(criteria).__name__} "
            "(for stop strings, pass stop_strings=... and tokenizer=...)")
    if callable(criteria) and not isinstance(criteria, (list, tuple)):
        criteria = [criteria]
    try:
        items = tuple(criteria)
    except TypeError:
        raise InvalidInputError(
            f"stopping_criteria must be a StoppingCriteriaList or a list of callables, got {type(criteria).__name__}"
        ) from None
    for item in items:
        if not callable(item):
            raise InvalidInputError(f"stopping_criteria holds a {type(item).__name__}, which is not callable")
    return items


def _resolve_deadline(model: Any, max_time: Any, started: float) -> float | None:
    """``time.perf_counter()`` value that ends generation (``max_time`` after ``started``), or None."""
    if max_time is UNSET:
        max_time = getattr(getattr(model, "generation_config", None), "max_time", None)
    if max_time is None:
        return None
    if isinstance(max_time, bool) or not isinstance(max_time, (int, float)) or not max_time > 0:
        raise InvalidInputError(f"max_time must be a positive number of seconds, got {max_time!r}")
    return started + float(max_time)


@dataclass(frozen=True)
class _ModelSettings:
    """What ``generate`` reads from a model: its config and the generation config in effect."""

    config: Any
    generation_config: Any


def _configured(model: torch.nn.Module, generation_config: Any) -> Any:
    """The model, or a view of it whose generation config is the call's ``generation_config``
    with its unset (``None``) fields filled from the model's, as ``model.generate`` merges them."""
    if generation_config is None:
        return model
    update = getattr(generation_config, "update", None)
    if not callable(update) or not callable(getattr(generation_config, "to_dict", None)):
        raise InvalidInputError(
            f"generation_config must be a transformers.GenerationConfig, got {type(generation_config).__name__}"
        )
    import copy

    merged = copy.deepcopy(generation_config)
    base = getattr(model, "generation_config", None)
    if base is not None:
        merged.update(**base.to_dict(), defaults_only=True, allow_custom_entries=True)
    return _ModelSettings(getattr(model, "config", None), merged)


def _configured_length(model: torch.nn.Module, prompt: torch.Tensor) -> int:
    """New tokens when the call sets no length: the generation config's, as ``model.generate`` reads them.

    ``max_new_tokens`` first, then a ``max_length`` someone chose (see
    :func:`configured_max_length`), else :data:`DEFAULT_MAX_NEW_TOKENS`.
    """
    config = getattr(model, "generation_config", None)
    configured = getattr(config, "max_new_tokens", None) if config is not None else None
    if configured is not None:
        return int(configured)
    max_length = configured_max_length(config)
    if max_length is not None:
        return _new_tokens_from(max_length, prompt, configured=True)
    return DEFAULT_MAX_NEW_TOKENS


def configured_max_length(generation_config: Any) -> int | None:
    """A generation config's ``max_length`` when it decides the length: no ``max_new_tokens`` is set
    and someone chose it. Since transformers 5 an unset ``max_length`` is ``None`` (any number, 20
    included, was chosen); before, unset read as 20, so 20 is taken as unset there (a length
    nobody chose would cut answers short)."""
    if generation_config is None or getattr(generation_config, "max_new_tokens", None) is not None:
        return None
    max_length = getattr(generation_config, "max_length", None)
    if max_length is None or (not _unset_length_is_none() and max_length == 20):
        return None
    return max_length


@functools.lru_cache(maxsize=1)
def _unset_length_is_none() -> bool:
    """Whether this transformers leaves an unset ``GenerationConfig.max_length`` as ``None`` (5.x)."""
    try:
        from transformers import GenerationConfig

        return GenerationConfig().max_length is None
    except ImportError:  # pragma: no cover - transformers is a dependency
        return True


def _new_tokens_from(max_length: Any, prompt: torch.Tensor | int, counted: str | None = None,
                     configured: bool = False) -> int:
    """New tokens that ``max_length`` leaves after a prompt (or ``counted``: a description of the
    ``prompt`` tokens it counts, e.g. a padded batch's width); ``configured``: the value comes from a
    generation config, not the call, which the error says (the user never typed it)."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
        raise InvalidInputError(f"max_length must be an integer, got {max_length!r}")
    length = prompt if isinstance(prompt, int) else int(prompt.numel())
    room = int(max_length) - length
    if room < 1:
        origin = " (set by the generation config, e.g. the model folder's generation_config.json)" if configured else ""
        remedy = "pass" if configured else "raise it, or pass"
        raise InvalidInputError(
            f"max_length={int(max_length)}{origin} leaves no room for new tokens after "
            f"{counted or f'the {length}-token prompt'}; {remedy} max_new_tokens (--max-new-tokens on the command line)"
        )
    return room


def _check_attention_mask(mask: Any, prompt_len: int) -> None:
    """Accept an all-ones mask over the prompt (what a tokenizer returns for one sequence)."""
    if mask is None:
        return
    values = mask.detach().cpu().reshape(-1) if isinstance(mask, torch.Tensor) else torch.as_tensor(mask).reshape(-1)
    if values.numel() != prompt_len:
        raise InvalidInputError(
            f"attention_mask has {values.numel()} entries for a {prompt_len}-token prompt; they must match"
        )
    if bool((values == 0).any()):
        raise InvalidInputError(
            "attention_mask marks padding: stream() decodes one unpadded sequence; pass the prompt without "
            "its padding, or call generate(), which takes padded batches"
        )
