"""Val mAP during training: torchmetrics' MeanAveragePrecision with a cheaper mask encoding.

torchmetrics encodes every mask with pycocotools over the whole image (a Fortran-order copy and a
scan of H x W pixels per detection: ~0.15 s per 1024 x 683 image with 100 detections, on the CPU
in the main process, while the GPU waits). `encode_masks` gives the same compressed RLE from the
columns each mask occupies: the extent is found on the masks' own device (the GPU in training),
only those columns reach the CPU, and the runs before and after them are added as counts.
`ValMeanAveragePrecision` is MeanAveragePrecision with that encoding in `update`; its state,
distributed gathering and `compute` (pycocotools or faster-coco-eval) are torchmetrics' own.
tests/test_val_map.py checks both against pycocotools / the stock metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision
from torchmetrics.detection.helpers import _fix_empty_tensors, _input_validator
from torchvision.ops import box_convert


def _column_runs(block: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a (H, w) bool block read column by column: alternating
    runs of 0s and 1s, starting with 0s (a 0-length run when the first pixel is 1)."""
    flat = block.T.ravel()  # Fortran order: x outer, y inner
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], edges, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return counts


def encode_masks(masks: torch.Tensor, mask_utils: Any = None) -> list[tuple[tuple[int, int], Any]]:
    """Compressed RLE of each of the (N, H, W) masks as `(size, counts)`, equal to
    `mask_utils.encode(np.asfortranarray(mask))` (pycocotools by default)."""
    if mask_utils is None:
        from pycocotools import mask as mask_utils
    n, h, w = masks.shape
    masks = masks.bool()
    # (N, W): the columns each mask occupies (amax of the bytes: much faster than any() on CPU)
    cols = masks.view(torch.uint8).amax(dim=1)
    first = torch.where(cols.amax(dim=1) > 0, cols.argmax(dim=1), w)
    last = w - 1 - cols.flip(1).argmax(dim=1)
    spans = torch.stack([first, last], 1).cpu().tolist()
    objs = []
    for k, (x0, x1) in enumerate(spans):
        if x0 >= w:  # empty mask: one run of 0s
            counts = [h * w]
        else:
            block = masks[k, :, x0 : x1 + 1].cpu().numpy()
            counts = _column_runs(block)
            counts[0] += x0 * h  # the 0s in the columns before
            tail = (w - 1 - x1) * h  # and after
            if tail:
                if len(counts) % 2:  # ends with 0s: extend that run
                    counts[-1] += tail
                else:
                    counts.append(tail)
        objs.append({"counts": counts, "size": [h, w]})
    if not objs:
        return []
    rles = mask_utils.frPyObjects(objs, h, w)
    return [(tuple(r["size"]), r["counts"]) for r in rles]


class ValMeanAveragePrecision(MeanAveragePrecision):
    """MeanAveragePrecision (bbox + segm, xyxy boxes) whose `update` encodes masks with
    `encode_masks`; everything else is torchmetrics'."""

    def __init__(self, backend: str = "pycocotools") -> None:
        super().__init__(iou_type=("bbox", "segm"), backend=backend)

    def update(self, preds: list[dict[str, torch.Tensor]], target: list[dict[str, Any]]) -> None:
        _input_validator(preds, target, iou_type=self.iou_type)
        utils = self._coco_backend.mask_utils
        for item in preds:
            self.detection_box.append(_xywh(item["boxes"]))
            self.detection_mask.append(tuple(encode_masks(item["masks"], utils)))
            self.detection_labels.append(item["labels"])
            self.detection_scores.append(item["scores"])
        for item in target:
            self.groundtruth_box.append(_xywh(item["boxes"]))
            self.groundtruth_mask.append(tuple(encode_masks(item["masks"], utils)))
            self.groundtruth_labels.append(item["labels"])
            self.groundtruth_crowds.append(item.get("iscrowd", torch.zeros_like(item["labels"])))
            self.groundtruth_area.append(item.get("area", torch.zeros_like(item["labels"])))


def _xywh(boxes: torch.Tensor) -> torch.Tensor:
    boxes = _fix_empty_tensors(boxes)
    return box_convert(boxes, in_fmt="xyxy", out_fmt="xywh") if boxes.numel() else boxes
