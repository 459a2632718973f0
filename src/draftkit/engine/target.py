"""Adapter around a Hugging Face causal LM: prefill, tree forward, KV commit.

The adapter owns the KV cache of one request and keeps one invariant: the cache
holds every context token except the last one (the *pending* token). A decode
step feeds ``[pending] + tree`` in one forward with a tree-attention mask; after
verification :meth:`TargetModel.commit` keeps the pending token and the accepted
nodes' entries, so the cache again equals a prefill of the context minus its
last token. The user's model is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.modules import module as torch_module

from ..errors import InvalidInputError, PromptTooLongError, UnsupportedModelError
from ..trees.chain import is_chain, preferred_next_rows
from ..trees.masks import tree_attention_inputs
from ..types import TokenTree
from .model_config import (
    chunked_attention_size,
    context_window,
    layer_mask_kinds,
    logits_size,
    sliding_window,
    slot_local_window,
    unsupported_hint,
)

__all__ = ["LAZY_CHAIN_ROWS", "LazyLogits", "preferred_next_rows", "SeparableHead", "TargetModel", "TargetSession"]


@dataclass(frozen=True)
class SeparableHead:
    """The model split into its body (up to the final hidden states) and its LM head.

    ``model(x).logits == head(body(x).last_hidden_state)`` was checked on this
    model, so logits of single rows can be computed on demand.
    """

    body: torch.nn.Module
    head: torch.nn.Module

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head applied to final hidden states [m, H]: logits [m, V].

        A plain linear head is applied as ``weight @ hidden.T``, not as
        ``linear(hidden, weight)``: for the few rows a greedy walk reads, the
        linear form was more than twice as slow inside decoding (most likely
        CPU BLAS packing the whole [V, H] weight on every call; with one row it
        takes a matrix-vector path, and in a warm microbenchmark the gap
        shrinks or reverses for 7-15 rows). Measured in the demo benchmark's flow
        (pld+aded, short HumanEval answers, products of 2-11 rows): 1.36 ms of
        head per step with ``linear``, 0.63 ms with this form (2 threads; 1.55
        vs 0.98 ms with 1). The body's smaller weights showed no such gain.
        Each logit is still one dot product of a hidden row with a weight row,
        so only the summation order can differ (last-bit rounding), which the
        separability probe bounds like any other.
        """
        head = self.head
        if _is_plain_linear(head, hidden):
            out = torch.matmul(head.weight, hidden.T).T.contiguous()
            return out if head.bias is None else out + head.bias
        return head(hidden)


def _is_plain_linear(head: torch.nn.Module, hidden: torch.Tensor) -> bool:
    """Whether calling ``head`` would compute exactly ``hidden @ weight.T + bias`` and nothing else.

    Checked at every call, as the user may change the module after the decoder
    is built: a hook (a token ban, accelerate's offloading, which moves the
    weight in and out of the device around the call) or an instance-level
    ``forward`` must run, so such a head is always called as a module.
    """
    if type(head) is not torch.nn.Linear or "forward" in vars(head) or hidden.dim() != 2:
        return False
    if head._forward_hooks or head._forward_pre_hooks:
        return False
    if getattr(torch_module, "_global_forward_hooks", None) or getattr(torch_module, "_global_forward_pre_hooks", None):
        return False
    weight = head.weight
    return weight.device == hidden.device and weight.dtype == hidden.dtype


#: Longest prompt prefix whose prefill is fused with the request's first step. Fusing saves one
#: forward pass per request (the first step's fixed cost, as much as a plain step), which matters
#: for short answers; for long prompts the prefill dominates anyway, and a fused tree step needs
#: an explicit mask over the whole prompt (quadratic in its length) where a prefill needs none.
FUSED_PREFILL_MAX = 1024

#: Relative tolerance of the tree and chain probes (a forward over several tokens vs single tokens).
_PROBE_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3}

#: Most logits rows one product of the LM head computes ahead along the preferred path.
#: A product's cost is mostly streaming the head's weights from memory (a 8192 x 256
#: head in :meth:`SeparableHead.logits`: about 0.15 ms per product on this project's
#: 2-core CPU, plus 0.02 ms per row), so rows computed ahead are cheap next to a
#: second product. Priced on the demo benchmark (pld+aded, all quick prompts): 0.69 ms
#: of head per step with chains of 16 (1.28 products per step), 0.76 ms with 8 (1.69),
#: 0.81 ms with 5 (2.01); longer chains only add rows where the preferred path is that deep.
LAZY_CHAIN_ROWS = 16


