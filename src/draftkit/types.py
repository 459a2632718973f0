"""Immutable values that flow between draftkit's parts.

A step of speculative decoding moves data in one direction::

    context --DraftSource.propose--> Draft --TreeBuilder.build--> TokenTree
            --target forward--> node logits --Verifier.verify--> Verdict
            --DraftSource.observe(StepFeedback)

Every value here is a frozen dataclass so that a part can never change what
another part sees. Token arrays are NumPy ``int64`` (cheap to make in Python and
Numba sources); distributions are ``torch`` tensors because they come from the
model. Shapes are documented on every field: ``n`` is the number of draft nodes
of a tree (the root is *not* a node), ``V`` the vocabulary size of the logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from .checks import is_integer

if TYPE_CHECKING:  # torch is heavy; the value types only need it for annotations
    import torch

    from .processors import ExtraProcessors

__all__ = [
    "DraftKind",
    "SourceCapabilities",
    "DraftRequest",
    "Draft",
    "TokenTree",
    "Verdict",
    "SamplingParams",
    "StepFeedback",
    "DecodeStats",
    "GenerationOutput",
]


class DraftKind(str, Enum):
    """How a source picks its tokens; decides which verifiers are lossless for it."""

    #: Tokens are a deterministic function of the context (n-grams, retrieval,
    #: greedy layer-skip). Any verifier that samples from the target at each node
    #: and walks the tree is lossless.
    DETERMINISTIC = "deterministic"
    #: Tokens are *sampled* from a proposal law q that the source reports
    #: (``Draft.probs``). Sampling needs rejection sampling against q.
    STOCHASTIC = "stochastic"


@dataclass(frozen=True)
class SourceCapabilities:
    """What a draft source provides and needs, checked when a decoder is built.

    Declaring this up front lets the engine refuse a combination that would not be
    lossless (e.g. a stochastic source with a verifier that ignores q) before any
    token is generated, instead of failing mid-generation.
    """

    draft_kind: DraftKind = DraftKind.DETERMINISTIC
    #: The source runs the target model itself (layer-skip self-speculation) and
    #: needs ``DraftRequest.target``.
    needs_target: bool = False
    #: The source learns across steps and requests (its ``reset`` matters).
    stateful: bool = False
    #: The source wants the target's logits at every tree node in ``observe``.
    wants_node_logits: bool = False


@dataclass(frozen=True)
class DraftRequest:
    """Everything a source may look at to propose a continuation.

    ``context`` is the whole sequence so far (prompt + accepted output), so the
    next token to draft follows ``context[-1]``.
    """

    context: np.ndarray  #: int64 [L] prompt + output so far
    prompt_length: int  #: number of prompt tokens at the start of ``context``
    max_depth: int  #: longest sequence the engine can use this step (>= 1)
    max_nodes: int  #: node budget of the tree this step (>= 1)
    vocab_size: int  #: ids must lie in [0, vocab_size)
    eos_token_ids: frozenset[int] = frozenset()  #: never propose past one of these
    #: The engine's target adapter, only for sources with ``needs_target``.
    target: object | None = None
    #: Sampling settings of the request, for sources that sample their drafts.
    sampling: SamplingParams | None = None


@dataclass(frozen=True)
class Draft:
    """Candidate continuations proposed by a source for one step.

    Each candidate is a token sequence that continues the context. ``weights``
    rank them (higher is better, e.g. a retrieval frequency or a visit count); a
    tree builder merges candidates that share prefixes and keeps the best nodes.
    Stochastic sources also give, for each candidate, the proposal distribution
    every token was sampled from.

    ``token_weights`` optionally weighs every token of every candidate instead
    of the whole candidate at once, e.g. an estimate of the chance that the
    token is accepted, which falls with depth. A tree builder that merges
    candidates then scores a node by the sum of the token weights through it,
    so keeping the best nodes keeps the likeliest ones rather than the whole of
    the heaviest candidate.
    """

    sequences: tuple[np.ndarray, ...] = ()  #: each int64 [len_i], len_i >= 1
    weights: tuple[float, ...] = ()  #: one per sequence; defaults to 1.0 each
    #: Stochastic drafts only: per sequence a float tensor [len_i, V], row j is q
    #: (after the same logits processing the target uses) that token j was drawn from.
    probs: tuple[torch.Tensor, ...] | None = None
    #: Optional, per sequence a float64 [len_i] weight of each token (see above).
    token_weights: tuple[np.ndarray, ...] | None = None
    #: Optional: the source's own judgement of this draft as a small class, 0 (none
    #: given) up to 3 (strongest), e.g. the length of the n-gram a lookup matched.
    #: The cost-aware budget keeps acceptance statistics per class, so a draft on
    #: weak evidence gets a small tree, or none, and a strong one a big tree.
    #: Larger values count as 3. It never changes which tokens are emitted.
    evidence: int = 0

    def __post_init__(self) -> None:
        if not is_integer(self.evidence) or self.evidence < 0:
            raise ValueError(f"Draft.evidence must be an integer >= 0, got {self.evidence!r}")
        if not self.weights and self.sequences:
            object.__setattr__(self, "weights", tuple(1.0 for _ in self.sequences))
        if len(self.weights) != len(self.sequences):
            raise ValueError("Draft.weights must have one entry per sequence")
        if self.probs is not None and len(self.probs) != len(self.sequences):
            raise ValueError("Draft.probs must have one tensor per sequence")
        if self.token_weights is not None and (
            len(self.token_weights) != len(self.sequences)
            or any(len(w) != len(s) for w, s in zip(self.token_weights, self.sequences, strict=True))
        ):
            raise ValueError("Draft.token_weights must have one weight per token of every sequence")

    @classmethod
    def empty(cls) -> Draft:
        """No proposal: the step degenerates to one plain decoding step."""
        return cls()

    @classmethod
    def chain(cls, tokens: Sequence[int] | np.ndarray, weight: float = 1.0, evidence: int = 0) -> Draft:
        """A single candidate sequence."""
        arr = np.asarray(tokens, dtype=np.int64).reshape(-1)
        return cls((arr,), (weight,), evidence=evidence) if arr.size else cls()

    @property
    def is_empty(self) -> bool:
        return not any(len(s) for s in self.sequences)


@dataclass(frozen=True, eq=False)
class TokenTree:
    """A tree of draft tokens hanging below the last context token (the root).

    Nodes are stored in topological order: ``parents[i] < i``; ``-1`` means the
    node is a child of the root. Node ``i`` continues the context with the tokens
    on its root path. Construct with :meth:`from_parents`, which validates the
    shape and derives the depth and ancestor arrays once.
    """

    tokens: np.ndarray  #: int64 [n] the draft token of each node
    parents: np.ndarray  #: int64 [n] parent node index, -1 for the root's children
    depths: np.ndarray  #: int64 [n] 1 for the root's children
    #: bool [n, n]; ancestors[i, j] is True when node j is on node i's root path
    #: (a node is its own ancestor). This is the tree-attention pattern.
    ancestors: np.ndarray
    #: Stochastic drafts only: float tensor [n, V], row i is the proposal law q
    #: that node i's token was drawn from (shared by siblings).
    probs: torch.Tensor | None = None
    #: Builder-specific score of each node (float64 [n]); informative only.
    scores: np.ndarray | None = field(default=None)

    @classmethod
    def from_parents(
        cls,
        tokens: Sequence[int] | np.ndarray,
        parents: Sequence[int] | np.ndarray,
        *,
        probs: torch.Tensor | None = None,
        scores: np.ndarray | None = None,
    ) -> TokenTree:
        # Own copies: the inputs may be views of the (read-only) context or a source's buffers.
        tokens_arr = np.array(tokens, dtype=np.int64, copy=True).reshape(-1)
        parents_arr = np.array(parents, dtype=np.int64, copy=True).reshape(-1)
        n = tokens_arr.size
        if parents_arr.size != n:
            raise ValueError(f"TokenTree: {n} tokens but {parents_arr.size} parents")
        idx = np.arange(n)
        if n and (np.any(parents_arr >= idx) or np.any(parents_arr < -1)):
            bad = int(np.nonzero((parents_arr >= idx) | (parents_arr < -1))[0][0])
            raise ValueError(
                f"TokenTree: node {bad} has parent {int(parents_arr[bad])}; parents must be -1 "
                "or an earlier node index (topological order)"
            )
        depths = np.empty(n, dtype=np.int64)
        ancestors = np.zeros((n, n), dtype=bool)
        for i in range(n):
            p = parents_arr[i]
            if p < 0:
                depths[i] = 1
            else:
                depths[i] = depths[p] + 1
                ancestors[i] = ancestors[p]
            ancestors[i, i] = True
        if probs is not None and probs.shape[0] != n:
            raise ValueError(f"TokenTree: probs has {probs.shape[0]} rows for {n} nodes")
        return cls(tokens_arr, parents_arr, depths, ancestors, probs, scores)

    @classmethod
    def empty(cls) -> TokenTree:
        return cls.from_parents(np.empty(0, np.int64), np.empty(0, np.int64))

    @property
    def size(self) -> int:
        return int(self.tokens.size)

    @property
    def max_depth(self) -> int:
        return int(self.depths.max()) if self.tokens.size else 0

    def children(self, node: int) -> np.ndarray:
        """Indices of the children of ``node`` (``-1`` = root), in node order."""
        return np.nonzero(self.parents == node)[0]

    def path(self, node: int) -> np.ndarray:
        """Node indices from the root's child down to ``node`` (inclusive)."""
        return np.nonzero(self.ancestors[node])[0]

    def path_tokens(self, node: int) -> np.ndarray:
        return self.tokens[self.path(node)]


