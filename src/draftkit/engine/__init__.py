"""The decode loop, the plain baseline and the target-model adapter."""

from .baseline import PlainDecoder
from .decoder import DEFAULT_BUDGET, SpeculativeDecoder
from .target import TargetModel

__all__ = ["SpeculativeDecoder", "PlainDecoder", "TargetModel", "DEFAULT_BUDGET"]
