"""One exception hierarchy for draftkit.

Every message says what went wrong *and* what to do next, because these errors
reach people composing decoders interactively. Input errors also derive from
``ValueError`` so generic callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations


class DraftkitError(Exception):
    """Base class of every error raised by draftkit."""


class InvalidInputError(DraftkitError, ValueError):
    """The arguments of a call cannot be decoded (empty prompt, bad lengths, ...)."""


class EmptyPromptError(InvalidInputError):
    """The prompt has no tokens: there is nothing to condition the model on."""


class PromptTooLongError(InvalidInputError):
    """The prompt does not fit in the model's context window."""


class BatchSizeError(InvalidInputError):
    """More than one sequence was given where one is decoded (``stream()``, a ``streamer``)."""


class UnsupportedModelError(DraftkitError, TypeError):
    """The model cannot be used for speculative decoding (not causal, cache not croppable, ...)."""


class UnknownPartError(DraftkitError, KeyError):
    """A source, tree builder or verifier name is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ContractViolationError(DraftkitError, RuntimeError):
    """A part (source, tree builder, verifier) returned data that breaks its contract."""


class IncompatiblePartsError(DraftkitError, ValueError):
    """The chosen parts cannot be combined losslessly (e.g. greedy verifier while sampling)."""


class UnsupportedSamplingError(DraftkitError, ValueError):
    """A sampling option is not supported losslessly; draftkit refuses rather than ignore it."""


class SourceError(DraftkitError, RuntimeError):
    """A draft source raised an exception of its own while drafting or learning (a bug in it, most
    likely); the message names the source, and the plugin providing it when known. The original
    exception is the ``__cause__``."""

    def __init__(self, message: str, source: str = "", *, method: str = "", member_of: str | None = None,
                 origin: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.source = source  #: the failing source's name
        self.method = method  #: the method that raised: begin, propose or observe
        self.member_of = member_of  #: the composite the source drafted for, if any
        self.origin = origin  #: (plugin, package) when a plugin provides it


class PluginError(DraftkitError, RuntimeError):
    """A plugin failed to load or to register its parts."""


class DataFileError(DraftkitError, ValueError):
    """An on-disk artefact (ADED matrix, retrieval datastore, skip set) cannot be used."""


class CorruptDataFileError(DataFileError):
    """The file is truncated, has a wrong magic number or fails its checksum."""


class MismatchedDataFileError(DataFileError):
    """The file is intact but was made for another tokenizer, vocabulary or model."""
