"""Evaluation from an exported ONNX file and from the baselines' prediction files (issue #8,
items 1d, 1e, 3, 4, 5): parity with the checkpoint, each file format, the box-order option,
bad input in one line with nothing written."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from test_onnx import decisive_checkpoint

from fashionfail.core.categories import FASHIONFAIL_FP_IDS, LabelSpace, fashionpedia_categories
from fashionfail.core.config import EvaluateConfig
from fashionfail.core.jsonio import DataError
from fashionfail.eval.evaluate import evaluate
from fashionfail.eval.prediction_files import PRESETS, PredictionFormat
from fashionfail.inference import predictor as inference
from fashionfail.inference.onnx_export import export_onnx
from fashionfail.inference.predictor import ImageItem, _records, read_image
from fashionfail.models.factory import load_trained

REPO = Path(__file__).resolve().parents[1]
CFG = EvaluateConfig(
    batch_size=1,
    num_workers=0,
    device="cpu",
    score_threshold=0.3,
    num_overlays=1,
    model="checkpoint",
    box_decimals=1,
)
# (height, width) of each image and its object (x, y, w, h): wide objects, off the diagonal,
# so a box read in the wrong order (x <-> y) misses its object.
IMAGES = [
    ((64, 80), (6, 30, 60, 20)),
    ((72, 64), (4, 40, 50, 16)),
    ((64, 64), (2, 36, 56, 14)),
    ((80, 96), (10, 50, 76, 18)),
]
CATEGORIES = [FASHIONFAIL_FP_IDS[2], FASHIONFAIL_FP_IDS[6], FASHIONFAIL_FP_IDS[11], 0]


def _mask(size, box) -> np.ndarray:
    (h, w), (x, y, bw, bh) = size, box
    mask = np.zeros((h, w), np.uint8)
    mask[y : y + bh, x : x + bw] = 1
    return mask


def _str_counts(rle: dict) -> dict:
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask))  # counts as bytes, like the original files


@pytest.fixture(scope="module")
def gt(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gt")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k, (size, box) in enumerate(IMAGES):
        pixels = rng.integers(150, 230, size=(*size, 3), dtype=np.uint8)
        pixels[_mask(size, box).astype(bool)] = (20 * k, 60, 200 - 20 * k)
        Image.fromarray(pixels).save(root / "images" / f"img{k}.png")
        images.append(
            {"id": 10 + k, "file_name": f"img{k}.png", "height": size[0], "width": size[1]}
        )
        rle = _rle(_mask(size, box))
        anns.append(
            {
                "id": k + 1,
                "image_id": 10 + k,
                "category_id": CATEGORIES[k],
                "bbox": list(box),
                "area": box[2] * box[3],
                "iscrowd": 0,
                "segmentation": _str_counts(rle),
            }
        )
    path = root / "gt.json"
    path.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": fashionpedia_categories()})
    )
    return path, root / "images"


def _run(gt, out: Path, **kwargs) -> dict:
    return evaluate(
        name="t",
        gt_path=gt[0],
        images_dir=gt[1],
        classes="fashionfail",
        out_dir=out,
        cfg=kwargs.pop("cfg", CFG),
        progress=False,
        **kwargs,
    )


# --- ONNX ------------------------------------------------------------------------------------


MAX_DETECTIONS = 10  # instead of 100: the mask head and RLE encoding dominate the test's time


def _fewer_detections(path, expect_classes=None):
    model, space = load_trained(path, expect_classes=expect_classes)
    model.roi_heads.detections_per_img = MAX_DETECTIONS
    return model, space


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint and its ONNX export, both keeping MAX_DETECTIONS per image."""
    root = tmp_path_factory.mktemp("model")
    ckpt = decisive_checkpoint(root / "plus.ckpt")
    model, space = _fewer_detections(ckpt)
    export_onnx(model, space, root / "plus.onnx", sample_size=(64, 80))
    return ckpt, root / "plus.onnx"