class LazyLogits:
    """Logits rows [n + 1, V] computed on demand from final hidden states.

    Supports what row-by-row verifiers use: ``shape`` and slicing rows
    (``logits[i : i + 1]``); only the rows read are computed. With the tree, a
    row that is not computed yet is computed together with the rows the tree's
    preferred path visits below it (``chain_rows`` in all) in one product: the
    LM head's weights are read from memory once for all of them, so on a CPU
    a dozen rows cost about twice one row, and a verifier walk that follows the
    drafted path finds its next rows ready. Rows computed ahead that the walk
    does not reach are wasted, but cost far less than the products they save.
    """

    def __init__(self, head: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, vocab_size: int,
                 tree: TokenTree | None = None, chain_rows: int = LAZY_CHAIN_ROWS) -> None:
        self._head = head  # hidden rows [m, H] -> logits [m, V], e.g. SeparableHead.logits
        self._hidden = hidden
        self.shape = torch.Size((hidden.shape[0], vocab_size))
        self._next = preferred_next_rows(tree) if tree is not None else None
        self._chain_rows = max(1, chain_rows)
        self._rows: dict[int, torch.Tensor] = {}
        self.rows_computed = 0  #: rows the LM head was applied to (for tests and cost models)

    def _compute(self, rows: list[int]) -> None:
        with torch.inference_mode():
            out = self._head(self._hidden[torch.tensor(rows)])
        self.rows_computed += len(rows)
        for i, r in enumerate(rows):
            self._rows[r] = out[i]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        if not isinstance(rows, slice):
            raise TypeError("LazyLogits supports row slices only, e.g. logits[i : i + 1]")
        wanted = range(*rows.indices(len(self)))
        missing = [r for r in wanted if r not in self._rows]
        if len(missing) == 1 and self._next is not None:
            chain, r = [missing[0]], int(self._next[missing[0]])
            while r >= 0 and len(chain) < self._chain_rows and r not in self._rows:
                chain.append(r)
                r = int(self._next[r])
            missing = chain
        if missing:
            self._compute(missing)
        if not wanted:
            return self._hidden.new_empty((0, self.shape[1]))
        return torch.stack([self._rows[r] for r in wanted])

    def __len__(self) -> int:
        return int(self.shape[0])


@dataclass
class _CacheLayout:
    """Where things are in the cache of the step being verified."""

    cache_len: int  # entries before this step's forward (= len(context) - 1)
    tree_size: int


#: Config settings of dropout that HF models apply as a function inside attention, not as a layer.
_FUNCTIONAL_DROPOUT = ("attention_dropout", "attn_pdrop", "attn_dropout", "attention_probs_dropout_prob")


def refuse_active_dropout(model: torch.nn.Module) -> None:
    """Refuse a model in training mode whose dropout is on: its forward passes are random, so no
    decoder can repeat plain decoding (and the tree probes would blame the model's attention).
    A model fresh from ``from_config`` is in training mode; ``from_pretrained`` calls ``eval()``."""
    if not getattr(model, "training", False):
        return
    config = getattr(model, "config", None)
    # Dropout layers, and the attention dropout that HF's attention functions apply in training
    # (not every *dropout* setting: GPT-2's summary_first_dropout is for another head).
    rates = {name: getattr(config, name) for name in _FUNCTIONAL_DROPOUT
             if isinstance(getattr(config, name, None), float) and getattr(config, name) > 0}
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]
    if rates or layers:
        what = ", ".join(f"{k}={v}" for k, v in sorted(rates.items())) or f"{len(layers)} dropout layers"
        raise InvalidInputError(
            f"{type(model).__name__} is in training mode with dropout on ({what}): its outputs are random. "
            "Call model.eval() before decoding (from_pretrained does; from_config does not)"
        )


