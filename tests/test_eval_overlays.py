"""Overlay pictures: scaling, mask placement, score threshold, all segmentation formats."""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

from fashionfail.eval.overlays import MAX_SIDE, MIN_SIDE, class_colour, draw_detections

NAMES = {0: "shirt, blouse", 6: "pants"}


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _image(h: int, w: int) -> torch.Tensor:
    return torch.full((3, h, w), 128, dtype=torch.uint8)


def test_large_image_is_shrunk_and_mask_lands_in_place():
    h, w = 1400, 1000
    mask = np.zeros((h, w), np.uint8)
    mask[700:1100, 100:500] = 1  # lower left
    ann = {"category_id": 0, "bbox": [100, 700, 400, 400], "segmentation": _rle(mask), "score": 0.9}
    out = draw_detections(_image(h, w), [ann], NAMES)
    assert out.shape == (3, MAX_SIDE, round(w * MAX_SIDE / h))
    scale = MAX_SIDE / h
    inside = out[:, int(900 * scale), int(300 * scale)].tolist()
    outside = out[:, int(300 * scale), int(800 * scale)].tolist()
    assert outside == [128, 128, 128]
    assert inside != [128, 128, 128]
    # Blended towards the class colour: the red channel of red-ish class 0 rises, etc.
    colour = class_colour(0)
    for c in range(3):
        assert (inside[c] - 128) * (colour[c] - 128) >= 0


def test_small_image_is_enlarged_and_threshold_applies():
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 8:24] = 1
    anns = [
        {"category_id": 6, "bbox": [8, 8, 16, 16], "segmentation": _rle(mask), "score": 0.2},
    ]
    out = draw_detections(_image(32, 48), anns, NAMES, score_threshold=0.5)
    assert out.shape == (3, round(32 * MIN_SIDE / 48), MIN_SIDE)
    assert torch.all(out == 128)  # the only detection is below the threshold
    drawn = draw_detections(_image(32, 48), anns, NAMES, score_threshold=0.1)
    assert not torch.all(drawn == 128)


def test_polygon_and_uncompressed_rle_ground_truth():
    poly = {
        "category_id": 0,
        "bbox": [10, 10, 20, 20],
        "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]],
    }
    mask = np.zeros((300, 300), np.uint8)
    mask[100:200, 100:200] = 1
    # Uncompressed RLE: column-major run lengths starting with zeros.
    flat = mask.flatten(order="F")
    runs, current, n = [], 0, 0
    for v in flat:
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
    uncompressed = {
        "category_id": 6,
        "bbox": [100, 100, 100, 100],
        "segmentation": {"size": [300, 300], "counts": runs},
    }
    out = draw_detections(_image(300, 300), [poly, uncompressed], NAMES)
    assert out[:, 20, 20].tolist() != [128, 128, 128]  # inside the polygon
    assert out[:, 150, 150].tolist() != [128, 128, 128]  # inside the RLE square
    assert out[:, 250, 50].tolist() == [128, 128, 128]


def test_no_detection_above_the_threshold_is_marked():
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 8:24] = 1
    low = [{"category_id": 6, "bbox": [8, 8, 16, 16], "segmentation": _rle(mask), "score": 0.2}]
    out = draw_detections(
        _image(32, 48), low, NAMES, score_threshold=0.5, empty_note="no detections >= 0.5"
    )
    assert out[:, 2, 2].tolist() == [200, 0, 0]  # the red tag in the corner
    assert torch.all(out[:, -4:, -4:] == 128)  # the rest of the image untouched
    # A detection above the threshold: no tag.
    drawn = draw_detections(
        _image(32, 48), low, NAMES, score_threshold=0.1, empty_note="no detections >= 0.1"
    )
    assert drawn[:, 2, 2].tolist() != [200, 0, 0]
