"""The Bayesian skip-set search, end to end on tiny float64 random models.

Measured speeds of tiny models are noise, so no test looks at which set wins:
they check that the search runs within its budget, produces a valid set bound
to its model, persists and resumes its state, and refuses foreign state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from draftkit.errors import MismatchedDataFileError
from draftkit.sources.layerskip import LayerSkip, SkipSet
from draftkit.sources.layerskip.search import search_skip_set, seed_sets
from helpers import cached_model

pytest.importorskip("bayes_opt", reason="the search needs the optional bayesian-optimization package")

PROMPTS = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8]]
FAST = dict(max_new_tokens=8, progress=False)


def test_search_end_to_end_returns_a_loadable_set(tmp_path: Path) -> None:
    model = cached_model("llama", layers=4)
    state = tmp_path / "state.json"
    result = search_skip_set(model, PROMPTS, budget_iterations=5, state_path=state, **FAST)
    assert result.measured == 5 and result.trials == 5
    skip = result.skip_set
    assert skip.num_layers == 4 and skip.skipped > 0
    assert skip.model is not None and skip.model.architecture == "llama"
    assert result.speedup > 0 and result.baseline_tokens_per_second > 0
    assert result.speedup == pytest.approx(result.tokens_per_second / result.baseline_tokens_per_second)
    assert skip.search["trials"] == 5 and skip.search["speedup"] == result.speedup
    # The best set is one of the measured ones, and the search tried the known-good seeds first.
    trials = json.loads(state.read_text())["trials"]
    assert len(trials) == 5
    assert [t["origin"] for t in trials[:3]] == ["seed"] * 3
    assert [trials[0]["attention"], trials[0]["mlp"]] == [[1, 2], [1, 2]]  # the default band
    assert [list(skip.key[0]), list(skip.key[1])] in [[t["attention"], t["mlp"]] for t in trials]
    # Saved and loaded for the same model; the source runs it.
    path = skip.save(tmp_path / "skip.json")
    assert LayerSkip(path).prepare(model) == skip
    # Refused for another model.
    with pytest.raises(MismatchedDataFileError):
        SkipSet.load(path, cached_model("llama", seed=1, layers=4))


def test_search_resumes_from_its_state(tmp_path: Path) -> None:
    model = cached_model("gpt2", layers=4)
    state = tmp_path / "state.json"
    search_skip_set(model, PROMPTS, budget_iterations=3, resume_from=state, **FAST)
    first = json.loads(state.read_text())
    again = search_skip_set(model, PROMPTS, budget_iterations=2, resume_from=state, **FAST)
    second = json.loads(state.read_text())
    assert again.trials == 5 and again.measured == 2
    assert second["trials"][:3] == first["trials"]
    assert second["baseline_tokens_per_second"] == first["baseline_tokens_per_second"]
    # Resumed trials are not measured again: the new ones are new sets.
    keys = [(tuple(t["attention"]), tuple(t["mlp"])) for t in second["trials"]]
    assert len(set(keys)) == len(keys)


def test_foreign_state_is_refused(tmp_path: Path) -> None:
    model = cached_model("qwen2", layers=4)
    state = tmp_path / "state.json"
    search_skip_set(model, PROMPTS, budget_iterations=1, resume_from=state, confirm=False, **FAST)
    with pytest.raises(MismatchedDataFileError, match="another model"):
        search_skip_set(cached_model("qwen2", seed=1, layers=4), PROMPTS, budget_iterations=1,
                        resume_from=state, **FAST)
    with pytest.raises(MismatchedDataFileError, match="prompts"):
        search_skip_set(model, PROMPTS[:1], budget_iterations=1, resume_from=state, **FAST)
    with pytest.raises(MismatchedDataFileError, match="clock"):
        search_skip_set(model, PROMPTS, budget_iterations=1, resume_from=state, clock="cpu", **FAST)


def test_time_budget_still_measures_one_set() -> None:
    model = cached_model("gpt_neox", layers=4)
    result = search_skip_set(model, PROMPTS[:1], budget_seconds=0.0, confirm=False, clock="cpu", **FAST)
    assert result.measured == 1 and result.skip_set.search["clock"] == "cpu"
    assert result.skip_set.key == SkipSet.middle_band(4).key


def test_seed_sets_are_distinct_and_non_empty() -> None:
    for layers in (1, 2, 4, 12, 32):
        seeds = seed_sets(layers)
        assert seeds and all(s.skipped for s in seeds)
        assert len({s.key for s in seeds}) == len(seeds)
        band = SkipSet.middle_band(layers)
        assert seeds[0] == band if band.skipped else seeds[0].key == ((), (layers // 2,))


def test_command_writes_a_skip_set_for_a_saved_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from draftkit.sources.layerskip.command import main

    model = cached_model("mistral", layers=4)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"input_ids": p}) for p in PROMPTS) + "\n")
    out = tmp_path / "new" / "folder" / "skip.json"  # created (a missing folder once failed after the first trial)
    code = main(["--model", str(model_dir), "--prompts", str(prompts), "--iterations", "2", "-o", str(out),
                 "--max-new-tokens", "6", "--dtype", "float64", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "best skip set" in printed and "speed-up" in printed
    skip = SkipSet.load(out, model)
    assert skip.search["trials"] == 2
    assert (out.parent / "skip.search.json").exists()
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    SkipSet.load(out, reloaded)  # another dtype of the same weights is the same model


def test_command_resolves_the_demo_model(tmp_path: Path) -> None:
    """`--model demo` is the shipped demo target, as in `draftkit bench` and `draftkit generate`."""
    from transformers import AutoModelForCausalLM

    from draftkit.demo import demo_model_path
    from draftkit.sources.layerskip.command import main

    out = tmp_path / "skip.json"
    code = main(["--model", "demo", "--iterations", "1", "-o", str(out), "--max-new-tokens", "4",
                 "--no-progress", "--threads", "1"])
    assert code == 0
    demo = AutoModelForCausalLM.from_pretrained(demo_model_path("target"))
    SkipSet.load(out, demo)  # recorded for the demo target


@pytest.mark.parametrize(("args", "message"), [
    (["--prompts", "{tmp}/missing.txt"], "--prompts {tmp}/missing.txt does not exist"),
    (["--prompts", "{tmp}"], "is a folder"),
    (["-o", "{tmp}"], "is a folder; give the skip-set file to write"),
])
def test_command_names_a_bad_path_before_any_trial(tmp_path: Path, args: list[str], message: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A missing prompts file once surfaced as a bare [Errno 2]; a folder as -o failed after the trials."""
    from draftkit.sources.layerskip.command import main

    given = [a.format(tmp=tmp_path) for a in args]
    if "-o" not in given:
        given += ["-o", str(tmp_path / "skip.json")]
    assert main(["--model", "demo", "--iterations", "1", "--no-progress", *given]) == 1
    err = capsys.readouterr().err
    assert re.search(re.escape(message.format(tmp=tmp_path)), err) and "Traceback" not in err
    # no trial ran: no state file where -o would put it (next to the file, or next to the folder)
    assert not (tmp_path / "skip.search.json").exists() and not tmp_path.with_suffix(".search.json").exists()


@pytest.mark.parametrize(("flag", "value"), [("--iterations", "0"), ("--max-new-tokens", "0"), ("--threads", "-1")])
def test_command_counts_out_of_range_are_usage_errors(tmp_path: Path, flag: str, value: str) -> None:
    """--iterations 0 once ran a trial anyway; --threads takes 0 for torch's default, as in generate and bench."""
    from draftkit.sources.layerskip.command import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "demo", flag, value, "-o", str(tmp_path / "s.json")])
    assert exit_info.value.code == 2
