"""Sample-and-walk: lossless sampling verification of deterministic drafts.

At the root, draw one token from the target's processed law p. If a child of the
current node carries that token, the draw *is* the next token of plain sampling
and the walk descends into that child; otherwise the drawn token is emitted as the
bonus and the step ends. Every emitted token is therefore a draw from p given
exactly the tokens before it, which is plain sampling; the draft only decides how
many of those draws one target forward can serve.

Because the draw at output position ``t`` uses the plain sampler's uniform for
``t`` and its inverse-CDF map, the output equals
:class:`~draftkit.engine.baseline.PlainDecoder` with the same seed token for
token, as long as both compute bitwise-identical probabilities. They are not
guaranteed to: a tree forward and a one-token forward multiply matrices of
different shapes, so logits can differ in the last bits, and a uniform that falls
within that distance of a CDF boundary picks the neighbouring token (probability
of order 1e-16 per token in float64, about 1e-7 in float32). The *law* is exact
in any case.

Only deterministic drafts are allowed: if the draft tokens were themselves
random, conditioning on "the draw equals a child" would be conditioning on a
random set, and the walk would have to be replaced by rejection sampling against
the proposal law (:mod:`draftkit.verify.speculative`).
"""

from __future__ import annotations

import torch

from ..interfaces import LogitsProcessorFn
from ..types import DraftKind, SamplingParams, SourceCapabilities, TokenTree, Verdict
from .random import RandomStream
from .sampling import Draws, LazyTargetProbs, StreamDraws, child_lists, require_stream

__all__ = ["SampleWalkVerifier", "sample_walk"]


def sample_walk(tree: TokenTree, probs: torch.Tensor | LazyTargetProbs, draws: Draws) -> Verdict:
    """Walk ``tree`` by sampling; pure apart from ``draws``.

    ``probs`` is float64 [n + 1, V]: row 0 the law after the context, row ``i + 1``
    the law after node ``i``'s path. When siblings repeat a token the first one
    is followed (its subtree is as good a continuation as any other's).
    """
    children = child_lists(tree)
    tokens = tree.tokens.tolist()
    accepted: list[int] = []
    row = 0  # 0 = root, i + 1 = node i
    level = 0
    while True:
        token = draws.choose(level, probs[row])
        nxt = next((c for c in children[row] if tokens[c] == token), -1)
        if nxt < 0:
            return Verdict(tuple(accepted), token)
        accepted.append(nxt)
        row = nxt + 1
        level += 1


class SampleWalkVerifier:
    """Verifier ``walk``: exact sampling for deterministic drafts, reproducible per seed.

    Supports every processor of :class:`~draftkit.types.SamplingParams`; the
    repetition penalty of each node is computed along that node's own path.
    """

    name = "walk"
    samples = True

    def supports(self, capabilities: SourceCapabilities) -> bool:
        return capabilities.draft_kind is DraftKind.DETERMINISTIC

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
        probs = LazyTargetProbs(tree, logits, sampling, process)
        return sample_walk(tree, probs, StreamDraws(stream, position))
