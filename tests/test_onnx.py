"""ONNX export with the published interface, onnxruntime parity with PyTorch, bad ONNX input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from test_predict import write_checkpoint, write_images

from fashionfail.commands.export_onnx import main
from fashionfail.inference.onnx_export import export_checkpoint, export_onnx
from fashionfail.inference.onnx_runtime import (
    OnnxInterfaceError,
    OnnxModel,
    compare_detections,
)
from fashionfail.inference.predictor import read_image
from fashionfail.models.factory import build_model, load_trained

REPO = Path(__file__).resolve().parents[1]
# Boosted labels: a random tiny model then returns confident detections of these classes.
BOOST = {3: 6.0, 7: 5.0, 12: 4.0}


def decisive_checkpoint(path: Path, classes: str = "fashionfail") -> Path:
    """`write_checkpoint` with BOOST and mask logits scaled 50x: a random mask head's
    probabilities hover around 0.5, where a 1e-6 float difference flips pixels of small masks;
    a trained model's are far from it."""
    write_checkpoint(path, classes, boost=BOOST)
    ckpt = torch.load(path, weights_only=True)
    for kind in ("weight", "bias"):
        ckpt["state_dict"][f"model.roi_heads.mask_predictor.mask_fcn_logits.{kind}"] *= 50
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("onnx")
    ckpt = decisive_checkpoint(root / "plus.ckpt")
    report = export_checkpoint(ckpt, root / "plus.onnx", classes="fashionfail")
    return ckpt, root / "plus.onnx", report


def test_the_file_has_the_published_interface(exported):
    _, path, report = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    (inp,) = proto.graph.input
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims[:2] == [1, 3] and all(isinstance(d, str) for d in dims[2:])  # dynamic H, W
    outputs = [(o.name, o.type.tensor_type.elem_type) for o in proto.graph.output]
    f, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    assert outputs == [("boxes", f), ("labels", i64), ("scores", f), ("masks", f)]
    assert {p.key: p.value for p in proto.metadata_props}["fashionfail.classes"] == "fashionfail"
    assert report["classes"] == "fashionfail" and report["export_s"] > 0


def test_onnxruntime_matches_pytorch_on_three_images(exported, tmp_path):
    ckpt, path, _ = exported
    model, _ = load_trained(ckpt)
    runtime = OnnxModel(path)
    paths = write_images(tmp_path, [(64, 64), (48, 80), (90, 50)], seed=4)
    total = 0
    for p in paths:
        image = read_image(p).float() / 255
        with torch.inference_mode():
            expected = model([image])[0]
        actual = runtime([image])[0]
        r = compare_detections(expected, actual)
        assert r["expected"] == r["actual"] == r["matched"], r
        assert actual["masks"].shape[1:] == (1, *image.shape[1:])
        assert set(actual["labels"].tolist()) <= {3, 7, 12}
        assert r["max_box_diff_px"] <= 1.0 and r["max_score_diff"] <= 1e-3, r
        assert r["min_mask_iou"] >= 0.99, r
        total += r["matched"]
    assert total >= 6  # the comparison is not vacuous


def test_compare_detections_sees_a_difference(exported):
    ckpt, _, _ = exported
    model, _ = load_trained(ckpt)
    with torch.inference_mode():
        out = model([torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))])[0]
    assert len(out["labels"]) > 0
    moved = {**out, "boxes": out["boxes"] + 0.5, "scores": out["scores"] - 0.01}
    r = compare_detections(out, moved)
    assert r["matched"] == len(out["labels"])
    assert r["max_box_diff_px"] == pytest.approx(0.5) and r["max_score_diff"] > 1e-3
    relabelled = {**out, "labels": out["labels"] % 22 + 1}
    assert compare_detections(out, relabelled)["matched"] < len(out["labels"])


class _OneOutput(torch.nn.Module):
    def forward(self, input):  # noqa: A002
        return input.mean(dim=(2, 3))


