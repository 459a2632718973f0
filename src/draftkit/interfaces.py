"""The three interfaces a speculative decoder is composed of.

* :class:`DraftSource` proposes continuations of the current context.
* :class:`TreeBuilder` turns a proposal into a :class:`~draftkit.types.TokenTree`
  within a node budget.
* :class:`Verifier` reads the target's logits at every tree node and decides
  which root path to accept, plus the bonus token.

They are structural (``typing.Protocol``): any object with these methods works,
no subclassing needed. The engine calls them directly in its step loop; pluggy is
only used to *find* factories by name (see :mod:`draftkit.plugins`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .types import Draft, DraftRequest, SamplingParams, SourceCapabilities, StepFeedback, TokenTree, Verdict

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .verify.random import RandomStream

__all__ = ["DraftSource", "TreeBuilder", "Verifier", "LogitsProcessorFn"]


@runtime_checkable
class DraftSource(Protocol):
    """Proposes candidate continuations of a context.

    A source must be *safe to be wrong*: whatever it proposes, the verifier only
    keeps what the target model would have produced, so the output never changes.
    A source only affects speed.

    Lifecycle per ``generate()`` call: ``begin(prompt)`` once, then for each step
    ``propose(request)`` and ``observe(feedback)``. ``reset()`` returns the source
    to its initial state (e.g. the corpus-built matrix of an adaptive source).

    Optional: ``prepare(model, tokenizer)``, called once when a decoder is built
    around the source (``tokenizer`` is the decoder's, possibly ``None``). A
    source that depends on the model (runs it, reads its layers) or on the
    tokenizer (ids from a data file built with one) checks them there and raises
    :class:`~draftkit.errors.UnsupportedModelError` or
    :class:`~draftkit.errors.MismatchedDataFileError` at construction, instead
    of failing, or drafting nonsense, in the first ``generate()``.
    """

    #: A short identifier shown in stats and errors.
    name: str
    capabilities: SourceCapabilities

    def begin(self, prompt: np.ndarray) -> None:
        """Start a request (int64 [T] prompt). Stateless sources do nothing."""
        ...

    def propose(self, request: DraftRequest) -> Draft:
        """Return candidates continuing ``request.context``; ``Draft.empty()`` if none."""
        ...

    def observe(self, feedback: StepFeedback) -> None:
        """Learn from a finished step (adaptive sources update their statistics)."""
        ...

    def reset(self) -> None:
        """Forget everything learnt since construction."""
        ...


@runtime_checkable
class TreeBuilder(Protocol):
    """Merges a draft's candidates into a token tree of at most ``max_nodes`` nodes."""

    name: str

    def build(self, draft: Draft, max_nodes: int, max_depth: int) -> TokenTree:
        """Return a tree with ``size <= max_nodes`` and ``max_depth <= max_depth``."""
        ...


class LogitsProcessorFn(Protocol):
    """Turns raw logits of tree rows into the processed scores the target samples from: float64
    ``[m, V]``, unnormalised (like logits), removed tokens ``-inf``; ``softmax`` of a row is its
    distribution. (The built-in :class:`draftkit.logits.LogitsPipeline` also offers ``probs``.)

    ``paths`` gives, for each row, the tokens between the end of the context and
    that row (needed for penalties that depend on a node's own path).
    """

    def __call__(self, logits: torch.Tensor, paths: list[np.ndarray]) -> torch.Tensor: ...


@runtime_checkable
class Verifier(Protocol):
    """Chooses the accepted root path of a tree from the target's node logits.

    ``logits`` has one row for the root (the distribution of the first new token)
    followed by one row per node: float [n + 1, V], raw model outputs.
    ``process`` maps rows to processed scores after the request's logits
    processing (temperature, top-k, ...): unnormalised, so take ``softmax`` of a
    row for its probabilities; ``random`` supplies the uniforms for
    sampling, keyed by output position, so seeded runs are reproducible.
    """

    name: str
    #: True when the verifier samples (needs ``SamplingParams.do_sample``).
    samples: bool

    def supports(self, capabilities: SourceCapabilities) -> bool:
        """Whether verifying drafts of a source with these capabilities is lossless."""
        ...

    def verify(
        self,
        tree: TokenTree,
        logits: torch.Tensor,
        sampling: SamplingParams,
        process: LogitsProcessorFn,
        random: RandomStream | None,
        position: int,
    ) -> Verdict:
        """``position`` is the output index of the first token emitted this step."""
        ...
