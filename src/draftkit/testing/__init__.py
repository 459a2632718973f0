"""Test helpers shipped with draftkit, for its own suite and for plugin authors.

* :mod:`draftkit.testing.models`: tiny random float64 models of several
  architectures, built locally (no hub) and saved/loaded through
  ``from_pretrained``.
* :mod:`draftkit.testing.sources`: oracle, adversarial, empty and scripted
  draft sources that exercise the engine's corners.
* :mod:`draftkit.testing.contract`: checks any third-party source must pass.
"""
