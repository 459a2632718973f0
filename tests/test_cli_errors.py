"""The command line's user errors: one line, ``draftkit: error: ...``, naming the flag or file to fix."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from draftkit.cli import main
from draftkit.engine import PlainDecoder
from draftkit.testing.models import tiny_model
from draftkit.testing.tokenizers import char_tokenizer


def _model_dir(path, context=256):
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), eos_token_id=None, context=context, dtype=torch.float64)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return tok, model


def _one_line_error(capsys) -> str:
    """The error of a failed command: one ``draftkit: error:`` line ending stderr, no traceback.

    Lines before it may be transformers' progress bars (saving, loading weights).
    """
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("draftkit: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


# --- model folders that are not decoder-only causal LMs -------------------------------------------------------------

@pytest.mark.parametrize(("command", "options"), [
    (["generate"], ["x"]),
    (["bench"], ["--methods", "plain", "--no-corpus", "--quiet"]),
    (["layerskip", "search"], ["--iterations", "1", "-o", "skip.json"]),
])
def test_a_t5_folder_is_named_not_a_causal_lm(tmp_path, capsys, command, options):
    from transformers import T5Config

    T5Config(vocab_size=97, d_model=8, d_ff=16, num_layers=1, num_heads=2, d_kv=4).save_pretrained(tmp_path)
    assert main([*command, "--model", str(tmp_path), *options]) == 1
    line = _one_line_error(capsys)
    assert "holds a t5 model that is not a decoder-only causal LM" in line
    assert "AutoModelForCausalLM cannot load it" in line


def test_a_bert_encoder_folder_is_named_an_encoder(tmp_path, capsys):
    from transformers import BertConfig

    BertConfig(vocab_size=97, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=16).save_pretrained(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "x"]) == 1
    line = _one_line_error(capsys)
    assert "bert encoder model" in line and "DynamicCache" not in line


# --- local paths are never tried on a model hub ---------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["aded", "build", "--no-progress", "--tokenizer", "{missing}", "--corpus", "{corpus}", "-o", "{out}/m.aded"],
    ["datastore", "build", "--no-progress", "--tokenizer", "{missing}", "--corpus", "{corpus}", "-o", "{out}/st"],
    ["datastore", "verify", "{out}", "--tokenizer", "{missing}"],
    ["layerskip", "search", "--model", "{missing}", "-o", "{out}/skip.json"],
])
def test_a_mistyped_local_path_fails_at_once(tmp_path, capsys, command, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a regression fails fast instead of retrying the network
    corpus = tmp_path / "c.txt"
    corpus.write_text("a = 1\n")
    if command[:2] == ["datastore", "verify"]:
        _model_dir(tmp_path / "model")
        assert main(["datastore", "build", "--no-progress", "--tokenizer", str(tmp_path / "model"),
                     "--corpus", str(corpus), "-o", str(tmp_path / "st")]) == 0
        capsys.readouterr()
        out = tmp_path / "st"
    else:
        out = tmp_path
    args = [a.format(missing="my-tokeniser", corpus=corpus, out=out) for a in command]
    assert main(args) == 1
    line = _one_line_error(capsys)
    assert "'my-tokeniser'" in line and ("does not exist" in line or "not a model folder" in line)


def test_tokenizer_demo_means_the_demo_models_tokenizer(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("def f(x):\n    return x\n" * 20)
    assert main(["aded", "build", "--no-progress", "--tokenizer", "demo", "--corpus", str(corpus),
                 "-o", str(tmp_path / "m.aded")]) == 0
    assert (tmp_path / "m.aded").is_file()


# --- generate prints what decoding the whole sequence adds ----------------------------------------------------------

def _metaspace_tokenizer():
    """Every token a word with SentencePiece's leading '▁': decode() drops it from a call's first token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(30)]
    vocab = {"<unk>": 0, "</s>": 1, **{f"\u2581{w}": i + 2 for i, w in enumerate(words)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    raw.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>")


def test_generate_keeps_the_space_a_sentencepiece_token_starts_with(tmp_path, capsys):
    tok = _metaspace_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), eos_token_id=None, dtype=torch.float64)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    prompt = "w1 w2 w3"
    ids = tok(prompt, return_tensors="pt").input_ids
    new = PlainDecoder(model).generate(ids, max_new_tokens=6, do_sample=False).sequences[0, ids.shape[1]:].tolist()
    full = tok.decode(ids[0].tolist() + new, skip_special_tokens=True)
    expected = prompt + full[len(tok.decode(ids[0].tolist(), skip_special_tokens=True)):] + "\n"
    assert expected != prompt + tok.decode(new, skip_special_tokens=True) + "\n"  # the case decode(new) gets wrong
    assert main(["generate", "--model", str(tmp_path), "--dtype", "float64", "--max-new-tokens", "6",
                 "--temperature", "0", prompt]) == 0
    assert capsys.readouterr().out == expected


