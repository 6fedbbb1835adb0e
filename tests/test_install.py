"""`pip install .` into a fresh venv (not editable, no requirements file) gives a working package.

pyproject.toml alone must bring every import: each module imports, every command answers --help,
and `fashionfail predict` runs from a checkpoint and from an ONNX file exported in that venv.
The install is uv's `uv pip install <copy of the repo>`: it installs what `pip install .` does
(pyproject.toml's dependencies, resolved), with the versions held to requirements-lock.txt
(`--constraint`: it adds no package) and pip's configured sources (tools/lock.py), in ~10 s from
uv's cache where pip took ~2 min 15 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from test_deps import lock  # tools/lock.py
from test_onnx import decisive_checkpoint
from test_predict import write_images

from fashionfail.commands.main import COMMANDS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for p in (REPO / "fashionfail").rglob("*.py")
    if p.name != "__main__.py"  # it runs the command line; `python -m fashionfail` below
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> tuple[Path, dict]:
    """A venv with `uv pip install <copy of the repo>`; the environment that keeps the repo away."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"  # a copy: an in-tree build would write build/ and *.egg-info into REPO
    shutil.copytree(REPO / "fashionfail", src / "fashionfail", ignore=_pycache)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    venv.EnvBuilder().create(root / "venv")
    # PYTHONDONTWRITEBYTECODE (set on some machines) kept out too: the first command that
    # imports torch & co. writes their .pyc files and the later ones start ~10 s sooner.
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{root / 'venv' / 'bin'}{os.pathsep}{env['PATH']}"
    uv = [str(Path(sys.executable).parent / "uv"), "pip", "install", "-q"]
    target = ["--python", str(root / "venv" / "bin" / "python")]
    constraint = ["--constraint", str(lock.LOCK), *lock.pip_index_options()]
    proc = _run([*uv, *target, *constraint, str(src)], root, env, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, env


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _pycache(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__"]


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 600):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_module_imports_from_the_installed_package(fresh):
    root, env = fresh
    code = (
        "import importlib, json, sys\n"
        "files = {m: importlib.import_module(m).__file__ for m in sys.argv[1:]}\n"
        "print(json.dumps(files))\n"
    )
    proc = _run(["python", "-c", code, *MODULES], root, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = json.loads(proc.stdout)
    assert sorted(files) == MODULES and len(MODULES) > 40
    venv_dir = str(root / "venv")
    assert all(f.startswith(venv_dir) for f in files.values()), files  # not the repo's copy


def test_every_command_answers_help(fresh):
    root, env = fresh
    top = _run(["fashionfail", "--help"], root, env)
    assert top.returncode == 0 and all(name in top.stdout for name in COMMANDS), top
    assert _run(["python", "-m", "fashionfail", "--help"], root, env).stdout == top.stdout
    for name in COMMANDS:
        proc = _run(["fashionfail", name, "--help"], root, env)
        assert proc.returncode == 0, f"fashionfail {name} --help: {proc.stderr[-2000:]}"
        assert proc.stdout.startswith("usage:"), proc.stdout[:200]


def test_predict_from_a_checkpoint_and_from_an_exported_onnx_file(fresh):
    root, env = fresh
    work = root / "predict"
    ckpt = decisive_checkpoint(_mkdir(work) / "plus.ckpt")
    write_images(work / "images", [(64, 80), (70, 60)], seed=2)
    onnx_file = work / "plus.onnx"
    export = ["fashionfail", "export-onnx", "--checkpoint", str(ckpt)]
    proc = _run([*export, "--classes", "fashionfail", "--out", str(onnx_file)], work, env)
    assert proc.returncode == 0 and onnx_file.is_file(), proc.stderr[-3000:]
    results = {}
    for model in (ckpt, onnx_file):
        out = work / f"{model.suffix[1:]}.json"
        cmd = ["fashionfail", "predict", "--images", str(work / "images"), "--model", str(model)]
        proc = _run([*cmd, "--out", str(out), "--device", "cpu"], work, env)
        assert proc.returncode == 0, f"predict --model {model.name}: {proc.stderr[-3000:]}"
        results[model.suffix] = json.loads(out.read_text())
    for records in results.values():
        assert {r["file_name"] for r in records} == {"img_00.jpg", "img_01.jpg"}, records[:3]
    assert len(results[".ckpt"]) == len(results[".onnx"]) > 0