def test_other_onnx_files_are_rejected_in_one_line(exported, tmp_path):
    _, path, _ = exported
    other = tmp_path / "other.onnx"
    torch.onnx.export(
        _OneOutput(),
        (torch.rand(1, 3, 8, 8),),
        str(other),
        dynamo=False,
        input_names=["input"],
        output_names=["mean"],
    )
    with pytest.raises(OnnxInterfaceError, match=r"other\.onnx: expected input \(1, 3, H, W\)"):
        OnnxModel(other, classes="fashionfail")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(OnnxInterfaceError, match=r"garbage\.onnx: not a loadable ONNX model"):
        OnnxModel(garbage, classes="fashionfail")
    with pytest.raises(OnnxInterfaceError, match="predicts fashionfail classes, not fashionpedia"):
        OnnxModel(path, classes="fashionpedia")
    with pytest.raises(FileNotFoundError, match="nope.onnx: ONNX file not found"):
        OnnxModel(tmp_path / "nope.onnx")


def test_a_file_without_metadata_needs_its_label_space(tmp_path):
    """Like the published files: no metadata; labels beyond the given space are an error."""
    torch.manual_seed(0)
    model = build_model("tiny", 47, min_size=64, max_size=64).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[40] += 8.0  # label 40: no FashionFail class
    from fashionfail.core.categories import LabelSpace

    export_onnx(model, LabelSpace("fashionpedia"), tmp_path / "m.onnx", sample_size=(64, 80))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "published.onnx"))
    with pytest.raises(OnnxInterfaceError, match="does not say which classes"):
        OnnxModel(tmp_path / "published.onnx")
    wrong = OnnxModel(tmp_path / "published.onnx", classes="fashionfail")
    with pytest.raises(OnnxInterfaceError, match=r"label 40, outside 1\.\.22"):
        wrong([torch.rand(3, 64, 64)])
    right = OnnxModel(tmp_path / "published.onnx", classes="fashionpedia")
    assert (right([torch.rand(3, 64, 64)])[0]["labels"] == 40).any()


def test_cli_rejects_another_label_space_and_writes_nothing(exported, tmp_path, capsys):
    ckpt, _, _ = exported
    out = tmp_path / "facere.onnx"
    assert main(["--checkpoint", str(ckpt), "--classes", "fashionpedia", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "expected fashionpedia" in err[0]
    assert not list(tmp_path.iterdir())


def test_stage_writes_the_file_and_prints_parity(exported, tmp_path):
    ckpt, _, _ = exported
    params = tmp_path / "params.yaml"
    params.write_text("export_onnx:\n  opset: 17\n  verify_images: 2\n")
    out = tmp_path / "onnx" / "plus.onnx"
    proc = subprocess.run(
        [
            sys.executable,
            "stages/export_onnx.py",
            "--params",
            str(params),
            "--checkpoint",
            str(ckpt),
            "--classes",
            "fashionfail",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["plus.onnx"]
    assert proc.stderr.count("parity image") == 2, proc.stderr


def test_predict_cli_takes_an_onnx_model(exported, tmp_path):
    """`predict --model X.onnx` writes the same detections as `--model X.ckpt`."""
    import json

    from fashionfail.commands.predict import main as predict_main

    ckpt, path, _ = exported
    write_images(tmp_path / "images", [(64, 80), (70, 60)], seed=2)
    for model, out in ((ckpt, "ckpt.json"), (path, "onnx.json")):
        assert (
            predict_main(
                [
                    "--images",
                    str(tmp_path / "images"),
                    "--model",
                    str(model),
                    "--out",
                    str(tmp_path / out),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("ckpt.json", "onnx.json"))
    assert len(a) == len(b) > 0
    key = lambda r: (r["image_id"], r["category_id"], r["bbox"])  # noqa: E731
    for ra, rb in zip(sorted(a, key=key), sorted(b, key=key), strict=True):
        assert ra["category_id"] == rb["category_id"] and ra["image_id"] == rb["image_id"]
        assert max(abs(x - y) for x, y in zip(ra["bbox"], rb["bbox"], strict=True)) <= 0.011
