"""Plugin discovery through real entry points, including broken plugins.

The plugins are real installed distributions: each test writes a ``.dist-info``
folder with an ``entry_points.txt`` onto ``sys.path``, which is exactly what
``pip install`` produces, so ``importlib.metadata`` finds them the normal way.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path

import pytest

import draftkit
from draftkit.plugins import build_registry
from helpers import cached_model

GOOD_PLUGIN = '''
import numpy as np
import draftkit
from draftkit.types import Draft, SourceCapabilities


class Repeat:
    """Drafts the last token repeated: a trivial but real source."""
    name = "repeat"
    capabilities = SourceCapabilities()

    def __init__(self, length=3):
        self.length = length

    def begin(self, prompt):
        pass

    def propose(self, request):
        return Draft.chain([int(request.context[-1])] * min(self.length, request.max_depth))

    def observe(self, feedback):
        pass

    def reset(self):
        pass


@draftkit.hookimpl
def draftkit_register_sources(register):
    register("repeat", Repeat)
'''


def failing_hook(kind: str, message: str = "bad config") -> str:
    """Plugin source for a ``draftkit_register_<kind>`` hook that raises ``RuntimeError(message)``."""
    return f'''

@draftkit.hookimpl
def draftkit_register_{kind}(register):
    raise RuntimeError("{message}")
'''


def install_plugin(root: Path, dist: str, entry: str, module: str, code: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[draftkit]\n{entry} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return tmp_path


def test_builtin_parts_are_registered_as_a_plugin():
    registry = build_registry(load_entry_points=False)
    info = registry.info("source", "pld")
    assert info.plugin == "draftkit.builtin" and info.distribution == "draftkit"
    assert {"chain", "trie"} <= set(registry.names("tree builder"))
    assert "greedy" in registry.names("verifier")


def test_entry_point_plugin_is_found_and_works_in_the_engine(site):
    install_plugin(site, "draftkit-repeat", "repeat", "dk_repeat_plugin", GOOD_PLUGIN)
    registry = build_registry()
    info = registry.info("source", "repeat")
    assert info.plugin == "repeat" and info.distribution == "draftkit-repeat"
    model = cached_model("llama")
    out = draftkit.SpeculativeDecoder(model, source="repeat", registry=registry, budget=8,
                                      source_options={"length": 4}).generate([[1, 2, 3]], max_new_tokens=12)
    plain = draftkit.PlainDecoder(model).generate([[1, 2, 3]], max_new_tokens=12)
    assert out.sequences.tolist() == plain.sequences.tolist()
    assert out.stats.drafted > 0


def test_plugin_that_fails_to_import_is_reported_and_others_work(site):
    install_plugin(site, "draftkit-broken", "broken", "dk_broken_plugin", "raise ImportError('no numpy 9')\n")
    install_plugin(site, "draftkit-repeat", "repeat", "dk_repeat_plugin2", GOOD_PLUGIN)
    with pytest.warns(UserWarning, match="'broken' .*draftkit-broken.*no numpy 9"):
        registry = build_registry()
    assert [f.plugin for f in registry.failures] == ["broken"]
    assert registry.failures[0].stage == "import"
    assert "repeat" in registry.names("source") and "pld" in registry.names("source")
    with pytest.raises(draftkit.UnknownPartError, match="failed to load: broken"):
        registry.info("source", "something-from-broken")


def test_plugin_that_raises_while_registering_is_dropped_whole(site):
    install_plugin(site, "draftkit-half", "half", "dk_half_plugin", GOOD_PLUGIN + failing_hook("tree_builders"))
    with pytest.warns(UserWarning, match="'half'.*bad config"):
        registry = build_registry()
    assert registry.failures[0].plugin == "half"
    assert "repeat" not in registry.names("source")  # half a plugin is worse than none
    assert "pld" in registry.names("source")


def test_a_plugin_calling_sys_exit_at_import_is_a_named_failure(site):
    """SystemExit is not an Exception: such a plugin once ended every program that built a registry."""
    install_plugin(site, "draftkit-exits", "exits", "dk_exit_plugin", "import sys\nsys.exit('needs CUDA')\n")
    install_plugin(site, "draftkit-repeat", "repeat", "dk_repeat_plugin4", GOOD_PLUGIN)
    with pytest.warns(UserWarning, match="'exits'.*SystemExit: needs CUDA"):
        registry = build_registry()
    assert [f.plugin for f in registry.failures] == ["exits"]
    assert {"repeat", "pld"} <= set(registry.names("source"))


PLD_REPLACEMENT = '''
import draftkit
from draftkit.sources.pld import PromptLookup


class MyLookup(PromptLookup):
    pass


@draftkit.hookimpl
def draftkit_register_sources(register):
    register("pld", MyLookup)
'''


def test_a_plugin_part_with_a_built_in_name_replaces_it_and_says_so(site):
    """The built-in once won over the plugin (the registry read the plugins newest first) while the
    warning said the opposite."""
    install_plugin(site, "draftkit-mypld", "mypld", "dk_mypld_plugin", PLD_REPLACEMENT)
    with pytest.warns(UserWarning, match="source 'pld' from plugin 'mypld' replaces the one from 'draftkit.builtin'"):
        registry = build_registry()
    assert registry.info("source", "pld").plugin == "mypld"
    assert type(registry.source("pld")).__name__ == "MyLookup"


def test_a_failing_plugin_gives_back_the_parts_it_replaced(site):
    install_plugin(site, "draftkit-badpld", "badpld", "dk_badpld_plugin", PLD_REPLACEMENT + failing_hook("verifiers"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = build_registry()
    said = [str(w.message) for w in caught]
    assert any("'pld' from plugin 'badpld' replaces" in m for m in said)
    assert any("'badpld'" in m and "bad config" in m for m in said)
    assert registry.info("source", "pld").plugin == "draftkit.builtin"  # not gone with the plugin


def test_block_list_and_autoload_switch(site, monkeypatch):
    install_plugin(site, "draftkit-repeat", "repeat", "dk_repeat_plugin3", GOOD_PLUGIN)
    monkeypatch.setenv("DRAFTKIT_BLOCK_PLUGINS", "repeat")
    assert "repeat" not in build_registry().names("source")
    monkeypatch.delenv("DRAFTKIT_BLOCK_PLUGINS")
    monkeypatch.setenv("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "repeat" not in build_registry().names("source")


def test_import_draftkit_loads_no_plugin():
    import subprocess
    import sys

    code = (
        "import sys, draftkit; "
        "assert 'draftkit.sources.aded' not in sys.modules; "
        "assert draftkit.plugins.default_registry.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_autoload_switch_reads_false_as_on_and_errors_say_why_a_part_is_missing(site, monkeypatch):
    install_plugin(site, "draftkit-repeat", "repeat", "dk_repeat_plugin4", GOOD_PLUGIN)
    for value in ("false", "no", "off", "0", ""):
        monkeypatch.setenv("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", value)
        assert "repeat" in build_registry().names("source"), value
    monkeypatch.setenv("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", "true")
    with pytest.raises(draftkit.UnknownPartError, match="plugins are off .DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD"):
        build_registry().info("source", "repeat")
    monkeypatch.setenv("DRAFTKIT_DISABLE_PLUGIN_AUTOLOAD", "")
    monkeypatch.setenv("DRAFTKIT_BLOCK_PLUGINS", "repeat")
    with pytest.raises(draftkit.UnknownPartError, match="Blocked by DRAFTKIT_BLOCK_PLUGINS: repeat"):
        build_registry().info("source", "repeat")
    with pytest.raises(draftkit.UnknownPartError, match="kinds are 'source', 'tree builder', 'verifier'"):
        build_registry().names("sources")


def test_two_packages_with_one_entry_point_name_both_load(site):
    """One of them was once dropped without a word (pluggy names plugins by entry point)."""
    install_plugin(site, "dk-alpha", "ngram", "dk_alpha_plugin", GOOD_PLUGIN.replace('"repeat"', '"alpha"'))
    install_plugin(site, "dk-beta", "ngram", "dk_beta_plugin", GOOD_PLUGIN.replace('"repeat"', '"beta"'))
    with pytest.warns(UserWarning, match="both use the entry-point name 'ngram'"):
        registry = build_registry()
    assert {"alpha", "beta"} <= set(registry.names("source")) and not registry.failures


@pytest.mark.parametrize(("body", "match"), [
    ("@draftkit.hookimpl\ndef draftkit_register_source(register):\n    register('x', dict)\n",
     "unknown hook 'draftkit_register_source' .did you mean 'draftkit_register_sources'"),
    ("def draftkit_register_sources(register):\n    register('x', dict)\n", "lacks the @draftkit.hookimpl"),
])
def test_a_misspelt_or_unmarked_hook_is_a_named_failure(site, body, match):
    """pluggy ignores both, so such a plugin registered nothing and nothing said so."""
    install_plugin(site, "draftkit-typo", "typo", "dk_typo_plugin" + str(len(body)), "import draftkit\n" + body)
    with pytest.warns(UserWarning, match="'typo'"):
        registry = build_registry()
    assert [f.plugin for f in registry.failures] == ["typo"]
    assert re.search(match, registry.failures[0].error)


def test_a_factory_that_rejects_an_option_or_returns_nothing_is_named(site):
    code = GOOD_PLUGIN + '''

def strict(length=3):
    if length < 1:
        raise ValueError("length must be >= 1")
    return Repeat(length)


@draftkit.hookimpl
def draftkit_register_tree_builders(register):
    register("nothing", lambda **options: None)
'''
    code = code.replace('register("repeat", Repeat)', 'register("repeat", strict)')
    install_plugin(site, "draftkit-strict", "strict", "dk_strict_plugin", code)
    registry = build_registry()
    with pytest.raises(draftkit.PluginError, match="source 'repeat' .from plugin 'strict'.*ValueError: length must"):
        registry.create("source", "repeat", length=0)
    with pytest.raises(draftkit.PluginError, match="tree builder 'nothing' .from plugin 'strict'. returned None"):
        registry.create("tree builder", "nothing")


def test_a_broken_package_does_not_take_down_another_with_its_entry_point_name(site):
    install_plugin(site, "dk-broken", "ngram", "dk_broken_ngram", "raise ImportError('broken')\n")
    install_plugin(site, "dk-alpha", "ngram", "dk_alpha_ngram", GOOD_PLUGIN.replace('"repeat"', '"alpha"'))
    with pytest.warns(UserWarning):
        registry = build_registry()
    assert "alpha" in registry.names("source")
    assert [f.distribution for f in registry.failures] == ["dk-broken"]


def test_a_part_given_back_skips_plugins_that_failed_too(site):
    """A replaced the built-in pld, B replaced A's; A failed, then B: B once gave back A's part, so a
    failed plugin still provided pld."""
    def replacing(name: str, fails_at: str) -> str:
        return PLD_REPLACEMENT.replace("MyLookup", f"{name}Lookup") + failing_hook(fails_at, f"{name} breaks")

    install_plugin(site, "draftkit-a", "a", "dk_a_plugin", replacing("A", "tree_builders"))
    install_plugin(site, "draftkit-b", "b", "dk_b_plugin", replacing("B", "verifiers"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = build_registry()
    assert {f.plugin for f in registry.failures} == {"a", "b"}
    assert registry.info("source", "pld").plugin == "draftkit.builtin"


def test_a_name_the_command_line_cannot_spell_is_a_named_failure(site):
    install_plugin(site, "draftkit-plus", "plus", "dk_plus_plugin",
                   GOOD_PLUGIN.replace('register("repeat", Repeat)', 'register("my+src", Repeat)'))
    with pytest.warns(UserWarning, match=r"'plus' .*'my\+src'.*cannot spell"):
        registry = build_registry()
    assert "my+src" not in registry.names("source") and "pld" in registry.names("source")


RAISING_PLUGIN = GOOD_PLUGIN.replace(
    "        return Draft.chain([int(request.context[-1])] * min(self.length, request.max_depth))",
    "        raise KeyError('lost my table')",
)


def test_a_source_raising_in_propose_is_named_with_its_plugin_and_other_decoders_keep_working(site):
    """A bug in a plugin's source once surfaced as a bare KeyError from deep inside the decoder."""
    install_plugin(site, "draftkit-raising", "raising", "dk_raising_plugin", RAISING_PLUGIN)
    registry = build_registry()
    model = cached_model("llama")
    decoder = draftkit.SpeculativeDecoder(model, source="repeat", registry=registry, budget=8)
    with pytest.raises(draftkit.SourceError, match=r"source 'repeat' \(plugin 'raising' from package "
                       r"draftkit-raising\) failed in propose\(\): KeyError: 'lost my table' \(raised at "
                       r".*dk_raising_plugin.py:\d+\); report it .*DRAFTKIT_BLOCK_PLUGINS=raising") as caught:
        decoder.generate([[1, 2, 3]], max_new_tokens=6)
    assert isinstance(caught.value.__cause__, KeyError) and caught.value.source == "repeat"
    assert caught.value.origin == ("raising", "draftkit-raising") and caught.value.method == "propose"
    # In a composite the member is named, with the plugin the decoder knows it from.
    composite = draftkit.SpeculativeDecoder(model, source=["pld", "repeat"], registry=registry, budget=8)
    with pytest.raises(draftkit.SourceError, match=r"source 'repeat' \(a member of 'pld\+repeat'\) \(plugin "
                       r"'raising' from package draftkit-raising\) failed in propose"):
        composite.generate([[1, 2, 3]], max_new_tokens=6)
    pld = draftkit.SpeculativeDecoder(model, source="pld", registry=registry, budget=8)
    plain = draftkit.PlainDecoder(model).generate([[1, 2, 3]], max_new_tokens=6).sequences.tolist()
    assert pld.generate([[1, 2, 3]], max_new_tokens=6).sequences.tolist() == plain


