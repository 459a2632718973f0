"""Speculative sampling for stochastic drafts: rejection sampling against the proposal law q.

**Chain.** Node ``x`` was drawn from q; it is accepted with probability
``min(1, p(x) / q(x))``. On rejection the bonus token is drawn from the residual
``norm(max(p - q, 0))``. Accepted-or-residual is then distributed exactly as p
(Leviathan et al. 2023; Chen et al. 2023).

**Tree.** The children of a node are tried one after the other (recursive
rejection sampling, as in SpecInfer's multi-draft verification): candidate ``j``
is accepted with ``min(1, r_j(x) / q_j(x))``; after a rejection
``r_{j+1} = norm(max(r_j - q_j, 0))``; if every child is rejected the bonus is
drawn from the last residual. Each stage outputs ``r_j`` exactly, so the node
outputs p; descending into an accepted child repeats the argument one level down.

Which ``q_j``? draftkit treats the *distinct* children of a node, in node order,
as a draw **without replacement** from q: ``q_1 = q`` and ``q_j`` is q with the
tokens of earlier siblings removed and renormalised. That is the right law for
the trees draftkit actually builds: the ``trie`` builder merges identical
siblings, and the distinct values of an i.i.d. sequence, in order of first
appearance, are exactly successive draws without replacement. The textbook i.i.d.
rule (``q_j = q`` for every sibling) would be biased on a merged trie, because
merging hides how many times, and in which order, a token was drawn (the test
suite shows the bias). On an unmerged tree the rule stays exact: a repeated token
is skipped (it was already rejected, its residual mass is zero) and the first
copy's subtree is a valid set of draws for the continuation.

**Contract for stochastic drafts** (checked where possible):

* every drafted token was drawn from ``Draft.probs``' row for it, the processed
  float64 law q given the token's own prefix; siblings share their parent's q;
* candidates are independent draws, all with the same weight (ranking draws by
  their values would bias the law), and the draft fits the node budget, so that
  no tree builder has to select nodes by score (:func:`check_stochastic_draft`);
* repetition penalty is refused (q would need it along each path too).

Zero probabilities are handled exactly: a candidate with ``p(x) = 0`` is always
rejected, ``p = q`` always accepts, and disjoint supports always reject and
resample from p. If rounding makes ``max(r - q, 0)`` vanish (only possible when
``r == q`` up to rounding, where rejection has probability ~1e-16), the residual
is left unchanged.
"""

from __future__ import annotations

import torch

from ..errors import ContractViolationError, UnsupportedSamplingError
from ..interfaces import LogitsProcessorFn
from ..types import Draft, DraftKind, SamplingParams, SourceCapabilities, TokenTree, Verdict
from .random import RandomStream
from .sampling import Draws, StreamDraws, child_lists, require_stream, target_probs

__all__ = [
    "PROBS_ATOL",
    "SpeculativeVerifier",
    "check_stochastic_draft",
    "proposal_law",
    "speculative_walk",
]

#: Tolerance for "q is a distribution" (row sums) and "siblings share q".
PROBS_ATOL = 1e-6


def check_stochastic_draft(draft: Draft, max_nodes: int, max_depth: int, source: str = "?") -> None:
    """Refuse a stochastic draft that a tree builder could only shrink in a biased way.

    The builders keep every token of a draft that fits the budget (the trie only
    merges identical prefixes), which preserves the law of independent draws.
    A draft over the budget would force a builder to pick nodes by score, i.e. by
    how often a token was drawn, and unequal weights make the ``chain`` builder
    pick a candidate by value: both bias the proposal law the verifier relies on.
    """
    if draft.is_empty:
        return
    if draft.probs is None:
        raise ContractViolationError(
            f"stochastic source {source!r} returned a draft without probs; it must report, per "
            "sequence, the processed proposal law q of every token (Draft.probs)"
        )
    if len(set(draft.weights)) > 1:
        raise ContractViolationError(
            f"stochastic source {source!r} gave its candidates different weights; sampled candidates "
            "must be exchangeable (equal weights), ranking them by value would bias the output law"
        )
    total = sum(min(len(s), max_depth) for s in draft.sequences)
    if total > max_nodes:
        raise ContractViolationError(
            f"stochastic source {source!r} drafted {total} tokens for a budget of {max_nodes}; draw at "
            "most DraftRequest.max_nodes tokens in total so that no node has to be dropped"
        )