@dataclass(frozen=True)
class Verdict:
    """What a verifier accepted in one step.

    ``accepted_nodes`` is a root path of the tree (possibly empty); the tokens
    emitted this step are the tokens of those nodes followed by ``bonus_token``,
    the target's own next token after the accepted path.
    """

    accepted_nodes: tuple[int, ...]
    bonus_token: int

    def emitted_tokens(self, tree: TokenTree) -> list[int]:
        return [int(tree.tokens[i]) for i in self.accepted_nodes] + [int(self.bonus_token)]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings with the meaning of Hugging Face ``generate``.

    ``do_sample=False`` is greedy decoding. The processors are applied in HF's
    order: repetition penalty, temperature, top-k, top-p, min-p; ``processors``
    holds the other ``generate`` options in use (``no_repeat_ngram_size``,
    ``min_new_tokens``, ``typical_p``, a ``logits_processor`` list, ...), built
    by :func:`draftkit.processors.build_extra_processors` for one request.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    processors: ExtraProcessors | None = None

    def __post_init__(self) -> None:
        from .errors import InvalidInputError

        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise InvalidInputError(
                f"temperature must be a positive number, got {self.temperature}; "
                "use do_sample=False for greedy decoding"
            )
        if self.top_k is not None and (not is_integer(self.top_k) or self.top_k < 1):
            raise InvalidInputError(f"top_k must be an integer >= 1 (or None), got {self.top_k!r}")
        if self.seed is not None and not is_integer(self.seed):
            raise InvalidInputError(f"seed must be an integer (or None), got {self.seed!r}")
        if self.top_p is not None and not (0.0 <= self.top_p <= 1.0):  # 0: the likeliest token only, as in HF
            raise InvalidInputError(f"top_p must be in [0, 1], got {self.top_p}")
        if self.min_p is not None and not (0.0 <= self.min_p <= 1.0):
            raise InvalidInputError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise InvalidInputError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def uses_context_processors(self) -> bool:
        """True when a node's distribution depends on the tokens of its own path (or its position)."""
        return self.repetition_penalty not in (None, 1.0) or self.processors is not None

    def describe_context_processors(self) -> str:
        """``name=value`` of the settings that make :attr:`uses_context_processors` true, for messages."""
        parts = [f"repetition_penalty={self.repetition_penalty}"] if self.repetition_penalty not in (None, 1.0) else []
        if self.processors is not None:
            parts.extend(self.processors.described)
        return ", ".join(parts)


