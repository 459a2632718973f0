"""The speculative decoding loop.

One step: ask the source for a draft, build a tree within the budget, run the
target once over ``[pending] + tree``, let the verifier pick the accepted path
and bonus token, cut at stop conditions, compact the KV cache, tell the source
what happened. The decoder composes parts; it knows no source by name.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from ..checks import is_integer
from ..errors import (
    ContractViolationError,
    IncompatiblePartsError,
    InvalidInputError,
    UnsupportedSamplingError,
)
from ..interfaces import DraftSource, TreeBuilder, Verifier
from ..logits import LogitsPipeline
from ..plugins import Registry, default_registry
from ..trees.chain import best_path
from ..types import (
    DecodeStats,
    Draft,
    DraftKind,
    DraftRequest,
    GenerationOutput,
    SamplingParams,
    StepFeedback,
    TokenTree,
    Verdict,
)
from ..verify.greedy import GreedyVerifier
from ..verify.speculative import check_stochastic_draft
from ..verify.walk import SampleWalkVerifier
from .budget import BudgetPolicy, CostAwareBudget, FixedBudget, prune_tree
from .draft_checks import blaming_source, require_draft, require_source
from .record import TokenRecord, emitted_rows
from .request import RequestPlan, check_tokenizer, plan_request
from .stream import DecoderAPI
from .target import TargetModel

__all__ = ["SpeculativeDecoder", "DEFAULT_BUDGET"]

#: Draft nodes per step when no budget is given: chosen per step from the
#: target's verify cost measured on this machine (see draftkit.engine.budget).
#: How close it gets to the best fixed budget depends on the machine and its
#: load: measure with benchmarks/budget_sweep.py.
DEFAULT_BUDGET = "auto"


def _consistent_with_parents(tree: TokenTree) -> bool:
    """Whether ``depths`` and ``ancestors`` are what ``parents`` implies. A hand-made tree with a
    wrong ancestor mask once changed the output without a word: the mask decides what each node sees."""
    n = tree.size
    if not n:
        return True
    parents = tree.parents
    has_parent = parents >= 0
    above = np.maximum(parents, 0)
    depths = np.where(has_parent, np.asarray(tree.depths)[above] + 1, 1)
    ancestors = np.where(has_parent[:, None], np.asarray(tree.ancestors, dtype=bool)[above], False)
    ancestors |= np.eye(n, dtype=bool)
    return bool(np.array_equal(tree.depths, depths) and np.array_equal(tree.ancestors, ancestors))


def _origin(registry: Registry, name: str) -> tuple[str, str] | None:
    """(plugin, package) providing the registered source ``name``; ``None`` for draftkit's own."""
    info = registry.parts.get("source", {}).get(name)
    if info is None or info.plugin.startswith("draftkit."):
        return None
    return info.plugin, info.distribution


def _resolve(registry: Registry, kind: str, part: Any, options: dict[str, Any] | None) -> Any:
    if isinstance(part, str):
        return registry.create(kind, part, **(options or {}))
    if options:
        raise InvalidInputError(f"{kind} options can only be given with a {kind} name, not an instance")
    return part


