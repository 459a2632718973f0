"""The benchmark harness end to end on a local model folder (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from draftkit.bench.loops import ends_in_loop
from draftkit.cli import main
from draftkit.testing.models import tiny_model
from draftkit.testing.tokenizers import char_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model + tokenizer saved and later loaded with the ordinary from_pretrained(path)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), eos_token_id=tok.eos_token_id)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_bench_cli_writes_results_and_checks_outputs(model_dir, tmp_path, capsys):
    questions = tmp_path / "question.jsonl"
    questions.write_text(
        "\n".join(json.dumps({"question_id": i, "category": cat, "turns": [text]}) for i, (cat, text) in
                  enumerate([("code", "def f(x):\n    return x + x + x"), ("prose", "abc abc abc"),
                             ("code", "in in re re in")]))
    )
    out = tmp_path / "out"
    rc = main(["bench", "--model", str(model_dir), "--prompts", str(questions), "--methods", "hf,hf-pld,pld,oracle",
               "--max-new-tokens", "12", "--out", str(out), "--no-corpus", "--quiet", "--dtype", "float64",
               "--strict"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    names = [m["name"] for m in results["methods"]]
    assert names == ["plain", "hf", "hf-pld", "pld", "oracle"]
    pld = next(m for m in results["methods"] if m["name"] == "pld")
    assert pld["mismatches"] == [] and pld["prompts"] == 3
    assert pld["mean_accepted_tokens"] >= 1.0
    assert set(pld["by_category"]) == {"code", "prose"}
    oracle = next(m for m in results["methods"] if m["name"] == "oracle")
    assert oracle["mismatches"] == [] and oracle["kind"] == "bound"
    assert oracle["mean_accepted_tokens"] > pld["mean_accepted_tokens"]  # it drafts the answer itself
    plain = next(m for m in results["methods"] if m["name"] == "plain")
    assert plain["mean_accepted_tokens"] == 1.0
    answers = [json.loads(line) for line in (out / "answers" / "pld.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [0, 1, 2]  # as the question file wrote them
    assert all(a["choices"][0]["new_tokens"][0] == sum(a["choices"][0]["accept_lengths"]) for a in answers)
    assert (out / "chart.png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert "pld" in table and "speedup" in table


def test_unknown_method_is_a_clear_error(model_dir, tmp_path, capsys):
    rc = main(["bench", "--model", str(model_dir), "--prompts", "quick", "--methods", "nope",
               "--out", str(tmp_path), "--no-corpus", "--quiet"])
    assert rc == 1
    assert "unknown benchmark method(s) nope" in capsys.readouterr().err


def test_loop_detector():
    assert ends_in_loop([1, 2, 3] * 10)
    assert ends_in_loop(list(range(50)) + [7] * 24)
    assert not ends_in_loop(list(range(60)))
    assert not ends_in_loop([1, 2] * 5)  # too short to call a loop


def test_peer_stop_strings_are_found_inside_a_block():
    """HF checks stop strings at the end of a block only; the bench's peers check every token."""
    import torch
    from transformers import StopStringCriteria

    from draftkit.bench.methods import _block_stop_criterion, _truncate_at_stop

    tok = char_tokenizer()
    prompt = tok("def f():\n", return_tensors="pt").input_ids[0].tolist()
    block = tok("  pass\ndef g", return_tensors="pt").input_ids[0].tolist()  # "\ndef" completes mid-block
    seq = torch.tensor([prompt + block])
    assert not StopStringCriteria(tok, ["\ndef"])(seq, None).item()  # HF: only the tail is checked
    assert _block_stop_criterion(tok, ["\ndef"], len(prompt))(seq, None).item()
    kept = _truncate_at_stop(prompt + block, len(prompt), tok, ["\ndef"], set())
    assert tok.decode(kept) == "  pass\ndef"
    assert _truncate_at_stop(prompt + block, len(prompt), tok, [], {block[2]}) == block[:3]