def test_metrics_from_the_onnx_file_equal_the_checkpoints(gt, tmp_path, model_files, monkeypatch):
    """Item 3: the same evaluation from the checkpoint and from its exported ONNX file."""
    monkeypatch.setattr(inference, "load_trained", _fewer_detections)
    ckpt, onnx_file = model_files
    own = _gt_from_the_model(gt, ckpt, tmp_path / "own")
    from_ckpt = _run(own, tmp_path / "a", checkpoint=ckpt)
    from_onnx = _run(own, tmp_path / "b", checkpoint=onnx_file)
    assert from_ckpt["num_predictions"] == from_onnx["num_predictions"] > 0
    assert min(from_ckpt[t]["mAP_w"] for t in ("bbox", "segm")) > 0.3  # not vacuous
    for iou_type in ("bbox", "segm"):
        for key, value in from_ckpt[iou_type].items():
            assert from_onnx[iou_type][key] == pytest.approx(value, abs=0.005), (iou_type, key)


def _gt_from_the_model(gt, ckpt: Path, root: Path) -> tuple[Path, Path]:
    """GT = the torch model's own two best detections per image (a random model hits nothing
    real), so its AP is high and ONNX's equals it only if ONNX finds the same objects."""
    model, space = _fewer_detections(ckpt)
    data = json.loads(gt[0].read_text())
    anns = []
    for img in data["images"]:
        with torch.inference_mode():
            out = model([read_image(gt[1] / img["file_name"]).float() / 255])[0]
        for i in torch.argsort(out["scores"], descending=True)[:2].tolist():
            mask = (out["masks"][i, 0] > 0.5).numpy().astype(np.uint8)
            x0, y0, x1, y1 = out["boxes"][i].tolist()
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "iscrowd": 0,
                    "category_id": space.to_category(int(out["labels"][i])),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float(mask.sum()),
                    "segmentation": _str_counts(_rle(mask)),
                }
            )
    root.mkdir()
    (root / "gt.json").write_text(json.dumps({**data, "annotations": anns}))
    return root / "gt.json", gt[1]


def test_published_style_onnx_needs_model_classes_and_the_stage_picks_by_param(
    gt, tmp_path, model_files
):
    import onnx

    ckpt, onnx_file = model_files
    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "facere_plus.onnx"))
    with pytest.raises(DataError, match="does not say which classes"):
        _run(gt, tmp_path / "x", checkpoint=tmp_path / "facere_plus.onnx")
    assert not (tmp_path / "x").exists()
    metrics = _run(
        gt, tmp_path / "y", checkpoint=tmp_path / "facere_plus.onnx", model_classes="fashionfail"
    )
    assert metrics["num_predictions"] > 0

    _source = _stage()._source

    class Args:
        predictions = preset = box_order = class_ids = None
        checkpoint, onnx = ckpt, onnx_file

    assert _source(Args, CFG)[0] == ckpt
    assert _source(Args, CFG.model_copy(update={"model": "onnx"}))[0] == onnx_file


# --- Box rounding and plain means (items 1d, 1e) ---------------------------------------------


def test_boxes_are_rounded_at_the_corners():
    out = {
        "boxes": torch.tensor([[1.04, 2.06, 10.96, 20.149]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.9]),
        "masks": torch.ones(1, 1, 30, 20),
    }
    lut = torch.tensor([-1, 0])
    (one,) = _records(out, ImageItem(1, Path("a.png")), lut, 0.0, None, box_decimals=1)
    assert one["bbox"] == [1.0, 2.1, 10.0, 18.0]  # corners 1.0, 2.1, 11.0, 20.1
    (two,) = _records(out, ImageItem(1, Path("a.png")), lut, 0.0, None, box_decimals=2)
    assert two["bbox"] == [1.04, 2.06, 9.92, 18.09]


