"""Aim runs: where they go (the project's Aim repository, also for experiments DVC runs in a copy)
and how they are tagged, the same for training and evaluation runs.

Tags: the DVC stage (`stage:train-facere`, `stage:evaluate@facere_ff`), the DVC experiment
(`exp:lower-lr`, from DVC_EXP_NAME, which `dvc exp run` sets) and a status: `running` while it
works, `finished` at the end, `interrupted` when it stopped early (an exception, Ctrl-C, or a kill
found out by the next run), `resumed` when a later training continued it from last.ckpt.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATUS_TAGS = ("running", "finished", "interrupted", "resumed")


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


def dvc_experiment() -> str | None:
    """The DVC experiment running this stage (env DVC_EXP_NAME, set by `dvc exp run`), or None."""
    return os.environ.get("DVC_EXP_NAME") or None


def run_name(name: str) -> str:
    """`name@<dvc experiment>` inside an experiment, else `name`."""
    exp = dvc_experiment()
    return f"{name}@{exp}" if exp else name


def tag_names(run: Any) -> set[str]:
    return {getattr(tag, "name", tag) for tag in run.tags}


def set_status(run: Any, status: str, keep: tuple[str, ...] = ()) -> None:
    """Replace the run's status tags by `status` (tags in `keep` stay)."""
    present = tag_names(run)
    for tag in STATUS_TAGS:
        if tag != status and tag not in keep and tag in present:
            run.remove_tag(tag)
    if status not in present:
        run.add_tag(status)


def add_stage_tags(run: Any, stage: str) -> None:
    """Tag the run `stage:<stage>` and, inside a DVC experiment, `exp:<name>`."""
    exp = dvc_experiment()
    present = tag_names(run)
    for tag in [f"stage:{stage}"] + ([f"exp:{exp}"] if exp else []):
        if tag not in present:
            run.add_tag(tag)


def _open_run(repo: Path, **kwargs) -> Any:
    from aim import Run  # slow to import: only the processes that log import it

    return Run(
        repo=str(repo),
        system_tracking_interval=None,
        log_system_params=False,
        capture_terminal_logs=False,
        **kwargs,
    )


def mark_interrupted(repo: Path, run_hash: str) -> None:
    """Tag an earlier run that was killed (and is not being resumed) `interrupted`."""
    try:
        run = _open_run(repo, run_hash=run_hash)
        set_status(run, "interrupted")
        run.close()
    except Exception as e:  # best effort: a missing or locked run must not stop training
        log.warning("could not tag Aim run %s interrupted: %s", run_hash, e)


@contextmanager
def stage_run(repo: Path, stage: str, experiment: str) -> Iterator[Any]:
    """An Aim run for the work inside the `with` block, tagged like a training run.

    Opened (status `running`) when the block starts, so Aim's duration is the work's; `finished`
    when the block ends, `interrupted` (and the exception goes on) when it raises. Named
    `experiment[@<dvc experiment>]`, with `dvc_experiment` recorded as a run param.
    """
    ensure_aim_repo(repo)  # parallel experiments may start together
    run = _open_run(repo, experiment=experiment)
    try:
        run.name = run_name(experiment)
        run["dvc_experiment"] = dvc_experiment() or ""
        add_stage_tags(run, stage)
        set_status(run, "running")
        try:
            yield run
        except BaseException:
            set_status(run, "interrupted")
            raise
        set_status(run, "finished")
    finally:
        run.close()
