"""An iterator over the token chunks of one generation, with the final result."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from ..errors import BatchSizeError, DraftkitError
from ..types import GenerationOutput
from .batch import BatchLayout, batch_layout, merge_outputs, refuse_batch_in_stream
from .request import prepare_prompt
from .target import TargetModel

__all__ = ["TokenStream", "DecoderAPI"]


class TokenStream(Iterator[list[int]]):
    """Yields the new token ids of each decoding step as soon as they are verified.

    After the iteration ends, :attr:`output` holds the same
    :class:`~draftkit.types.GenerationOutput` that ``generate()`` returns
    (sequences and statistics). Closing the stream early (``break``) frees the
    request's KV cache.
    """

    def __init__(self, steps: Generator[list[int], None, GenerationOutput]) -> None:
        self._steps = steps
        self._output: GenerationOutput | None = None

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> list[int]:
        if self._output is not None:
            raise StopIteration
        try:
            return next(self._steps)
        except StopIteration as stop:
            self._output = stop.value
            raise StopIteration from None

    def close(self) -> None:
        self._steps.close()

    @property
    def output(self) -> GenerationOutput:
        if self._output is None:
            raise RuntimeError("the stream has not finished yet; iterate it to the end first")
        return self._output

    def run(self) -> GenerationOutput:
        """Consume the remaining steps and return the result."""
        for _ in self:
            pass
        return self.output


class DecoderAPI:
    """``generate`` and ``stream`` on top of a subclass's ``_run`` (validate, then step)."""

    target: TargetModel  #: set by the subclass: the model being decoded

    def _run(self, input_ids: Any, max_new_tokens: int | None, **kwargs: Any) -> Generator[list[int], None, Any]:
        raise NotImplementedError

    def generate(self, input_ids: Any = None, max_new_tokens: int | None = None, **kwargs: Any) -> GenerationOutput:
        """Decode up to ``max_new_tokens`` new tokens; same output as plain decoding.

        ``max_new_tokens=None``: ``max_length`` minus the prompt length when
        ``max_length`` is given, else the generation config's length (HF
        semantics), else 128. ``attention_mask``,
        ``pad_token_id`` and ``use_cache`` are accepted, so
        ``decoder.generate(**tokenizer(text, return_tensors="pt"))`` works.

        A batch (``input_ids`` [B, T] with its ``attention_mask``, left or
        right padding) and ``num_return_sequences`` (when sampling) are decoded
        one row after another, each exactly as a one-row call would be, and
        laid out as in ``model.generate``: the input row as given, its new
        tokens, then ``pad_token_id`` (else the first EOS id) up to the longest
        row. With ``seed``, row ``i`` samples with ``seed + i``.
        ``out.per_sequence`` holds each row's own output and statistics.

        Keyword arguments: ``do_sample``, ``temperature``, ``top_k``, ``top_p``,
        ``min_p``, ``repetition_penalty``, ``seed`` (sampling, HF semantics:
        options the call omits, ``do_sample`` included, come from the model's
        ``generation_config``);
        ``eos_token_id`` (int or list; defaults to the model's generation config),
        ``stop_token_ids``, ``stop_strings`` (+ ``tokenizer``); the other logits
        processors of ``model.generate`` listed in
        :data:`draftkit.processors.PROCESSOR_OPTIONS` (``no_repeat_ngram_size``,
        ``min_new_tokens``, ``suppress_tokens``, ``typical_p``, a
        ``logits_processor`` list, ...); ``generation_config``; ``streamer``
        (a Hugging Face streamer such as ``TextStreamer``: it receives the prompt,
        then each step's new tokens, then ``end()``); ``stopping_criteria``,
        ``output_scores`` and ``output_logits`` (as in ``model.generate``).
        """
        streamer = kwargs.pop("streamer", None)
        input_ids, max_new_tokens = _call_arguments(input_ids, max_new_tokens, kwargs)
        layout = batch_layout(input_ids, kwargs, self.target.model)
        if layout is None:  # one unpadded sequence: the arguments are stream()'s, already unpacked
            stream = TokenStream(self._run(input_ids, max_new_tokens, **kwargs))
            return _consume(stream, streamer, prepare_prompt(input_ids) if streamer is not None else None)
        if streamer is not None and len(layout.prompts) > 1:
            raise BatchSizeError(f"a streamer takes one sequence here, got {len(layout.prompts)} rows (rows are "
                                 "decoded one after another); decode them one call at a time to stream them")
        return self._generate_batch(layout, max_new_tokens, kwargs, streamer)

    def stream(self, input_ids: Any = None, max_new_tokens: int | None = None, **kwargs: Any) -> TokenStream:
        """Iterate the new token ids step by step; ``.output`` holds the result at the end.

        Arguments are validated before the first step runs, so a bad call fails here.
        One sequence only: a batch goes to :meth:`generate`.
        """
        if "streamer" in kwargs:
            raise TypeError("streamer= is an option of generate(); stream() yields each step's tokens itself")
        input_ids, max_new_tokens = _call_arguments(input_ids, max_new_tokens, kwargs)
        refuse_batch_in_stream(input_ids, kwargs)
        return TokenStream(self._run(input_ids, max_new_tokens, **kwargs))

    def _generate_batch(self, layout: BatchLayout, max_new_tokens: Any, kwargs: dict[str, Any],
                        streamer: Any = None) -> GenerationOutput:
        """Every row validated first (one ``max_time`` clock for the call), then decoded in turn."""
        if max_new_tokens is None:
            max_new_tokens = layout.max_new_tokens
        streams = []
        for row, (prompt, options) in enumerate(zip(layout.prompts, layout.row_options, strict=True)):
            try:
                streams.append(TokenStream(self._run(prompt, max_new_tokens, **kwargs, **options)))
            except DraftkitError as exc:
                if len(layout.prompts) == 1:
                    raise
                raise type(exc)(f"row {row} of the batch: {exc}") from exc
        return merge_outputs(layout, [_consume(s, streamer, p) for s, p in zip(streams, layout.prompts, strict=True)])


