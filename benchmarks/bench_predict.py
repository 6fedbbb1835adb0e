"""Benchmark `fashionfail.inference.predictor.predict`, the code path of the predict CLI and the
evaluate stage.

    python benchmarks/bench_predict.py [--device cpu] [--tiny-images 16] [--paper-images 3]

Two models, randomly initialised (no download): the CPU default `tiny` at 128 px, and the
paper's `maskrcnn_resnet50_fpn_v2` at its default size (min_size 800, max_size 1333) on
Fashionpedia-sized images (1024 x 683). The box score threshold is set to 0, so every image
yields the maximum 100 detections: the worst case for mask pasting and RLE encoding. The tiny
model is also timed with its own threshold (0.05), where a random model detects almost nothing:
the forward pass alone. Images are JPEG files decoded by predict,
as in real use; one untimed warm-up batch precedes the timing. Prints images/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionfail.core.categories import LabelSpace
from fashionfail.inference.predictor import ImageItem, predict
from fashionfail.models.factory import build_model


def _write_images(folder: Path, n: int, height: int, width: int) -> list[ImageItem]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        path = folder / f"{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        items.append(ImageItem(i, path))
    return items


def bench(
    arch: str,
    size: tuple[int, int] | None,
    image_hw: tuple[int, int],
    n: int,
    batch_size: int,
    device: str,
    worst_case: bool = True,
) -> None:
    if n < 1:
        return
    space = LabelSpace("fashionpedia")
    kwargs = {"min_size": size[0], "max_size": size[1]} if size else {}
    torch.manual_seed(0)
    model = build_model(arch, space.num_classes, **kwargs)
    if worst_case:
        model.roi_heads.score_thresh = 0.0  # always 100 detections per image
    with tempfile.TemporaryDirectory() as tmp:
        items = _write_images(Path(tmp), n + batch_size, *image_hw)
        predict(
            model, space, items[:batch_size], batch_size=batch_size, device=device, progress=False
        )  # warm-up
        start = time.perf_counter()
        records = predict(
            model, space, items[batch_size:], batch_size=batch_size, device=device, progress=False
        )
        seconds = time.perf_counter() - start
    shown = f"{size[0]}/{size[1]}" if size else "default 800/1333"
    print(
        f"{arch:26s} model size {shown:16s} images {image_hw[1]}x{image_hw[0]}  "
        f"batch {batch_size}  {n} images in {seconds:6.1f} s = {n / seconds:6.2f} images/s  "
        f"({len(records) / n:.0f} detections/image)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    ap.add_argument("--tiny-images", type=int, default=16)
    ap.add_argument("--paper-images", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4, help="tiny model batch size")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    bench("tiny", (128, 128), (128, 128), args.tiny_images, args.batch_size, args.device)
    # A random model's own threshold (0.05) keeps ~nothing: the forward pass alone.
    bench("tiny", (128, 128), (128, 128), args.tiny_images, args.batch_size, args.device, False)
    bench("maskrcnn_resnet50_fpn_v2", None, (683, 1024), args.paper_images, 1, args.device)


if __name__ == "__main__":
    main()