class TargetSession:
    """The KV cache of one request, and the forward passes that use it.

    Each ``generate()`` / ``stream()`` call owns one session, so several streams
    of one decoder can be interleaved without touching each other's cache.
    Sources that run the target themselves (layer-skip) receive the session as
    ``DraftRequest.target`` and may use ``model``, ``cache``, ``cache_len`` and
    ``device``; they must leave ``cache`` as they found it.
    """

    def __init__(self, owner: TargetModel) -> None:
        self.owner = owner
        self.model = owner.model
        self.device = owner.device
        self.dtype = owner.dtype
        self.vocab_size = owner.vocab_size
        self.context_window = owner.context_window
        #: Verify chains with the model's own causal mask (the model's mode; the chain probe sets it).
        self.chain_only = owner.chain_only
        self.cache: object | None = None
        self._layout: _CacheLayout | None = None
        #: Prompt tokens whose prefill was deferred to the first forward (see :meth:`prefill`).
        self._deferred: torch.Tensor | None = None

    @property
    def deferred_rows(self) -> int:
        """Prompt tokens the next forward runs in front of its own rows (a deferred prefill), else 0."""
        return 0 if self._deferred is None else int(self._deferred.numel())

    @property
    def cache_len(self) -> int:
        """Context tokens in the cache (a deferred prefill counts once it has run)."""
        return 0 if self.cache is None else int(self.cache.get_seq_length())

    @torch.inference_mode()
    def prefill(self, prompt: torch.Tensor, defer: bool = False) -> None:
        """Fill the cache with every prompt token but the last.

        ``defer=True`` runs the prefill as part of the first :meth:`forward_tree`
        (one forward pass fewer per request) when the prompt is at most
        :data:`FUSED_PREFILL_MAX` tokens; until then the cache is empty, so only
        callers that do not read the cache before the first step (sources that
        do not run the target) may defer. Whether the model's fused step is
        exact is :meth:`TargetModel.start`'s decision (``can_fuse_prefill``).
        """
        from transformers.cache_utils import DynamicCache

        self.cache = DynamicCache()
        self._layout = None
        self._deferred = None
        prefix = prompt[:-1]
        if defer and prefix.numel() > 0 and prompt.numel() <= FUSED_PREFILL_MAX:
            self._deferred = prefix.to(self.device)
            return
        if prefix.numel():
            # Prefill needs the cache, not logits: skip the LM head when the model allows it.
            module = self.model if self.owner.head is None else self.owner.head.body
            out = module(input_ids=prefix.to(self.device)[None], past_key_values=self.cache, use_cache=True)
            self.cache = out.past_key_values
            self.owner._check_cache(self.cache)

    @torch.inference_mode()
    def forward_tree(self, pending_token: int, tree: TokenTree) -> torch.Tensor:
        """Logits after the pending token and after every node: float [n + 1, V].

        With a separable head and a tree, the head runs on the step's rows through
        :meth:`SeparableHead.logits`, which is faster on CPUs for a tree's dozen rows
        (sources that read every node's logits, sampling verifiers: 7.8 -> 7.0 ms per
        step for Token Recycling in the demo benchmark's flow). A step without a tree
        (plain decoding) runs the model's own forward.
        """
        head = self.owner.head
        if head is not None and tree.size:
            return head.logits(self.forward_tree_hidden(pending_token, tree))
        # A fused prefill needs the logits of the step's rows only (HF's logits_to_keep).
        return self._forward(self.model, pending_token, tree, logits_to_keep=tree.size + 1).logits[0, -(tree.size + 1):]

    @torch.inference_mode()
    def forward_tree_hidden(self, pending_token: int, tree: TokenTree) -> torch.Tensor:
        """Like :meth:`forward_tree`, but the final hidden states [n + 1, H], before the LM head.

        Only for models whose head was checked to be separable
        (``TargetModel.head is not None``): greedy verification then computes
        logits only for the rows its walk reaches (:meth:`TargetModel.lazy_logits`).
        """
        head = self.owner.head
        if head is None:
            raise RuntimeError(f"{type(self.model).__name__}'s LM head is not separable; use forward_tree")
        return self._forward(head.body, pending_token, tree).last_hidden_state[0, -(tree.size + 1):]

    def _forward(self, module: torch.nn.Module, pending_token: int, tree: TokenTree, **extra: Any) -> Any:
        cache_len = self.cache_len
        n = tree.size
        fresh = self._deferred  # a deferred prefill runs in front of this step
        f = 0 if fresh is None else int(fresh.numel())
        if not f:
            extra = {}
        ids = torch.empty((1, f + n + 1), dtype=torch.long, device=self.device)
        if f:
            ids[0, :f] = fresh
        ids[0, f] = int(pending_token)
        if n:
            ids[0, f + 1 :] = torch.from_numpy(tree.tokens).to(self.device)
        if n == 0 or self.chain_only:
            # A plain step, or a chain on a model that cannot take a tree mask: the model's own
            # causal mask is exactly right (and cheaper).
            if n and not is_chain(tree):
                raise ValueError(f"{type(self.model).__name__} verifies chains only; got a branching tree")
            positions = torch.arange(cache_len, cache_len + f + n + 1, device=self.device)[None]
            out = module(input_ids=ids, position_ids=positions, past_key_values=self.cache, use_cache=True, **extra)
        else:
            mask, positions = self.owner.tree_masks(tree, cache_len, fresh_prefix=f)
            out = module(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=self.cache,
                use_cache=True,
                **extra,
            )
        self.cache = out.past_key_values
        self.owner._check_cache(self.cache)
        self._deferred = None
        self._layout = _CacheLayout(cache_len + f, n)
        return out

    @torch.inference_mode()
    def commit(self, accepted_nodes: tuple[int, ...] | list[int]) -> None:
        """Keep the pending token and the accepted nodes; drop every other tree entry.

        The accepted path's entries are moved right after the pending token
        (only those rows are copied, never the whole cache), then the tail is
        cropped with the cache's public ``crop``.
        """
        layout = self._layout
        if layout is None:
            raise RuntimeError("commit() called without a preceding forward_tree()")
        self._layout = None
        keep = np.asarray(accepted_nodes, dtype=np.int64)
        base = layout.cache_len + 1
        total = base + layout.tree_size
        k = int(keep.size)
        if k and not np.array_equal(keep, np.arange(k)):
            src = torch.from_numpy(keep + base).to(self.device)
            for layer in self.cache.layers:
                # The gather on the right makes a copy first, so overlapping moves are safe.
                layer.keys[..., base : base + k, :] = layer.keys.index_select(-2, src)
                layer.values[..., base : base + k, :] = layer.values.index_select(-2, src)
        removed = total - (base + k)
        if removed:
            self.cache.crop(-removed)

    def end(self) -> None:
        """Release the request's cache."""
        self.cache = None
        self._layout = None
        self._deferred = None


