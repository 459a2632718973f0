"""The draft source ``rest``: retrieval from a suffix-array datastore (REST).

Each step looks up the longest suffix of the context (16 down to 2 tokens) in
the datastore, reads what followed up to 5000 of its occurrences (10 tokens
each), folds those continuations into a frequency-weighted trie and proposes its
best nodes. Optionally the context itself is searched too (``include_context``),
so inputs that quote themselves (RAG, summaries, code edits) also hit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import InvalidInputError, MismatchedDataFileError
from ...types import Draft, DraftRequest, SourceCapabilities, StepFeedback
from ..switches import require_switch
from . import kernels
from .datastore import Datastore
from .suffix import RetrievalParams, match_evidence, retrieve

__all__ = ["Rest"]


@dataclass
class Rest:
    """Draft source ``rest``. Deterministic and stateless.

    ``store`` is an opened :class:`~.datastore.Datastore` (see :meth:`open`), or
    ``None`` for context-only retrieval (then ``include_context`` must be on).
    The defaults are REST's: suffixes of 16 down to 2 tokens, 5000 occurrences,
    10 tokens after each, 64 trie nodes (further capped by the decoder's budget
    and depth limit every step).

    ``include_context=True`` also searches the context (prompt + output so far)
    for earlier occurrences of its own longest re-occurring suffix. When both the
    store and the context match, each side's continuations are normalised to a
    total weight equal to its match length (the context's times
    ``context_weight``), so neither a frequent store pattern nor a single context
    hit dominates by count alone.
    """

    store: Datastore | None = None
    max_suffix: int = 16
    min_suffix: int = 2
    max_matches: int = 5000
    max_draft_len: int = 10
    max_nodes: int = 64
    include_context: bool = False
    context_weight: float = 1.0

    name = "rest"
    capabilities = SourceCapabilities()

    def __deepcopy__(self, memo: dict[int, Any]) -> Rest:
        """Stateless, over a read-only memory-mapped datastore: a copy may be the same object
        (copying would read the whole datastore into memory)."""
        return self

    def __post_init__(self) -> None:
        self.include_context = require_switch("rest", "include_context", self.include_context)
        if self.store is None and not self.include_context:
            raise InvalidInputError(
                "Rest needs a datastore: use Rest.open('store/') (on the command line: --source-option "
                "path=STORE; build one with `draftkit datastore build`), or pass include_context=True for "
                "context-only retrieval"
            )
        if self.store is not None and not isinstance(self.store, Datastore):
            raise InvalidInputError(
                f"store must be an opened Datastore, got {type(self.store).__name__}; use Rest.open(path)"
            )
        for key in ("max_suffix", "min_suffix", "max_matches", "max_draft_len", "max_nodes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"Rest {key} must be an integer >= 1, got {value!r}")
        if self.min_suffix > self.max_suffix:
            raise InvalidInputError(
                f"Rest min_suffix ({self.min_suffix}) must not exceed max_suffix ({self.max_suffix})"
            )
        if not self.context_weight > 0:
            raise InvalidInputError(f"Rest context_weight must be > 0, got {self.context_weight}")
        self._params = RetrievalParams(
            min_len=self.min_suffix,
            max_len=self.max_suffix,
            max_matches=self.max_matches,
            depth=self.max_draft_len,
            max_nodes=self.max_nodes,
            include_context=self.include_context,
            context_weight=float(self.context_weight),
        )
        self._chunks = (
            tuple((c.tokens, c.suffix_array) for c in self.store.chunks) if self.store is not None else ()
        )
        self._separator = self.store.separator_id if self.store is not None else -1
        self._warm_up()

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], tokenizer: Any = None, *, preload: bool | None = None, **options: Any
    ) -> Rest:
        """Open a datastore folder (memory-mapped, validated) and make a source of it.

        With ``tokenizer`` (a Hugging Face tokenizer) the store's recorded
        tokenizer fingerprint must match it. ``preload``: by default a store of
        up to 1 GiB is read into the page cache in the background, a bigger one
        only where lookups touch it; ``True`` reads it all now (steady latency
        from the first step), ``False`` reads nothing ahead. ``options`` are the
        fields of :class:`Rest` (``max_matches``, ``include_context``, ...).
        """
        return cls(Datastore.open(path, tokenizer=tokenizer, preload=preload), **options)

    def _warm_up(self) -> None:
        """Compile the kernels for this store's dtypes now, not during the first step."""
        dtype = self.store.token_dtype if self.store is not None else np.dtype(np.uint16)
        tokens = np.array([1, 2, 1, 2, 3, 4], dtype=dtype)
        sa = np.array(sorted(range(tokens.size), key=lambda i: tokens[i:].tolist()), dtype=np.int32)
        context = np.array([1, 2, 1, 2], dtype=np.int64)
        params = RetrievalParams(include_context=True)
        retrieve(((tokens, sa), (tokens, sa)), context, params, separator=4, vocab_limit=4,
                 stops=np.array([3], np.int64), max_depth=4, max_nodes=4, impl=kernels)

    # -- DraftSource ------------------------------------------------------------------------

    def prepare(self, model: Any, tokenizer: Any = None) -> None:
        """Refuse a datastore built for another tokenizer (by fingerprint) or with ids past the model's."""
        if self.store is None:
            return
        from ...engine.model_config import logits_size
        from ...fingerprint import check_built_for

        check_built_for(f"the datastore {self.store.path}", self.store.tokenizer_fingerprint, tokenizer,
                        int(self.store.vocab_size), logits_size(model), largest_id=int(self.store.max_token_id))

    def begin(self, prompt: np.ndarray) -> None:
        return None

    def propose(self, request: DraftRequest) -> Draft:
        store = self.store
        vocab_limit = request.vocab_size
        if store is not None:
            if store.max_token_id >= request.vocab_size:
                raise MismatchedDataFileError(
                    f"the datastore {store.path} holds token id {store.max_token_id}, but the model's "
                    f"vocabulary has {request.vocab_size} ids: it was built for another tokenizer; rebuild "
                    "it with this model's tokenizer"
                )
            vocab_limit = min(vocab_limit, store.vocab_size)
        stops = np.fromiter(request.eos_token_ids, dtype=np.int64, count=len(request.eos_token_ids))
        found = retrieve(
            self._chunks,
            np.ascontiguousarray(request.context, dtype=np.int64),
            self._params,
            separator=self._separator,
            vocab_limit=vocab_limit,
            stops=stops,
            max_depth=request.max_depth,
            max_nodes=request.max_nodes,
            where=str(store.path) if store is not None else "the datastore",
        )
        if not found.paths:
            return Draft.empty()
        return Draft(found.paths, found.weights, evidence=match_evidence(found))

    def observe(self, feedback: StepFeedback) -> None:
        return None

    def reset(self) -> None:
        return None
