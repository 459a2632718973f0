"""Checks of the shipped demo models in ``src/draftkit/demo/models/``.

Skipped until ``python -m draftkit.demo.train`` has installed them; after that
they guard what users rely on: both folders load with the plain Auto classes,
share one tokenizer, stay small enough to ship, and carry a model card.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from draftkit.demo import DEMO_MODEL_KINDS, demo_model_path


def _paths() -> dict[str, Path]:
    try:
        return {kind: demo_model_path(kind) for kind in DEMO_MODEL_KINDS}
    except FileNotFoundError:
        pytest.skip("demo models not trained into this checkout")


def test_demo_models_are_small_enough_to_ship() -> None:
    total = sum(p.stat().st_size for folder in _paths().values() for p in folder.iterdir())
    assert total <= 60e6


def test_demo_models_load_with_auto_classes_and_share_a_tokenizer() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = _paths()
    vocabs = []
    for folder in paths.values():
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.dtype == torch.float32
        assert model.generation_config.eos_token_id == tok.eos_token_id
        assert model.generation_config.pad_token_id == tok.pad_token_id
        assert model.config.vocab_size == len(tok)
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert "bits per character" in card and "draftkit.demo.train" in card
        ids = tok("def add(a, b):\n", return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
        assert out.shape[1] > ids.shape[1]
        vocabs.append(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    assert all(v == vocabs[0] for v in vocabs)


def test_the_shipped_answers_are_what_their_command_writes_with_these_weights() -> None:
    """answers.jsonl belongs to the target's weights: retraining without rewriting it must fail here.

    Only the first batch is regenerated (the draw of all prompts is, as the command does it); batches are
    decoded independently, so the rest follows from the same code.
    """
    from draftkit.demo.answers import DEMO_ANSWER_COUNT, DEMO_ANSWERS_META, demo_answers_path
    from draftkit.demo.corpus import corpus_fingerprint, load_corpus
    from draftkit.loading import load_model_and_tokenizer
    from draftkit.sources.own_answers import AnswerSettings, generate_answers, sample_prompts

    _paths()
    path = demo_answers_path()
    assert path is not None, "the demo target ships answers.jsonl (python -m draftkit.demo.answers)"
    shipped = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(shipped) == DEMO_ANSWER_COUNT
    meta = json.loads(path.with_name(DEMO_ANSWERS_META).read_text())
    settings = AnswerSettings()
    assert meta["answers"] == DEMO_ANSWER_COUNT and meta["settings"] == dataclasses.asdict(settings)
    split = load_corpus()
    if corpus_fingerprint(split) != meta["corpus_fingerprint"]:
        pytest.skip(f"the answers were cut from Python {meta['python_version']}'s library, this is {split.python_version}'s")
    prompts = sample_prompts((f.text for f in split.train), DEMO_ANSWER_COUNT, settings=settings)
    model, tokenizer = load_model_and_tokenizer("demo")
    first = prompts[: settings.batch_size]
    assert list(generate_answers(model, tokenizer, first, settings=settings)) == shipped[: len(first)]