class TargetModel:
    """A decoder-only HF model checked once for tree verification with a croppable cache.

    :meth:`start` opens a :class:`TargetSession` per request. For convenience in
    single-request code (tests, calibration), ``forward_tree``, ``commit``,
    ``cache`` and ``end`` act on the most recently started session.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        config = getattr(model, "config", None)
        if config is None or not callable(getattr(model, "forward", None)):
            raise UnsupportedModelError(
                f"{type(model).__name__} is not a Hugging Face model (no .config); pass a model "
                "loaded with AutoModelForCausalLM.from_pretrained(path)"
            )
        if getattr(config, "is_encoder_decoder", False):
            raise UnsupportedModelError(
                f"{type(model).__name__} is an encoder-decoder model; draftkit supports decoder-only "
                "causal language models (AutoModelForCausalLM)"
            )
        refuse_active_dropout(model)
        get_head = getattr(model, "get_output_embeddings", None)
        if get_head is None or get_head() is None:
            raise UnsupportedModelError(
                f"{type(model).__name__} has no language-modelling head; load the model with "
                "AutoModelForCausalLM.from_pretrained(path) instead of AutoModel"
            )
        self.config = config
        self.context_window = context_window(config)
        self.sliding_window = sliding_window(config)
        self.attention_chunk = chunked_attention_size(config)
        self.slot_window = slot_local_window(config)
        self.mask_kinds = layer_mask_kinds(config)
        #: The model cannot take a tree mask but verifies chains exactly with its own causal mask
        #: (ALiBi models, attention kernels without custom masks): each step verifies one path.
        self.chain_only = False
        #: Why trees are not verified on this model (when ``chain_only``), for messages.
        self.chain_only_reason = ""
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        self.vocab_size = logits_size(model)
        self._session: TargetSession | None = None
        self.head: SeparableHead | None = None  # the probes below run the whole model
        #: Whether a prompt's prefill may run inside the first step (checked by the probes below).
        self.can_fuse_prefill = False
        self._probe()
        self.head = self._probe_separable_head()
        self.can_fuse_prefill = self._fused_prefill_is_exact()

    def tree_masks(
        self, tree: TokenTree, cache_len: int, fresh_prefix: int = 0
    ) -> tuple[torch.Tensor | dict[str, torch.Tensor], torch.Tensor]:
        """The attention mask of a tree step and its position ids.

        One mask, restricted like the model's attention (a sliding window, a
        chunk), or, for a model whose layers differ (Gemma 2's full and sliding
        layers), one mask per layer type, keyed as the model's
        ``config.layer_types`` names them: Hugging Face models take such a
        mapping in place of the masks they would build themselves.
        """
        def mask_for(kind: str | None) -> tuple[torch.Tensor, torch.Tensor]:
            window = self.sliding_window if kind is None or "sliding" in kind else None
            chunk = self.attention_chunk if kind is None or "chunk" in kind else None
            return tree_attention_inputs(tree, cache_len, self.dtype, self.device, sliding_window=window,
                                         attention_chunk=chunk, fresh_prefix=fresh_prefix)

        if not self.mask_kinds:
            return mask_for(None)
        masks = {kind: mask_for(kind) for kind in self.mask_kinds}
        positions = next(iter(masks.values()))[1]
        return {kind: mask for kind, (mask, _) in masks.items()}, positions

    # -- checks -------------------------------------------------------------------------------

    def _probe(self) -> None:
        """Check tree verification, else chain verification, on this model before any user request.

        A model that fails the tree probe but verifies a chain exactly with its
        own causal mask (ALiBi position biases, an attention kernel that ignores
        custom masks) is used in chain-only mode; one that fails both is refused
        with the tree probe's explanation.
        """
        try:
            self._probe_tree()
        except UnsupportedModelError:
            if not self._chain_verification_is_exact():
                raise
            self.chain_only = True
            implementation = getattr(self.config, "_attn_implementation", None)
            self.chain_only_reason = unsupported_hint(self.config) or (
                "its attention does not follow a 4-D tree attention mask"
                + ("" if implementation in (None, "sdpa", "eager") else
                   f" with attention implementation {implementation!r}; load it with "
                   "attn_implementation='sdpa' to verify trees"))

    def _chain_verification_is_exact(self) -> bool:
        """A 4-token prefill, a 3-token chain step with the model's causal mask, a commit of its first
        token, then a plain step: every row must equal a plain forward over the same tokens."""
        vocab = max(2, self.vocab_size)
        prompt = torch.arange(1, 5) % vocab
        chain = [5 % vocab, 6 % vocab, 7 % vocab]
        try:
            session = TargetSession(self)
            session.chain_only = True
            session.prefill(prompt)
            rows = session.forward_tree(int(prompt[-1]), TokenTree.from_parents(chain, [-1, 0, 1]))
            session.commit((0,))
            after = session.forward_tree(8 % vocab, TokenTree.empty())[0]
            with torch.inference_mode():
                full = torch.cat([prompt, torch.tensor(chain)]).to(self.device)
                plain = self.model(input_ids=full[None]).logits[0, 3:]
                resumed_ids = torch.cat([full[:5], torch.tensor([8 % vocab], device=self.device)])
                resumed = self.model(input_ids=resumed_ids[None]).logits[0, -1]
            tolerance = _PROBE_TOLERANCE.get(self.dtype, 5e-2)
            for got, want in ((rows, plain), (after, resumed)):
                scale = float(want.abs().max()) + 1e-6
                if got.shape != want.shape or float((got - want).abs().max()) > tolerance * scale:
                    return False
            return True
        except Exception:  # the model's own failure: chains do not work either
            return False

    def _probe_tree(self) -> None:
        """Check tree verification on this model before any user request.

        A 4-token prefill, then a *branching* tree (two root children, one with a
        child) whose logits must equal plain causal forwards over each node's
        path: this refuses attention backends that ignore the 4-D tree mask, and
        models whose cache is not a plain, croppable key/value cache (recurrent,
        hybrid) fail on the way.
        """
        vocab = max(2, self.vocab_size)
        prompt = torch.arange(1, 5) % vocab
        tokens = [5 % vocab, 6 % vocab, 7 % vocab]
        tree = TokenTree.from_parents(tokens, [-1, -1, 0])
        try:
            session = TargetSession(self)
            session.prefill(prompt)
            logits = session.forward_tree(int(prompt[-1]), tree)
            session.commit((0, 2))
            with torch.inference_mode():
                for node, path in ((1, [1]), (2, [0, 2])):
                    ids = torch.cat([prompt, torch.tensor([tokens[i] for i in path])]).to(self.device)
                    plain = self.model(input_ids=ids[None]).logits[0, -1]
                    scale = float(plain.abs().max()) + 1e-6
                    tolerance = _PROBE_TOLERANCE.get(self.dtype, 5e-2)
                    if float((logits[node + 1] - plain).abs().max()) > tolerance * scale:
                        raise UnsupportedModelError(self._mask_ignored_message())
        except UnsupportedModelError:
            raise
        except Exception as exc:  # the model's own error, with what it most likely means
            hint = unsupported_hint(self.config)
            if hint is None and isinstance(exc, AttributeError) and "past_key_values" in str(exc):
                hint = "it returns no key/value cache"
            raise UnsupportedModelError(
                f"{type(self.model).__name__} cannot run tree verification"
                + (f": {hint}" if hint else "")
                + f" ({type(exc).__name__}: {exc}). draftkit needs a decoder-only model that accepts a 4-D "
                "attention mask, position_ids and a DynamicCache"
            ) from exc

    def _mask_ignored_message(self) -> str:
        implementation = getattr(self.config, "_attn_implementation", None)
        name = type(self.model).__name__
        hint = unsupported_hint(self.config)
        if implementation in ("sdpa", "eager"):  # nothing to switch to: the model's attention itself
            return (f"{name}'s attention does not follow a 4-D attention mask"
                    + (f" ({hint})" if hint else "") + ": tree verification would change the output, so "
                    "this model is not supported")
        return (f"{name} ignores the 4-D tree attention mask (attention implementation {implementation!r}): "
                "tree verification would change the output. Load the model with attn_implementation='sdpa' "
                "or 'eager'")

    def _fused_prefill_is_exact(self) -> bool:
        """Whether a prompt's prefill can run inside the first step: the model's forward takes
        ``logits_to_keep`` (else a fused step would compute the whole prompt's logits), and a
        fused step, its commit and the next step give the rows of a separate prefill."""
        import inspect

        try:
            if "logits_to_keep" not in inspect.signature(self.model.forward).parameters:
                return False
        except (TypeError, ValueError):
            return False
        vocab = max(2, self.vocab_size)
        prompt = torch.arange(1, 6) % vocab
        tokens = [6 % vocab, 7 % vocab, 8 % vocab]
        tree = TokenTree.from_parents(tokens, [-1, 0, 1] if self.chain_only else [-1, -1, 0])
        rows = []
        try:
            for defer in (False, True):
                session = TargetSession(self)
                session.prefill(prompt, defer=defer)
                if defer and session._deferred is None:
                    return False
                step = session.forward_tree(int(prompt[-1]), tree)
                session.commit((0,))
                after = session.forward_tree(9 % vocab, TokenTree.empty())
                rows.append(torch.cat([step, after]))
                session.end()
        except Exception:  # the model's own failure: keep separate prefills
            return False
        scale = float(rows[0].abs().max()) + 1e-6
        tolerance = _PROBE_TOLERANCE.get(self.dtype, 5e-2)
        return rows[0].shape == rows[1].shape and float((rows[0] - rows[1]).abs().max()) <= tolerance * scale

    def _probe_separable_head(self) -> SeparableHead | None:
        """The body/head split of the model, if its logits are exactly ``head(body(x))``.

        Greedy verification needs the logits of the rows its walk reaches, on
        average a few of a tree's dozens. Models whose forward does more than
        apply the head to the final hidden states (logit soft-capping or
        scaling, custom wrappers) fail this check and keep the whole-tree path.
        """
        body = getattr(self.model, "base_model", None)
        head = self.model.get_output_embeddings()
        if body is None or body is self.model or head is None:
            return None
        vocab = max(2, self.vocab_size)
        ids = (torch.arange(3, 9) % vocab).to(self.device)[None]
        try:
            with torch.inference_mode():
                full = self.model(input_ids=ids).logits[0]
                hidden = getattr(body(input_ids=ids), "last_hidden_state", None)
                if hidden is None or hidden.shape[:2] != ids.shape:
                    return None
                split = SeparableHead(body, head)
                rows = torch.cat([split.logits(hidden[0, i : i + 1]) for i in range(ids.shape[1])])
                together = split.logits(hidden[0])  # several rows in one product, as the lazy logits run it
                scale = float(full.abs().max()) + 1e-6
                tolerance = {torch.float64: 1e-9, torch.float32: 1e-5}.get(self.dtype, 1e-2)
                for got in (rows, together):
                    if got.shape != full.shape or float((got.to(full.device) - full).abs().max()) > tolerance * scale:
                        return None
        except Exception:  # an unusual body signature or head placement: keep the whole-tree path
            return None
        return split

    def lazy_logits(
        self, hidden: torch.Tensor, tree: TokenTree | None = None, chain_rows: int = LAZY_CHAIN_ROWS
    ) -> LazyLogits:
        """The logits of :meth:`TargetSession.forward_tree_hidden`'s rows, computed when sliced
        (with ``tree``: up to ``chain_rows`` rows per product along the tree's preferred path)."""
        assert self.head is not None
        return LazyLogits(self.head.logits, hidden, self.vocab_size, tree, chain_rows)

    def _check_cache(self, cache: object) -> None:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        if not isinstance(cache, DynamicCache):
            raise UnsupportedModelError(
                f"{type(self.model).__name__} returned a {type(cache).__name__}; draftkit needs a "
                "DynamicCache that can be cut back after a rejected draft"
            )
        for layer in cache.layers:
            if type(layer) is not DynamicLayer:
                raise UnsupportedModelError(
                    f"{type(self.model).__name__} uses cache layers of type {type(layer).__name__} "
                    "(recurrent, hybrid or sliding-window state) that cannot be rolled back to an "
                    "arbitrary tree path; such models are not supported"
                )

    def check_length(self, prompt_len: int, max_new_tokens: int, tree_nodes: int = 0) -> None:
        """Refuse prompts that do not fit, and requests that would leave a restricted attention span.

        ``tree_nodes`` is the most draft nodes a step verifies (0 for plain
        decoding). Sliding windows and chunks need no check: :meth:`tree_masks`
        restricts each node by its position as the model does. GPT-Neo's local
        layers are checked by cache slot, which a tree step pushes
        ``tree_nodes`` past the positions.
        """
        if self.context_window is not None and prompt_len > self.context_window:
            raise PromptTooLongError(
                f"the prompt has {prompt_len} tokens but the model's context window is "
                f"{self.context_window}; shorten the prompt to at most {self.context_window} tokens"
            )
        total = prompt_len + max_new_tokens
        if tree_nodes and self.slot_window is not None and total + tree_nodes > self.slot_window:
            raise UnsupportedModelError(
                f"prompt ({prompt_len}) + max_new_tokens ({max_new_tokens}) + draft nodes per step "
                f"({tree_nodes}) exceeds the model's local attention window ({self.slot_window} cache "
                "slots): its local layers would mask tokens that plain decoding sees. Lower "
                "max_new_tokens, shorten the prompt or use a smaller budget"
            )

    # -- requests -----------------------------------------------------------------------------

    def start(self, prompt: torch.Tensor, defer_prefill: bool = False) -> TargetSession:
        """Open a session for a request and prefill its prompt (all tokens but the last).

        ``defer_prefill``: run the prefill inside the first step's forward (see
        :meth:`TargetSession.prefill`) if this model's fused step was found exact."""
        refuse_active_dropout(self.model)  # the model may have been put back into training mode since
        session = TargetSession(self)
        session.prefill(prompt, defer=defer_prefill and self.can_fuse_prefill)
        self._session = session
        return session

    def _current(self) -> TargetSession:
        if self._session is None:
            raise RuntimeError("no request started: call start(prompt) first")
        return self._session

    @property
    def cache(self) -> object | None:
        return None if self._session is None else self._session.cache

    @property
    def cache_len(self) -> int:
        return 0 if self._session is None else self._session.cache_len

    def forward_tree(self, pending_token: int, tree: TokenTree) -> torch.Tensor:
        return self._current().forward_tree(pending_token, tree)

    def commit(self, accepted_nodes: tuple[int, ...] | list[int]) -> None:
        self._current().commit(accepted_nodes)

    def end(self) -> None:
        if self._session is not None:
            self._session.end()
        self._session = None
