"""The layout of fashionfail/: layer folders only, and import-linter contracts that hold today and
break on the imports they forbid."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fashionfail"
LAYERS = {"commands", "report", "eval", "inference", "models", "data", "core"}
CONTRACTS = {
    "layers": (
        "Layers: commands > report > eval > inference > models > data > core"
        " (a layer imports only those below it)"
    ),
    "data": "data never imports models, inference, eval, report or commands",
    "library": "nothing in the library imports a command module",
    "core": "core imports nothing of the package outside core",
    "cycles": "no import circle between sibling modules or packages",
}


def _lint(root: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _status(output: str) -> dict[str, str]:
    """{contract key: "KEPT" or "BROKEN"} from lint-imports' summary (names may wrap lines)."""
    flat = " ".join(output.split())
    found = {}
    for key, name in CONTRACTS.items():
        at = flat.find(name)
        assert at >= 0, f"contract {name!r} missing from lint-imports' output:\n{output}"
        found[key] = flat[at + len(name) :].split()[0]
    return found


def test_the_package_top_is_layer_folders_only():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert modules == ["__init__.py", "__main__.py"]
    assert folders == LAYERS


def test_the_contracts_hold():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(_status(proc.stdout).values()) == {"KEPT"}


@pytest.mark.parametrize(
    "module, line, breaks",
    [
        ("data/coco_io.py", "import fashionfail.models.factory", {"layers", "data", "cycles"}),
        ("eval/coco.py", "import fashionfail.commands.plots", {"layers", "library", "cycles"}),
        ("core/jsonio.py", "import fashionfail.data.layout", {"layers", "core", "cycles"}),
        ("data/crop.py", "import fashionfail.data.presets", {"cycles"}),
    ],
)
def test_a_forbidden_import_breaks_its_contracts(tmp_path, module, line, breaks):
    shutil.copytree(PACKAGE, tmp_path / "fashionfail", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "fashionfail" / module, "a") as f:
        f.write(f"\n{line}\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    status = _status(proc.stdout)
    assert {key for key, value in status.items() if value == "BROKEN"} == breaks, proc.stdout