@dataclass(frozen=True)
class StepFeedback:
    """What a source learns after a step: the tree it led to and what survived.

    ``emitted`` stops at the first EOS / stop token and at ``max_new_tokens``:
    nothing after the end of generation is ever fed back.
    """

    context: np.ndarray  #: int64 [L] the context the draft was proposed for
    tree: TokenTree
    verdict: Verdict
    emitted: np.ndarray  #: int64 [k] tokens appended to the context this step
    #: Target logits for [root, node_0, ..., node_{n-1}] (float [n+1, V]); only
    #: when the source declares ``wants_node_logits``.
    node_logits: torch.Tensor | None = None
    #: The request's stop token ids (the same set as ``DraftRequest.eos_token_ids``),
    #: so that a source learning from ``node_logits`` can skip the rows that follow
    #: an end of text; those must never feed adaptive state.
    eos_token_ids: frozenset[int] = frozenset()


@dataclass
class DecodeStats:
    """Counters of one generation. Times are wall-clock seconds."""

    steps: int = 0  #: decode steps (target forwards; the first one may include the prompt's prefill)
    drafted: int = 0  #: draft nodes sent to verification
    accepted: int = 0  #: draft tokens accepted (bonus tokens not included)
    emitted: int = 0  #: new tokens returned (accepted + bonus, after stopping)
    prompt_tokens: int = 0
    accept_lengths: list[int] = field(default_factory=list)  #: tokens emitted per step
    #: The source's per-request setup (``begin``), and the prompt's forward pass when it runs on its own
    #: (most requests fuse it with the first step, whose verify time then includes it).
    time_prefill: float = 0.0
    time_draft: float = 0.0
    time_verify: float = 0.0  #: target forwards of the decode steps
    time_other: float = 0.0  #: tree building, verification logic, cache compaction
    time_total: float = 0.0
    #: "length", "eos", "stop_string", "stopping_criteria", "context", "time" (``max_time``); a batch: "mixed"
    finish_reason: str = ""

    @property
    def mean_accepted_tokens(self) -> float:
        """Tokens emitted per target step, the bonus token included (plain decoding = 1.0)."""
        return self.emitted / self.steps if self.steps else 0.0

    @property
    def acceptance_rate(self) -> float:
        """Share of drafted nodes that were accepted."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.emitted / self.time_total if self.time_total > 0 else 0.0

    def as_dict(self) -> dict[str, float | int | str | list[int]]:
        return {
            "steps": self.steps,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "emitted": self.emitted,
            "prompt_tokens": self.prompt_tokens,
            "mean_accepted_tokens": self.mean_accepted_tokens,
            "acceptance_rate": self.acceptance_rate,
            "tokens_per_second": self.tokens_per_second,
            "time_prefill": self.time_prefill,
            "time_draft": self.time_draft,
            "time_verify": self.time_verify,
            "time_other": self.time_other,
            "time_total": self.time_total,
            "finish_reason": self.finish_reason,
            "accept_lengths": list(self.accept_lengths),
        }


@dataclass(frozen=True)
class GenerationOutput:
    """Result of :meth:`SpeculativeDecoder.generate`."""

    sequences: torch.Tensor  #: int64 [1, T + n] prompt followed by the new tokens ([B, ...] for a batch)
    #: For a batch: counts and times summed over rows, ``prompt_tokens`` = the input's width.
    stats: DecodeStats
    #: For a batched or multi-sample call: each row's own output (unpadded), in row order.
    per_sequence: tuple[GenerationOutput, ...] = ()
    #: With ``output_scores=True``: each new token's processed scores, float32 [B, V], as in HF.
    scores: tuple[torch.Tensor, ...] | None = None
    #: With ``output_logits=True``: each new token's raw logits, float32 [B, V], as in HF.
    logits: tuple[torch.Tensor, ...] | None = None

    @property
    def new_tokens(self) -> torch.Tensor:
        return self.sequences[:, self.stats.prompt_tokens :]

    def __getitem__(self, key: str) -> Any:
        """``out["sequences"]``, as on the output of ``model.generate(..., return_dict_in_generate=True)``."""
        if key in ("sequences", "stats") or (key in ("scores", "logits") and getattr(self, key) is not None):
            return getattr(self, key)
        raise KeyError(f"{key!r}: this GenerationOutput holds 'sequences', 'stats'"
                       + "".join(f", {k!r}" for k in ("scores", "logits") if getattr(self, k) is not None)
                       + " (scores / logits with output_scores=True / output_logits=True)")
