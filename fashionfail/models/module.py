"""One LightningModule for Facere and Facere+: a torchvision Mask R-CNN plus its training loop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from fashionfail.core.categories import LabelSpace
from fashionfail.core.config import TrainConfig, parse_section
from fashionfail.models.factory import build_model
from fashionfail.models.val_map import ValMeanAveragePrecision

# torchmetrics' result keys -> our metric names (logged as val/<iou>_<name>).
_MAP_KEYS = {"map": "mAP", "map_50": "AP50", "map_75": "AP75", "mar_1": "AR1", "mar_100": "AR100"}


@contextlib.contextmanager
def losses_without_stat_updates(model: nn.Module) -> Iterator[None]:
    """Run `model` in train mode (detection models only return losses then) with every
    BatchNorm in eval mode, so validation never changes running statistics.

    Reference code switched the whole model to train mode for validation losses, which silently
    updates the BatchNorm statistics of the v2 heads on validation data.
    """
    was_training = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        yield
    finally:
        for m, mode in was_training.items():
            m.training = mode


@contextlib.contextmanager
def losses_in_train_mode(model: nn.Module) -> Iterator[None]:
    """The original's validation: `model.train()` for the losses (BatchNorm statistics update)."""
    was_training = {m: m.training for m in model.modules()}
    model.train()
    try:
        yield
    finally:
        for m, mode in was_training.items():
            m.training = mode


class MaskRCNNModule(pl.LightningModule):
    """Mask R-CNN training; `train` is a TrainConfig as a dict (stored in the checkpoint).

    `layout` is the module structure (see `build_model`); "pretrained" whenever the weights come
    from COCO, or from such a checkpoint with `finetune_init: original`. Stored in the checkpoint
    too, so `load_trained` rebuilds the same structure.
    """

    def __init__(self, train: dict[str, Any], layout: str = "scratch"):
        super().__init__()
        if train.get("weights") == "coco":
            layout = "pretrained"  # recorded as built, so Facere+ rebuilds Facere's structure
        self.save_hyperparameters()
        self.cfg: TrainConfig = parse_section(TrainConfig, dict(train), "checkpoint:train")
        self.space = LabelSpace(self.cfg.classes)
        self.model = build_model(
            self.cfg.arch,
            self.space.num_classes,
            min_size=self.cfg.min_size,
            max_size=self.cfg.max_size,
            coco=self.cfg.weights == "coco",
            layout=layout,
        )
        self.val_map = ValMeanAveragePrecision(backend=self.cfg.eval_map_backend)
        self._map_images = 0  # images scored for val mAP so far this validation epoch

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.model(images)

    def _losses(self, batch: tuple[list, list], stage: str) -> torch.Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            values = {k: round(v.item(), 4) for k, v in losses.items()}
            ids = [t["image_id"] for t in targets]
            raise FloatingPointError(f"non-finite {stage} loss {values} on image ids {ids}")
        n = len(images)  # the number of images, not the length of the (images, targets) tuple
        if stage == "val" and self.cfg.val_loss_mean == "per_batch":
            n = 1  # the original's weighting: every val batch counts the same, whatever its size
        sync = stage == "val"
        self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, batch_size=n, sync_dist=sync)
        self.log(f"{stage}/loss", loss, batch_size=n, prog_bar=True, sync_dist=stage == "val")
        return loss

    def training_step(self, batch: tuple[list, list], batch_idx: int) -> torch.Tensor:
        return self._losses(batch, "train")

    def _map_this_epoch(self) -> bool:
        every = self.cfg.eval_map_every_n_epochs
        return every > 0 and (self.current_epoch + 1) % every == 0

    def on_validation_epoch_start(self) -> None:
        self._map_images = 0

    def _map_subset(self, batch: tuple[list, list]) -> tuple[list, list]:
        """The part of `batch` scored for val mAP: the first `eval_map_images` images of this
        rank's (unshuffled) val loader, a fixed subset; all of them when it is 0."""
        images, targets = batch
        limit = self.cfg.eval_map_images
        if limit > 0:
            take = max(0, min(len(images), limit - self._map_images))
            images, targets = images[:take], targets[:take]
        self._map_images += len(images)
        return images, targets

    def validation_step(self, batch: tuple[list, list], batch_idx: int) -> None:
        if self.cfg.val_mode == "train":
            # The original: the whole model in train mode, so BatchNorm layers normalise with
            # batch statistics and update their running statistics on the validation images.
            with losses_in_train_mode(self.model):
                self._losses(batch, "val")
        else:
            with losses_without_stat_updates(self.model):
                self._losses(batch, "val")
        if self._map_this_epoch():
            images, targets = self._map_subset(batch)
            if not images:
                return
            preds = self.model(images)
            self.val_map.update(
                [
                    {
                        "boxes": p["boxes"],
                        "scores": p["scores"],
                        "labels": p["labels"],
                        "masks": p["masks"][:, 0] > 0.5,
                    }
                    for p in preds
                ],
                [
                    {"boxes": t["boxes"], "labels": t["labels"], "masks": t["masks"].bool()}
                    for t in targets
                ],
            )

    def on_validation_epoch_end(self) -> None:
        if not self._map_this_epoch():
            return
        result = self.val_map.compute()
        self.val_map.reset()
        metrics = {
            f"val/{iou}_{name}": result[f"{iou}_{key}"].float()
            for iou in ("bbox", "segm")
            for key, name in _MAP_KEYS.items()
        }
        self.log_dict(metrics, sync_dist=False)  # already synchronised by torchmetrics

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in self.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
