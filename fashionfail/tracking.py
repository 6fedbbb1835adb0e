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