@pytest.mark.parametrize("method", ["hf-pld", "hf-assisted"])
def test_block_peers_stop_where_plain_decoding_stops(model_dir, method):
    """Float64 model (no near-ties): with stop strings, HF's block methods give plain decoding's tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from draftkit.bench.methods import GenSettings, HFMethod, PlainMethod
    from draftkit.engine import PlainDecoder

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("ab ab ab ab ab ab", return_tensors="pt").input_ids
    free = PlainMethod(PlainDecoder(model, tokenizer=tok), tok).run(ids, GenSettings(max_new_tokens=24))
    text = tok.decode(free.new_tokens)
    stop = text[6:8]  # a string plain decoding completes after a few tokens
    settings = GenSettings(max_new_tokens=24, stop_strings=(stop,))
    plain = PlainMethod(PlainDecoder(model, tokenizer=tok), tok).run(ids, settings)
    extra = {"prompt_lookup_num_tokens": 4} if method == "hf-pld" else {"assistant_model": model}
    peer = HFMethod(model, tok, method, extra).run(ids, settings)
    assert len(plain.new_tokens) < len(free.new_tokens)
    assert peer.new_tokens == plain.new_tokens


def test_repeats_start_from_the_same_learning_state():
    """An adaptive method must not learn a prompt in one repeat and exploit it in the next."""
    import torch

    from draftkit.bench.methods import GenSettings, RunResult
    from draftkit.bench.prompts import PromptCase
    from draftkit.bench.runner import BenchConfig, run_benchmark

    class Learner:
        name, kind = "learner", "draftkit"

        def __init__(self, seen=()):
            self.seen = list(seen)
            self.states_at_start = []

        def fork(self):
            twin = Learner(self.seen)
            twin.states_at_start = self.states_at_start  # one log for all twins
            return twin

        def run(self, ids, settings):
            self.states_at_start.append(tuple(self.seen))
            self.seen.append(int(ids[0, 0]))
            return RunResult(new_tokens=[1, 2], wall_time=0.01)

    learner = Learner()
    prompts = [PromptCase(id=str(i), text=str(i), category="x") for i in range(3)]
    run_benchmark([learner], prompts, lambda text: torch.tensor([[int(text)]]),
                  BenchConfig(settings=GenSettings(max_new_tokens=2), repeats=3, warmup=False), progress=False)
    assert learner.states_at_start == [(), (), (), (0,), (0,), (0,), (0, 1), (0, 1), (0, 1)]
    assert learner.seen == [0, 1, 2]  # the first run's state goes on to the next prompt


def test_a_method_whose_state_cannot_be_copied_still_runs_its_repeats():
    import threading

    import pytest
    import torch

    from draftkit.bench.methods import GenSettings, RunResult
    from draftkit.bench.prompts import PromptCase
    from draftkit.bench.runner import BenchConfig, run_benchmark

    class Locked:
        name, kind = "locked", "draftkit"

        def __init__(self):
            self.lock, self.runs = threading.Lock(), 0

        def fork(self):
            import copy

            return copy.deepcopy(self)  # a lock cannot be copied

        def run(self, ids, settings):
            self.runs += 1
            return RunResult(new_tokens=[1], wall_time=0.01)

    method = Locked()
    with pytest.warns(UserWarning, match="locked: its state cannot be copied"):
        run_benchmark([method], [PromptCase(id="0", text="0", category="x")], lambda t: torch.tensor([[0]]),
                      BenchConfig(settings=GenSettings(max_new_tokens=1), repeats=2, warmup=False), progress=False)
    assert method.runs == 2


def test_corpus_artefacts_use_the_models_own_eos_to_separate_documents():
    """The bench once split the corpus with the demo tokenizer's EOS token, which another model's
    tokenizer lacks: `draftkit bench --model PATH` stopped with a TypeError building ADED's matrix."""
    import numpy as np

    from draftkit.bench.corpus import corpus_documents
    from draftkit.demo.tokenizer import encode_documents

    tok = char_tokenizer()
    texts = ["def f():", "", "x = 1"]
    stream = encode_documents(tok, texts, separator_id=tok.eos_token_id)
    assert stream[0] == tok.eos_token_id and stream[-1] == tok.eos_token_id
    docs = corpus_documents(stream, tok.eos_token_id)
    assert [tok.decode(d.tolist()) for d in docs] == ["def f():", "x = 1"]
    assert all(d.dtype == np.int64 for d in docs)
    with pytest.raises(ValueError, match="separator_id"):
        encode_documents(tok, texts)  # no demo EOS token in this vocabulary, and no separator given


def test_a_tokenizer_without_eos_runs_the_bench_without_corpus_artefacts(tmp_path):
    from draftkit.bench.corpus import corpus_sources_for
    from draftkit.plugins import build_registry

    tok = char_tokenizer()
    tok.eos_token = None
    said: list[str] = []
    factories = corpus_sources_for(tok, build_registry(load_entry_points=False), len(tok), tmp_path, log=said.append)
    assert factories == {} and "no EOS token" in said[0]
    assert not any(tmp_path.iterdir())  # nothing tokenised or built


def _gpt2_with_a_context_of_40(tmp_path):
    """A GPT-2 (absolute positions: HF generate past the window fails) saved with a character tokenizer."""
    tok = char_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), eos_token_id=tok.eos_token_id, context=40)
    folder = tmp_path / "short-context"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return tok, folder


