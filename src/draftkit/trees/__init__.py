"""Tree builders: turn a :class:`~draftkit.types.Draft` into a :class:`~draftkit.types.TokenTree`."""

from .chain import ChainBuilder
from .masks import tree_attention_inputs
from .trie import TrieBuilder

__all__ = ["ChainBuilder", "TrieBuilder", "tree_attention_inputs"]
