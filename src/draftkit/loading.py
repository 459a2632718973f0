"""Loading models and tokenizers from local folders, with one-line errors for user mistakes.

Shared by the ``draftkit`` command and the subcommands of the sources (``aded
build``, ``datastore``, ``layerskip search``): a T5 folder, a mistyped path or a
folder without tokenizer files is refused before anything heavy loads, and
never sent to a model hub (which these machines cannot reach, and which would
retry for most of a minute).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .demo import DEMO_NAMES, resolve_model_path
from .errors import InvalidInputError

__all__ = ["check_causal_lm", "load_model", "load_model_and_tokenizer", "load_tokenizer", "resolve_tokenizer_path"]

#: Files ``AutoTokenizer.from_pretrained`` builds a tokenizer from.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "merges.txt", "spiece.model", "sentencepiece.bpe.model", "special_tokens_map.json")

#: What to do about a model folder without a tokenizer.
MODEL_TOKENIZER_ADVICE = "save the model's tokenizer there too (tokenizer.save_pretrained(folder))"


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message: transformers' messages run to several lines."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0].rstrip(":") if lines else type(exc).__name__


def resolve_tokenizer_path(name: str) -> Path:
    """The folder of ``--tokenizer``: a local folder, or the demo model's for ``demo``.

    ``from_pretrained`` takes a folder that does not exist for a hub repository
    and retries the network for most of a minute before a misleading error; the
    CLI never uses a hub, so a mistyped path is refused at once, as ``--model``.
    """
    if name in DEMO_NAMES:
        return resolve_model_path(name)
    path = Path(name).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise InvalidInputError(
            f"{name!r} {what}; pass a local tokenizer (or model) folder, or 'demo' (model hubs are not used by "
            "draftkit's CLI)"
        )
    return path


def _no_tokenizer(path: Path, advice: str, exc: BaseException | None = None) -> InvalidInputError:
    """One line saying why ``path`` gives no tokenizer: no tokenizer files at all, or the first line of why."""
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        why = "no tokenizer files"
    elif exc is not None:
        why = _first_line(exc)
    else:
        why = "its tokenizer files define no vocabulary"
    return InvalidInputError(f"{path} has no usable tokenizer ({why}); {advice}")


def load_tokenizer(name: str, advice: str = "pass a folder a tokenizer was saved to "
                   "(tokenizer.save_pretrained(folder))") -> Any:
    """``AutoTokenizer.from_pretrained`` of a local folder (see :func:`resolve_tokenizer_path`), or a one-line error."""
    from transformers import AutoTokenizer

    path = resolve_tokenizer_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (ValueError, OSError) as exc:
        raise _no_tokenizer(path, advice, exc) from exc
    if len(tokenizer) <= 1:  # transformers builds an empty tokenizer when the folder has no tokenizer files
        raise _no_tokenizer(path, advice)
    return tokenizer


def _is_encoder(config: Any) -> bool:
    """A BERT-like encoder: its causal-LM head loads but runs without a KV cache unless ``is_decoder`` is set.

    The model types with both a masked-LM and a causal-LM head in transformers are
    the encoder families (BERT, RoBERTa, ELECTRA, ...) and a few encoder-decoders
    such as BART, whose causal-LM class is their decoder and which pass.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return (getattr(config, "model_type", None) in MODEL_FOR_MASKED_LM_MAPPING_NAMES
            and not getattr(config, "is_decoder", False) and not getattr(config, "is_encoder_decoder", False)
            and not getattr(config, "causal", False))


def check_causal_lm(path: Path) -> None:
    """Refuse, from its config alone, a folder ``AutoModelForCausalLM`` cannot load or draftkit cannot decode.

    Without this check a T5 or BERT folder ends in a page of transformers
    traceback (or an engine error about caches) after the weights are read.
    """
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, KeyError) as exc:
        raise InvalidInputError(f"{path}: transformers cannot read its config.json ({_first_line(exc)})") from exc
    kind = getattr(config, "model_type", None) or type(config).__name__
    need = "pass the folder of one, such as a Llama, Qwen or GPT-2 model"
    remote = "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not remote:
        raise InvalidInputError(f"{path} holds a {kind} model that is not a decoder-only causal LM "
                                f"(AutoModelForCausalLM cannot load it); {need}")
    if _is_encoder(config):
        raise InvalidInputError(f"{path} holds a {kind} encoder model (is_decoder: false), not a decoder-only "
                                f"causal LM; {need}")


def load_model(name: str, dtype: str = "float32") -> Any:
    """``AutoModelForCausalLM.from_pretrained`` of ``--model`` in eval mode, after :func:`check_causal_lm`."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    check_causal_lm(path)
    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()


def load_model_and_tokenizer(name: str, dtype: str = "float32") -> tuple[Any, Any]:
    """Load with the ordinary ``from_pretrained(path)`` calls; user errors become one-line messages."""
    model = load_model(name, dtype)
    return model, load_tokenizer(str(resolve_model_path(name)), MODEL_TOKENIZER_ADVICE)