def test_the_command_line_names_a_raising_plugin_source_in_one_line(site, tmp_path, capsys):
    """generate prints one error line (with the plugin, the file and line), after ending the text's line;
    bench leaves the method out, finishes the others and records it (--strict: exit 1)."""
    import json

    from draftkit.cli import main
    from draftkit.testing.models import tiny_model
    from draftkit.testing.tokenizers import char_tokenizer

    install_plugin(site, "draftkit-raising", "raising", "dk_raising_plugin2", RAISING_PLUGIN)
    tok = char_tokenizer()
    tiny_model("llama", vocab_size=len(tok), eos_token_id=tok.eos_token_id).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert main(["generate", "--model", str(tmp_path / "m"), "--source", "repeat", "--max-new-tokens", "5",
                 "abc abc"]) == 1
    captured = capsys.readouterr()
    assert captured.out.endswith("\n")  # the prompt was printed: the error starts on a line of its own
    errors = [line for line in captured.err.splitlines() if line.startswith("draftkit: error:")]
    assert len(errors) == 1 and "plugin 'raising' from package draftkit-raising" in errors[0]
    assert "dk_raising_plugin2.py:" in errors[0] and "Traceback" not in captured.err
    out = tmp_path / "bench"
    questions = tmp_path / "question.jsonl"
    questions.write_text("\n".join(json.dumps({"question_id": i, "turns": [t]}) for i, t in enumerate(["ab ab", "c c"])))
    rc = main(["bench", "--model", str(tmp_path / "m"), "--prompts", str(questions), "--methods",
               "pld,repeat", "--max-new-tokens", "6", "--out", str(out), "--no-corpus", "--quiet", "--no-chart",
               "--strict"])
    assert rc == 1
    results = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in results["methods"]] == ["plain", "pld"]
    assert "KeyError" in results["meta"]["failed_methods"]["repeat"]
    assert "repeat failed in the warm-up" in capsys.readouterr().err