def test_prompts_longer_than_the_context_are_skipped_and_the_others_fit_it(tmp_path, capsys):
    """A model with a short context once stopped the whole benchmark at its first long prompt; and a
    prompt near the window let HF generate run past the window where plain decoding stops."""
    tok, folder = _gpt2_with_a_context_of_40(tmp_path)
    questions = tmp_path / "question.jsonl"
    texts = ["abc abc abc", "x" * 60, "def f(x): return x" * 2]  # 11, 60 (too long) and 36 characters
    questions.write_text("\n".join(json.dumps({"question_id": i, "category": "c", "turns": [t]})
                                   for i, t in enumerate(texts)))
    out = tmp_path / "out"
    rc = main(["bench", "--model", str(folder), "--prompts", str(questions), "--methods", "hf,pld",
               "--max-new-tokens", "12", "--out", str(out), "--no-corpus", "--quiet", "--dtype", "float64",
               "--no-chart", "--strict"])
    assert rc == 0
    assert "skipping 1 of 3 prompts longer than the model's context window (40 tokens): 1" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["n_prompts"] == 2
    runs = {(r["prompt"], r["method"]): r for r in results["runs"]}
    assert {p for p, _ in runs} == {"0", "2"}
    assert runs[("2", "plain")]["new_tokens"] == 40 + 1 - len(tok("def f(x): return x" * 2).input_ids)
    assert all(r["match"] in (True, None) for r in results["runs"])


def test_a_rerun_into_the_same_folder_leaves_no_files_of_the_earlier_run(model_dir, tmp_path):
    out = tmp_path / "out"
    questions = tmp_path / "question.jsonl"
    questions.write_text(json.dumps({"question_id": 0, "category": "c", "turns": ["abc abc ab"]}))
    common = ["bench", "--model", str(model_dir), "--prompts", str(questions), "--max-new-tokens", "4",
              "--out", str(out), "--no-corpus", "--quiet", "--dtype", "float64"]
    assert main([*common, "--methods", "pld,oracle"]) == 0
    assert {p.name for p in (out / "answers").iterdir()} == {"plain.jsonl", "pld.jsonl", "oracle.jsonl"}
    (out / "answers" / "notes.txt").write_text("mine")
    (out / "answers" / "vicuna-7b.jsonl").write_text("{}\n")  # another system's answers kept alongside
    assert main([*common, "--methods", "pld", "--no-chart"]) == 0
    assert {p.name for p in (out / "answers").iterdir()} == {"plain.jsonl", "pld.jsonl", "notes.txt",
                                                            "vicuna-7b.jsonl"}
    assert not (out / "chart.png").exists()


def test_the_warm_up_also_stays_inside_the_context_window(tmp_path):
    """The warm-up ran 8 new tokens on the first prompt whatever its length: HF generate then ran a
    GPT-2 past its position table (IndexError) on a first prompt near the window."""
    tok, folder = _gpt2_with_a_context_of_40(tmp_path)
    questions = tmp_path / "question.jsonl"
    near = "ab" * 19  # 38 characters: room for 3 new tokens
    assert len(tok(near).input_ids) == 38
    questions.write_text(json.dumps({"question_id": 0, "category": "c", "turns": [near]}))
    rc = main(["bench", "--model", str(folder), "--prompts", str(questions), "--methods", "hf,pld",
               "--max-new-tokens", "12", "--out", str(tmp_path / "out"), "--no-corpus", "--quiet",
               "--dtype", "float64", "--no-chart", "--strict"])
    assert rc == 0


def test_no_loop_speedup_leaves_out_the_prompts_whose_baseline_output_loops():
    """Loops flatter n-gram sources; the no-loop median must cover only the other prompts, the same
    ones for every method (judged on the baseline's output)."""
    from draftkit.bench.methods import GenSettings, RunResult
    from draftkit.bench.prompts import PromptCase
    from draftkit.bench.runner import BenchConfig, PromptRun, summarise

    class Named:
        def __init__(self, name, kind):
            self.name, self.kind = name, kind

    looping = [1, 2, 3] * 20
    plain_tokens = {"a": looping, "b": list(range(60)), "c": list(range(100, 160))}
    # As with sampling, the method's own answers differ: on "a" it does not loop, on "c" it does.
    fast_tokens = {"a": list(range(200, 260)), "b": list(range(60)), "c": [4, 5] * 30}
    fast = {"a": 10.0, "b": 2.0, "c": 3.0}  # how much faster the method is on each prompt
    runs = []
    for pid in plain_tokens:
        case = PromptCase(id=pid, text=pid, category="x")
        for name, seconds, tokens in (("plain", 1.0, plain_tokens[pid]), ("fast", 1.0 / fast[pid], fast_tokens[pid])):
            runs.append(PromptRun(case, name, RunResult(new_tokens=tokens, wall_time=seconds), [seconds], None,
                                  loops=ends_in_loop(tokens)))
    result = summarise([Named("plain", "baseline"), Named("fast", "draftkit")], runs,
                       BenchConfig(settings=GenSettings(max_new_tokens=60)))
    summary = {s.name: s for s in result.summaries}["fast"]
    assert summary.speedup == pytest.approx(3.0)  # median of 10, 2, 3
    assert summary.speedup_no_loop == pytest.approx(2.5)  # median of 2, 3: the baseline loops on "a" only
    assert summary.by_category["x"]["speedup_no_loop"] == pytest.approx(2.5)
    assert summary.loop_share == pytest.approx(1 / 3)  # its own answers: "c" loops


