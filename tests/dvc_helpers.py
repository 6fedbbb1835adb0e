"""Shared helpers for the tests that run DVC: a temporary git repo holding a copy of this project
with tiny params, and a command runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from train_helpers import REPO, TINY_DATA, TINY_TRAIN, build_once


def dvc_env() -> dict[str, str]:
    """This environment with the venv's bin first and no DVC variables of an outer `dvc exp run`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for var in ("DVC_EXP_NAME", "DVC_ROOT", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        env.pop(var, None)
    return env


def run(cmd, cwd, check=True, timeout=900) -> str:
    """Run a command (list, or str for the shell); stdout + stderr; AssertionError if it fails."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=dvc_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(cmd, str),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout + proc.stderr


def tiny_params(params: dict) -> dict:
    params["download"]["synthetic"] = TINY_DATA.model_dump()
    for section in ("train_facere", "finetune_facere_plus"):
        params[section].update(TINY_TRAIN)
    if "evaluate" in params:
        params["evaluate"].update(num_overlays=1)
    return params


def copy_files(root: Path) -> None:
    """Copy this project's tracked and untracked (not ignored) files to root."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)


def copy_project(root: Path) -> Path:
    """A git repo at root with this project's tracked and untracked (not ignored) files and tiny
    params, committed on branch main."""
    copy_files(root)
    params = tiny_params(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(
        "git init -q -b main && git add -A && git -c user.email=t@t -c user.name=t commit -qm init",
        root,
    )
    return root


def reproduced_project(tmp_path_factory) -> tuple[Path, str]:
    """(root, output of its `dvc repro`): copy_project, then the whole pipeline run once per test
    run and shared by every test (and xdist worker) that needs a finished project. Read only:
    copy it with copy_reproduced."""

    def build(root: Path) -> None:
        copy_project(root)
        (root.parent / f"{root.name}.log").write_text(run(["dvc", "repro"], root))

    root = build_once(tmp_path_factory, "reproduced", build)
    return root, (root.parent / f"{root.name}.log").read_text()


def copy_reproduced(src: Path, dest: Path) -> Path:
    """A copy of the finished project at dest: git repo, outputs, DVC cache and run-cache."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def commit_run(root: Path) -> Path:
    """Commit everything in the project at root (after a run: dvc.lock, metrics, plots)."""
    run("git add -A && git -c user.email=t@t -c user.name=t commit -qm run", root)
    return root
