"""Shared test configuration.

* torch runs on one thread: the models are tiny and the CI machine has two
  cores; two torch threads competing with another process are far slower.
* Hypothesis profiles: ``ci`` (default; deterministic, no deadline because model
  forwards on a shared machine have noisy timings) and ``dev`` (more examples).
  Select with ``HYPOTHESIS_PROFILE=dev``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", max_examples=100, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry-point plugins installed on the machine must not leak into unit tests."""
    monkeypatch.setenv("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    from draftkit.plugins import default_registry

    default_registry.cache_clear()
    yield
    default_registry.cache_clear()
