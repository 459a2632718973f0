"""draftkit: lossless speculative decoding from pluggable draft sources.

Importing draftkit loads no plugin, model or data file; the plugin registry is
built on first use (:func:`draftkit.plugins.default_registry`).
"""

from __future__ import annotations

from . import sources
from .engine import PlainDecoder, SpeculativeDecoder, TargetModel
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

__version__ = "0.1.0"

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