def test_time_split_comes_from_the_repeat_at_the_median_wall_time():
    """A cold first repeat (a datastore's pages read from disk) once put 14 s of drafting into a
    table whose speedups came from the warm median repeat."""
    import torch

    from draftkit.bench.methods import GenSettings, RunResult
    from draftkit.bench.prompts import PromptCase
    from draftkit.bench.runner import BenchConfig, run_benchmark

    class ColdThenWarm:
        name, kind = "cold", "draftkit"

        def __init__(self):
            self.calls = 0

        def fork(self):
            return self  # the shared call count decides each repeat's timing

        def run(self, ids, settings):
            self.calls += 1
            draft = {1: 5.0, 2: 0.3, 3: 0.2}[self.calls]
            return RunResult(new_tokens=[1, 2], wall_time=draft + 0.1, steps=1, drafted=1, accepted=1,
                             time_draft=draft, time_verify=0.1, time_other=0.0)

    method = ColdThenWarm()
    result = run_benchmark([method], [PromptCase(id="0", text="0", category="x")], lambda t: torch.tensor([[0]]),
                           BenchConfig(settings=GenSettings(max_new_tokens=2), repeats=3, warmup=False),
                           progress=False)
    summary = result.summaries[0]
    assert summary.time_draft == pytest.approx(0.3)  # wall times 5.1, 0.4, 0.3: the median is the second
    assert summary.total_time == pytest.approx(0.4)


def test_a_method_that_fails_is_left_out_and_the_others_finish(model_dir, tmp_path):
    """One broken third-party source once stopped the whole benchmark and nothing was written."""
    import numpy as np

    from draftkit.types import SourceCapabilities

    class FailsLater:
        """Drafts nothing on the first prompt, raises on the second (as a plugin bug would)."""
        name, capabilities = "fails-later", SourceCapabilities()

        def __init__(self):
            self.requests = 0

        def begin(self, prompt):
            self.requests += 1

        def propose(self, request):
            from draftkit.types import Draft

            if self.requests > 2:  # warm-up and the first prompt pass
                raise np.linalg.LinAlgError("singular table")
            return Draft.empty()

        def observe(self, feedback):
            pass

        def reset(self):
            pass

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from draftkit.bench.methods import DraftkitMethod, GenSettings, PlainMethod
    from draftkit.bench.prompts import PromptCase
    from draftkit.bench.runner import BenchConfig, run_benchmark
    from draftkit.engine import PlainDecoder, SpeculativeDecoder

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float64")  # float64: no near-tie flips
    tok = AutoTokenizer.from_pretrained(model_dir)
    methods = [PlainMethod(PlainDecoder(model, tokenizer=tok), tok),
               DraftkitMethod(SpeculativeDecoder(model, source=FailsLater(), budget=4, tokenizer=tok), tok, "bad"),
               DraftkitMethod(SpeculativeDecoder(model, source="pld", budget=4, tokenizer=tok), tok, "pld")]
    prompts = [PromptCase(id=f"p{i}", text=text, category="x") for i, text in enumerate(["abc abc ab", "in in i"])]
    said = []
    result = run_benchmark(methods, prompts, lambda text: tok(text, return_tensors="pt").input_ids,
                           BenchConfig(settings=GenSettings(max_new_tokens=8)), progress=False, warn=said.append)
    assert list(result.failed) == ["bad"] and "SourceError" in result.failed["bad"]
    assert any("bad failed on prompt p1" in message and "singular table" in message for message in said)
    assert [s.name for s in result.summaries] == ["plain", "pld"]
    assert {r.method for r in result.runs} == {"plain", "pld"}
    assert next(s for s in result.summaries if s.name == "pld").mismatches == []


def test_an_empty_methods_list_is_an_error_not_every_method(model_dir, tmp_path, capsys):
    rc = main(["bench", "--model", str(model_dir), "--prompts", "quick", "--methods", " , ",
               "--out", str(tmp_path), "--no-corpus", "--quiet"])
    assert rc == 1 and "--methods lists no method" in capsys.readouterr().err
