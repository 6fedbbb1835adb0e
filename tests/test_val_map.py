"""Val mAP during training: faster-coco-eval agrees with pycocotools to 1e-4; the training's metric
(a cheaper mask encoding, pycocotools' RLE bit for bit) gives torchmetrics' stock results; mAP is
taken on a fixed subset (the first `eval_map_images` val images) while the val loss uses them
all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask
from torchmetrics.detection import MeanAveragePrecision
from train_helpers import tiny_cfg

from fashionfail.models.module import MaskRCNNModule
from fashionfail.models.val_map import ValMeanAveragePrecision, encode_masks


def _preds_and_targets(seed: int, n_images: int = 6):
    """Crowded predictions: several instances of a class per image, near-misses, false
    positives, one image without ground truth, one without predictions."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    h, w = 120, 160
    for k in range(n_images):
        n_gt = 0 if k == 0 else int(rng.integers(1, 6))
        gt_boxes, gt_masks = [], []
        for _ in range(n_gt):
            x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
            bw, bh = rng.integers(10, 40, 2)
            m = torch.zeros(h, w, dtype=torch.bool)
            m[y0 : y0 + bh, x0 : x0 + bw] = True
            gt_boxes.append([x0, y0, x0 + bw, y0 + bh])
            gt_masks.append(m)
        labels = torch.tensor(rng.integers(1, 4, n_gt))
        targets.append(
            {
                "boxes": torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": labels,
                "masks": torch.stack(gt_masks)
                if gt_masks
                else torch.zeros(0, h, w, dtype=torch.bool),
            }
        )
        p_boxes, p_masks, p_labels = [], [], []
        if k != 1:
            for (x0, y0, x1, y1), lab in zip(gt_boxes, labels.tolist(), strict=True):
                dx, dy = rng.integers(-6, 7, 2)
                p_boxes.append([x0 + dx, y0 + dy, x1 + dx, y1 + dy])
                p_labels.append(lab if rng.random() < 0.8 else 3)
            for _ in range(int(rng.integers(0, 4))):  # false positives
                x0, y0 = rng.integers(0, w - 30), rng.integers(0, h - 30)
                p_boxes.append([x0, y0, x0 + 25, y0 + 20])
                p_labels.append(int(rng.integers(1, 4)))
        for x0, y0, x1, y1 in p_boxes:
            m = torch.zeros(h, w, dtype=torch.bool)
            m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
            p_masks.append(m)
        preds.append(
            {
                "boxes": torch.tensor(p_boxes, dtype=torch.float32).reshape(-1, 4).clamp(0),
                "scores": torch.tensor(rng.uniform(0.05, 1, len(p_boxes)), dtype=torch.float32),
                "labels": torch.tensor(p_labels, dtype=torch.int64),
                "masks": torch.stack(p_masks)
                if p_masks
                else torch.zeros(0, h, w, dtype=torch.bool),
            }
        )
    return preds, targets


@pytest.mark.parametrize("seed", [0, 1])
def test_faster_coco_eval_equals_pycocotools(seed: int) -> None:
    preds, targets = _preds_and_targets(seed)
    results = {}
    for backend in ("pycocotools", "faster_coco_eval"):
        metric = MeanAveragePrecision(iou_type=("bbox", "segm"), backend=backend)
        metric.update(preds, targets)
        results[backend] = metric.compute()
    ref, fast = results["pycocotools"], results["faster_coco_eval"]
    keys = [k for k in ref if k.startswith(("bbox_", "segm_")) and ref[k].numel() == 1]
    assert len(keys) >= 20
    assert 0 < float(ref["segm_map"]) < 1 and 0 < float(ref["bbox_map"]) < 1
    for k in keys:
        assert float(fast[k]) == pytest.approx(float(ref[k]), abs=1e-4), k


def _awkward_masks(h: int = 37, w: int = 53) -> torch.Tensor:
    """Empty, full, single corner pixels, first/last columns and rows, ragged shapes, noise."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(12, h, w, dtype=torch.bool)
    masks[1] = True
    masks[2, 0, 0] = True
    masks[3, -1, -1] = True
    masks[4, :, 0] = True
    masks[5, :, -1] = True
    masks[6, 0, :] = True
    masks[7, -1, 3:9] = True
    masks[8, 5:20, 10:30] = torch.rand(15, 20, generator=g) > 0.4
    masks[9, 2:30, 40:] = True
    masks[10] = torch.rand(h, w, generator=g) > 0.5
    masks[11, 10:12, 20] = True  # one column, two pixels
    return masks


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_encode_masks_equals_pycocotools(backend: str) -> None:
    if backend == "pycocotools":
        utils = coco_mask
    else:
        from faster_coco_eval.core import mask as utils
    masks = _awkward_masks()
    got = encode_masks(masks, utils)
    want = [utils.encode(np.asfortranarray(m.numpy())) for m in masks]
    assert len(got) == len(want)
    for k, ((size, counts), ref) in enumerate(zip(got, want, strict=True)):
        assert list(size) == list(ref["size"]), k
        assert counts == ref["counts"], k
    assert encode_masks(torch.zeros((0, 4, 6), dtype=torch.bool)) == []
    # uint8 masks (as ground truth arrives) encode like bool ones
    assert encode_masks(masks.to(torch.uint8), utils) == got


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_val_metric_equals_torchmetrics(backend: str) -> None:
    ours = ValMeanAveragePrecision(backend=backend)
    stock = MeanAveragePrecision(iou_type=("bbox", "segm"), backend=backend)
    for seed in (3, 4):  # two updates, as two val batches
        preds, targets = _preds_and_targets(seed)
        ours.update(preds, [{**t, "masks": t["masks"].to(torch.uint8)} for t in targets])
        stock.update(preds, targets)
    got, want = ours.compute(), stock.compute()
    keys = [k for k in want if k.startswith(("bbox_", "segm_")) and want[k].numel() == 1]
    assert len(keys) >= 20
    for key in keys:
        assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-9), key
    assert 0.05 < float(want["segm_map"]) < 0.95  # a score that a wrong mask encoding moves


def test_val_map_on_a_fixed_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the first eval_map_images images reach the mAP; the val loss sees every batch."""
    module = MaskRCNNModule(tiny_cfg(eval_map_images=3).model_dump())
    preds, targets = _preds_and_targets(2, n_images=8)
    images = [torch.rand(3, 120, 160) for _ in range(8)]
    for t in targets:
        t["masks"] = t["masks"].to(torch.uint8)
    scored, losses = [], []
    monkeypatch.setattr(module, "_losses", lambda batch, stage: losses.append(len(batch[0])))
    monkeypatch.setattr(module.model, "forward", lambda imgs: [preds[0]] * len(imgs))
    monkeypatch.setattr(module.val_map, "update", lambda p, t: scored.append(len(p)))
    module.on_validation_epoch_start()
    for k in range(4):
        module.validation_step((images[2 * k : 2 * k + 2], targets[2 * k : 2 * k + 2]), k)
    assert losses == [2, 2, 2, 2] and scored == [2, 1]
    module.on_validation_epoch_start()  # next epoch: the same first images again
    module.validation_step((images[:2], targets[:2]), 0)
    assert scored == [2, 1, 2]