class SpeculativeDecoder(DecoderAPI):
    """A lossless speculative decoder composed of a source, a tree builder and a verifier.

    ``source``, ``tree`` and ``verifier`` are registered names or instances.
    ``verifier=None`` picks a lossless one for each request: ``greedy`` when not
    sampling; when sampling, the first registered sampling verifier that declares
    it supports the source's draft kind.
    ``budget`` is the maximum number of draft nodes verified per step, or
    ``"auto"``: measure the target's verify cost on this machine once and pick,
    every step, the tree size that maximises expected tokens per second (see
    :mod:`draftkit.engine.budget`). ``max_depth`` optionally limits the tree depth.
    ``source`` may also be a list of sources, merged by
    :class:`~draftkit.sources.composite.Composite`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        source: str | DraftSource | list[str | DraftSource] | tuple[str | DraftSource, ...] = "pld",
        tree: str | TreeBuilder = "trie",
        verifier: str | Verifier | None = None,
        *,
        budget: int | str | BudgetPolicy = DEFAULT_BUDGET,
        max_depth: int | None = None,
        tokenizer: Any = None,
        registry: Registry | None = None,
        source_options: dict[str, Any] | None = None,
        tree_options: dict[str, Any] | None = None,
    ) -> None:
        is_policy = all(hasattr(budget, m) for m in ("choose", "observe", "max_budget"))
        if is_integer(budget):  # numpy integers too; a bool is not a budget
            budget = int(budget)
        if not (isinstance(budget, str) and budget == "auto" or is_integer(budget) and budget >= 0 or is_policy):
            raise InvalidInputError("budget must be a non-negative integer, 'auto' or a BudgetPolicy "
                f"(max_budget, choose, observe), got {budget!r}")
        if max_depth is not None and not (is_integer(max_depth) and max_depth >= 1):
            raise InvalidInputError(f"max_depth must be an integer >= 1 or None, got {max_depth!r}")
        max_depth = None if max_depth is None else int(max_depth)
        if tokenizer is not None:
            check_tokenizer(tokenizer, "given to the decoder")
        self.registry = registry if registry is not None else default_registry()
        self.target = TargetModel(model)
        self.model = model
        if self.target.chain_only:
            warnings.warn(
                f"{type(model).__name__} cannot verify token trees ({self.target.chain_only_reason}); draftkit "
                "verifies one chain per step instead (the draft's likeliest path), which is exact but accepts "
                "fewer tokens per step", stacklevel=2)
        if isinstance(source, (list, tuple)):
            from ..sources.composite import Composite

            if source_options:
                raise InvalidInputError("source_options cannot be combined with a list of sources")
            source = Composite([_resolve(self.registry, "source", s, None) for s in source])
        self.source: DraftSource = _resolve(self.registry, "source", source, source_options)
        self.tree_builder: TreeBuilder = _resolve(self.registry, "tree builder", tree, tree_options)
        self.verifier: Verifier | None = (
            None if verifier is None else _resolve(self.registry, "verifier", verifier, None)
        )
        require_source(self.source, f"the source {self.source!r}")  # before the budget's calibration: fail fast
        if not callable(getattr(self.tree_builder, "build", None)):
            raise ContractViolationError(
                f"the tree builder {self.tree_builder!r} lacks build(); see draftkit.interfaces"
            )
        # Built-in builders make trees with TokenTree.from_parents; a plugin's tree is checked every step.
        self._trusted_builder = type(self.tree_builder).__module__.startswith("draftkit.trees.")
        if budget == "auto":
            self.budget_policy: BudgetPolicy = CostAwareBudget.calibrate(self.target)
        elif isinstance(budget, int):
            self.budget_policy = FixedBudget(budget)
        else:
            self.budget_policy = budget
        self.budget = self.budget_policy.max_budget
        self.max_depth = max_depth
        self.tokenizer = tokenizer
        prepare = getattr(self.source, "prepare", None)
        if callable(prepare):  # optional: a source refuses a model or tokenizer here, not mid-request
            prepare(model, tokenizer)
        caps = self.source.capabilities
        if self.verifier is not None and not self.verifier.supports(caps):
            raise IncompatiblePartsError(
                f"verifier {self.verifier.name!r} is not lossless for source {self.source.name!r} "
                f"({caps.draft_kind.value} drafts); use verifier=None to pick a suitable one"
            )

    # -- public API --------------------------------------------------------------------------

    # -- the loop ----------------------------------------------------------------------------

    def _pick_verifier(self, sampling: SamplingParams) -> Verifier:
        caps = self.source.capabilities
        if self.verifier is not None:
            if self.verifier.samples != sampling.do_sample:
                mode = "sampling" if sampling.do_sample else "greedy decoding"
                raise IncompatiblePartsError(
                    f"verifier {self.verifier.name!r} cannot be used for {mode}; pass verifier=None "
                    "to let draftkit pick a lossless one"
                )
            return self.verifier
        if not sampling.do_sample:
            return self.registry.verifier("greedy")
        # draftkit's own sampling verifiers first; a plugin's only when none of them applies
        # (a plugin verifier is used by default only if it is the only lossless choice).
        builtin = [n for n in ("walk", "speculative") if n in self.registry.names("verifier")]
        others = [n for n in self.registry.names("verifier") if n not in builtin]
        for name in builtin + others:
            candidate = self.registry.verifier(name)
            if candidate.samples and candidate.supports(caps):
                return candidate
        raise IncompatiblePartsError(
            f"no registered sampling verifier is lossless for source {self.source.name!r} "
            f"({caps.draft_kind.value} drafts); use do_sample=False"
        )

    def _run(self, input_ids: Any, max_new_tokens: int | None, **kwargs: Any) -> Generator[list[int], None, Any]:
        """Validate eagerly, then return the step generator."""
        t_start = time.perf_counter()
        # The budget: tree steps put draft nodes in cache slots past their positions (see check_length).
        plan = plan_request(
            self.target, input_ids, max_new_tokens, self.budget, default_tokenizer=self.tokenizer, **kwargs
        )
        verifier = self._pick_verifier(plan.sampling)
        caps = self.source.capabilities
        if plan.sampling.do_sample and caps.draft_kind is DraftKind.STOCHASTIC and self.target.chain_only:
            raise UnsupportedSamplingError(
                f"sampling with a stochastic draft source ({self.source.name!r}) needs tree verification, "
                f"which {type(self.model).__name__} cannot run (it verifies chains only); use a deterministic "
                "source or do_sample=False"
            )
        if plan.sampling.do_sample and caps.draft_kind is DraftKind.STOCHASTIC and (
            plan.sampling.uses_context_processors
        ):
            raise UnsupportedSamplingError(
                f"{plan.sampling.describe_context_processors()} with a stochastic draft source "
                f"({self.source.name!r}) is not supported when sampling: the draft's proposal law would "
                "have to follow it along every path. Drop it or use a deterministic source"
            )
        return self._steps(plan, verifier, plan.max_new_tokens, t_start)

    def _steps(
        self, plan: RequestPlan, verifier: Verifier, max_new_tokens: int, t_start: float
    ) -> Generator[list[int], None, GenerationOutput]:
        prompt, sampling, stop, stop_ids, random = (
            plan.prompt, plan.sampling, plan.stop, plan.stop_token_ids, plan.random
        )
        vocab = self.target.vocab_size
        t0 = time.perf_counter()
        prompt_copy = prompt.numpy().copy()
        with self._blaming_source("begin"):  # before the target's session opens: nothing to close if it raises
            self.source.begin(prompt_copy)
        time_begin = time.perf_counter() - t0  # the source's own preparation: drafting time
        t0 = time.perf_counter()
        # This request's own KV cache. Unless the source runs the target itself (and reads the
        # cache before the first step), the prompt's prefill runs inside the first step's forward.
        target = self.target.start(prompt, defer_prefill=not self.source.capabilities.needs_target)
        prompt_len = int(prompt.numel())
        window = target.context_window
        stats = DecodeStats(prompt_tokens=prompt_len)
        stats.time_draft += time_begin
        sequence: list[int] = prompt.tolist()
        if hasattr(self.budget_policy, "begin"):  # optional: policies without request context skip it
            self.budget_policy.begin()
        wants_draft = getattr(self.budget_policy, "wants_draft", None)  # optional too: always draft
        note_draft = getattr(self.budget_policy, "note_draft", None)  # optional: ignores Draft.evidence
        draft_nodes = getattr(self.budget_policy, "draft_nodes", None)  # optional: the source may use the budget
        note_prefill = getattr(self.budget_policy, "note_prefill", None)  # optional: one cost curve for every step
        note_verify = getattr(self.budget_policy, "note_verify", None)  # optional: the start-up curve stays
        stats.time_prefill = time.perf_counter() - t0
        want_logits = self.source.capabilities.wants_node_logits
        # With a separable LM head, built-in verifiers that read the tree row by row along their
        # walk get logits computed for those rows only.
        lazy_rows = (
            self.target.head is not None
            and not want_logits
            and (
                type(verifier) is SampleWalkVerifier
                or type(verifier) is GreedyVerifier
            )
        )
        record = TokenRecord()
        history = np.empty(len(sequence) + max_new_tokens + 1, dtype=np.int64)
        history[: len(sequence)] = sequence
        try:
            while True:
                new_so_far = len(sequence) - prompt_len
                room = max_new_tokens - new_so_far
                if window is not None:
                    room = min(room, window - len(sequence) + 1)
                if room <= 0:
                    stats.finish_reason = "context"
                    break
                # A step emits depth + 1 tokens at most: keep the bonus token inside the room.
                depth_limit = room - 1
                if self.max_depth is not None:
                    depth_limit = min(depth_limit, self.max_depth)
                context = history[: len(sequence)]  # a view: no O(length) copy per step
                context.flags.writeable = False  # parts share it; none may change the context

                t0 = time.perf_counter()
                max_nodes = self.budget
                if note_prefill is not None and target.deferred_rows:
                    note_prefill(target.deferred_rows)
                if depth_limit >= 1 and self.budget >= 1 and (wants_draft is None or wants_draft()):
                    if draft_nodes is not None:
                        max_nodes = max(1, min(self.budget, int(draft_nodes())))
                    request = DraftRequest(
                        context=context,
                        prompt_length=prompt_len,
                        max_depth=depth_limit,
                        max_nodes=max_nodes,
                        vocab_size=vocab,
                        eos_token_ids=stop_ids,
                        target=target if self.source.capabilities.needs_target else None,
                        sampling=sampling,
                    )
                    with self._blaming_source("propose"):
                        draft = require_draft(self.source.propose(request), self.source.name)
                else:
                    draft = Draft.empty()
                t1 = time.perf_counter()
                stats.time_draft += t1 - t0
                prunable = self.source.capabilities.draft_kind is DraftKind.DETERMINISTIC
                if prunable and not self.target.chain_only and not draft.is_empty and depth_limit >= 1:
                    # Build only what will be verified: the policy chooses for the most nodes the
                    # draft can make (its tokens, capped by what the source was asked for), and the
                    # builder keeps the best of them.
                    drafted = min(max_nodes, sum(min(len(seq), depth_limit) for seq in draft.sequences))
                    if note_draft is not None:
                        note_draft(draft.evidence)
                    chosen = min(int(self.budget_policy.choose(drafted)), self.budget)
                    tree = self._build_tree(draft, depth_limit, sampling.do_sample, chosen)
                    # What the policy learns: whether the budget cut the draft, i.e. the draft went
                    # deeper than the tree, or the source filled a smaller allowance than the budget.
                    deepest = max(min(len(seq), depth_limit) for seq in draft.sequences)
                    cut = deepest > tree.max_depth or (max_nodes < self.budget and tree.size >= max_nodes)
                    drafted = tree.size + 1 if cut else tree.size
                else:
                    tree = self._build_tree(draft, depth_limit, sampling.do_sample, max_nodes)
                    if self.target.chain_only:  # the model verifies one path per step: the likeliest
                        tree = best_path(tree)
                    drafted = tree.size
                    if note_draft is not None:
                        note_draft(draft.evidence if drafted else 0)
                    chosen = self.budget_policy.choose(drafted)
                    if chosen < tree.size and prunable:
                        tree = prune_tree(tree, chosen)
                t2 = time.perf_counter()
                if lazy_rows:  # logits rows come in chains along the tree's preferred path
                    logits = self.target.lazy_logits(target.forward_tree_hidden(sequence[-1], tree), tree)
                else:
                    logits = target.forward_tree(sequence[-1], tree)
                t3 = time.perf_counter()
                process = LogitsPipeline(sampling, context)
                try:
                    verdict = verifier.verify(tree, logits, sampling, process, random, new_so_far)
                except ContractViolationError as exc:
                    if tree.probs is None or not (self._trusted_builder and self._builtin_verifier(verifier)):
                        raise
                    # Built-in builders and verifiers only pass on the proposal laws the stochastic source
                    # reported, and the verifier does not know whose they are.
                    raise ContractViolationError(f"the draft of source {self.source.name!r}: {exc}") from exc
                if lazy_rows:  # the walk ran the LM head on its rows: that is verify time too
                    t3 = time.perf_counter()
                stats.time_verify += t3 - t2
                if note_verify is not None:
                    note_verify(t3 - t2, tree.size)
                self._check_verdict(verdict, tree, verifier, vocab)
                emitted = verdict.emitted_tokens(tree)
                step_scores, step_logits = emitted_rows(plan, tree, verdict, logits, process)
                keep, reason = stop.cut(sequence, emitted, new_so_far, record.scores_until(plan, step_scores))
                emitted = emitted[:keep]
                record.add(step_scores, step_logits, keep)
                accepted_nodes = verdict.accepted_nodes[: min(keep, len(verdict.accepted_nodes))]
                stats.steps += 1
                stats.drafted += tree.size
                stats.accepted += len(accepted_nodes)
                stats.emitted += len(emitted)
                stats.accept_lengths.append(len(emitted))
                if not reason:
                    target.commit(verdict.accepted_nodes)
                # What the source and the budget policy learn from stops where generation stops:
                # the verdict is cut like the emitted tokens, and the node logits of a final
                # step (which may follow an EOS or a stop string) are withheld.
                seen = verdict if keep > len(verdict.accepted_nodes) else Verdict(accepted_nodes, verdict.bonus_token)
                feedback = StepFeedback(
                    context=context,
                    tree=tree,
                    verdict=seen,
                    emitted=np.asarray(emitted, dtype=np.int64),
                    node_logits=logits if want_logits and not reason else None,
                    eos_token_ids=stop_ids,
                )
                with self._blaming_source("observe"):  # only the source's own call: engine errors stay the engine's
                    self.source.observe(feedback)
                sequence.extend(emitted)
                if len(sequence) > history.size:
                    history = np.concatenate([history, np.empty(max(history.size, 64), np.int64)])
                history[len(sequence) - len(emitted) : len(sequence)] = emitted
                t4 = time.perf_counter()
                self.budget_policy.observe(tree, seen, drafted, (t4 - t3) + (t2 - t0))
                stats.time_other += time.perf_counter() - t3 + (t2 - t1)
                yield emitted
                if reason:
                    stats.finish_reason = reason
                    break
        finally:
            target.end()
        stats.time_total = time.perf_counter() - t_start
        return GenerationOutput(torch.tensor([sequence], dtype=torch.long), stats, **record.output(plan))

    @staticmethod
    def _builtin_verifier(verifier: Verifier) -> bool:
        return type(verifier).__module__.startswith("draftkit.verify.")

    def _blaming_source(self, method: str) -> Any:
        """Name the source, and the plugin providing it, if its ``method`` raises (see :class:`blaming_source`)."""
        name = str(getattr(self.source, "name", type(self.source).__name__))
        return blaming_source(name, method, origin_of=lambda part: _origin(self.registry, part))

    def _build_tree(self, draft: Draft, depth_limit: int, sampling: bool = False, nodes: int | None = None) -> TokenTree:
        nodes = self.budget if nodes is None else nodes
        if draft.is_empty or depth_limit < 1 or nodes < 1:
            return TokenTree.empty()
        if sampling and self.source.capabilities.draft_kind is DraftKind.STOCHASTIC:
            # Sampled candidates must reach the verifier unselected (see draftkit.verify.speculative).
            check_stochastic_draft(draft, nodes, depth_limit, self.source.name)
        tree = self.tree_builder.build(draft, nodes, depth_limit)
        if not isinstance(tree, TokenTree):
            raise ContractViolationError(
                f"tree builder {getattr(self.tree_builder, 'name', self.tree_builder)!r} returned "
                f"{type(tree).__name__}, expected draftkit.TokenTree"
            )
        n = tree.size
        if (
            tree.parents.shape != (n,)
            or tree.depths.shape != (n,)
            or tree.ancestors.shape != (n, n)
            or (n and (np.any(tree.parents >= np.arange(n)) or np.any(tree.parents < -1)))
            or (not self._trusted_builder and not _consistent_with_parents(tree))
        ):
            raise ContractViolationError(
                f"tree builder {getattr(self.tree_builder, 'name', '?')!r} returned a malformed tree: "
                "every parent index must be -1 or an earlier node, and depths and ancestors must follow "
                "from the parents (the attention mask is built from them); build trees with "
                "TokenTree.from_parents"
            )
        if tree.size > nodes or tree.max_depth > depth_limit:
            raise ContractViolationError(
                f"tree builder {getattr(self.tree_builder, 'name', '?')!r} returned {tree.size} nodes / depth "
                f"{tree.max_depth}, over the budget {nodes} / depth limit {depth_limit}"
            )
        vocab = self.target.vocab_size
        if tree.size and (tree.tokens.min() < 0 or tree.tokens.max() >= vocab):
            bad = int(tree.tokens[(tree.tokens < 0) | (tree.tokens >= vocab)][0])
            raise ContractViolationError(
                f"source {self.source.name!r} drafted token id {bad}, outside the model's vocabulary "
                f"[0, {vocab}); check that the source was built with this model's tokenizer"
            )
        return tree

    @staticmethod
    def _check_verdict(verdict: Verdict, tree: TokenTree, verifier: Verifier, vocab: int) -> None:
        if not isinstance(verdict, Verdict):
            raise ContractViolationError(
                f"verifier {getattr(verifier, 'name', verifier)!r} returned {type(verdict).__name__}, "
                "expected a draftkit.Verdict"
            )
        nodes = verdict.accepted_nodes
        parent = -1
        for node in nodes:
            if not (0 <= node < tree.size) or int(tree.parents[node]) != parent:
                raise ContractViolationError(
                    f"verifier {verifier.name!r} accepted nodes {list(nodes)}, which is not a root path"
                )
            parent = node
        if not (0 <= verdict.bonus_token < vocab):
            raise ContractViolationError(
                f"verifier {verifier.name!r} returned bonus token {verdict.bonus_token} outside [0, {vocab})"
            )
