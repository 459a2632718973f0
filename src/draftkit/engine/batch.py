"""Batched and multi-sample ``generate()`` calls, decoded one sequence at a time.

Users of ``model.generate`` pass a padded batch (``**tokenizer(texts,
padding=True, return_tensors="pt")``) or ask for ``num_return_sequences``
samples. draftkit's speedup is per sequence: each step verifies one sequence's
draft tree, and rows of a batch accept different numbers of tokens per step,
so a batch is split into its rows, each row is unpadded and decoded as its own
request (exactly what a one-row call returns), and the results are laid out as
Hugging Face lays them out: each input row as given (its padding included),
then its new tokens, then ``pad_token_id`` up to the longest row.

Every row is validated before the first one is decoded, so a bad row fails the
call without wasting the work on the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..checks import is_integer
from ..errors import BatchSizeError, EmptyPromptError, InvalidInputError, UnsupportedSamplingError
from ..types import DecodeStats, GenerationOutput
from .request import (
    UNSET,
    PaddedRowCriterion,
    _configured,
    _new_tokens_from,
    _resolve_eos,
    _resolve_stopping_criteria,
    configured_max_length,
)

__all__ = ["BatchLayout", "batch_layout", "merge_outputs", "refuse_batch_in_stream"]


@dataclass(frozen=True)
class BatchLayout:
    """How the rows of one batched call are decoded and put back together."""

    inputs: torch.Tensor  #: int64 [B, T]: the call's input rows as given (repeated per sample)
    prompts: tuple[torch.Tensor, ...]  #: each row's prompt without its padding
    pad_token_id: int | None  #: fills rows that end before the longest (None: no row may end early)
    #: Per row: its options besides the shared ones (``seed + i``, criteria that see its left padding).
    row_options: tuple[dict[str, Any], ...] = field(default=())
    #: New tokens per row when the call sets a length through ``max_length`` (counted, as in HF, from
    #: the padded width); None: the call's ``max_new_tokens`` or the generation config's.
    max_new_tokens: int | None = None


def batch_layout(input_ids: Any, options: dict[str, Any], model: Any) -> BatchLayout | None:
    """The layout of a call that needs one, else ``None`` (one unpadded sequence: the plain path).

    A call needs one when ``input_ids`` has more than one row, when its
    ``attention_mask`` marks padding, or when it asks for more than one
    sample (``num_return_sequences``, from the call or the generation config).
    ``options`` are the call's keywords: what this layer consumes
    (``attention_mask``, ``pad_token_id``, ``seed``, ``num_return_sequences``,
    ``max_length``, ``min_length``, ``stopping_criteria``) is taken out or
    rewritten per row; the rest applies to every row unchanged.
    """
    ids = _as_matrix(input_ids)
    if ids is None:
        return None
    view = _configured(model, options.get("generation_config"))
    settings = getattr(view, "generation_config", None)
    samples = options.get("num_return_sequences", UNSET)
    if samples is UNSET:
        samples = getattr(settings, "num_return_sequences", None)
    mask = options.get("attention_mask")
    mask_tensor = _as_mask(mask, ids) if mask is not None else None
    padded = mask_tensor is not None and bool((mask_tensor == 0).any())
    if ids.shape[0] == 1 and not padded and samples in (None, 1):
        return None
    samples = _check_samples(samples, options, settings)
    options.pop("attention_mask", None)
    pad, seed = options.pop("pad_token_id", UNSET), options.pop("seed", None)
    if seed is not None and not is_integer(seed):
        raise InvalidInputError(f"seed must be an integer (or None), got {seed!r}")
    options["num_return_sequences"] = 1  # each row is one sequence (this also overrides the config's)
    eos = _resolve_eos(view, options.get("eos_token_id", UNSET))
    if pad is UNSET:  # an explicit None means no pad id, as in HF (the first EOS id pads)
        pad = getattr(settings, "pad_token_id", None)
    mask_given = mask_tensor is not None
    if mask_tensor is None:
        mask_tensor = _inferred_mask(ids, pad, eos)
    spans = [_token_span(mask_tensor[i], i, mask_given) for i in range(ids.shape[0])]
    width = int(ids.shape[1])
    max_new = _new_tokens_of_padded_length(options, settings, width)
    criteria = _resolve_stopping_criteria(options.pop("stopping_criteria", None))
    allowed = options.pop("prefix_allowed_tokens_fn", None)
    if samples > 1:  # as in HF: the samples of a row are adjacent rows of the output
        ids = ids.repeat_interleave(samples, dim=0)
        spans = [span for span in spans for _ in range(samples)]
    if pad is None:  # as in HF: the first EOS id pads
        pad = _first_eos(options.get("eos_token_id", UNSET), settings)
    if pad is None and len(spans) > 1 and _rows_may_end_early(options, settings, criteria):
        raise InvalidInputError(
            "a batch needs pad_token_id to fill the rows that end before the longest one (stop strings, "
            "stopping criteria or max_time can end a row early), and neither the call nor the model's "
            "generation config gives one (or an EOS id to use instead); pass pad_token_id=..."
        )
    row_options = []
    for i, (first, last) in enumerate(spans):
        row: dict[str, Any] = {} if seed is None else {"seed": int(seed) + i}
        if criteria:  # HF's criteria see the padded row (left padding first, right padding before the answer)
            row["stopping_criteria"] = [
                PaddedRowCriterion(c, ids[i, :first], ids[i, last + 1 :], last + 1 - first) for c in criteria]
        if allowed is not None:  # and HF's prefix function gets the row's index and the same padded row
            row["prefix_allowed_tokens_fn"] = (
                _PaddedRowPrefixFunction(allowed, i, ids[i, :first], ids[i, last + 1 :], last + 1 - first)
                if callable(allowed) else allowed
            )
        row_options.append(row)
    prompts = tuple(ids[i, first : last + 1] for i, (first, last) in enumerate(spans))
    return BatchLayout(ids, prompts, None if pad is None else int(pad), tuple(row_options), max_new)


@dataclass(frozen=True)
class _PaddedRowPrefixFunction:
    """A user's ``prefix_allowed_tokens_fn`` called as ``model.generate`` calls it for a batch row:
    with the row's index in the (sample-expanded) batch and the row as HF holds it (left padding
    first, right padding between the prompt, ``prompt_length`` tokens, and the new tokens), the
    row :class:`PaddedRowCriterion` shows stopping criteria."""

    function: Any
    row: int
    left_padding: torch.Tensor
    right_padding: torch.Tensor | None = None
    prompt_length: int = 0

    def __call__(self, batch_id: int, input_ids: torch.Tensor) -> Any:
        if self.right_padding is not None and self.right_padding.numel():
            cut = self.prompt_length
            input_ids = torch.cat([input_ids[:cut], self.right_padding.to(input_ids), input_ids[cut:]], dim=-1)
        if self.left_padding.numel():
            input_ids = torch.cat([self.left_padding.to(input_ids), input_ids], dim=-1)
        return self.function(self.row, input_ids)


def _new_tokens_of_padded_length(options: dict[str, Any], settings: Any, width: int) -> int | None:
    """``max_length`` / ``min_length`` count the padded width in HF: rewritten as new-token counts.

    ``max_length`` (the call's, else a generation config's; unless the config
    sets ``max_new_tokens``, which wins in HF) becomes the rows' new-token limit (returned);
    ``min_length`` becomes ``min_new_tokens`` unless the call gives that.
    """
    max_new = None
    max_length = options.pop("max_length", None)
    configured = False
    if getattr(settings, "max_new_tokens", None) is not None:
        max_length = None  # as in HF, the config's max_new_tokens wins over any max_length
    elif max_length is None:
        max_length = configured_max_length(settings)
        configured = max_length is not None
    if max_length is not None:
        max_new = _new_tokens_from(max_length, width, f"the batch's padded width of {width}", configured)
    min_length = options.get("min_length", UNSET)
    if min_length is UNSET:
        min_length = getattr(settings, "min_length", None) or None
    if min_length is not None and options.get("min_new_tokens") is None:
        options["min_new_tokens"] = max(0, int(min_length) - width) or None
        options["min_length"] = None  # counted from the padded width above; off per row
    return max_new


def _rows_may_end_early(options: dict[str, Any], settings: Any, criteria: tuple[Any, ...]) -> bool:
    """Whether something besides EOS and the length limit can end a row (rows then need padding)."""
    def given(name: str) -> Any:
        value = options.get(name, UNSET)
        return getattr(settings, name, None) if value is UNSET else value

    return bool(criteria or given("stop_strings") or given("max_time") or options.get("stop_token_ids"))


def merge_outputs(layout: BatchLayout, outputs: Sequence[GenerationOutput]) -> GenerationOutput:
    """One output for the batch: rows laid out as ``model.generate`` does, statistics summed."""
    new = [out.new_tokens[0] for out in outputs]
    longest = max(len(n) for n in new)
    if layout.pad_token_id is None and any(len(n) != longest for n in new):
        raise InvalidInputError(  # only at the context limit: other early ends are checked before decoding
            "rows of the batch ended at different lengths and there is no pad_token_id to fill them; pass "
            "pad_token_id=... (each row's own output is in the error's .per_sequence)")
    width = layout.inputs.shape[1] + longest
    fill = 0 if layout.pad_token_id is None else layout.pad_token_id  # unused when no row is filled
    sequences = torch.full((len(outputs), width), fill, dtype=torch.long)
    sequences[:, : layout.inputs.shape[1]] = layout.inputs
    for row, tokens in enumerate(new):
        sequences[row, layout.inputs.shape[1] : layout.inputs.shape[1] + len(tokens)] = tokens
    stats = _merged_stats([out.stats for out in outputs], int(layout.inputs.shape[1]))
    return GenerationOutput(sequences, stats, per_sequence=tuple(outputs),
                            scores=_merged_rows([out.scores for out in outputs], longest),
                            logits=_merged_rows([out.logits for out in outputs], longest))


def _merged_rows(parts: Sequence[tuple[torch.Tensor, ...] | None], steps: int) -> tuple[torch.Tensor, ...] | None:
    """Per-token rows of every sequence as HF lays them out: one [B, V] tensor per new-token position.

    A row that ended earlier has no scores there (HF keeps computing them for
    its padding; draftkit does not decode past a row's end): its entries are
    ``-inf``, "no score", so mask them out (they are at padding positions).
    """
    if not parts or parts[0] is None:
        return None
    vocab = parts[0][0].shape[-1]  # every row emits at least one token
    out = []
    for t in range(steps):
        out.append(torch.cat([p[t] if t < len(p) else torch.full((1, vocab), float("-inf")) for p in parts]))
    return tuple(out)


def _merged_stats(parts: Sequence[DecodeStats], width: int) -> DecodeStats:
    """Counts and times summed over rows; ``prompt_tokens`` is the input's width (so ``new_tokens`` works)."""
    merged = DecodeStats(prompt_tokens=width)
    for s in parts:
        merged.steps += s.steps
        merged.drafted += s.drafted
        merged.accepted += s.accepted
        merged.emitted += s.emitted
        merged.accept_lengths.extend(s.accept_lengths)
        merged.time_prefill += s.time_prefill
        merged.time_draft += s.time_draft
        merged.time_verify += s.time_verify
        merged.time_other += s.time_other
        merged.time_total += s.time_total
    reasons = {s.finish_reason for s in parts}
    merged.finish_reason = reasons.pop() if len(reasons) == 1 else "mixed"
    return merged


def _as_matrix(input_ids: Any) -> torch.Tensor | None:
    """``input_ids`` as a tensor [B, T] (one row for a 1-D prompt), ``None`` for other shapes."""
    if input_ids is None or isinstance(input_ids, (str, bytes)):
        return None
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids.detach().cpu()
    else:
        try:
            arr = np.asarray(input_ids)
        except ValueError:  # ragged nested lists (numpy >= 1.24)
            arr = np.empty(0, dtype=object)
        if arr.dtype.kind in "USa":  # text: prepare_prompt says what to do
            return None
        if arr.dtype == object:
            if all(isinstance(r, (list, tuple, np.ndarray, torch.Tensor)) for r in input_ids):
                raise InvalidInputError(
                    "input_ids rows have different lengths; pad them (tokenizer(..., padding=True, "
                    "return_tensors='pt')) and pass the attention_mask"
                )
            return None
        ids = torch.as_tensor(arr)
    if ids.dim() == 1:
        return ids[None]
    return ids if ids.dim() == 2 else None


def _as_mask(mask: Any, ids: torch.Tensor) -> torch.Tensor:
    values = mask.detach().cpu() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    if values.dim() == 1 and ids.shape[0] == 1:
        values = values[None]
    if tuple(values.shape) != tuple(ids.shape):
        raise InvalidInputError(
            f"attention_mask has shape {tuple(values.shape)} but input_ids has shape {tuple(ids.shape)}; "
            "they must match"
        )
    if values.is_complex() or bool(((values != 0) & (values != 1)).any()):
        raise InvalidInputError("attention_mask must hold 0 (padding) and 1 (token) only")
    return values.to(torch.long)


def _inferred_mask(ids: torch.Tensor, pad: int | None, eos: frozenset[int]) -> torch.Tensor:
    """No mask given: padding is where ``pad_token_id`` is, unless it is also an EOS id (as in HF)."""
    if pad is None or int(pad) in eos:
        return torch.ones_like(ids, dtype=torch.long)
    return (ids != int(pad)).to(torch.long)


def _token_span(mask: torch.Tensor, index: int, mask_given: bool) -> tuple[int, int]:
    """First and last column of the row's tokens, which must be one block (left or right padding)."""
    kept = torch.nonzero(mask, as_tuple=False).reshape(-1)
    if kept.numel() == 0:
        why = "its attention_mask is all zeros" if mask_given else "every token is the pad token"
        raise EmptyPromptError(f"row {index} of the batch is empty ({why})")
    first, last = int(kept[0]), int(kept[-1])
    if last - first + 1 != kept.numel():
        raise InvalidInputError(
            f"row {index} of attention_mask has padding between tokens; only left or right padding is supported"
        )
    return first, last


def _check_samples(samples: Any, options: dict[str, Any], settings: Any) -> int:
    """``num_return_sequences`` as an int; more than one needs sampling (as in HF greedy search)."""
    if samples is None:
        return 1
    if not is_integer(samples) or samples < 1:
        raise InvalidInputError(f"num_return_sequences must be an integer >= 1, got {samples!r}")
    do_sample = options.get("do_sample", UNSET)
    if do_sample is UNSET:  # as in every request: the generation config decides
        do_sample = bool(getattr(settings, "do_sample", False))
    if samples > 1 and not do_sample:
        raise UnsupportedSamplingError(
            f"num_return_sequences={samples} needs do_sample=True: greedy decoding returns the same sequence "
            "every time (as model.generate, which refuses it too)"
        )
    return int(samples)


def _first_eos(given: Any, settings: Any) -> int | None:
    """The first EOS id in the order given (HF pads with it when there is no pad token)."""
    value = given if given is not UNSET else getattr(settings, "eos_token_id", None)
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist()
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def refuse_batch_in_stream(input_ids: Any, options: dict[str, Any]) -> None:
    """``stream()`` yields one sequence's tokens: a batch goes to ``generate()``."""
    ids = _as_matrix(input_ids)
    if ids is not None and ids.shape[0] > 1:
        raise BatchSizeError(
            f"stream() decodes one sequence, got a batch of {ids.shape[0]}; call generate() for a batch "
            "(its rows are decoded one after another) or stream() once per row"
        )
    if options.get("num_return_sequences") not in (None, 1):
        raise BatchSizeError("stream() decodes one sequence; num_return_sequences > 1 needs generate()")
