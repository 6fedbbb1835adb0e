"""Atomic checkpoints: Lightning's ModelCheckpoint writing each checkpoint to a temporary file
beside it (`.<name>.tmp`) and renaming it into place, so a full disk or a kill never leaves a
truncated `best.ckpt` / `last.ckpt` that the next stage (or a resume) would load. Lightning's own
save writes the final path directly.
"""

from __future__ import annotations

import contextlib
import os
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class AtomicModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose files appear complete or not at all (temp file + rename)."""

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        folder, name = os.path.split(filepath)
        tmp = os.path.join(folder, f".{name}.tmp")
        try:
            trainer.save_checkpoint(tmp, self.save_weights_only)
            if trainer.is_global_zero:
                os.replace(tmp, filepath)
        except BaseException:
            if trainer.is_global_zero:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        trainer.strategy.barrier("AtomicModelCheckpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
