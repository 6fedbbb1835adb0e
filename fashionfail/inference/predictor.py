"""Inference: decode images, run a Facere / Facere+ model, turn its output into COCO results.

Used by the predict CLI (`fashionfail.commands.predict`), the evaluate stage and the benchmarks, so
the JSON users get and the JSON the paper's metrics are computed on come from one code path.

Results: a COCO results list (what `COCO.loadRes` reads), one record per detection:
`image_id`, `file_name`, `category_id` (dataset id: Fashionpedia ids for both models), `bbox`
[x, y, w, h] in pixels of the (EXIF-rotated) image, `score`, `segmentation` (compressed RLE,
`counts` as str). Images without detections have no record.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fashionfail.core.categories import LabelSpace
from fashionfail.core.jsonio import DataError
from fashionfail.inference.onnx_runtime import OnnxInterfaceError, OnnxModel
from fashionfail.models.factory import load_trained

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
MASK_THRESHOLD = 0.5  # Mask R-CNN's soft masks are binarised at 0.5 (torchvision, Detectron2)


class ImageItem(NamedTuple):
    """One image to predict: its id in the results, its file and, if known, its (height, width)."""

    image_id: int
    path: Path
    size: tuple[int, int] | None = None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (by suffix, case-insensitive) directly in `folder`, sorted by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    paths = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )
    if not paths:
        raise DataError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def read_image(path: str | os.PathLike, *, upright: bool = True) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor [3, H, W], upright as its EXIF tag says.

    `upright=False` keeps the stored pixel orientation: COCO annotations (and torchvision's
    CocoDetection, which training uses) refer to the stored pixels, not the EXIF-rotated view.

    Grayscale and palette images are expanded to RGB; transparent pixels are composited onto
    white (product photos such as FashionFail's sit on white; black would invent a dark frame).
    DataError naming the file if it cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if upright:
                im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


class _Images(Dataset):
    """Decodes images in DataLoader workers, so decoding overlaps with the forward pass."""

    def __init__(self, items: Sequence[ImageItem]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[ImageItem, torch.Tensor | DataError]:
        item = self.items[i]
        try:
            # Dataset images (size known from the annotations) stay as stored, like in training.
            image = read_image(item.path, upright=item.size is None)
        except DataError as e:
            # Returned, not raised: a DataLoader worker would wrap it in a multi-line traceback.
            return item, e
        if item.size is not None and tuple(image.shape[1:]) != tuple(item.size):
            h, w = item.size
            return item, DataError(
                f"{item.path}: image is {image.shape[2]}x{image.shape[1]} (WxH) but the annotation "
                f"file says {w}x{h} for image id {item.image_id}"
            )
        return item, image


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DataError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device {device!r} requested but no CUDA GPU is available")
    return dev


def _records(
    output: dict[str, torch.Tensor],
    item: ImageItem,
    label_to_category: torch.Tensor,
    score_threshold: float,
    allowed: torch.Tensor | None,
    box_decimals: int = 2,
) -> list[dict]:
    """One image's model output -> COCO result records (dataset category ids, xywh, RLE).

    Box corners are rounded to `box_decimals` (the original: 0.1 px) before width and height are
    taken, so x + w is the rounded right edge.
    """
    categories = label_to_category.to(output["labels"].device)[output["labels"]]
    keep = output["scores"] >= score_threshold
    if allowed is not None:
        keep &= torch.isin(categories, allowed.to(categories.device))
    if not bool(keep.any()):
        return []
    # [n, W, H] C-contiguous is [H, W, n] Fortran-ordered, the layout pycocotools encodes from:
    # transpose on the model's device, so no second copy on the CPU.
    masks = (output["masks"][keep, 0] > MASK_THRESHOLD).to(torch.uint8).transpose(1, 2)
    masks = masks.contiguous().cpu().numpy().transpose(2, 1, 0)
    rles = mask_utils.encode(masks)
    boxes = output["boxes"][keep].cpu().double()
    scale = 10.0**box_decimals
    boxes = torch.round(boxes * scale) / scale
    boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
    records = []
    for box, score, category, rle in zip(
        boxes.tolist(),
        output["scores"][keep].tolist(),
        categories[keep].tolist(),
        rles,
        strict=True,
    ):
        records.append(
            {
                "image_id": item.image_id,
                "file_name": item.path.name,
                "category_id": category,
                "bbox": [round(v, box_decimals) for v in box],
                "score": score,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            }
        )
    return records


@dataclass
class PredictStats:
    """What `predict` skipped and dropped (filled in when passed to it)."""

    skip_unreadable: bool = False  # skip images that cannot be decoded instead of failing
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)
    below_threshold: int = 0  # detections dropped by the score threshold


def _collate(batch: list) -> list:
    return batch


def predict(
    model: torch.nn.Module,
    space: LabelSpace,
    images: Sequence[ImageItem],
    *,
    batch_size: int = 1,
    device: str = "auto",
    score_threshold: float = 0.0,
    keep_categories: Collection[int] | None = None,
    num_workers: int = 0,
    progress: bool = True,
    stats: PredictStats | None = None,
    box_decimals: int = 2,
) -> list[dict]:
    """Predict every image and return COCO result records (see the module docstring).

    `model` is a torch model or an `OnnxModel` (which runs on the CPU, one image at a time).

    Batched forward passes under `torch.inference_mode()`; images are decoded by `num_workers`
    DataLoader workers. Detections scoring below `score_threshold`, or whose dataset category is
    not in `keep_categories` (when given), are dropped. Raises DataError naming the first image
    that cannot be decoded or whose size disagrees with `ImageItem.size`. The settings' rules
    (batch_size >= 1, ...) are checked once, by `config.PredictConfig`, before this is called.
    """
    onnx = isinstance(model, OnnxModel)
    dev = torch.device("cpu") if onnx and device == "auto" else resolve_device(device)
    try:
        model = model.to(dev).eval()
    except OnnxInterfaceError as e:
        raise DataError(str(e)) from None
    label_to_category = torch.tensor(
        [-1] + [space.to_category(label) for label in range(1, space.num_classes)]
    )
    allowed = None if keep_categories is None else torch.tensor(sorted(keep_categories))
    loader = DataLoader(
        _Images(images),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
    )
    results: list[dict] = []
    with (
        torch.inference_mode(),
        tqdm(total=len(images), unit="img", desc="predict", disable=not progress) as bar,
    ):
        for batch in loader:
            for item, image in batch:
                if isinstance(image, DataError):
                    if stats is None or not stats.skip_unreadable:
                        raise image
                    stats.skipped.append((item.path, str(image)))
            bar.update(sum(isinstance(image, DataError) for _, image in batch))
            batch = [(item, image) for item, image in batch if not isinstance(image, DataError)]
            if not batch:
                continue
            # uint8 over the bus (4x less than float), scaled on the device.
            inputs = [image.to(dev, non_blocking=True).float().div_(255) for _, image in batch]
            try:
                outputs = model(inputs)
            except OnnxInterfaceError as e:
                raise DataError(str(e)) from None
            for (item, _), output in zip(batch, outputs, strict=True):
                if stats is not None:
                    stats.below_threshold += int((output["scores"] < score_threshold).sum())
                results.extend(
                    _records(
                        output, item, label_to_category, score_threshold, allowed, box_decimals
                    )
                )
            bar.update(len(batch))
    return results


def load_model(
    checkpoint: str | os.PathLike,
    expect_classes: str | None = None,
    model_classes: str | None = None,
) -> tuple[torch.nn.Module | OnnxModel, LabelSpace]:
    """A checkpoint through `load_trained`, or a `.onnx` file as an `OnnxModel`; errors become
    one-line DataErrors naming the file.

    `model_classes` is the label space of an ONNX file that does not record it (the published
    ones: fashionpedia for facere_base.onnx, fashionfail for facere_plus.onnx).
    """
    try:
        if Path(checkpoint).suffix.lower() == ".onnx":
            model = OnnxModel(checkpoint, classes=model_classes)
            if expect_classes is not None and model.space.name != expect_classes:
                raise ValueError(
                    f"{checkpoint}: predicts {model.space.name} classes, expected {expect_classes}"
                )
            return model, model.space
        return load_trained(checkpoint, expect_classes=expect_classes)
    except (ValueError, FileNotFoundError, KeyError) as e:
        message = e.args[0] if e.args else str(e)
        raise DataError(str(message)) from None


def group_by_image(records: Sequence[dict]) -> dict[int, list[dict]]:
    """Index result records by image id (one pass)."""
    by_image: dict[int, list[dict]] = {}
    for r in records:
        by_image.setdefault(r["image_id"], []).append(r)
    return by_image
