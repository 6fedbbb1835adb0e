"""What a training run leaves for the tools a user compares runs with.

- `AimTags`: the Aim run carries tags for its stage (`stage:train-facere`), its DVC experiment
  (`exp:lower-lr`) and its status (`fashionfail.core.tracking`, shared with the evaluation runs):
  `running` while it trains, `finished` at the end, `interrupted` when it stopped early (an
  exception, Ctrl-C, or a kill found out by the next run), `resumed` when a later run continued it
  from last.ckpt.
- `BestScore`: the best monitored value (the checkpoint kept as best.ckpt) in a small metrics
  file with a name of its own, e.g. {"best_loss": 0.49}, so `dvc exp show` can show it in a
  short column (dvclive's metrics.json holds the last epoch's values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from fashionfail.core.jsonio import dump_json
from fashionfail.core.tracking import add_stage_tags, set_status


def _aim_run(trainer: pl.Trainer) -> Any:
    for logger in trainer.loggers:
        if type(logger).__name__ == "AimLogger":
            return logger.experiment
    return None


class AimTags(pl.Callback):
    """Stage, experiment and status tags on the Aim run (rank 0)."""

    def __init__(self, stage: str, resumed: bool):
        self.stage = stage
        self.resumed = resumed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run = _aim_run(trainer) if trainer.is_global_zero else None
        if run is None:
            return
        add_stage_tags(run, self.stage)
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