def proposal_law(tree: TokenTree, vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Validate ``tree.probs`` and return it as normalised float64 [n, V] on ``device``."""
    n = tree.size
    if tree.probs is None:
        if n == 0:
            return torch.empty((0, vocab_size), dtype=torch.float64, device=device)
        raise ContractViolationError(
            "the speculative verifier needs the proposal law of every draft node (TokenTree.probs); "
            "the source must fill Draft.probs, or use a deterministic source with the 'walk' verifier"
        )
    q = tree.probs.detach().to(device=device, dtype=torch.float64)
    if q.dim() != 2 or q.shape != (n, vocab_size):
        raise ContractViolationError(
            f"TokenTree.probs has shape {tuple(q.shape)}, expected {(n, vocab_size)} "
            "(one proposal row per node over the target's vocabulary)"
        )
    if n == 0:
        return q
    if not bool(torch.isfinite(q).all()) or bool((q < 0).any()):
        raise ContractViolationError(
            "TokenTree.probs holds negative or non-finite values; report probabilities "
            "(softmax of the processed draft scores), not logits"
        )
    sums = q.sum(dim=-1, keepdim=True)
    off = (sums - 1.0).abs()[:, 0]
    if float(off.max()) > PROBS_ATOL:
        row = int(torch.argmax(off))
        raise ContractViolationError(
            f"the proposal law of tree node {row} (TokenTree.probs) sums to {float(sums[row, 0]):.9g}, not 1; "
            "report the normalised float64 law each token was drawn from"
        )
    q = q / sums  # the exact law of an inverse-CDF draw from the row
    tokens = torch.from_numpy(tree.tokens).to(device)
    own = q.gather(1, tokens[:, None])[:, 0]
    if bool((own <= 0).any()):
        bad = int(torch.nonzero(own <= 0)[0, 0])
        raise ContractViolationError(
            f"draft node {bad} has token {int(tree.tokens[bad])}, which has probability 0 under the "
            "proposal law it was supposedly drawn from; report the law actually sampled from"
        )
    for kids in child_lists(tree):
        if len(kids) > 1:
            rows = q[kids]
            if float((rows - rows[0]).abs().max()) > PROBS_ATOL:
                raise ContractViolationError(
                    f"sibling draft nodes {kids} report different proposal laws; siblings are draws "
                    "from their parent's law q, compute it once per prefix"
                )
    return q


def speculative_walk(tree: TokenTree, p: torch.Tensor, q: torch.Tensor, draws: Draws) -> Verdict:
    """Recursive rejection sampling down ``tree``; pure apart from ``draws``.

    ``p`` is float64 [n + 1, V] (target law at the root and after every node);
    ``q`` is float64 [n, V], normalised, row ``i`` the law node ``i`` was drawn from.
    """
    children = child_lists(tree)
    tokens = tree.tokens.tolist()
    accepted: list[int] = []
    row = 0  # 0 = root, i + 1 = node i
    level = 0
    while True:
        residual = p[row]
        kids = children[row]
        chosen = -1
        if kids:
            remaining = q[kids[0]].clone()  # q without the tokens already tried, unnormalised
            seen: set[int] = set()
            attempt = 0
            for child in kids:
                token = tokens[child]
                if token in seen:
                    continue  # a repeated draw: already rejected, nothing new to test
                q_raw = float(remaining[token])
                if q_raw <= 0.0:
                    raise ContractViolationError(
                        f"draft node {child} has token {token}, which its parent's proposal law gives "
                        "probability 0; siblings must be draws from one shared law q"
                    )
                mass = float(remaining.sum())
                q_token = q_raw / mass
                ratio = float(residual[token]) / q_token
                if draws.accept(level, attempt, min(1.0, ratio)):
                    chosen = child
                    break
                attempt += 1
                excess = (residual - remaining / mass).clamp_min(0.0)
                excess_mass = float(excess.sum())
                if excess_mass > 0.0:
                    residual = excess / excess_mass
                seen.add(token)
                remaining[token] = 0.0
        if chosen < 0:
            return Verdict(tuple(accepted), draws.choose(level, residual))
        accepted.append(chosen)
        row = chosen + 1
        level += 1


class SpeculativeVerifier:
    """Verifier ``speculative``: rejection sampling for stochastic drafts (chains and trees).

    Supports temperature, top-k, top-p and min-p (p and q are both laws after
    processing); refuses repetition penalty with :class:`UnsupportedSamplingError`.
    """

    name = "speculative"
    samples = True

    def supports(self, capabilities: SourceCapabilities) -> bool:
        return capabilities.draft_kind is DraftKind.STOCHASTIC

    def verify(
        self,
        tree: TokenTree,
        logits: torch.Tensor,
        sampling: SamplingParams,
        process: LogitsProcessorFn,
        random: RandomStream | None,
        position: int,
    ) -> Verdict:
        stream = require_stream(random, sampling, self.name)
        if sampling.uses_context_processors:
            raise UnsupportedSamplingError(
                f"{sampling.describe_context_processors()} is not supported with stochastic drafts (the "
                "proposal law would have to apply it along every path too); drop it or use a deterministic source"
            )
        p = target_probs(tree, logits, sampling, process)
        q = proposal_law(tree, p.shape[-1], p.device)
        return speculative_walk(tree, p, q, StreamDraws(stream, position))
