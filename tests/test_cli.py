"""`draftkit generate` end to end on a local model folder."""

from __future__ import annotations

import pytest
import torch

from draftkit.cli import main
from draftkit.engine import PlainDecoder
from draftkit.testing.models import tiny_model
from draftkit.testing.tokenizers import char_tokenizer


def _model_dir(tmp_path):
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), eos_token_id=None, dtype=torch.float64)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return tok, model


def test_generate_with_a_composite_source_prints_plain_decodings_text(tmp_path, capsys):
    tok, model = _model_dir(tmp_path)
    prompt = "abcabcabcab"
    rc = main(["generate", "--model", str(tmp_path), "--dtype", "float64", "--source", "pld+aded",
               "--source-option", "pld.max_ngram=2", "--max-new-tokens", "20", prompt])
    out = capsys.readouterr()
    assert rc == 0
    assert "[pld+aded]" in out.err and "finish: length" in out.err
    ids = tok(prompt, return_tensors="pt").input_ids
    expected = PlainDecoder(model).generate(ids, max_new_tokens=20).sequences[0, ids.shape[1]:]
    assert out.out == prompt + tok.decode(expected.tolist(), skip_special_tokens=True) + "\n"


def test_composite_options_must_name_their_member(tmp_path, capsys):
    _model_dir(tmp_path)
    rc = main(["generate", "--model", str(tmp_path), "--source", "pld+aded", "--source-option", "max_ngram=2",
               "x"])
    assert rc != 0
    assert "pld.max_ngram=2" in capsys.readouterr().err


def _greedy_text(tok, model, prompt, new):
    ids = tok(prompt, return_tensors="pt").input_ids
    out = PlainDecoder(model).generate(ids, max_new_tokens=new, do_sample=False).sequences[0, ids.shape[1]:]
    return prompt + tok.decode(out.tolist(), skip_special_tokens=True) + "\n"


def test_temperature_zero_is_greedy_and_a_sampling_generation_config_is_followed(tmp_path, capsys):
    """vLLM's convention for --temperature 0; model.generate's for a config with do_sample: true."""
    from transformers import GenerationConfig

    tok, model = _model_dir(tmp_path)
    prompt = "abcabcab"
    base = ["generate", "--model", str(tmp_path), "--dtype", "float64", "--max-new-tokens", "24"]
    assert main([*base, "--temperature", "0", prompt]) == 0
    assert capsys.readouterr().out == _greedy_text(tok, model, prompt, 24)
    GenerationConfig(do_sample=True, temperature=5.0, top_k=None).save_pretrained(tmp_path)
    sampled = set()
    for seed in ("1", "2", "3"):
        assert main([*base, "--seed", seed, prompt]) == 0
        out = capsys.readouterr()
        assert "generation_config asks" in out.err
        sampled.add(out.out)
    assert len(sampled) > 1  # hot sampling with three seeds: not greedy decoding
    assert main([*base, "--temperature", "0", prompt]) == 0
    assert capsys.readouterr().out == _greedy_text(tok, model, prompt, 24)


def test_processor_options_follow_model_generate(tmp_path, capsys):
    """--no-repeat-ngram-size / --repetition-penalty / --min-new-tokens mean what they mean in model.generate."""
    tok, model = _model_dir(tmp_path)
    prompt = "abcabcab"
    ids = tok(prompt, return_tensors="pt").input_ids
    expected = model.generate(ids, max_new_tokens=20, do_sample=False, no_repeat_ngram_size=2,
                              repetition_penalty=1.3, attention_mask=torch.ones_like(ids), pad_token_id=0)
    text = prompt + tok.decode(expected[0, ids.shape[1]:].tolist(), skip_special_tokens=True) + "\n"
    assert text != _greedy_text(tok, model, prompt, 20)  # the options do change this output
    rc = main(["generate", "--model", str(tmp_path), "--dtype", "float64", "--max-new-tokens", "20",
               "--source", "pld+aded", "--no-repeat-ngram-size", "2", "--repetition-penalty", "1.3", prompt])
    assert rc == 0 and capsys.readouterr().out == text