# --- layerskip search ----------------------------------------------------------------------------------------------

def test_layerskip_search_without_the_optimiser_names_the_extra_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "bayes_opt", None)  # as if bayesian-optimization were not installed
    # A model path that does not exist: the dependency is checked before the model is looked at.
    assert main(["layerskip", "search", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "s.json")]) == 1
    line = _one_line_error(capsys)
    assert "bayesian-optimization" in line and "draftkit[layerskip]" in line


def test_layerskip_search_input_errors_go_through_the_cli(tmp_path, capsys):
    _model_dir(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["layerskip", "search", "--model", str(tmp_path), "--prompts", str(empty),
                 "-o", str(tmp_path / "s.json")]) == 1
    assert "no calibration prompts" in _one_line_error(capsys)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\nnot json\n')
    assert main(["layerskip", "search", "--model", str(tmp_path), "--prompts", str(bad),
                 "-o", str(tmp_path / "s.json")]) == 1
    assert f"{bad}:2: not valid JSON" in _one_line_error(capsys)


# --- one-line messages ----------------------------------------------------------------------------------------------

def test_a_model_folder_without_tokenizer_files_is_one_line(tmp_path, capsys):
    tiny_model("llama", vocab_size=40).save_pretrained(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "x"]) == 1
    line = _one_line_error(capsys)
    assert "has no usable tokenizer (no tokenizer files)" in line and "save_pretrained" in line


# --- aded build reads .npy token ids --------------------------------------------------------------------------------

def test_aded_build_reads_npy_token_ids_like_datastore_build(tmp_path, capsys):
    from draftkit.sources.aded.fileformat import load_matrix
    from draftkit.sources.aded.table import build_matrix

    tok, _ = _model_dir(tmp_path / "model")
    ids = (np.arange(1000) * 7) % 50
    np.save(tmp_path / "ids.npy", ids)
    text = tmp_path / "c.txt"
    text.write_text("def f(x):\n    return x\n")
    out = tmp_path / "m.aded"
    assert main(["aded", "build", "--no-progress", "--tokenizer", str(tmp_path / "model"),
                 "--corpus", str(tmp_path / "ids.npy"), str(text), "-o", str(out)]) == 0
    matrix = load_matrix(out)
    text_ids = np.asarray(tok(text.read_text(), add_special_tokens=False)["input_ids"])
    expected = build_matrix([ids, text_ids], len(tok), eos_token_ids=[tok.eos_token_id])
    assert matrix.tokens == ids.size + text_ids.size
    assert np.array_equal(matrix.keys, expected.keys) and np.array_equal(matrix.successors, expected.successors)
    capsys.readouterr()
    np.save(tmp_path / "big.npy", np.array([1, 2, len(tok) + 5]))
    assert main(["aded", "build", "--no-progress", "--tokenizer", str(tmp_path / "model"),
                 "--corpus", str(tmp_path / "big.npy"), "-o", str(out), "--overwrite"]) == 1
    assert f"token id {len(tok) + 5} is outside the tokenizer's vocabulary" in _one_line_error(capsys)
    assert load_matrix(out).tokens == matrix.tokens  # the failed build left the earlier matrix as it was


