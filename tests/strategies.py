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


@st.composite
def generate_processor_options(draw: st.DrawFn, vocab: int = VOCAB, sampling: bool = False) -> dict:
    """A random mix of ``model.generate``'s logits-processor options (``draftkit.processors``).

    ``eos`` in the options is a placeholder the test replaces with its EOS id.
    """
    options: dict = {}
    tokens = st.integers(0, vocab - 1)
    if draw(st.booleans()):
        options["no_repeat_ngram_size"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        options["min_new_tokens"] = draw(st.integers(1, 12))
    if draw(st.booleans()):
        options["bad_words_ids"] = draw(st.lists(st.lists(tokens, min_size=1, max_size=3), min_size=1, max_size=3))
    if draw(st.booleans()):
        options["suppress_tokens"] = draw(st.lists(tokens, min_size=1, max_size=5, unique=True))
    if draw(st.booleans()):
        options["begin_suppress_tokens"] = draw(st.lists(tokens, min_size=1, max_size=5, unique=True))
    if draw(st.booleans()):
        options["sequence_bias"] = [[draw(st.lists(tokens, min_size=1, max_size=2)), draw(st.floats(-4.0, 4.0))]
                                    for _ in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        options["exponential_decay_length_penalty"] = (draw(st.integers(0, 6)), draw(st.floats(1.01, 1.5)))
    if draw(st.booleans()):
        options["repetition_penalty"] = draw(st.floats(1.05, 1.8))
    if sampling:
        if draw(st.booleans()):
            options["typical_p"] = draw(st.floats(0.3, 0.95))
        if draw(st.booleans()):
            options["epsilon_cutoff"] = draw(st.floats(1e-4, 5e-3))
        if draw(st.booleans()):
            options["eta_cutoff"] = draw(st.floats(1e-4, 5e-3))
    return options
