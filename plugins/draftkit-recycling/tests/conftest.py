"""Test configuration of the draftkit-recycling plugin.

This conftest sits beside the plugin's tests, so draftkit's own
``tests/conftest.py`` (which switches entry-point autoloading *off*) never
applies here: these tests are about the plugin being found through its entry
point, exactly as for a user who ran ``pip install draftkit-recycling``.

* torch runs on one thread (tiny models, a shared two-core machine).
* The hypothesis profile is deterministic with no deadline: model forwards on a
  shared machine have noisy timings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

import draftkit

torch.set_num_threads(1)

settings.register_profile(
    "draftkit-recycling",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("draftkit-recycling")


@pytest.fixture(autouse=True)
def _plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Entry-point plugins ON, nothing blocked, and a fresh registry per test."""
    monkeypatch.delenv("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("DRAFTKIT_BLOCK_PLUGINS", raising=False)
    draftkit.default_registry.cache_clear()
    yield
    draftkit.default_registry.cache_clear()
