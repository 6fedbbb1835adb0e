"""Benchmark the ONNX export and onnxruntime vs PyTorch inference on the CPU.

    python benchmarks/bench_onnx.py [--arch tiny|maskrcnn_resnet50_fpn_v2|...] [--images 5]
        [--min-size 800 --max-size 1333] [--height 683 --width 1024] [--threads N]

Builds `arch` randomly initialised (no download) with the 46+1 Facere classes, exports it with
`fashionfail.inference.onnx_export.export_onnx` (the export-onnx stage's code: TorchScript
exporter, opset 17, the published interface) and prints: the export time, the file size, then the
per-image inference time of PyTorch (`model([image])` under inference_mode) and of onnxruntime (CPU
execution provider) on the same random images, one image per call (batch 1, as the original
evaluation), after one untimed warm-up each. Three classes' classifier biases are raised, so the
random model returns confident detections (up to 100 per image: mask pasting is part of the
measured time, as with a trained model); the parity of the two runtimes on those images is
printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fashionfail.core.categories import LabelSpace
from fashionfail.inference.onnx_export import export_onnx
from fashionfail.inference.onnx_runtime import OnnxModel, compare_detections
from fashionfail.models.factory import build_model


def _timed(fn, images) -> tuple[list[float], list]:
    fn(images[0])  # warm-up
    times, outputs = [], []
    for image in images:
        start = time.perf_counter()
        outputs.append(fn(image))
        times.append(time.perf_counter() - start)
    return times, outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="tiny")
    ap.add_argument("--min-size", type=int, default=128)
    ap.add_argument("--max-size", type=int, default=128)
    ap.add_argument("--height", type=int, default=128, help="image height (px)")
    ap.add_argument("--width", type=int, default=128, help="image width (px)")
    ap.add_argument("--images", type=int, default=10, help="timed images per runtime")
    ap.add_argument(
        "--no-boost",
        action="store_true",
        help="keep the random model as is (it then detects almost nothing)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for both runtimes (0: each runtime's default)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    space = LabelSpace("fashionpedia")
    torch.manual_seed(0)
    model = build_model(
        args.arch, space.num_classes, min_size=args.min_size, max_size=args.max_size
    ).eval()
    if not args.no_boost:  # confident detections of three classes: up to 100 per image
        with torch.no_grad():
            for label, value in {3: 6.0, 7: 5.0, 12: 4.0}.items():
                model.roi_heads.box_predictor.cls_score.bias[label] += value
    generator = torch.Generator().manual_seed(1)
    images = [
        torch.rand(3, args.height, args.width, generator=generator) for _ in range(args.images + 1)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        start = time.perf_counter()
        export_onnx(model, space, path, sample_size=(args.height, args.width))
        total = time.perf_counter() - start
        size_mb = path.stat().st_size / 2**20
        runtime = OnnxModel(path, threads=args.threads or None)
        with torch.inference_mode():
            t_torch, out_torch = _timed(lambda x: model([x])[0], images[1:])
        t_onnx, out_onnx = _timed(runtime.run_one, images[1:])
    reports = [compare_detections(a, b) for a, b in zip(out_torch, out_onnx, strict=True)]
    print(
        f"arch {args.arch}, model size {args.min_size}/{args.max_size}, images "
        f"{args.height}x{args.width}, {args.images} images, threads "
        f"{args.threads or 'default'}, torch {torch.__version__}"
    )
    print(f"export (incl. onnx.checker + save): {total:.1f} s, file {size_mb:.1f} MB")
    for name, times in (("pytorch", t_torch), ("onnxruntime", t_onnx)):
        print(
            f"{name:12s} per image: median {statistics.median(times) * 1000:.0f} ms, "
            f"mean {statistics.mean(times) * 1000:.0f} ms"
        )
    print(
        f"onnxruntime / pytorch (median): "
        f"{statistics.median(t_onnx) / statistics.median(t_torch):.2f}x"
    )
    print(
        f"detections per image: {statistics.mean(r['expected'] for r in reports):.0f}; "
        f"matched {sum(r['matched'] for r in reports)}/{sum(r['expected'] for r in reports)}, "
        f"max box diff {max(r['max_box_diff_px'] for r in reports):.1e} px, max score diff "
        f"{max(r['max_score_diff'] for r in reports):.1e}, min mask IoU "
        f"{min(r['min_mask_iou'] for r in reports):.4f}"
    )


if __name__ == "__main__":
    main()
