"""Smoke tests of the demo-model training pipeline (``draftkit.demo``).

They run the real code paths — corpus split, tokenizer training, a few
training steps, a resume, evaluation, saving and loading with the Auto
classes — on a tiny slice of the standard library and a tiny model, so they
take seconds and do not depend on the shipped models having been trained.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from draftkit.demo import corpus
from draftkit.demo.tokenizer import EOS_TOKEN, encode_documents, train_tokenizer
from draftkit.demo.train import (
    DRAFT_SPEC,
    TARGET_SPEC,
    ModelSpec,
    PipelineConfig,
    lr_at,
    run_pipeline,
    train_model,
)

TINY_TARGET = replace(
    TARGET_SPEC,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    seq_len=32,
    batch_size=2,
    warmup_steps=2,
)
TINY_DRAFT = replace(
    DRAFT_SPEC,
    hidden_size=16,
    num_layers=1,
    num_heads=2,
    intermediate_size=32,
    seq_len=32,
    batch_size=2,
    warmup_steps=2,
)


@pytest.fixture(scope="module")
def tiny_corpus() -> corpus.CorpusSplit:
    return corpus.load_corpus(max_files=24, heldout_fraction=0.25)


@pytest.fixture(scope="module")
def tiny_tokens(tiny_corpus: corpus.CorpusSplit) -> tuple[int, np.ndarray]:
    """Vocabulary size and training token stream of a 300-token tokenizer."""
    tok = train_tokenizer((f.text for f in tiny_corpus.train), vocab_size=300)
    return len(tok), encode_documents(tok, [f.text for f in tiny_corpus.train])


def test_corpus_is_sorted_stdlib_without_site_packages() -> None:
    paths = corpus.list_source_files(corpus.stdlib_root())
    assert paths == sorted(paths)
    assert all(p.endswith(".py") and "site-packages" not in p.split("/") for p in paths)
    assert "os.py" in paths
    assert any(p.startswith("test/") for p in paths)


def test_split_is_by_path_hash_and_deterministic(tiny_corpus: corpus.CorpusSplit) -> None:
    again = corpus.load_corpus(max_files=24, heldout_fraction=0.25)
    assert corpus.corpus_fingerprint(again) == corpus.corpus_fingerprint(tiny_corpus)
    assert tiny_corpus.heldout, "a quarter of 24 files should hold some out"
    assert all(corpus.is_heldout(f.relpath, 0.25) for f in tiny_corpus.heldout)
    assert not any(corpus.is_heldout(f.relpath, 0.25) for f in tiny_corpus.train)
    assert (
        tiny_corpus.python_version
        == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    )
    # The default split holds out roughly 2% of all files.
    paths = corpus.list_source_files(corpus.stdlib_root())
    share = sum(corpus.is_heldout(p) for p in paths) / len(paths)
    assert 0.005 < share < 0.05


def test_tokenizer_round_trips_and_loads_with_auto_tokenizer(
    tiny_corpus: corpus.CorpusSplit, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    texts = [f.text for f in tiny_corpus.train]
    tok = train_tokenizer(texts, vocab_size=400)
    assert len(tok) == 400
    assert train_tokenizer(texts, vocab_size=400).get_vocab() == tok.get_vocab()  # deterministic
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    eos = loaded.convert_tokens_to_ids(EOS_TOKEN)
    assert loaded.eos_token_id == loaded.bos_token_id == loaded.pad_token_id == eos == 0
    sample = "def f(x):\n\treturn x  + 1  # héllo ✓\n"
    ids = loaded(sample)["input_ids"]
    assert eos not in ids  # no special token added by itself
    assert loaded.decode(ids) == sample

    stream = encode_documents(tok, ["a = 1\n", "b = 2\n"])
    assert stream.dtype == np.uint16
    assert stream[0] == eos and stream[-1] == eos and int((stream == eos).sum()) == 3
    assert tok.decode(stream.tolist(), skip_special_tokens=True) == "a = 1\nb = 2\n"


def test_lr_schedule_warms_up_and_decays_to_floor() -> None:
    spec = replace(TARGET_SPEC, peak_lr=1e-3, min_lr_ratio=0.1, warmup_steps=10)
    lrs = [lr_at(s, 200, spec) for s in range(200)]
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[9] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))


def test_training_resumes_where_it_stopped(tiny_tokens: tuple[int, np.ndarray], tmp_path: Path) -> None:
    vocab_size, tokens = tiny_tokens
    ckpt = tmp_path / "ckpt.pt"
    kwargs = {
        "vocab_size": vocab_size,
        "special_id": 0,
        "checkpoint_path": ckpt,
        "max_steps": 6,
        "log": lambda _m: None,
    }

    _, first = train_model(TINY_TARGET, tokens, stop_after_steps=3, **kwargs)
    assert first.step == 3 and not first.finished and ckpt.is_file()
    with pytest.raises(FileExistsError):
        train_model(TINY_TARGET, tokens, **kwargs)
    model, resumed = train_model(TINY_TARGET, tokens, resume=True, **kwargs)
    assert resumed.step == 6 and resumed.finished and resumed.resumed_times == 1
    assert resumed.tokens_seen == 6 * TINY_TARGET.tokens_per_step

    # Same as an uninterrupted run: the checkpoint carried weights, optimizer and data RNG.
    straight, state = train_model(
        TINY_TARGET, tokens, **{**kwargs, "checkpoint_path": tmp_path / "straight.pt"}, stop_after_steps=None
    )
    assert state.step == 6
    for (name, a), (_, b) in zip(model.state_dict().items(), straight.state_dict().items(), strict=True):
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-6), name

    _, again = train_model(TINY_TARGET, tokens, resume=True, **kwargs)  # finished: returns at once
    assert again.step == 6 and again.finished


def test_budget_mode_plans_and_finishes(tiny_tokens: tuple[int, np.ndarray], tmp_path: Path) -> None:
    vocab_size, tokens = tiny_tokens
    _, state = train_model(
        TINY_DRAFT,
        tokens,
        vocab_size=vocab_size,
        special_id=0,
        checkpoint_path=tmp_path / "b.pt",
        budget_seconds=0.5,
        log=lambda _m: None,
    )
    assert state.finished and state.step >= 1 and state.planned_steps == state.step


def _tiny_pipeline(tmp_path: Path, **overrides: object) -> PipelineConfig:
    """The whole pipeline on 30 files, a 300-token vocabulary and tiny models."""
    settings: dict = {
        "work_dir": tmp_path / "work",
        "models_dir": tmp_path / "models",
        "vocab_size": 300,
        "heldout_fraction": 0.25,
        "max_files": 30,
        "target": TINY_TARGET,
        "draft": TINY_DRAFT,
        "use_compile": False,
        "command": "python -m draftkit.demo.train --out WORK",
    }
    settings.update(overrides)
    return PipelineConfig(**settings)


def test_pipeline_end_to_end_and_resume(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _tiny_pipeline(tmp_path, max_steps={"target": 4, "draft": 3})
    logs: list[str] = []
    results = run_pipeline(cfg, logs.append)
    assert set(results) == {"target", "draft"}
    meta = json.loads((cfg.work_dir / "data.json").read_text())
    for kind, result in results.items():
        assert math.isfinite(result["heldout_loss"])
        expected_bpc = (
            result["heldout_loss"] * result["heldout_predicted_tokens"] / meta["heldout_chars"] / math.log(2)
        )
        assert result["bits_per_char"] == pytest.approx(expected_bpc)
        folder = cfg.models_dir / kind
        card = (folder / "README.md").read_text()
        assert meta["python_version"] in card and "draftkit.demo.train" in card
        model = AutoModelForCausalLM.from_pretrained(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        assert model.generation_config.eos_token_id == tok.eos_token_id == 0
        assert model.config.tie_word_embeddings
        assert (folder / "model.safetensors").is_file()

    with pytest.raises(FileExistsError):
        run_pipeline(cfg, logs.append)
    again = run_pipeline(replace(cfg, resume=True), logs.append)  # everything cached or finished
    assert again["target"]["heldout_loss"] == results["target"]["heldout_loss"]
    assert any("reusing cached tokenizer" in line for line in logs)


def test_continued_training_starts_from_the_saved_weights(tmp_path: Path) -> None:
    """``init_from`` continues a finished run: same weights at step 0, tokenizer kept, totals carried."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = _tiny_pipeline(tmp_path, max_steps={"target": 4, "draft": 2})
    first = run_pipeline(base, lambda _m: None)
    saved = load_file(str(base.models_dir / "target" / "model.safetensors"))

    # Zero steps of continued training must reproduce the saved model exactly.
    logs: list[str] = []
    zero = replace(
        base,
        work_dir=tmp_path / "zero",
        models_dir=tmp_path / "zero_models",
        init_from=base.models_dir,
        only=("target",),
        max_steps={"target": 0},
        command="zero",
    )
    result = run_pipeline(zero, logs.append)
    assert set(result) == {"target"} and not (zero.models_dir / "draft").exists()
    assert result["target"]["heldout_loss"] == pytest.approx(first["target"]["heldout_loss"], rel=1e-6)
    assert result["target"]["tokens_seen"] == first["target"]["tokens_seen"]
    reloaded = load_file(str(zero.models_dir / "target" / "model.safetensors"))
    assert all(torch.equal(saved[k], reloaded[k]) for k in saved)
    assert any("tokenizer of" in line for line in logs)

    more = replace(
        zero,
        work_dir=tmp_path / "more",
        models_dir=tmp_path / "more_models",
        max_steps={"target": 3},
        peak_lr={"target": 1e-3},
    )
    result = run_pipeline(more, lambda _m: None)["target"]
    assert result["tokens_seen"] == first["target"]["tokens_seen"] + 3 * TINY_TARGET.tokens_per_step
    assert result["init_tokens_seen"] == first["target"]["tokens_seen"]
    history = json.loads((more.models_dir / "target" / "training.json").read_text())
    assert history["tokens_seen"] == result["tokens_seen"]
    assert history["commands"] == [base.command, more.command]  # the card reproduces every run
    assert "continued from" in (more.models_dir / "target" / "README.md").read_text()
    AutoModelForCausalLM.from_pretrained(more.models_dir / "target")

    wrong = replace(more, work_dir=tmp_path / "wrong", target=replace(TINY_TARGET, hidden_size=48))
    with pytest.raises(RuntimeError, match="hidden_size"):
        run_pipeline(wrong, lambda _m: None)


def test_importing_demo_does_not_import_torch() -> None:
    code = (
        "import sys, draftkit; before = set(sys.modules); import draftkit.demo; "
        "new = set(sys.modules) - before; "
        "heavy = [m for m in new if m.split('.')[0] in ('torch', 'transformers', 'tokenizers', 'numpy')]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_demo_model_path() -> None:
    from draftkit.demo import demo_model_path

    with pytest.raises(ValueError, match="unknown demo model kind"):
        demo_model_path("huge")
    for kind in ("target", "draft"):
        try:
            path = demo_model_path(kind)
        except FileNotFoundError as exc:
            assert "draftkit.demo.train" in str(exc)
        else:
            assert (path / "config.json").is_file() and path.name == kind


def test_default_specs_are_in_the_intended_size_range() -> None:
    from draftkit.demo.train import build_model, count_parameters

    sizes = {
        spec.name: count_parameters(build_model(spec, 8192, 0, seed=0)) for spec in (TARGET_SPEC, DRAFT_SPEC)
    }
    assert 6e6 <= sizes["target"] <= 10e6
    assert 1e6 <= sizes["draft"] <= 3e6
    assert isinstance(TARGET_SPEC, ModelSpec)
