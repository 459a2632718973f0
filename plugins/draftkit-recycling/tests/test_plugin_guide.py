"""The plugin guide's code excerpts are real: each must occur verbatim in the file it names.

``docs/plugin-guide.md`` walks through this package. A block introduced by
``<!-- excerpt: PATH -->`` (PATH relative to the repository root) must appear,
character for character, in that file, so the guide cannot drift from the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
GUIDE = REPO / "docs" / "plugin-guide.md"
EXCERPT = re.compile(r"<!-- excerpt: (?P<path>\S+) -->\n```[a-z]*\n(?P<code>.*?)```", re.DOTALL)


def excerpts() -> list[tuple[str, str]]:
    if not GUIDE.exists():  # the package checked out on its own, without draftkit's docs
        return []
    return [(m["path"], m["code"]) for m in EXCERPT.finditer(GUIDE.read_text())]


def test_the_guide_has_excerpts() -> None:
    if not GUIDE.exists():
        pytest.skip("docs/plugin-guide.md is not part of this checkout")
    assert len(excerpts()) >= 6


@pytest.mark.parametrize(("path", "code"), excerpts(), ids=lambda v: v if "/" in v else "")
def test_excerpt_matches_the_code(path: str, code: str) -> None:
    source = (REPO / path).read_text()
    assert code in source, f"docs/plugin-guide.md quotes {path}, but the file no longer contains:\n{code}"