def test_stop_strings_understand_escapes(tmp_path, capsys):
    tok, model = _model_dir(tmp_path)
    prompt = "abcabcab"
    text = _greedy_text(tok, model, prompt, 30)[len(prompt):-1]
    stop = text[3:5]  # two characters the greedy continuation produces
    typed = stop.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    rc = main(["generate", "--model", str(tmp_path), "--dtype", "float64", "--max-new-tokens", "30",
               "--stop", typed, prompt])
    out = capsys.readouterr()
    assert rc == 0 and "finish: stop_string" in out.err
    assert out.out == prompt + text[: text.index(stop) + len(stop)] + "\n"


def test_user_errors_are_one_line_messages(tmp_path, capsys):
    _model_dir(tmp_path)
    base = ["generate", "--model", str(tmp_path), "--dtype", "float64"]
    for args, message in [
        (["--source-option", "max_ngram=abc", "x"], "max_ngram must be an integer"),
        (["--source", "aded", "--source-option", f"matrix={tmp_path / 'none.aded'}", "x"], "no ADED matrix"),
        (["--source", "aded", "--source-option", f"matrix={tmp_path}", "x"], "is a folder, not an ADED matrix"),
        (["--source", "rest", "x"], "--source-option path=STORE"),
    ]:
        assert main(base + args) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, args


def test_a_folder_without_a_tokenizer_is_named(tmp_path, capsys):
    model = tiny_model("llama", vocab_size=40)
    model.save_pretrained(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "x"]) == 1
    assert "has no usable tokenizer" in capsys.readouterr().err


def test_chat_wraps_the_prompt_in_the_chat_template(tmp_path, capsys):
    tok, model = _model_dir(tmp_path)
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}" \
                        "{% if add_generation_prompt %}<a>{% endif %}"
    tok.save_pretrained(tmp_path)
    templated = "<user>abcab\n<a>"
    expected = _greedy_text(tok, model, templated, 12)[len(templated):]
    rc = main(["generate", "--model", str(tmp_path), "--dtype", "float64", "--max-new-tokens", "12", "--chat",
               "abcab"])
    assert rc == 0 and capsys.readouterr().out == "abcab" + expected


def test_chat_without_a_template_is_a_clear_error(tmp_path, capsys):
    _model_dir(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "--chat", "hi"]) != 0
    assert "no chat template" in capsys.readouterr().err
    assert main(["bench", "--model", str(tmp_path), "--chat", "--methods", "plain", "--no-corpus"]) != 0
    assert "no chat template" in capsys.readouterr().err


def test_generate_takes_its_length_from_the_generation_config_unless_told(tmp_path, capsys):
    """--max-new-tokens once always passed 128, so a model folder's generation_config length was ignored."""
    tok, model = _model_dir(tmp_path)
    model.generation_config.max_new_tokens = 7
    model.generation_config.save_pretrained(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "--dtype", "float64", "abcab"]) == 0
    assert "7 tokens in" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path), "--dtype", "float64", "--max-new-tokens", "3", "abcab"]) == 0
    assert "3 tokens in" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--repeats", "0"], ["--max-new-tokens", "0"], ["--limit", "-2"]])
def test_bench_counts_below_one_are_usage_errors(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *flags])
    assert exit_info.value.code == 2 and flags[0] in capsys.readouterr().err


def test_bench_refuses_an_output_path_that_is_a_file_before_any_work(tmp_path, capsys):
    taken = tmp_path / "results"
    taken.write_text("mine")
    assert main(["bench", "--model", str(tmp_path / "no-model-here"), "--out", str(taken)]) == 1
    assert "is a file" in capsys.readouterr().err and taken.read_text() == "mine"
