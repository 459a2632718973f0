"""Explicit, position-keyed randomness for sampling.

A :class:`RandomStream` gives the uniforms used to emit the token at output
position ``t`` from a counter-based generator keyed by ``(seed, t)``. Because the
draws depend only on the position, the plain sampler and the sample-and-walk
verifier consume *the same* uniform for the same output token, whatever the
drafts were: with a deterministic draft source, speculative sampling reproduces
plain sampling token for token for a given seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RandomStream"]

# Philox takes a 2 x 64-bit key; the second word separates streams that must not
# share draws (the token draw of a position versus extra draws of rejection sampling).
_TOKEN_STREAM = 0
_EXTRA_STREAM = 1


class RandomStream:
    """Uniform numbers in [0, 1) keyed by (seed, output position)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF

    def _generator(self, position: int, stream: int) -> np.random.Generator:
        key = np.array([self.seed, (int(position) << 1) | stream], dtype=np.uint64)
        return np.random.Generator(np.random.Philox(key=key))

    def token_uniform(self, position: int) -> float:
        """The uniform that decides the token emitted at output ``position``."""
        return float(self._generator(position, _TOKEN_STREAM).random())

    def extra_uniforms(self, position: int, count: int) -> np.ndarray:
        """Further uniforms for ``position`` (accept/reject tests), independent of the token draw."""
        return self._generator(position, _EXTRA_STREAM).random(count)
