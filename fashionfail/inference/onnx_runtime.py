"""Run an exported Facere / Facere+ ONNX file (ours or the published ones) like a torch model.

The interface (the one the paper's published `facere_base.onnx` / `facere_plus.onnx` have):
    input    `input`  float32 (1, 3, H, W), RGB in [0, 1], any H and W
    outputs  in this order: boxes (N, 4) float xyxy in input pixels, labels (N,) int64 1..K,
             scores (N,) float, masks (N, 1, H, W) float probabilities
The model resizes internally (800 / 1333 for the paper's), keeps scores >= 0.05 and at most 100
detections. `OnnxModel` checks the file has this interface and maps a list of CHW float tensors to
torchvision-style output dicts, one image at a time (batch 1, as the original evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from fashionfail.core.categories import LabelSpace

INPUT_NAME = "input"
OUTPUT_NAMES = ("boxes", "labels", "scores", "masks")
# (element type, rank) of each output, in order.
_OUTPUT_TYPES = (
    ("tensor(float)", 2),
    ("tensor(int64)", 1),
    ("tensor(float)", 1),
    ("tensor(float)", 4),
)
CLASSES_KEY = "fashionfail.classes"  # metadata our exporter writes: the label space's name


class OnnxInterfaceError(ValueError):
    """The file is not a Mask R-CNN ONNX model with the published interface."""


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about unused initialisers on stderr
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise OnnxInterfaceError(f"{path}: not a loadable ONNX model ({first})") from None


def _dim_is(dim: object, value: int) -> bool:
    """A static dimension equal to `value`, or a symbolic / unknown one."""
    return dim == value or dim is None or isinstance(dim, str)


def check_interface(session, path: Path) -> str:
    """The input's name if `session` has the published interface, else OnnxInterfaceError."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    got = (
        f"inputs {[(i.name, i.type, i.shape) for i in inputs]}, "
        f"outputs {[(o.name, o.type, o.shape) for o in outputs]}"
    )
    inp = inputs[0] if len(inputs) == 1 else None
    ok = (
        inp is not None
        and inp.type == "tensor(float)"
        and len(inp.shape) == 4
        and _dim_is(inp.shape[0], 1)
        and _dim_is(inp.shape[1], 3)
        and len(outputs) == len(_OUTPUT_TYPES)
        and all(
            o.type == t and len(o.shape) == r
            for o, (t, r) in zip(outputs, _OUTPUT_TYPES, strict=True)
        )
    )
    if not ok:
        raise OnnxInterfaceError(
            f"{path}: expected input (1, 3, H, W) float and outputs boxes (N, 4) float, "
            f"labels (N,) int64, scores (N,) float, masks (N, 1, H, W) float; got {got}"
        )
    return inputs[0].name


class OnnxModel:
    """An ONNX Mask R-CNN behind the call interface `predict` uses for torch models.

    `classes` names the label space of the model's labels 1..K; files we export carry it in their
    metadata, the published ones do not (then it must be given). Runs on the CPU.
    """

    def __init__(
        self, path: str | os.PathLike, classes: str | None = None, threads: int | None = None
    ):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX file not found")
        self.session = _session(self.path, threads)
        self.input_name = check_interface(self.session, self.path)
        meta = self.session.get_modelmeta().custom_metadata_map
        stored = meta.get(CLASSES_KEY)
        if classes is not None and stored is not None and classes != stored:
            raise OnnxInterfaceError(
                f"{self.path}: the file predicts {stored} classes, not {classes}"
            )
        if classes is None and stored is None:
            raise OnnxInterfaceError(
                f"{self.path}: the file does not say which classes it predicts; pass the label "
                "space (fashionpedia for facere_base.onnx, fashionfail for facere_plus.onnx)"
            )
        try:
            self.space = LabelSpace(classes or stored)
        except ValueError as e:
            raise OnnxInterfaceError(f"{self.path}: {e}") from None

    # The torch-model protocol `predict` relies on.
    def to(self, device: torch.device | str) -> OnnxModel:
        if torch.device(device).type != "cpu":
            raise OnnxInterfaceError(f"{self.path}: ONNX models run on the CPU here, not {device}")
        return self

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.run_one(image) for image in images]

    def run_one(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """One CHW float image in [0, 1] -> {boxes, labels, scores, masks} tensors."""
        array = image.detach().cpu().float().numpy()[None]
        boxes, labels, scores, masks = self.session.run(None, {self.input_name: array})
        k = self.space.num_classes - 1
        if labels.size and (labels.min() < 1 or labels.max() > k):
            raise OnnxInterfaceError(
                f"{self.path}: returned label {int(labels.max())}, outside 1..{k} of the "
                f"{self.space.name} classes (wrong label space?)"
            )
        return {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(labels),
            "scores": torch.from_numpy(scores),
            "masks": torch.from_numpy(masks),
        }


def compare_detections(
    expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]
) -> dict[str, float | int]:
    """Pair `actual` detections with `expected` ones (same label; the assignment with the least
    total box distance) and measure the pairs.

    Returns counts (`expected`, `actual`, `matched`) and, over the matched pairs, the largest box
    coordinate difference (px), the largest score difference and the smallest IoU of the masks
    binarised at 0.5 (1.0 when nothing is matched) and the largest mask probability difference.
    """
    from scipy.optimize import linear_sum_assignment

    e_boxes, a_boxes = expected["boxes"].double(), actual["boxes"].double()
    cost = (e_boxes[:, None, :] - a_boxes[None, :, :]).abs().amax(dim=2)  # L-inf, px
    cost[expected["labels"][:, None] != actual["labels"][None, :]] = 1e9  # other label: no pair
    rows, cols = linear_sum_assignment(cost.numpy()) if cost.numel() else ([], [])
    pairs = [(i, j) for i, j in zip(rows, cols, strict=True) if cost[i, j] < 1e9]
    box_diff, score_diff, mask_iou, prob_diff = 0.0, 0.0, 1.0, 0.0
    for i, j in pairs:
        box_diff = max(box_diff, float(cost[i, j]))
        score_diff = max(score_diff, float((actual["scores"][j] - expected["scores"][i]).abs()))
        if actual["masks"].shape[1:] != expected["masks"].shape[1:]:
            mask_iou = 0.0
            continue
        prob_diff = max(prob_diff, float((actual["masks"][j] - expected["masks"][i]).abs().max()))
        a, b = actual["masks"][j, 0] > 0.5, expected["masks"][i, 0] > 0.5
        union = int((a | b).sum())
        mask_iou = min(mask_iou, int((a & b).sum()) / union if union else 1.0)
    return {
        "expected": len(expected["labels"]),
        "actual": len(actual["labels"]),
        "matched": len(pairs),
        "max_box_diff_px": box_diff,
        "max_score_diff": score_diff,
        "min_mask_iou": mask_iou,
        "max_mask_prob_diff": prob_diff,
    }
