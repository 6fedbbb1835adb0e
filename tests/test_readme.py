"""README's "Code map" stays true: every module listed once, every listed module exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _code_map() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([^`]+\.py)`: \S", section, flags=re.MULTILINE)


def test_code_map_lists_every_module_once() -> None:
    listed = _code_map()
    assert len(listed) == len(set(listed)), "a module is listed twice in README's Code map"
    modules = {
        p.relative_to(REPO).as_posix()
        for folder in ("fashionfail", "stages")
        for p in (REPO / folder).rglob("*.py")
        if p.name != "__init__.py"
    }
    missing = sorted(modules - set(listed))
    gone = sorted(set(listed) - modules)
    assert not missing, f"README.md Code map: add one line for each of {missing}"
    assert not gone, f"README.md Code map lists modules that do not exist: {gone}"
