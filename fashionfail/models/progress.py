"""What a training run prints: progress lines in logs, and none of the noise a user cannot act on.

`dvc repro` and queued experiments write stdout to a log, not a terminal; there Lightning's
progress bar prints only its final frame. With stdout not a terminal, training prints plain lines
instead, `every_n_steps` and at the end of each epoch:

    epoch 1/12 step 10/38 loss 1.9542 8.3 img/s ETA 0:03:05
    epoch 1/12 done in 0:00:16, train/loss 1.7311 val/loss 1.5401 val/bbox_mAP 0.0123
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl

# Shown at the end of an epoch when logged (others stay in Aim/dvclive).
EPOCH_METRICS = ("train/loss", "val/loss", "val/bbox_mAP", "val/segm_mAP")


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if math.isfinite(seconds) else "?"


class LogProgress(pl.Callback):
    """Plain progress lines on stdout (rank 0): epoch k/K (1-based), step, loss, images/s, ETA."""

    def __init__(self, every_n_steps: int = 10, stream: Any = None):
        self.every = max(1, int(every_n_steps))
        self.stream = stream
        self._fit_start = self._last_time = 0.0
        self._epoch_start = 0.0
        self._steps_at_start = 0
        self._losses: list[float] = []
        self._images = 0

    def _print(self, trainer: pl.Trainer, text: str) -> None:
        if trainer.is_global_zero:
            print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = self._last_time = time.monotonic()
        self._steps_at_start = trainer.global_step  # > 0 when resumed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(float(loss))
        self._images += _batch_size(batch)
        if (batch_idx + 1) % self.every:
            return
        now = time.monotonic()
        rate = self._images / max(now - self._last_time, 1e-9)
        done = trainer.global_step - self._steps_at_start
        total = trainer.estimated_stepping_batches
        left = (now - self._fit_start) / done * (total - trainer.global_step) if done else math.nan
        mean = sum(self._losses) / len(self._losses) if self._losses else math.nan
        self._print(
            trainer,
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
            f"step {batch_idx + 1}/{_batches(trainer)} loss {mean:.4f} "
            f"{rate:.3g} img/s ETA {_duration(left)}",  # 3 digits: 0.0163 img/s on a CPU
        )
        self._losses, self._images, self._last_time = [], 0, now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after this epoch's validation, so val metrics are there.
        metrics = trainer.callback_metrics
        shown = " ".join(f"{k} {float(metrics[k]):.4f}" for k in EPOCH_METRICS if k in metrics)
        took = _duration(time.monotonic() - self._epoch_start)
        self._print(
            trainer,
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} done in {took}, {shown}",
        )


def _batch_size(batch: Any) -> int:
    images = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    try:
        return len(images)
    except TypeError:
        return 1


def _batches(trainer: pl.Trainer) -> str:
    n = trainer.num_training_batches
    return str(n) if isinstance(n, int) or math.isfinite(n) else "?"


def progress_settings(every_n_steps: int, interactive: bool | None = None) -> tuple[bool, list]:
    """(enable_progress_bar, callbacks): the bar on a terminal, LogProgress lines otherwise."""
    if interactive is None:
        interactive = sys.stdout.isatty()
    return (True, []) if interactive else (False, [LogProgress(every_n_steps)])


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


_QUIETED = False


def quiet_known_noise() -> None:
    """Silence warnings and notes that are either ours to avoid or nothing a user can act on.

    - the litlogger advertisement (printed on every run);
    - "Checkpoint directory ... exists and is not empty": the stage owns the folder and writes
      run.json there before training (stale checkpoints are removed; see train.py);
    - pkg_resources' deprecation warning from aim's import (aim's to fix; setuptools is pinned);
    - Lightning's internal `LeafSpec` deprecation under torch >= 2.10 (Lightning's to fix).
    """
    global _QUIETED
    if _QUIETED:
        return
    _QUIETED = True
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    tip = _DropMessages("💡 Tip")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).addFilter(tip)
