"""Where Aim runs go: the project's Aim repository, also for experiments DVC runs in a copy."""

from __future__ import annotations

import os
from pathlib import Path


def default_aim_repo() -> Path:
    """The folder holding the project's `.aim`: $DVC_ROOT when DVC runs the stage, else `.`.

    `dvc repro` and `dvc exp run` run a stage with DVC_ROOT set to the repository root. A queued
    (`dvc exp run --queue`, `dvc queue start`) or `--temp` experiment runs in a throw-away copy of
    the repository under .dvc/tmp/exps, deleted afterwards; DVC_ROOT then still names the original
    project, so the experiment's Aim runs land in the project's `.aim` next to the others.
    """
    return Path(os.environ.get("DVC_ROOT") or ".")


def ensure_aim_repo(root: Path) -> Path:
    """Create the Aim repository `root/.aim` if it is missing, safely under concurrency.

    Aim's own creation is not: a run that opens the repository while another process is creating
    it finds no VERSION file yet and stops ("Trying to open repository ..., which is out of
    date"), which is what two queued experiments starting together on a fresh project do.
    """
    from aim.sdk.configs import get_aim_repo_name

    aim_dir = root / get_aim_repo_name()
    if (aim_dir / "VERSION").is_file():
        return root
    from aim.sdk.repo import Repo
    from filelock import FileLock

    aim_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(aim_dir / "init.lock")):
        if not (aim_dir / "VERSION").is_file():
            Repo.from_path(str(root), init=True)
    return root