def test_plain_means_beside_the_weighted_ones(gt, tmp_path):
    path = _npy(gt, tmp_path / "p.npy", "yxyx", "fashionpedia_label", drop_last=True)
    metrics = _run(gt, tmp_path / "out", predictions=path, prediction_format=PRESETS["amrcnn"])
    with (tmp_path / "out" / "per_class.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["AP_bbox"] != ""]
    aps = [float(r["AP_bbox"]) for r in rows]
    assert sorted(aps) == pytest.approx([0.0, 1.0, 1.0, 1.0])  # the last object was not predicted
    assert metrics["bbox"]["mAP_plain"] == pytest.approx(np.mean(aps))
    assert metrics["bbox"]["mAR_plain"] == pytest.approx(0.75)


# --- Prediction files ------------------------------------------------------------------------


def _boxes(box, order) -> list[float]:
    x, y, w, h = box
    return {"xyxy": [x, y, x + w, y + h], "yxyx": [y, x, y + h, x + w], "xywh": [x, y, w, h]}[order]


def _class(category: int, class_ids: str) -> int:
    if class_ids == "fashionpedia":
        return category
    space = LabelSpace("fashionpedia" if class_ids == "fashionpedia_label" else "fashionfail")
    return space.to_label(category)


def _records_of(order, class_ids, drop_last=False) -> list[dict]:
    """One perfect detection per image, plus a low-scoring wrong one, as the original writes."""
    records = []
    for k, (size, box) in enumerate(IMAGES[: 3 if drop_last else 4]):
        other = (0, 0, 8, 8)
        records.append(
            {
                "image_file": f"some/dir/img{k}.png",
                "classes": np.array([_class(CATEGORIES[k], class_ids), _class(0, class_ids)]),
                "scores": np.array([0.9, 0.1], np.float32),
                "boxes": np.array([_boxes(box, order), _boxes(other, order)], np.float32),
                "masks": [_rle(_mask(size, box)), _rle(_mask(size, other))],
            }
        )
    return records


def _npy(gt, path: Path, order, class_ids, drop_last=False) -> Path:
    np.save(path, np.array(_records_of(order, class_ids, drop_last), dtype=object))
    return path


@pytest.mark.parametrize("preset", ["amrcnn", "fformer", "facere", "facere_plus"])
def test_each_baselines_npy_convention_scores_perfect_predictions_1(gt, tmp_path, preset):
    fmt = PRESETS[preset]
    path = _npy(gt, tmp_path / "p.npy", fmt.box_order, fmt.class_ids)
    metrics = _run(gt, tmp_path / "out", predictions=path, prediction_format=fmt)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["mAP_w"] == pytest.approx(1.0), (preset, iou_type)


def test_npz_and_coco_json(gt, tmp_path):
    np.savez(tmp_path / "p.npz", data=np.array(_records_of("xyxy", "fashionpedia"), dtype=object))
    metrics = _run(
        gt, tmp_path / "a", predictions=tmp_path / "p.npz", prediction_format=PRESETS["fformer"]
    )
    assert metrics["segm"]["mAP_w"] == pytest.approx(1.0)
    results = []
    for k, rec in enumerate(_records_of("xywh", "fashionpedia")):
        for c, s, b, m in zip(
            rec["classes"], rec["scores"], rec["boxes"], rec["masks"], strict=True
        ):
            results.append(
                {
                    "image_id": 10 + k,
                    "category_id": int(c),
                    "score": float(s),
                    "bbox": [float(v) for v in b],
                    "segmentation": {**m, "counts": m["counts"].decode()},
                }
            )
    (tmp_path / "r.json").write_text(json.dumps(results))
    metrics = _run(gt, tmp_path / "b", predictions=tmp_path / "r.json")  # default: coco
    assert metrics["bbox"]["mAP_w"] == pytest.approx(1.0)


def test_the_wrong_box_order_scores_much_lower(gt, tmp_path):
    path = _npy(gt, tmp_path / "p.npy", "yxyx", "fashionpedia_label")
    right = _run(gt, tmp_path / "a", predictions=path, prediction_format=PRESETS["amrcnn"])
    wrong = _run(
        gt,
        tmp_path / "b",
        predictions=path,
        prediction_format=PredictionFormat("xyxy", "fashionpedia_label"),
    )
    assert right["bbox"]["mAP_w"] == pytest.approx(1.0)
    assert wrong["bbox"]["mAP_w"] < 0.2
    assert wrong["segm"]["mAP_w"] == pytest.approx(1.0)  # masks do not depend on it
    off_by_one = _run(
        gt,
        tmp_path / "c",
        predictions=path,
        prediction_format=PredictionFormat("yxyx", "fashionpedia"),
    )
    assert off_by_one["segm"]["mAP_w"] < 0.2


def _bad_files(gt, root: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (file, preset, expected message)."""
    root.mkdir()
    recs = _records_of("yxyx", "fashionpedia_label")
    cases = {}

    def save(name, records, expected, preset="amrcnn"):
        path = root / f"{name}.npy"
        np.save(path, np.array(records, dtype=object))
        cases[name] = (path, preset, expected)

    save(
        "unknown_images",
        [*recs, {**recs[0], "image_file": "x/nope1.png"}, {**recs[1], "image_file": "nope2.png"}],
        r"2 of 6 records name images not in the GT file: nope1\.png, nope2\.png",
    )
    save(
        "class_out_of_range",
        [{**recs[0], "classes": np.array([47, 1])}],
        r"record 0 \(img0\.png\): class id 47 outside 1\.\.46 \(fashionpedia_label\)",
    )
    save(
        "ff_class_out_of_range",
        [{**recs[0], "classes": np.array([23, 1])}],
        r"class id 23 outside 1\.\.22",
        "facere_plus",
    )
    save("empty", [], "no predictions in the file")
    save(
        "lengths",
        [{**recs[0], "scores": np.array([0.5])}],
        r"2 classes, 1 scores, 2 boxes and 2 masks",
    )
    save(
        "mask_size",
        [{**recs[1], "masks": recs[0]["masks"]}],
        r"mask size \[64, 80\] differs from the image's \[72, 64\]",
    )
    np.savez(root / "nodata.npz", records=np.array(recs, dtype=object))
    cases["npz_without_data"] = (root / "nodata.npz", "amrcnn", "no 'data' array in the .npz")
    (root / "garbage.npy").write_bytes(b"nonsense")
    cases["garbage"] = (root / "garbage.npy", "amrcnn", "not a readable NumPy file")
    return cases


def _stage():
    """stages/evaluate.py as a module (stages/ is not a package on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stage_evaluate", REPO / "stages/evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_prediction_files_are_one_clear_line_and_write_nothing(gt, tmp_path, capsys):
    """Item 5 through the stage's command line: exit 1, one `error:` line, no output folder."""
    cases = _bad_files(gt, tmp_path / "bad")
    params = tmp_path / "params.yaml"
    params.write_text(
        "evaluate:\n  batch_size: 1\n  num_workers: 0\n  device: cpu\n"
        "  score_threshold: 0.5\n  num_overlays: 1\n"
    )
    main = _stage().main
    for name, (path, preset, expected) in cases.items():
        rc = main(
            [
                "--params",
                str(params),
                "--name",
                name,
                "--classes",
                "fashionfail",
                "--gt",
                str(gt[0]),
                "--images",
                str(gt[1]),
                "--predictions",
                str(path),
                "--preset",
                preset,
                "--out",
                str(tmp_path / "out" / name),
                "--no-aim",
                "--no-progress",
            ]
        )
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), (name, lines)
        assert re.search(expected, lines[0]), (name, lines[0])
        assert str(path) in lines[0] or name == "unknown_images" and path.name in lines[0]
    assert not (tmp_path / "out").exists()
