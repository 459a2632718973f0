"""draftkit: lossless speculative decoding from pluggable draft sources.

Importing draftkit loads no plugin, model or data file; the plugin registry is
built on first use (:func:`draftkit.plugins.default_registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BatchSizeError,
    ContractViolationError,
    CorruptDataFileError,
    DataFileError,
    DraftkitError,
    EmptyPromptError,
    IncompatiblePartsError,
    InvalidInputError,
    MismatchedDataFileError,
    PluginError,
    PromptTooLongError,
    SourceError,
    UnknownPartError,
    UnsupportedModelError,
    UnsupportedSamplingError,
)
from .hookspecs import hookimpl
from .interfaces import DraftSource, TreeBuilder, Verifier
from .plugins import Registry, build_registry, default_registry
from .types import (
    DecodeStats,
    Draft,
    DraftKind,
    DraftRequest,
    GenerationOutput,
    SamplingParams,
    SourceCapabilities,
    StepFeedback,
    TokenTree,
    Verdict,
)

if TYPE_CHECKING:
    from . import sources
    from .engine import PlainDecoder, SpeculativeDecoder, TargetModel

__version__ = "0.1.0"

# torch and transformers take seconds to import; the decoders are loaded on first
# use so that `draftkit --help` and plugin discovery stay instant.
_LAZY = {
    "SpeculativeDecoder": "draftkit.engine",
    "PlainDecoder": "draftkit.engine",
    "TargetModel": "draftkit.engine",
    "sources": "draftkit.sources",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        value = module if name == "sources" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'draftkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "BatchSizeError",
    "ContractViolationError",
    "CorruptDataFileError",
    "DataFileError",
    "DecodeStats",
    "Draft",
    "DraftKind",
    "DraftRequest",
    "DraftSource",
    "DraftkitError",
    "EmptyPromptError",
    "GenerationOutput",
    "IncompatiblePartsError",
    "InvalidInputError",
    "MismatchedDataFileError",
    "PlainDecoder",
    "PluginError",
    "PromptTooLongError",
    "Registry",
    "SamplingParams",
    "SourceCapabilities",
    "SourceError",
    "SpeculativeDecoder",
    "StepFeedback",
    "TargetModel",
    "TokenTree",
    "TreeBuilder",
    "UnknownPartError",
    "UnsupportedModelError",
    "UnsupportedSamplingError",
    "Verdict",
    "Verifier",
    "__version__",
    "build_registry",
    "default_registry",
    "hookimpl",
    "sources",
]
