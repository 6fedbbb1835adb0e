"""The README and docs/ stay true: links and anchors resolve, the code map lists every module once,
the commands they show exist, and the README stays a short front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fashionfail.commands.main import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 150
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans: what renders as markdown."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation except - and _ dropped, spaces -> -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated slug gets -1, -2, ... as on GitHub."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.MULTILINE):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file does not exist or whose #anchor is no heading."""
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(REPO)})")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest.read_text())):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(REPO)})")
    return broken


def test_slug_follows_github() -> None:
    assert slug("Real data and the paper's settings") == "real-data-and-the-papers-settings"
    assert slug("Parallel experiments (`dvc queue`)") == "parallel-experiments-dvc-queue"
    assert slug("At real scale: data, validation") == "at-real-scale-data-validation"
    assert slug("`stages/`: the DVC stages") == "stages-the-dvc-stages"
    assert slug("snake_case and - dash") == "snake_case-and---dash"
    assert anchors("# A\n## A\n```\n# A\n```\n### A!\n") == {"a", "a-1", "a-2"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_and_anchors_resolve(page: Path) -> None:
    assert LINK.findall(_prose(page.read_text())), f"{page.name} links nowhere"
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_page_links_back_to_the_readme_and_is_linked_from_it(page: Path) -> None:
    assert "](../README.md)" in page.read_text(), f"{page.name}: link back to the README"
    assert f"](docs/{page.name})" in (REPO / "README.md").read_text(), f"README: link {page.name}"


def test_readme_is_a_short_front_page() -> None:
    n = len((REPO / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES})"


def _code_map() -> list[str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("\n## Code map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([^`]+\.py)`: \S", section, flags=re.MULTILINE)


def test_code_map_lists_every_module_once() -> None:
    listed = _code_map()
    assert len(listed) == len(set(listed)), "a module is listed twice in docs/architecture.md"
    modules = {  # every module; of the package markers, those with content
        p.relative_to(REPO).as_posix()
        for folder in ("fashionfail", "stages")
        for p in (REPO / folder).rglob("*.py")
        if p.name != "__init__.py" or p.read_text().strip()
    }
    missing = sorted(modules - set(listed))
    gone = sorted(set(listed) - modules)
    assert not missing, f"docs/architecture.md Code map: add one line for each of {missing}"
    assert not gone, f"docs/architecture.md Code map lists modules that do not exist: {gone}"


def _shown(pattern: str) -> set[str]:
    """What the pages show after a command name, in code and prose alike (the old paths in
    architecture's "Moved modules" aside)."""
    texts = [page.read_text().split("\n## Moved modules", 1)[0] for page in PAGES]
    return {m for text in texts for m in re.findall(pattern, text, flags=re.MULTILINE)}


def test_commands_shown_exist() -> None:
    """`fashionfail <command>` and `python -m <module>` as shown run: the command is one of
    `fashionfail --help`'s, the module a file of the repository."""
    commands = _shown(r"(?:`|^)(?:python -m )?fashionfail ([a-z][a-z-]*)")
    assert {"predict", "plots", "export-onnx", "report", "aim-up"} <= commands
    assert commands <= set(COMMANDS), f"no such command: {sorted(commands - set(COMMANDS))}"
    for module in _shown(r"python -m (fashionfail[\w.]*)"):
        path = REPO / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), module


def test_make_targets_shown_exist_and_make_exps_is_quoted_as_is() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    shown = _shown(r"(?:`|^)make ([a-z][a-z-]*)")
    assert {"repro", "test", "exps"} <= shown <= targets, sorted(shown - targets)
    exps = re.search(r"^exps:.*\n\t(.+)$", makefile, flags=re.MULTILINE)[1]
    assert exps in (REPO / "docs" / "experiments.md").read_text()


def test_files_named_exist() -> None:
    """Every .py file of the repository the pages name (`stages/train.py`, ...) exists."""
    named = _shown(r"\b((?:fashionfail|stages|benchmarks|tools|tests)/[\w/]+\.py)\b")
    assert len(named) > 20, named
    missing = sorted(n for n in named if not (REPO / n).is_file())
    assert not missing, f"the docs name files that do not exist: {missing}"
