"""The ``aded`` draft source: adaptive tri-gram matrix + MCTS draft trees.

ADED (Liu et al., arXiv 2407.12021) drafts from a corpus-built tri-gram matrix
that keeps learning from the text being generated, and picks the draft tree by
Monte-Carlo tree search over it. Drafts are deterministic given the table, the
context and the seed, so every lossless verifier for deterministic drafts
applies; the source only ever affects speed, never the output.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ...errors import InvalidInputError
from ...types import Draft, DraftKind, DraftRequest, SourceCapabilities, StepFeedback
from ..switches import require_switch
from .config import AdaptConfig, MctsConfig, search_evidence, step_seed
from .fileformat import load_matrix, save_matrix
from .table import AdaptiveTable, TrigramMatrix, build_matrix

__all__ = ["Aded", "warm_up"]

_BACKENDS = ("auto", "numba", "reference")


def _jit_disabled() -> bool:
    import numba

    return bool(numba.config.DISABLE_JIT)


@functools.cache
def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel the source calls, once per process."""
    tokens = np.array([1, 2, 3, 1, 2, 4, 2, 3, 1], np.int64)
    matrix = build_matrix([tokens], 8)
    table = AdaptiveTable(matrix, AdaptConfig(), initial_capacity=16)
    eos = np.array([7], np.int64)
    table.update(tokens, eos)
    cfg = MctsConfig(iterations=4)
    paths = np.zeros((cfg.num_paths, cfg.max_path_len), np.int64)
    lens = np.zeros(cfg.num_paths, np.int64)
    weights = np.zeros(cfg.num_paths, np.float64)
    table.draft(1, 2, eos, 8, cfg.max_path_len, cfg.max_nodes, cfg, 1, paths, lens, weights)
    table.successors(1, 2)
    table.to_matrix()
    table.reset()


