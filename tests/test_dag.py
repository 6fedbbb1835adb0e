"""dvc.yaml keeps its promise: a stage's code deps are exactly the in-repo modules its command runs
(so editing one reruns the stage, and editing anything else does not), and no stage has an output
that switches DVC's run-cache off."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from train_helpers import REPO

from fashionfail.core.code_closure import closure, module_file

# Modules a stage imports that change none of its outputs, so they are not deps (docs/pipeline.md,
# "What reruns what"). Each with the reason; nothing else may be missing from a stage's deps.
NOT_DEPS = {
    "fashionfail/__init__.py": "docstring and __version__ only; no stage output reads them",
    "fashionfail/data/__init__.py": "empty package marker",
    "fashionfail/eval/__init__.py": "empty package marker",
    "fashionfail/models/__init__.py": "empty package marker",
    "fashionfail/core/__init__.py": "empty package marker",
    "fashionfail/inference/__init__.py": "empty package marker",
    "fashionfail/commands/__init__.py": "empty package marker",
}
CODE_ROOTS = ("fashionfail", "stages")


def _stages() -> list:
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return list(repo.index.stages)


def entry_scripts(cmd: str | list[str], root: Path) -> set[Path]:
    """The Python files a stage command starts: `python X.py` or `python -m module`."""
    entries = set()
    for line in [cmd] if isinstance(cmd, str) else cmd:
        words = shlex.split(line)
        for i, word in enumerate(words[:-1]):
            if Path(word).name not in ("python", "python3"):
                continue
            if words[i + 1] == "-m":
                found = module_file(words[i + 2], root)
                assert found is not None, f"{line}: no module {words[i + 2]} in the repo"
                entries.add(found)
            else:
                entries.add(root / words[i + 1])
    return entries


def code_deps(stage) -> set[str]:
    """The stage's deps that are code: .py files or folders under fashionfail/ or stages/."""
    return {
        dep.def_path
        for dep in stage.deps
        if dep.def_path.split("/")[0] in CODE_ROOTS and not dep.def_path.endswith(".yaml")
    }


def dag_problems(stages, root: Path) -> list[str]:
    """One line per module a stage runs but does not depend on, and per code dep it never runs."""
    problems = []
    for stage in stages:
        entries = entry_scripts(stage.cmd, root)
        assert entries, f"{stage.addressing}: its command starts no Python script"
        runs = {str(p.relative_to(root.resolve())) for p in closure(entries, root)}
        deps = code_deps(stage)
        for module in sorted(runs - set(NOT_DEPS)):
            if not any(module == d or module.startswith(d.rstrip("/") + "/") for d in deps):
                problems.append(f"{stage.addressing}: runs {module}, which is not in its deps")
        for dep in sorted(deps):
            path = root / dep
            files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
            for f in files:
                rel = str(f.relative_to(root))
                if rel not in runs:
                    problems.append(
                        f"{stage.addressing}: dep {dep} holds {rel}, which it never runs"
                    )
    return problems


def test_every_stage_depends_on_exactly_the_code_it_runs():
    stages = _stages()
    assert {s.addressing for s in stages} >= {"download", "train-facere", "evaluate@facere_ff"}
    problems = dag_problems(stages, REPO)
    assert not problems, "\n".join(problems)


def test_the_check_names_a_missing_and_an_unused_dep(tmp_path):
    """The check itself: a stage whose deps miss a module and hold one it never imports."""
    (tmp_path / "fashionfail/sub").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    (tmp_path / "fashionfail/__init__.py").write_text("")
    (tmp_path / "fashionfail/sub/__init__.py").write_text("")
    (tmp_path / "fashionfail/a.py").write_text("def f():\n    from fashionfail.sub import b\n")
    (tmp_path / "fashionfail/sub/b.py").write_text("from . import c\n")
    (tmp_path / "fashionfail/sub/c.py").write_text("")
    (tmp_path / "fashionfail/unused.py").write_text("")
    (tmp_path / "stages/s.py").write_text("import fashionfail.a\n")

    class Dep:
        def __init__(self, path):
            self.def_path = path

    class Stage:
        addressing = "s"
        cmd = "python stages/s.py --out x"
        deps = [Dep(p) for p in ("stages/s.py", "fashionfail/a.py", "fashionfail/sub/b.py")]

    problems = [p for p in dag_problems([Stage], tmp_path) if "__init__" not in p]
    assert problems == ["s: runs fashionfail/sub/c.py, which is not in its deps"]
    Stage.deps.append(Dep("fashionfail/unused.py"))
    Stage.deps.append(Dep("fashionfail/sub/c.py"))
    problems = [p for p in dag_problems([Stage], tmp_path) if "__init__" not in p]
    assert problems == [
        "s: dep fashionfail/unused.py holds fashionfail/unused.py, which it never runs"
    ]
    Stage.deps[-2] = Dep("fashionfail/sub")  # a folder whose every module runs is fine
    problems = [p for p in dag_problems([Stage], tmp_path) if "__init__" not in p]
    assert problems == [], problems


def test_closure_follows_imports_in_functions_and_skips_type_checking(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/lazy.py").write_text("")
    (tmp_path / "pkg/typing_only.py").write_text("")
    (tmp_path / "main.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg import typing_only\n"
        "def run():\n    import pkg.lazy\n"
    )
    found = {p.name for p in closure([tmp_path / "main.py"], tmp_path)}
    assert found == {"main.py", "__init__.py", "lazy.py"}


def test_no_output_switches_the_run_cache_off():
    """DVC skips its run-cache for a stage with a `persist` output or a plain `cache: false`
    output (metrics and plots with `cache: false` keep it)."""
    for stage in _stages():
        for out in stage.outs:
            assert not out.persist, f"{stage.addressing}: {out.def_path} is persist"
            if not out.use_cache:
                assert out.metric or out.plot, (
                    f"{stage.addressing}: {out.def_path} is cache: false but not a metric or plot"
                )


@pytest.mark.parametrize("name, reason", sorted(NOT_DEPS.items()))
def test_modules_left_out_of_deps_are_documented(name, reason):
    text = (REPO / "docs" / "pipeline.md").read_text()
    section = text.split("\n## What reruns what", 1)[1].split("\n## ", 1)[0]
    assert f"`{name}`" in section, (
        f'docs/pipeline.md "What reruns what" must say why {name} is not a dep ({reason})'
    )
