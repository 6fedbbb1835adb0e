"""Export a Facere / Facere+ checkpoint to ONNX with the published interface.

Usage (see --help):
    fashionfail export-onnx --checkpoint models/facere_plus/best.ckpt \
        --out facere_plus.onnx [--classes fashionfail] [--opset 17] [--verify 3]

The file has the interface of the paper's published `facere_base.onnx` / `facere_plus.onnx`
(see `fashionfail.inference.onnx_runtime`): input `input` float32 (1, 3, H, W) in [0, 1] with
dynamic H and W; outputs boxes (N, 4) xyxy, labels (N,) int64 1..K, scores (N,), masks (N, 1, H, W)
probabilities. Its metadata names the label space (`fashionfail.classes`), so predict and evaluate
need no extra option for it. Exported with torch's TorchScript-based exporter (`dynamo=False`),
checked with `onnx.checker`, written to a temporary file and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from fashionfail.core.categories import LabelSpace
from fashionfail.inference.onnx_runtime import (
    CLASSES_KEY,
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxModel,
    compare_detections,
)
from fashionfail.models.factory import load_trained

DEFAULT_OPSET = 17


class _PublishedInterface(nn.Module):
    """(1, 3, H, W) tensor in, (boxes, labels, scores, masks) out: one image per call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor):  # noqa: A002 - the published input name
        out = self.model([input[0]])[0]
        return out["boxes"], out["labels"], out["scores"], out["masks"]


def export_onnx(
    model: nn.Module,
    space: LabelSpace,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    sample_size: tuple[int, int] = (480, 640),
) -> float:
    """Write `model` (eval mode, CPU) to `out` with the published interface; returns seconds.

    `sample_size` (H, W) is the traced example's size; any other size works at run time.
    """
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    sample = torch.rand(1, 3, *sample_size, generator=torch.Generator().manual_seed(0))
    dynamic = {
        INPUT_NAME: {2: "height", 3: "width"},
        "boxes": {0: "detections"},
        "labels": {0: "detections"},
        "scores": {0: "detections"},
        "masks": {0: "detections", 2: "height", 3: "width"},
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():  # tracer warnings about torchvision's python branches
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _PublishedInterface(model).eval(),
                (sample,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
            )
        seconds = time.perf_counter() - start
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = CLASSES_KEY, space.name
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return seconds


def verify(
    model: nn.Module, onnx_path: str | os.PathLike, sizes: Sequence[tuple[int, int]], seed: int = 0
) -> list[dict]:
    """onnxruntime vs PyTorch on random images of `sizes`: one `compare_detections` per image."""
    runtime = OnnxModel(onnx_path)
    generator = torch.Generator().manual_seed(seed)
    reports = []
    with torch.inference_mode():
        for h, w in sizes:
            image = torch.rand(3, h, w, generator=generator)
            reports.append(compare_detections(model([image])[0], runtime.run_one(image)))
    return reports


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    classes: str | None = None,
    opset: int = DEFAULT_OPSET,
    verify_images: int = 0,
) -> dict:
    """Load our checkpoint (its label space must be `classes` if given), export, verify."""
    model, space = load_trained(checkpoint, expect_classes=classes)
    size = model.transform.min_size[0]
    seconds = export_onnx(model, space, out, opset=opset, sample_size=(size, size * 4 // 3))
    sizes = [(size, size * 4 // 3), (size * 4 // 3, size), (size // 2 + 7, size // 2 + 3)]
    reports = verify(model, out, (sizes * verify_images)[:verify_images]) if verify_images else []
    return {"classes": space.name, "export_s": seconds, "parity": reports}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionfail export-onnx",
        description="Export a Facere / Facere+ checkpoint of this project to ONNX with the "
        "interface of the paper's published models (input `input` float32 (1, 3, H, W) in "
        "[0, 1]; outputs boxes xyxy, labels 1..K, scores, masks (N, 1, H, W) probabilities).",
        epilog="Errors print one line 'error: ...' and exit 1 without writing the file.",
    )
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True, help="Lightning checkpoint of this project")
    add("--out", type=Path, required=True, help="ONNX file to write (replaced)")
    add(
        "--classes",
        choices=("fashionpedia", "fashionfail"),
        help="fail unless the checkpoint predicts this label space",
    )
    add("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    add(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="compare onnxruntime with PyTorch on N random images, print the differences",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fashionfail.core.cli import USER_ERRORS, error_exit
    from fashionfail.core.jsonio import DataError

    args = build_parser().parse_args(argv)
    try:
        try:
            report = export_checkpoint(
                args.checkpoint,
                args.out,
                classes=args.classes,
                opset=args.opset,
                verify_images=args.verify,
            )
        except (ValueError, FileNotFoundError) as e:
            raise DataError(e.args[0] if e.args else str(e)) from None
    except USER_ERRORS as e:
        return error_exit(e)
    print(
        f"wrote {args.out} ({report['classes']} classes) in {report['export_s']:.1f} s",
        file=sys.stderr,
    )
    for k, r in enumerate(report["parity"]):
        print(
            f"parity image {k}: {r['matched']}/{r['expected']} detections matched "
            f"({r['actual']} from onnxruntime), max box diff {r['max_box_diff_px']:.2e} px, "
            f"max score diff {r['max_score_diff']:.2e}, min mask IoU {r['min_mask_iou']:.4f}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
