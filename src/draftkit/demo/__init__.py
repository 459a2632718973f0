"""draftkit's own small demo models, trained on the Python standard library.

The model hubs are out of reach from where draftkit is developed and tested,
so draftkit ships two tiny Llama models it trained itself with
``python -m draftkit.demo.train``: a *target* (~7M parameters) and a *draft*
(~1.5M parameters) that share one tokenizer, for examples, benchmarks and the
classic draft-model baseline. Each folder loads with the ordinary
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``
and has a model card (``README.md``) saying how it was made and how good it is.

Importing this package imports neither torch nor transformers and touches no
file; :func:`demo_model_path` only resolves a path.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DraftkitError

__all__ = ["DEMO_MODEL_KINDS", "DEMO_NAMES", "demo_model_path", "resolve_model_path"]

#: The shipped models: the target and its draft-model baseline.
DEMO_MODEL_KINDS = ("target", "draft")
#: Names that mean the shipped demo models rather than a folder.
DEMO_NAMES = ("demo", "demo-target", "demo-draft")


def demo_model_path(kind: str = "target") -> Path:
    """Folder of the shipped demo model ``kind`` (``"target"`` or ``"draft"``).

    Pass it to ``AutoModelForCausalLM.from_pretrained`` and
    ``AutoTokenizer.from_pretrained``. Raises :class:`ValueError` for an unknown
    kind and :class:`FileNotFoundError` when the folder has not been trained
    into this installation, with the command that makes it.
    """
    if kind not in DEMO_MODEL_KINDS:
        raise ValueError(f"unknown demo model kind {kind!r}; choose one of {', '.join(DEMO_MODEL_KINDS)}")
    path = Path(__file__).resolve().parent / "models" / kind
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the demo model {kind!r} is not in {path}; train it with "
            "`python -m draftkit.demo.train --out WORK_DIR` (about two hours on a CPU core), "
            "or reinstall draftkit from a distribution that includes it"
        )
    return path


def resolve_model_path(name: str) -> Path:
    """``demo`` (or ``demo-draft``) means the shipped demo models; anything else is a folder."""
    if name in DEMO_NAMES:
        try:
            path = demo_model_path("draft" if name == "demo-draft" else "target")
        except FileNotFoundError as exc:
            raise DraftkitError(str(exc)) from exc
        if not (path / "config.json").exists():
            raise DraftkitError(
                f"the demo model is not present at {path}; train it with `nox -s train_demo` "
                "or pass --model PATH to a Hugging Face model folder"
            )
        return path
    path = Path(name).expanduser()
    if not (path / "config.json").exists():
        raise DraftkitError(
            f"{name!r} is not a model folder (no config.json); pass a local Hugging Face model folder "
            "or 'demo' (model hubs are not used by draftkit's CLI)"
        )
    return path
