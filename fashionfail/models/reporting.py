"""What a training run leaves for the tools a user compares runs with.

- `AimTags`: the Aim run carries tags for its stage (`stage:train-facere`), its DVC experiment
  (`exp:lower-lr`) and its status: `running` while it trains, `finished` at the end, `interrupted`
  when it stopped early (an exception, Ctrl-C, or a kill found out by the next run), `resumed` when
  a later run continued it from last.ckpt.
- `BestScore`: the best monitored value (the checkpoint kept as best.ckpt) in a small metrics
  file with a name of its own, e.g. {"best_loss": 0.49}, so `dvc exp show` can show it in a
  short column (dvclive's metrics.json holds the last epoch's values).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from fashionfail.jsonio import dump_json

log = logging.getLogger(__name__)

STATUS_TAGS = ("running", "finished", "interrupted", "resumed")


def _aim_run(trainer: pl.Trainer) -> Any:
    for logger in trainer.loggers:
        if type(logger).__name__ == "AimLogger":
            return logger.experiment
    return None


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


def mark_interrupted(repo: Path, run_hash: str) -> None:
    """Tag an earlier run that was killed (and is not being resumed) `interrupted`."""
    try:
        from aim import Run

        run = Run(
            run_hash=run_hash,
            repo=str(repo),
            system_tracking_interval=None,
            log_system_params=False,
            capture_terminal_logs=False,
        )
        set_status(run, "interrupted")
        run.close()
    except Exception as e:  # best effort: a missing or locked run must not stop training
        log.warning("could not tag Aim run %s interrupted: %s", run_hash, e)


class AimTags(pl.Callback):
    """Stage, experiment and status tags on the Aim run (rank 0)."""

    def __init__(self, stage: str, experiment: str | None, resumed: bool):
        self.tags = [f"stage:{stage}"] + ([f"exp:{experiment}"] if experiment else [])
        self.resumed = resumed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run = _aim_run(trainer) if trainer.is_global_zero else None
        if run is None:
            return
        present = tag_names(run)
        for tag in self.tags:
            if tag not in present:
                run.add_tag(tag)
        if self.resumed:
            set_status(run, "resumed")
        set_status(run, "running", keep=("resumed",))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run = _aim_run(trainer) if trainer.is_global_zero else None
        if run is not None:
            set_status(run, "finished", keep=("resumed",))

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        run = _aim_run(trainer) if trainer.is_global_zero else None
        if run is not None:
            set_status(run, "interrupted", keep=("resumed",))


class BestScore(pl.Callback):
    """Writes {key: best monitored value} to `path` at the end of training (rank 0)."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ckpt = trainer.checkpoint_callback
        if not trainer.is_global_zero or ckpt is None or ckpt.best_model_score is None:
            return
        dump_json({self.key: float(ckpt.best_model_score)}, self.path, indent=True)
