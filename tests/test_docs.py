"""Every ```python block in README.md and docs/*.md runs, so samples cannot rot.

Blocks of one file share a namespace and run in order, like a notebook.
A block whose first line is ``# not run: <reason>`` is skipped (e.g. a sample
that takes minutes); the reason is part of the text readers see. A block right
after ``<!-- excerpt: PATH -->`` quotes a file verbatim instead of running (the
plugin guide); the plugin's own tests check that it matches the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(<!-- excerpt: \S+ -->\n)?```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return [code for excerpt, code in BLOCK.findall(path.read_text(encoding="utf-8"))
            if not excerpt and not code.startswith("# not run:")]


@pytest.mark.parametrize("path", [p for p in DOCS if p.exists() and python_blocks(p)], ids=lambda p: p.name)
def test_code_samples_run(path: Path, tmp_path, monkeypatch):
    text = path.read_text(encoding="utf-8")
    if "demo_model_path" in text and not (ROOT / "src/draftkit/demo/models/target/config.json").exists():
        pytest.skip("the sample uses the shipped demo model, which is not trained into this checkout")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for i, block in enumerate(python_blocks(path)):
        try:
            exec(compile(block, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{path.name}, python block {i} failed: {exc!r}\n{block}") from exc


def test_every_hook_is_documented():
    """Each hookspec has a docstring and is named in the plugin guide."""
    from draftkit import hookspecs

    guide = (ROOT / "docs" / "plugin-guide.md")
    text = guide.read_text(encoding="utf-8") if guide.exists() else ""
    for name in dir(hookspecs):
        if name.startswith("draftkit_"):
            assert getattr(hookspecs, name).__doc__, f"hook {name} has no docstring"
            assert name in text, f"hook {name} is not explained in docs/plugin-guide.md"


EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize(
    "script, args",
    [
        ("compose_decoder.py", []),
        ("custom_source.py", []),
        ("bench_own_model.py", ["{demo}", "--methods", "plain,pld", "--limit", "2", "--max-new-tokens", "16",
                                "--out", "{out}"]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_examples_run(script, args, tmp_path):
    """The scripts in examples/ run as documented (on the shipped demo model, shortened)."""
    import subprocess
    import sys

    if not (ROOT / "src/draftkit/demo/models/target/config.json").exists():
        pytest.skip("the examples use the shipped demo model, which is not trained into this checkout")
    from draftkit.demo import demo_model_path

    argv = [a.format(demo=demo_model_path(), out=tmp_path / "out") for a in args]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
