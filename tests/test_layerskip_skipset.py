"""Skip sets: validation, the default band, the JSON file and the model check.

Tiny float64 random models stand in for real checkpoints: two seeds of the same
config are "the same architecture, other weights".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from draftkit.errors import CorruptDataFileError, InvalidInputError, MismatchedDataFileError
from draftkit.sources.layerskip import LayerSkip, ModelFingerprint, SkipSet
from helpers import cached_model


@st.composite
def skip_sets(draw: st.DrawFn, max_layers: int = 12) -> SkipSet:
    layers = draw(st.integers(1, max_layers))
    idx = st.integers(0, layers - 1)
    return SkipSet(layers, frozenset(draw(st.sets(idx))), frozenset(draw(st.sets(idx))))


@given(skip_sets())
def test_vector_round_trip(skip: SkipSet) -> None:
    x = skip.to_vector()
    assert x.shape == (2 * skip.num_layers,)
    assert SkipSet.from_vector(x, skip.num_layers) == skip
    # The search's continuous switches: anything above 0.5 is "skip".
    jitter = np.where(x > 0.5, 0.51 + 0.49 * np.random.default_rng(0).random(x.size), 0.5 * x)
    assert SkipSet.from_vector(jitter, skip.num_layers) == skip


@given(st.integers(1, 80), st.floats(0.0, 0.95))
def test_middle_band_is_centred_and_keeps_a_layer(layers: int, fraction: float) -> None:
    band = SkipSet.middle_band(layers, fraction)
    assert band.attention == band.mlp
    assert len(band.attention) < layers
    if band.attention:
        lo, hi = min(band.attention), max(band.attention)
        assert band.attention == set(range(lo, hi + 1))
        assert abs(lo - (layers - 1 - hi)) <= 1  # as many layers kept below as above, +-1


def test_default_band_of_32_layers() -> None:
    band = SkipSet.middle_band(32)
    assert sorted(band.attention) == list(range(9, 23))  # 14 of 32 layers ~ 45 %


@pytest.mark.parametrize(
    "kwargs",
    [dict(num_layers=0), dict(num_layers=4, attention={4}), dict(num_layers=4, mlp={-1})],
)
def test_invalid_sets_are_refused(kwargs: dict) -> None:
    with pytest.raises(InvalidInputError):
        SkipSet(**kwargs)


def test_file_round_trip_and_model_check(tmp_path: Path) -> None:
    model = cached_model("llama", layers=4)
    skip = SkipSet(4, {1, 2}, {2}).for_model(model, speedup=1.3)
    path = skip.save(tmp_path / "skip.json")
    data = json.loads(path.read_text())
    assert data["format"] == "draftkit-layerskip" and data["attention"] == [1, 2]
    assert data["model"]["architecture"] == "llama" and data["model"]["num_layers"] == 4
    loaded = SkipSet.load(path, model)
    assert loaded == skip and loaded.search["speedup"] == 1.3
    assert LayerSkip(path).prepare(model) == skip


@pytest.mark.parametrize(
    "other, pattern",
    [
        (dict(arch="llama", seed=1, layers=4), "different weights"),
        (dict(arch="llama", seed=0, layers=6), "6"),
        (dict(arch="qwen2", seed=0, layers=4), "architecture qwen2"),
    ],
)
def test_loading_for_another_model_is_refused(tmp_path: Path, other: dict, pattern: str) -> None:
    model = cached_model("llama", layers=4)
    path = SkipSet(4, {1}, {2}).for_model(model).save(tmp_path / "skip.json")
    another = cached_model(other["arch"], seed=other["seed"], layers=other["layers"])
    with pytest.raises(MismatchedDataFileError, match=pattern):
        SkipSet.load(path, another)
    with pytest.raises(MismatchedDataFileError):
        LayerSkip(path).prepare(another)


def test_fingerprint_survives_a_dtype_round_trip_but_not_other_weights() -> None:
    model = cached_model("gpt2", layers=4)
    fp = ModelFingerprint.of(model)
    import copy

    as_bf16 = copy.deepcopy(model).to(torch.bfloat16)
    assert ModelFingerprint.of(as_bf16) == fp
    assert ModelFingerprint.of(cached_model("gpt2", seed=1, layers=4)).weights != fp.weights


def test_hand_made_set_checks_the_layer_count_only() -> None:
    LayerSkip(SkipSet(4, {1}, set())).prepare(cached_model("mistral", layers=4))
    with pytest.raises(MismatchedDataFileError, match="4 layers"):
        LayerSkip(SkipSet(4, {1}, set())).prepare(cached_model("mistral", layers=2))


@pytest.mark.parametrize(
    "content, error",
    [
        ("{not json", CorruptDataFileError),
        ('{"format": "something-else"}', CorruptDataFileError),
        ('{"format": "draftkit-layerskip", "version": 99, "num_layers": 4}', CorruptDataFileError),
        ('{"format": "draftkit-layerskip", "version": 1}', CorruptDataFileError),
        ('{"format": "draftkit-layerskip", "version": 1, "num_layers": 4, "attention": [7]}', CorruptDataFileError),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, content: str, error: type) -> None:
    path = tmp_path / "skip.json"
    path.write_text(content)
    with pytest.raises(error, match=str(path.name)):
        SkipSet.load(path)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        LayerSkip(tmp_path / "nope.json")
