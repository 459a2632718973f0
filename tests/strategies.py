"""All hypothesis strategies of the test suite, in one place."""

from __future__ import annotations

from hypothesis import strategies as st

from draftkit.testing.models import ARCHITECTURES

VOCAB = 97

architectures = st.sampled_from(ARCHITECTURES)


@st.composite
def prompts(draw: st.DrawFn, vocab: int = VOCAB, max_len: int = 24) -> list[int]:
    """Random prompts; half of them repetitive so that n-gram drafts hit."""
    if draw(st.booleans()):
        unit = draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=5))
        reps = draw(st.integers(1, 6))
        tail = draw(st.lists(st.integers(0, vocab - 1), max_size=3))
        seq = (unit * reps + tail)[:max_len]
        return seq or unit
    return draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=max_len))


@st.composite
def trees(draw: st.DrawFn, vocab: int = VOCAB, max_nodes: int = 12) -> tuple[list[int], list[int]]:
    """Random (tokens, parents) in topological order; siblings may repeat tokens."""
    n = draw(st.integers(0, max_nodes))
    parents = [draw(st.integers(-1, i - 1)) for i in range(n)]
    tokens = [draw(st.integers(0, vocab - 1)) for _ in range(n)]
    return tokens, parents


token_sequences = st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=12)