def _consume(stream: TokenStream, streamer: Any = None, prompt: Any = None) -> GenerationOutput:
    """Run a stream to its end, feeding a Hugging Face streamer (prompt, each step's tokens, ``end()``)."""
    if streamer is None:
        return stream.run()
    import torch

    streamer.put(prompt[None])  # as model.generate: the prompt first
    try:
        for tokens in stream:
            streamer.put(torch.tensor(tokens, dtype=torch.long))
    finally:  # also on an error, so that a consumer thread (TextIteratorStreamer) is not left waiting
        streamer.end()
    return stream.output


def _call_arguments(input_ids: Any, max_new_tokens: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The prompt and ``max_new_tokens``, also when called the way ``model.generate`` is.

    The prompt may come as ``inputs`` (popped from ``kwargs``), and a
    ``GenerationConfig`` in second position (``model.generate(ids, config)``) is
    moved to ``kwargs["generation_config"]``.
    """
    inputs = kwargs.pop("inputs", None)
    if input_ids is None and inputs is None:
        from ..errors import InvalidInputError

        raise InvalidInputError("no prompt: pass input_ids, a [1, T] tensor (or list) of token ids")
    if input_ids is not None and inputs is not None:
        raise TypeError("the prompt was given twice (input_ids and inputs); pass one")
    if callable(getattr(max_new_tokens, "to_dict", None)) and callable(getattr(max_new_tokens, "update", None)):
        if "generation_config" in kwargs:
            raise TypeError("generation_config was given twice (second argument and keyword); pass one")
        kwargs["generation_config"], max_new_tokens = max_new_tokens, None
    return (input_ids if input_ids is not None else inputs), max_new_tokens
