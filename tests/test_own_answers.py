"""The corpus of the model's own answers (``draftkit answers build``) and its use by the benchmark.

The models are tiny float64 ones so that batched (left-padded) and one-at-a-time
greedy decoding cannot differ by a near-tie: the answers must be exactly the
model's own greedy continuations.
"""

from __future__ import annotations

import json

import pytest
import torch

from draftkit.cli import main
from draftkit.errors import InvalidInputError
from draftkit.sources.own_answers import AnswerSettings, generate_answers, sample_prompts
from draftkit.sources.own_answers_cli import count_answers
from draftkit.testing.models import tiny_model
from draftkit.testing.tokenizers import char_tokenizer

TEXT = "def f(x):\n    return x\n\ndef g(y):\n    y = y + 1\n    return y\n"


def test_prompts_are_cut_after_a_line_another_line_follows_and_start_at_a_line_start():
    prompts = sample_prompts([TEXT, "one line only"], 10, settings=AnswerSettings(context_chars=15))
    assert sorted(prompts) == sorted(["def f(x):\n", "\ndef g(y):\n", "    y = y + 1\n"])  # the blank line is a line
    # each prompt is the end of the text before its cut, from a line start, within context_chars when it can be
    for p in prompts:
        assert p.endswith("\n") and TEXT.find(p) >= 0 and (TEXT.find(p) == 0 or TEXT[TEXT.find(p) - 1] == "\n")


def test_the_draw_is_seeded_uniform_and_keeps_count():
    docs = [f"line {i}\nline {i} b\n" for i in range(500)]
    first = sample_prompts(docs, 20, settings=AnswerSettings(seed=3))
    assert first == sample_prompts(iter(docs), 20, settings=AnswerSettings(seed=3))
    assert first != sample_prompts(docs, 20, settings=AnswerSettings(seed=4))
    assert len(first) == 20 and len(set(first)) == 20
    late = sum(int(p.split()[1]) >= 250 for p in first)
    assert 3 <= late <= 17  # drawn over the whole corpus, not its start


def test_a_corpus_without_lines_or_a_zero_count_is_refused():
    with pytest.raises(InvalidInputError, match="no place to cut"):
        sample_prompts(["no newline here", ""], 5)
    with pytest.raises(InvalidInputError, match="at least 1"):
        sample_prompts([TEXT], 0)
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        AnswerSettings(max_new_tokens=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_answers_are_the_models_own_greedy_continuations_batched_or_not(arch):
    tok = char_tokenizer()
    model = tiny_model(arch, vocab_size=len(tok), eos_token_id=tok.eos_token_id, seed=1)
    prompts = ["def f(x):\n", "    y = y + 1\n    return y\n", "ab\n", "class A:\n    pass\n\nx = 1\n"]
    settings = AnswerSettings(max_new_tokens=9, batch_size=3, keep_prompt_lines=1)
    answers = list(generate_answers(model, tok, prompts, settings=settings))
    for prompt, answer in zip(prompts, answers, strict=True):
        ids = tok(prompt, return_tensors="pt").input_ids
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=9, do_sample=False,
                             pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in out:
            out = out[: out.index(tok.eos_token_id)]
        assert answer == prompt.splitlines(keepends=True)[-1] + tok.decode(out)


def test_a_window_too_small_for_the_answers_is_refused():
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), eos_token_id=tok.eos_token_id, context=8)
    with pytest.raises(InvalidInputError, match="context window"):
        list(generate_answers(model, tok, ["x\n"], settings=AnswerSettings(max_new_tokens=8)))


def _model_folder(tmp_path):
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), eos_token_id=tok.eos_token_id)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 3)
    return folder, corpus


def test_the_command_writes_resumes_and_refuses_to_clobber(tmp_path, capsys):
    folder, corpus = _model_folder(tmp_path)
    out = tmp_path / "answers.jsonl"
    common = ["answers", "build", "--model", str(folder), "--corpus", str(corpus), "-o", str(out),
              "--max-new-tokens", "6", "--batch-size", "2", "--no-progress", "--dtype", "float64"]
    assert main([*common, "--count", "5"]) == 0
    full = out.read_text().splitlines()
    assert len(full) == 5 and all(isinstance(json.loads(line)["text"], str) for line in full)
    assert main([*common, "--count", "5"]) == 1  # exists: neither --resume nor --overwrite
    assert "--resume" in capsys.readouterr().err
    # an interrupted run: two complete records and half a third; --resume drops the half and finishes
    out.write_text("\n".join(full[:2]) + "\n" + full[2][:7])
    assert main([*common, "--count", "5", "--resume"]) == 0
    assert out.read_text().splitlines() == full
    assert main([*common, "--count", "5", "--overwrite"]) == 0
    assert out.read_text().splitlines() == full  # deterministic