def test_aded_build_keeps_an_existing_matrix_and_creates_the_output_folder(tmp_path, capsys):
    """aded build once replaced an existing matrix without a word, failed on a missing output folder after
    the whole build, and left a stray .tmp file next to a folder given as -o."""
    _model_dir(tmp_path / "model")
    text = tmp_path / "c.txt"
    text.write_text("def f(x):\n    return x\n")
    build = ["aded", "build", "--no-progress", "--tokenizer", str(tmp_path / "model"), "--corpus", str(text)]
    out = tmp_path / "new" / "sub" / "m.aded"
    assert main([*build, "-o", str(out)]) == 0 and out.is_file()
    before = out.read_bytes()
    capsys.readouterr()
    assert main([*build, "-o", str(out)]) == 1
    assert "exists; pass --overwrite to replace it" in _one_line_error(capsys) and out.read_bytes() == before
    assert main([*build, "-o", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert main([*build, "-o", str(tmp_path / "new")]) == 1
    assert "is a folder; give the matrix file to write" in _one_line_error(capsys)
    assert not (tmp_path / "new.tmp").exists()


def test_aded_build_overwrite_replaces_only_a_matrix(tmp_path, capsys):
    """--overwrite once replaced any file given as -o, a user's script included."""
    _model_dir(tmp_path / "model")
    text = tmp_path / "c.txt"
    text.write_text("def f(x):\n    return x\n")
    script = tmp_path / "mk.py"
    script.write_text("print('mine')\n")
    assert main(["aded", "build", "--no-progress", "--tokenizer", str(tmp_path / "model"), "--corpus", str(text),
                 "-o", str(script), "--overwrite"]) == 1
    assert "is not an ADED matrix; --overwrite only replaces a matrix file" in _one_line_error(capsys)
    assert script.read_text() == "print('mine')\n"


@pytest.mark.parametrize(("record", "match"), [
    ('{"text": {"a": 1}}', "field 'text' holds dict, expected text"),
    ('{"text": 5}', "field 'text' holds int, expected text"),
    ('{"body": "x"}', "no field 'text'"),
    ("", "the corpus has no tokens; nothing to build"),
])
@pytest.mark.parametrize("command", ["aded", "datastore"])
def test_both_builders_refuse_the_same_corpus_records(tmp_path, capsys, command, record, match):
    """aded build once tokenised a dict's repr and a number, and wrote an empty matrix, where
    datastore build refused them: both read corpus files with the same code now."""
    _model_dir(tmp_path / "model")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(record + "\n" if record else "")
    assert main([command, "build", "--no-progress", "--tokenizer", str(tmp_path / "model"), "--corpus", str(corpus),
                 "-o", str(tmp_path / "out")]) == 1
    assert match in _one_line_error(capsys)


def test_aded_build_reads_nested_jsonl_fields_like_datastore_build(tmp_path, capsys):
    _model_dir(tmp_path / "model")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"meta": {"body": "def f(x):\\n    return x\\n"}}\n')
    out = tmp_path / "m.aded"
    assert main(["aded", "build", "--no-progress", "--tokenizer", str(tmp_path / "model"), "--corpus", str(corpus),
                 "-o", str(out), "--jsonl-field", "meta.body"]) == 0
    from draftkit.sources.aded import load_matrix

    assert load_matrix(out).tokens > 3


@pytest.mark.parametrize("command", ["aded", "datastore"])
def test_a_folder_given_as_a_corpus_file_is_called_a_folder(tmp_path, capsys, command):
    _model_dir(tmp_path / "model")
    (tmp_path / "corp").mkdir()
    args = [command, "build", "--no-progress", "--tokenizer", str(tmp_path / "model"), "--corpus",
            str(tmp_path / "corp"), "-o", str(tmp_path / "out")]
    assert main(args) == 1
    assert f"corpus path {tmp_path / 'corp'} is a folder; pass its files" in _one_line_error(capsys)


# --- messages name command-line flags -------------------------------------------------------------------------------

def test_datastore_build_names_the_missing_flag(tmp_path, capsys):
    np.save(tmp_path / "ids.npy", np.arange(100) % 50)
    assert main(["datastore", "build", "--no-progress", "--corpus", str(tmp_path / "ids.npy"),
                 "-o", str(tmp_path / "st")]) == 1
    line = _one_line_error(capsys)
    assert "--vocab-size" in line and "vocab_size" not in line
    (tmp_path / "c.txt").write_text("a = 1\n")
    assert main(["datastore", "build", "--no-progress", "--vocab-size", "97", "--corpus", str(tmp_path / "c.txt"),
                 "-o", str(tmp_path / "st")]) == 1
    assert "--tokenizer" in _one_line_error(capsys)


@pytest.mark.parametrize(("flags", "message"), [
    (["--temperature", "-1"], "--temperature 0 decodes greedily"),
    (["--top-p", "2"], "--top-p must be in [0, 1]"),
    (["--top-k", "-1"], "--top-k must be >= 0"),
    (["--temperature", "inf"], "--temperature must be a finite number >= 0"),
])
def test_sampling_flags_are_checked_by_their_cli_names(capsys, flags, message):
    # A missing model: the flags are checked before any model is loaded.
    assert main(["generate", "--model", "/nonexistent/model", *flags, "x"]) == 1
    line = _one_line_error(capsys)
    assert message in line and "do_sample" not in line


def test_bench_rejects_a_negative_temperature_by_its_flag(capsys):
    assert main(["bench", "--model", "/nonexistent/model", "--temperature", "-0.5"]) == 1
    assert "--temperature 0 decodes greedily" in _one_line_error(capsys)


def test_datastore_verify_with_another_tokenizer_advises_cli_steps(tmp_path, capsys):
    _model_dir(tmp_path / "model")
    other = tmp_path / "other"
    _metaspace_tokenizer().save_pretrained(other)
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc def\n" * 10)
    assert main(["datastore", "build", "--no-progress", "--tokenizer", str(tmp_path / "model"),
                 "--corpus", str(corpus), "-o", str(tmp_path / "st")]) == 0
    capsys.readouterr()
    assert main(["datastore", "verify", str(tmp_path / "st"), "--tokenizer", str(other), "--no-progress"]) == 1
    line = _one_line_error(capsys)
    assert "built with another tokenizer" in line and "verify it without --tokenizer" in line
    assert "open it without a tokenizer" not in line
    assert main(["datastore", "verify", str(tmp_path / "st"), "--tokenizer", str(tmp_path / "model"),
                 "--no-progress"]) == 0


def test_bench_names_the_prompt_longer_than_the_context_and_runs_the_others(tmp_path, capsys):
    _model_dir(tmp_path / "model", context=32)
    questions = tmp_path / "question.jsonl"
    rows = [{"question_id": "short-one", "turns": ["abc"]}, {"question_id": "long-one", "turns": ["ab" * 40]}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["bench", "--model", str(tmp_path / "model"), "--prompts", str(questions), "--methods", "plain",
                 "--no-corpus", "--quiet", "--no-chart", "--max-new-tokens", "4",
                 "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "skipping 1 of 2 prompts longer than the model's context window (32 tokens): long-one" in err
    assert "Traceback" not in err
    runs = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert {r["prompt"] for r in runs} == {"short-one"}


def test_plugin_failures_are_one_line_warnings_and_listed_once(monkeypatch, capsys):
    """A broken plugin once printed Python's multi-line warning (file:line and source) on every
    command, and twice in `draftkit plugins`."""
    import warnings

    import draftkit.plugins as plugins

    real = plugins.build_registry

    def with_a_broken_plugin(**kwargs):
        registry = real(load_entry_points=False)
        registry.failures.append(plugins.PluginFailure("broken", "dk-broken", "import", "RuntimeError: boom"))
        warnings.warn("draftkit plugin 'broken' (package dk-broken) failed at import: RuntimeError: boom",
                      stacklevel=2)
        return registry

    monkeypatch.setattr(plugins, "build_registry", with_a_broken_plugin)
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert "FAILED plugin 'broken'" in out and "boom" not in err
    import subprocess

    script = ("import warnings, draftkit.cli as cli\n"
              "cli.cmd_plugins = lambda args: warnings.warn(\"draftkit plugin 'broken' failed at import\") or 0\n"
              "raise SystemExit(cli.main(['plugins']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stderr == "draftkit: warning: plugin 'broken' failed at import\n"


@pytest.mark.parametrize("command", ["generate", "bench"])
@pytest.mark.parametrize("value", ["-1", "two"])
def test_a_bad_thread_count_is_a_usage_error_not_a_traceback(capsys, command, value):
    """``--threads -1`` once reached torch.set_num_threads and ended in a RuntimeError traceback."""
    args = [command, "--model", "/nonexistent/model", "--threads", value] + (["x"] if command == "generate" else [])
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "--threads" in capsys.readouterr().err


def test_a_composite_option_without_its_member_names_the_members(capsys):
    assert main(["generate", "--model", "demo", "--source", "pld+aded", "--source-option", "matrix=m.aded", "x"]) == 1
    line = _one_line_error(capsys)
    assert "prefix each option with the member it is for (pld, aded), e.g. aded.matrix=m.aded" in line


def test_source_option_switches_are_booleans():
    from draftkit.cli import _parse_options

    options = _parse_options(["persist=no", "a=Off", "b=YES", "c=true", "d=3", "e=m.aded", "f=[1, 2]"])
    assert options == {"persist": False, "a": False, "b": True, "c": True, "d": 3, "e": "m.aded", "f": [1, 2]}
