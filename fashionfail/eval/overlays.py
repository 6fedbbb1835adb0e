"""Pictures of detections: masks, boxes and labels drawn on the image (torchvision.utils).

Images are scaled so their long side is between MIN_SIDE and `max_side` pixels before drawing:
labels stay legible on 2400 px FashionFail images and on the 128 px synthetic ones, and the PNGs
stay small enough to browse in `dvc plots` and Aim.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

MAX_SIDE = 640
MIN_SIDE = 256
TITLE_HEIGHT = 18
GAP = 8


def class_colour(category_id: int) -> tuple[int, int, int]:
    """A fixed, well-spread colour per category id (golden-ratio hue steps)."""
    hue = (category_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def decode_mask(segmentation: dict | list, height: int, width: int) -> np.ndarray:
    """COCO segmentation (compressed / uncompressed RLE or polygons) -> uint8 mask [H, W]."""
    if isinstance(segmentation, list):  # polygons: one RLE per part, merged
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {
            "size": segmentation["size"],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    return mask_utils.decode(rle)


def draw_detections(
    image: torch.Tensor,
    anns: Sequence[dict],
    names: dict[int, str],
    *,
    score_threshold: float = 0.0,
    max_side: int = MAX_SIDE,
    empty_note: str | None = None,
) -> torch.Tensor:
    """Draw COCO annotations or results (`score` optional) on a uint8 image [3, H, W].

    Records scoring below `score_threshold` are skipped; if none is left, `empty_note` (e.g.
    "no detections >= 0.5") is written on the image, so it does not pass for a prediction.
    Returns a uint8 image whose long side is between MIN_SIDE and `max_side` (the image's own
    size if already in between).
    """
    height, width = image.shape[1:]
    long_side = max(height, width)
    scale = min(max_side, max(long_side, MIN_SIDE)) / long_side
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    # Enlarge with nearest (no blur that would hide the model's actual input), shrink smoothly.
    mode = TF.InterpolationMode.NEAREST if scale > 1 else TF.InterpolationMode.BILINEAR
    out = (
        image.clone() if scale == 1 else TF.resize(image, size, interpolation=mode, antialias=True)
    )
    anns = [a for a in anns if a.get("score", 1.0) >= score_threshold]
    if not anns:
        return out if empty_note is None else _note(out, empty_note)
    colours = [class_colour(a["category_id"]) for a in anns]
    masks = torch.from_numpy(
        np.stack([decode_mask(a["segmentation"], height, width) for a in anns])
    )
    if scale != 1:
        masks = F.interpolate(masks[None].float(), size=size, mode="nearest")[0]
    # One mask at a time, largest first: overlaps blend (a single call paints them black), and
    # small parts (a sleeve, a pocket) stay visible on top of the garment they belong to.
    masks = masks.bool()
    for i in torch.argsort(masks.sum(dim=(1, 2)), descending=True, stable=True).tolist():
        out = draw_segmentation_masks(out, masks[i : i + 1], alpha=0.45, colors=[colours[i]])
    boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32) * scale
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    labels = [
        names.get(a["category_id"], str(a["category_id"])).split(",")[0]
        + (f" {a['score']:.2f}" if "score" in a else "")
        for a in anns
    ]
    # White text on a box-coloured tag: readable on any background, even over its own mask.
    return draw_bounding_boxes(
        out,
        boxes,
        labels=labels,
        colors=colours,
        width=2,
        fill_labels=True,
        label_colors="white",
    )


NOTE_COLOUR = (200, 0, 0)


def _note(image: torch.Tensor, text: str) -> torch.Tensor:
    """`text` in white on a red tag in the image's top-left corner."""
    pil = to_pil(image)
    draw = ImageDraw.Draw(pil)
    left, top, right, bottom = draw.textbbox((4, 4), text)
    draw.rectangle((0, 0, right + 4, bottom + 4), fill=NOTE_COLOUR)
    draw.text((4, 4), text, fill=(255, 255, 255))
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)


def side_by_side(panels: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """Place uint8 images [3, H, W] left to right on white, each under its title."""
    height = max(p.shape[1] for _, p in panels) + TITLE_HEIGHT
    width = sum(p.shape[2] for _, p in panels) + GAP * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, panel in panels:
        canvas.paste(to_pil(panel), (x, TITLE_HEIGHT))
        draw.text((x + 2, 2), title, fill=(0, 0, 0))
        x += panel.shape[2] + GAP
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 tensor [3, H, W] -> PIL RGB image."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def save_png(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a uint8 tensor [3, H, W] as PNG."""
    to_pil(image).save(Path(path), format="PNG")
