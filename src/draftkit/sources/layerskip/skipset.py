"""Which sub-layers the draft skips, and the JSON file that stores a searched set.

A skip set is two sets of decoder-layer indices: layers whose attention sub-block
is skipped and layers whose MLP sub-block is skipped. A set found by the search
(:mod:`.search`) is only meaningful for the model it was measured on, so the file
records that model (:class:`ModelFingerprint`) and :meth:`SkipSet.check` refuses
another one with :class:`~draftkit.errors.MismatchedDataFileError`.

The file is small, readable JSON that people may edit by hand (e.g. to try
"skip the MLPs of layers 10-20"); it has a format tag and version instead of a
checksum for that reason::

    {"format": "draftkit-layerskip", "version": 1,
     "model": {"architecture": "llama", "num_layers": 8, "hidden_size": 256,
               "weights": "sha256:..."},
     "num_layers": 8, "attention": [3, 4], "mlp": [3, 4, 5],
     "search": {"speedup": 1.31, ...}}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CorruptDataFileError, InvalidInputError, MismatchedDataFileError

__all__ = ["SkipSet", "ModelFingerprint", "FORMAT", "VERSION", "DEFAULT_BAND"]

FORMAT = "draftkit-layerskip"
VERSION = 1
#: Share of the layers, centred, whose attention and MLP the default skip set drops.
DEFAULT_BAND = 0.45
#: Elements read from each fingerprinted tensor.
_FINGERPRINT_ELEMENTS = 4096


def _num_layers_of(config: Any) -> int:
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise InvalidInputError(f"cannot tell the number of layers of {type(config).__name__}")


def _hidden_size_of(config: Any) -> int:
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


@dataclass(frozen=True)
class ModelFingerprint:
    """Identity of the model a skip set was searched for.

    ``weights`` hashes the *signs* of the first 4,096 values of four parameter
    tensors (first, second, middle and last in ``named_parameters`` order): cheap
    for any model size, different for any two independently trained or
    fine-tuned models, yet unchanged when the same weights are loaded in another
    dtype (fp32, bf16, fp16 round-trips keep signs), since a skip set carries over
    to another precision of the same model.
    """

    architecture: str
    num_layers: int
    hidden_size: int
    weights: str  #: ``"sha256:<hex>"``

    @classmethod
    def of(cls, model: Any) -> ModelFingerprint:
        import torch

        config = model.config
        params = list(model.named_parameters())
        picks = sorted({0, min(1, len(params) - 1), len(params) // 2, len(params) - 1}) if params else []
        digest = hashlib.sha256()
        with torch.no_grad():
            for idx in picks:
                name, tensor = params[idx]
                flat = tensor.detach().reshape(-1)[:_FINGERPRINT_ELEMENTS]
                signs = (flat > 0).to("cpu").numpy().astype(np.uint8)
                digest.update(f"{name}:{tuple(tensor.shape)}:".encode())
                digest.update(np.packbits(signs).tobytes())
        return cls(
            architecture=str(getattr(config, "model_type", "") or type(model).__name__),
            num_layers=_num_layers_of(config),
            hidden_size=_hidden_size_of(config),
            weights="sha256:" + digest.hexdigest(),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "weights": self.weights,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFingerprint:
        return cls(
            architecture=str(data["architecture"]),
            num_layers=int(data["num_layers"]),
            hidden_size=int(data["hidden_size"]),
            weights=str(data["weights"]),
        )

    def mismatch(self, other: ModelFingerprint) -> str | None:
        """A sentence saying how ``other`` differs, or ``None`` if it is the same model."""
        for attr, label in (
            ("architecture", "architecture"),
            ("num_layers", "number of layers"),
            ("hidden_size", "hidden size"),
            ("weights", "weights"),
        ):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if mine != theirs:
                if attr == "weights":
                    return "same shape but different weights (another checkpoint or fine-tune)"
                return f"{label} {theirs}, but the skip set was searched for {label} {mine}"
        return None


@dataclass(frozen=True)
class SkipSet:
    """Decoder layers whose attention / MLP sub-block the draft skips.

    ``model`` is the model the set was searched for (``None`` for a hand-made
    set, which is then only checked against the number of layers); ``search``
    holds informative figures of the search that produced it.
    """

    num_layers: int
    attention: frozenset[int] = frozenset()
    mlp: frozenset[int] = frozenset()
    model: ModelFingerprint | None = None
    search: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise InvalidInputError(f"SkipSet.num_layers must be a positive integer, got {self.num_layers!r}")
        for name in ("attention", "mlp"):
            values = frozenset(int(i) for i in getattr(self, name))
            bad = sorted(i for i in values if not 0 <= i < self.num_layers)
            if bad:
                raise InvalidInputError(
                    f"SkipSet.{name} has layer index {bad[0]}, outside [0, {self.num_layers}); "
                    "indices count decoder layers from 0"
                )
            object.__setattr__(self, name, values)
        if self.model is not None and self.model.num_layers != self.num_layers:
            raise InvalidInputError(
                f"SkipSet for {self.num_layers} layers records a model with {self.model.num_layers} layers"
            )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls, num_layers: int) -> SkipSet:
        """Skip nothing: the draft is the target itself (useful to test the machinery)."""
        return cls(num_layers)

    @classmethod
    def middle_band(cls, num_layers: int, fraction: float = DEFAULT_BAND) -> SkipSet:
        """Skip attention and MLP of the middle ``fraction`` of the layers.

        The first and last layers do most of the work of reading the input and
        producing the output distribution; middle layers refine a residual stream
        that is already close to its final direction, so dropping a middle band is
        the usual good starting point (and a seed of the search). At least one
        layer is always kept.
        """
        if not 0.0 <= fraction < 1.0:
            raise InvalidInputError(f"fraction must be in [0, 1), got {fraction}")
        count = min(int(round(num_layers * fraction)), num_layers - 1)
        start = (num_layers - count) // 2
        band = frozenset(range(start, start + count))
        return cls(num_layers, band, band)

    @classmethod
    def from_vector(cls, x: Sequence[float] | np.ndarray, num_layers: int) -> SkipSet:
        """From the search's 2L switches: attention of layer i is skipped when ``x[i] > 0.5``,
        its MLP when ``x[L + i] > 0.5``."""
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        if arr.size != 2 * num_layers:
            raise InvalidInputError(f"expected {2 * num_layers} switches for {num_layers} layers, got {arr.size}")
        attn = frozenset(int(i) for i in np.nonzero(arr[:num_layers] > 0.5)[0])
        mlp = frozenset(int(i) for i in np.nonzero(arr[num_layers:] > 0.5)[0])
        return cls(num_layers, attn, mlp)

    def to_vector(self) -> np.ndarray:
        """float64 [2L]: 1.0 for a skipped sub-block, 0.0 for a kept one."""
        x = np.zeros(2 * self.num_layers, dtype=np.float64)
        x[sorted(self.attention)] = 1.0
        x[[self.num_layers + i for i in sorted(self.mlp)]] = 1.0
        return x

    def for_model(self, model: Any, **search: Any) -> SkipSet:
        """The same set, recording ``model`` as the one it is meant for."""
        fp = ModelFingerprint.of(model)
        if fp.num_layers != self.num_layers:
            raise MismatchedDataFileError(
                f"this skip set is for {self.num_layers} layers but the model has {fp.num_layers}"
            )
        return replace(self, model=fp, search={**dict(self.search), **search})

    # -- queries ------------------------------------------------------------------------------

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Hashable identity of the skipped sub-blocks (ignores the model record)."""
        return tuple(sorted(self.attention)), tuple(sorted(self.mlp))

    @property
    def skipped(self) -> int:
        """Number of skipped sub-blocks (out of 2L)."""
        return len(self.attention) + len(self.mlp)

    def describe(self) -> str:
        def ranges(values: Iterable[int]) -> str:
            out: list[str] = []
            for v in sorted(values):
                if out and out[-1].endswith(f"-{v - 1}"):
                    out[-1] = out[-1].rsplit("-", 1)[0] + f"-{v}"
                elif out and out[-1] == str(v - 1):
                    out[-1] = f"{v - 1}-{v}"
                else:
                    out.append(str(v))
            return ",".join(out) or "none"

        return (
            f"skip attention of layers {ranges(self.attention)}; MLP of layers {ranges(self.mlp)} "
            f"({self.skipped}/{2 * self.num_layers} sub-blocks)"
        )

    def check(self, model: Any, *, source: str = "this skip set") -> None:
        """Refuse to run the set on a model it was not made for (:class:`MismatchedDataFileError`)."""
        config = getattr(model, "config", None)
        layers = _num_layers_of(config)
        if layers != self.num_layers:
            raise MismatchedDataFileError(
                f"{source} is for a model with {self.num_layers} layers, but this model has {layers}; "
                "run `draftkit layerskip search` for this model or use the default skip set"
            )
        if self.model is not None:
            why = self.model.mismatch(ModelFingerprint.of(model))
            if why:
                raise MismatchedDataFileError(
                    f"{source} was searched for another model: {why}. Run `draftkit layerskip search` "
                    "for this model, or pass skip_set=None for the default middle band"
                )

    # -- file ---------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model.as_dict() if self.model is not None else None,
            "num_layers": self.num_layers,
            "attention": sorted(self.attention),
            "mlp": sorted(self.mlp),
            "search": _jsonable(dict(self.search)),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "skip set") -> SkipSet:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptDataFileError(
                f"{source} is not a draftkit layer-skip file (no \"format\": \"{FORMAT}\"); "
                "create one with `draftkit layerskip search`"
            )
        version = data.get("version")
        if version != VERSION:
            raise CorruptDataFileError(
                f"{source} has format version {version!r}; this draftkit reads version {VERSION}. "
                "Re-run the search with this version of draftkit"
            )
        try:
            model = ModelFingerprint.from_dict(data["model"]) if data.get("model") is not None else None
            return cls(
                num_layers=int(data["num_layers"]),
                attention=frozenset(int(i) for i in data.get("attention", ())),
                mlp=frozenset(int(i) for i in data.get("mlp", ())),
                model=model,
                search=dict(data.get("search") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataFileError(f"{source} is malformed ({type(exc).__name__}: {exc})") from exc

    def save(self, path: str | Path) -> Path:
        """Write the set as JSON (atomically: a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, model: Any = None) -> SkipSet:
        """Read a skip-set file; with ``model``, also refuse it if it was made for another model."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInputError(f"skip-set file {str(path)!r} does not exist") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptDataFileError(f"skip-set file {str(path)!r} is not valid JSON ({exc})") from exc
        skip = cls.from_dict(data, source=f"skip-set file {str(path)!r}")
        if model is not None:
            skip.check(model, source=f"skip-set file {str(path)!r}")
        return skip


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value