def test_resume_refuses_a_file_that_is_not_an_answers_file(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"title": "x"}\n')
    with pytest.raises(InvalidInputError, match="no \"text\""):
        count_answers(path)
    path.write_text("import os\n")
    with pytest.raises(InvalidInputError, match="not a JSON record"):
        count_answers(path, repair=True)
    assert path.read_text() == "import os\n"  # nothing cut from a file that is not ours
    path.write_text("print(1)")  # one line, no newline: no complete record to judge it by
    with pytest.raises(InvalidInputError, match="not an answers record"):
        count_answers(path, repair=True)
    assert path.read_text() == "print(1)"
    path.write_text('{"text": "a"}\n{"te')  # an interrupted answers file: counted, and repaired only when asked
    assert count_answers(path) == 1 and path.read_text().endswith('{"te')
    assert count_answers(path, repair=True) == 1 and path.read_text() == '{"text": "a"}\n'


def test_the_bench_adds_answers_to_the_corpus_and_keys_its_cache_by_them(tmp_path, monkeypatch):
    """The ADED matrix built with answers knows their trigrams; without, it does not; each has its own file."""
    import numpy as np

    from draftkit.bench import corpus as bench_corpus
    from draftkit.plugins import build_registry

    tok = char_tokenizer()
    eos = tok.eos_token_id
    corpus_ids = np.array([eos, *tok("abcabc").input_ids, eos], dtype=np.int64)

    def corpus_tokens(tokenizer, folder):  # a two-document stand-in for the stdlib, which takes minutes
        folder.mkdir(parents=True, exist_ok=True)
        return corpus_ids

    monkeypatch.setattr(bench_corpus, "corpus_tokens", corpus_tokens)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"text": "xyz"}) + "\n")
    registry = build_registry(load_entry_points=False)
    plain = bench_corpus.corpus_sources_for(tok, registry, len(tok), tmp_path / "c", log=lambda m: None)["aded"]()
    said: list[str] = []
    warm = bench_corpus.corpus_sources_for(tok, registry, len(tok), tmp_path / "c", log=said.append,
                                           answers=answers)["aded"]()
    x, y, z = tok("xyz").input_ids
    assert any("answers" in m for m in said)
    assert [t for t, _ in warm.to_matrix().successors_of(x, y)] == [z]
    assert plain.to_matrix().successors_of(x, y) == []
    assert len(list((tmp_path / "c").rglob("*.aded"))) == 2


def test_overwrite_and_resume_touch_an_answers_file_only(tmp_path, capsys):
    folder, corpus = _model_folder(tmp_path)
    script = tmp_path / "train.py"
    for text in ("import os\n", "import os"):  # with and without a last newline
        script.write_text(text)
        for flag in ("--overwrite", "--resume"):
            rc = main(["answers", "build", "--model", str(folder), "--corpus", str(corpus), "-o", str(script),
                       flag, "--count", "2", "--no-progress"])
            assert rc == 1 and "answers file" in capsys.readouterr().err
            assert script.read_text() == text


@pytest.mark.parametrize(("extra", "said"), [
    (["--answers", "missing.jsonl"], "no such file"),
    (["--answers", "{answers}", "--no-corpus"], "--no-corpus"),
])
def test_the_bench_says_what_is_wrong_with_answers_before_running(tmp_path, capsys, extra, said):
    folder, _ = _model_folder(tmp_path)
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"text": "x"}\n')
    extra = [a.replace("{answers}", str(answers)) for a in extra]
    rc = main(["bench", "--model", str(folder), "--methods", "pld", "--max-new-tokens", "4", "--quiet",
               "--out", str(tmp_path / "out"), "--no-chart", *extra])
    assert rc == 1 and said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
