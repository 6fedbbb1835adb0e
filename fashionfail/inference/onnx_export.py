"""Export a Facere / Facere+ checkpoint to ONNX with the published interface.

The library of `fashionfail export-onnx` (fashionfail.commands.export_onnx) and of the
export-onnx stage.

The file has the interface of the paper's published `facere_base.onnx` / `facere_plus.onnx`
(see `fashionfail.inference.onnx_runtime`): input `input` float32 (1, 3, H, W) in [0, 1] with
dynamic H and W; outputs boxes (N, 4) xyxy, labels (N,) int64 1..K, scores (N,), masks (N, 1, H, W)
probabilities. Its metadata names the label space (`fashionfail.classes`), so predict and evaluate
need no extra option for it. Exported with torch's TorchScript-based exporter (`dynamo=False`),
checked with `onnx.checker`, written to a temporary file and renamed into place.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from fashionfail.core.categories import LabelSpace
from fashionfail.core.config import DEFAULT_OPSET
from fashionfail.inference.onnx_runtime import (
    CLASSES_KEY,
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxModel,
    compare_detections,
)
from fashionfail.models.factory import load_trained


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