class Aded:
    """Draft source ``aded``: ADED's adaptive tri-gram matrix and MCTS draft trees.

    ``matrix`` is a :class:`TrigramMatrix`, the path of a saved one, or None to
    start empty and learn purely online. ``vocab_size`` defaults to the matrix's,
    or to the first request's when there is no matrix.

    Learning: after every step the last ``window`` tokens reinforce their
    trigrams (``increment``, capped at ``max_weight``, missing ones inserted; at
    most ``max_inserted`` insertions are kept, at most ``max_learnt_per_bigram``
    per bigram: a new one replaces the bigram's weakest); the prompt is learnt at
    the start of each request (all of it with ``learn_prompt``, else its last
    ``window`` tokens). Trigrams continuing after an EOS / stop token are never
    learnt.
    With ``persist=True`` (the paper's behaviour) what is learnt carries over to
    the next ``generate()`` call; with ``persist=False`` every request starts
    from the matrix. :meth:`reset` restores the matrix's state.

    Drafting: MCTS with PUCT (``iterations``, ``rollout_depth``, ``c1``, ``c2``),
    the ``num_paths`` most visited paths each extended by ``greedy_extension``
    arg-max tokens, at most ``max_nodes`` draft nodes (and the engine's budget).
    ``seed`` makes drafts reproducible. ``backend`` is ``"numba"``,
    ``"reference"`` (plain Python) or ``"auto"`` (reference when Numba's JIT is
    disabled).
    """

    name = "aded"
    capabilities = SourceCapabilities(draft_kind=DraftKind.DETERMINISTIC, stateful=True)

    def __init__(
        self,
        vocab_size: int | None = None,
        *,
        matrix: TrigramMatrix | str | os.PathLike[str] | None = None,
        tokenizer: Any = None,
        persist: bool = True,
        seed: int = 0,
        window: int = 16,
        increment: float = 0.04,
        max_weight: float = 3.0,
        max_inserted: int = 1 << 20,
        learn_prompt: bool = True,
        max_learnt_per_bigram: int = 12,
        iterations: int = 150,
        rollout_depth: int = 4,
        num_paths: int = 24,
        greedy_extension: int = 1,
        c1: float = 32.0,
        c2: float = 8.0,
        max_nodes: int = 64,
        normalize: bool = True,
        backend: str = "auto",
    ) -> None:
        if backend not in _BACKENDS:
            raise InvalidInputError(f"backend must be one of {', '.join(_BACKENDS)}, got {backend!r}")
        if isinstance(matrix, (str, os.PathLike)):
            matrix = load_matrix(matrix, vocab_size=vocab_size, tokenizer=tokenizer)
        elif matrix is not None and not isinstance(matrix, TrigramMatrix):
            raise InvalidInputError(f"matrix must be a TrigramMatrix, a path or None, got {type(matrix).__name__}")
        if matrix is not None and vocab_size is not None and int(vocab_size) != matrix.vocab_size:
            raise InvalidInputError(
                f"vocab_size={vocab_size} but the matrix was built for {matrix.vocab_size} tokens; "
                "omit vocab_size or build the matrix with this vocabulary"
            )
        learn_prompt, normalize = require_switch("aded", "learn_prompt", learn_prompt), require_switch(
            "aded", "normalize", normalize)
        self.adapt = AdaptConfig(window, increment, max_weight, max_inserted, learn_prompt, max_learnt_per_bigram)
        self.mcts = MctsConfig(iterations, rollout_depth, num_paths, greedy_extension, c1, c2, max_nodes, normalize)
        self.persist = require_switch("aded", "persist", persist)
        self.seed = int(seed)
        if backend == "auto":
            backend = "reference" if _jit_disabled() else "numba"
        self.backend = backend
        self._matrix = matrix
        self._vocab = matrix.vocab_size if matrix is not None else (int(vocab_size) if vocab_size else None)
        self._table: Any = None
        self._pending_prompt: np.ndarray | None = None
        self._eos_key: frozenset[int] | None = None
        self._eos = np.empty(0, np.int64)
        width = self.mcts.max_path_len
        self._out_paths = np.zeros((self.mcts.num_paths, width), np.int64)
        self._out_lens = np.zeros(self.mcts.num_paths, np.int64)
        self._out_w = np.zeros(self.mcts.num_paths, np.float64)
        if self.backend == "numba":
            warm_up()
        if self._vocab is not None:
            self._make_table(self._vocab)

    def prepare(self, model: Any, tokenizer: Any = None) -> None:
        """Refuse a matrix built for another tokenizer (by fingerprint) or a bigger vocabulary."""
        if self._matrix is None:
            return
        from ...engine.model_config import logits_size
        from ...fingerprint import check_built_for

        check_built_for("the ADED matrix", self._matrix.fingerprint, tokenizer, self._matrix.vocab_size,
                        logits_size(model))

    # -- construction helpers ------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        tokenizer: Any = None,
        vocab_size: int | None = None,
        **options: Any,
    ) -> Aded:
        """A source from a saved matrix, checked against ``tokenizer`` / ``vocab_size`` when given."""
        return cls(vocab_size, matrix=load_matrix(path, vocab_size=vocab_size, tokenizer=tokenizer), **options)

    @classmethod
    def from_tokens(cls, token_arrays: Iterable[object], vocab_size: int, *, top_k: int = 12,
                    **options: Any) -> Aded:
        """A source whose matrix is counted from ``token_arrays`` (one int array per document)."""
        return cls(vocab_size, matrix=build_matrix(token_arrays, vocab_size, top_k=top_k), **options)

    def _make_table(self, vocab: int) -> None:
        from .reference import ReferenceTable

        if self._matrix is None:
            self._matrix = TrigramMatrix.empty(vocab)
        self._vocab = vocab
        if self.backend == "reference":
            self._table = ReferenceTable(self._matrix, self.adapt)
        else:
            self._table = AdaptiveTable(self._matrix, self.adapt)

    # -- state ---------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int | None:
        return self._vocab

    @property
    def table(self) -> Any:
        """The live table (:class:`AdaptiveTable` or reference), None until the vocabulary is known."""
        return self._table

    @property
    def num_inserted(self) -> int:
        return 0 if self._table is None else self._table.num_inserted

    def to_matrix(self) -> TrigramMatrix:
        """What the source knows now (corpus + learnt), as a matrix."""
        if self._table is None:
            raise InvalidInputError("the source has no vocabulary yet: give vocab_size or run a request first")
        return self._table.to_matrix()

    def save(self, path: str | os.PathLike[str], *, learnt: bool = True) -> None:
        """Save the matrix, with what was learnt so far unless ``learnt=False``."""
        matrix = self.to_matrix() if learnt else self._matrix
        if matrix is None:
            raise InvalidInputError("the source has no vocabulary yet: give vocab_size or run a request first")
        save_matrix(matrix, path)

    # -- DraftSource ---------------------------------------------------------------------------

    def begin(self, prompt: np.ndarray) -> None:
        if not self.persist:
            self.reset()
        # Learnt at the first propose, which knows the request's EOS ids.
        self._pending_prompt = np.array(prompt, dtype=np.int64).reshape(-1)

    def _learn_prompt(self) -> None:
        prompt, self._pending_prompt = self._pending_prompt, None
        if prompt is None or self._table is None:
            return
        if not self.adapt.learn_prompt:
            prompt = prompt[-self.adapt.window :]
        self._table.update(prompt, self._eos)

    def _set_eos(self, eos_ids: frozenset[int]) -> None:
        """Use the request's EOS / stop ids (converted once per request, not per step)."""
        if eos_ids is not self._eos_key:
            self._eos_key = eos_ids
            self._eos = np.array(sorted(eos_ids), dtype=np.int64)

    def propose(self, request: DraftRequest) -> Draft:
        if self._table is None:
            self._make_table(int(request.vocab_size))
        self._set_eos(request.eos_token_ids)
        if self._pending_prompt is not None:
            self._learn_prompt()
        ctx = request.context
        max_len = min(int(request.max_depth), self.mcts.max_path_len)
        max_nodes = min(int(request.max_nodes), self.mcts.max_nodes)
        if ctx.size < 2 or max_len < 1 or max_nodes < 1:
            return Draft.empty()
        limit = min(int(self._vocab), int(request.vocab_size))
        n = self._table.draft(
            int(ctx[-2]), int(ctx[-1]), self._eos, limit, max_len, max_nodes, self.mcts,
            step_seed(self.seed, ctx.size), self._out_paths, self._out_lens, self._out_w,
        )
        if n == 0:
            return Draft.empty()
        block = self._out_paths[:n].copy()  # one copy; the sequences are views of it
        lens = self._out_lens[:n].tolist()
        weights = self._out_w[:n].tolist()
        return Draft(
            tuple(block[i, : lens[i]] for i in range(n)), tuple(weights), evidence=search_evidence(max(weights), self.mcts)
        )

    def observe(self, feedback: StepFeedback) -> None:
        if self._table is None:
            return
        # The EOS set first: when no propose ran this request (max_new_tokens=1, budget 0)
        # the pending prompt must not be learnt with the previous request's EOS ids.
        self._set_eos(feedback.eos_token_ids)
        if self._pending_prompt is not None:
            self._learn_prompt()
        w = self.adapt.window
        emitted = feedback.emitted
        if emitted.size >= w:
            tokens = emitted[-w:]
        else:
            tokens = np.concatenate((feedback.context[-(w - emitted.size) :], emitted))
        if tokens.size >= 3:
            self._table.update(tokens, self._eos)

    def reset(self) -> None:
        self._pending_prompt = None
        if self._table is not None:
            self._table.reset()

    def __repr__(self) -> str:
        m = self._matrix
        size = f"{m.num_bigrams} bigrams, {m.num_entries} entries" if m is not None else "empty"
        return f"Aded({size}, persist={self.persist}, backend={self.backend!r})"
