"""The bad-input corpus (issue #10): bad files, params and faults fed to the stages and predict.

Each case asserts its whole outcome: the exact `error: ...` line (or, for a counted skip, the
count and its report line), the exit status, and which files were written or changed: none for an
error. The stage `main`s run in-process (one torch import for the whole corpus); only the cases
that need processes (the parent watchdog, a second training holding the lock) start any.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from test_eval_stage import make_gt
from test_predict import write_checkpoint, write_images
from train_helpers import TINY_TRAIN

from fashionfail.core.categories import fashionpedia_categories
from fashionfail.core.config import load_section

REPO = Path(__file__).resolve().parents[1]


def _stage(name: str):
    """stages/<name>.py as a module (the stages folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file under root."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def changes(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@dataclass
class Case:
    run: Callable[[], int]
    code: int
    line: str  # the exact `error: ...` line, or (code 0) a line stderr must contain
    # Paths (relative to the case folder) allowed to change; a prefix ending in "/" covers a folder.
    may_change: tuple[str, ...] = ()
    check: Callable[[], None] | None = None  # further assertions on the outputs
    regex: bool = False  # `line` is a regular expression (a temporary file's random name)
    cleanup: Callable[[], None] | None = None


CASES: dict[str, Callable[[Path, Path], Case]] = {}


def case(fn: Callable[[Path, Path], Case]) -> Callable[[Path, Path], Case]:
    CASES[fn.__name__] = fn
    return fn


# --- Inputs ------------------------------------------------------------------------------------


def _coco_with(root: Path, n_images: int = 4) -> Path:
    """A small valid Fashionpedia-style file with polygons (split / rle-encode input)."""
    images = [
        {"id": i, "width": 40, "height": 30, "file_name": f"{i}.jpg"}
        for i in range(1, n_images + 1)
    ]
    anns = [
        {
            "id": 10 + i,
            "image_id": i,
            "category_id": 1,
            "iscrowd": 0,
            "area": 50.0,
            "bbox": [2, 2, 10, 5],
            "segmentation": [[2, 2, 12, 2, 12, 7, 2, 7]],
        }
        for i in range(1, n_images + 1)
    ]
    path = root / "ann.json"
    path.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": fashionpedia_categories()})
    )
    return path


def _edit(path: Path, fn: Callable[[dict], None]) -> Path:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path


def _ff(root: Path, synthetic_root: Path) -> Path:
    """A private copy of the synthetic FashionFail train/val files and images."""
    src, dst = synthetic_root / "fashionfail", root / "ff"
    for name in ("ff_train.json", "ff_val.json"):
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / name, dst / name)
    for part in ("train", "val"):
        shutil.copytree(src / "images" / part, dst / "images" / part)
    return dst


def _train_params(root: Path, **overrides) -> Path:
    values = load_section("finetune_facere_plus", REPO / "params.yaml").model_dump()
    values.update(TINY_TRAIN, weights="none", eval_map_every_n_epochs=0, limit_train_batches=1)
    values["betas"] = list(values["betas"])
    values.update(overrides)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"finetune_facere_plus": values}))
    return path


def _train(root: Path, ff: Path, params: Path | None = None, **paths: Path) -> Callable[[], int]:
    args = {
        "train_ann": ff / "ff_train.json",
        "train_img_dir": ff / "images/train",
        "val_ann": ff / "ff_val.json",
        "val_img_dir": ff / "images/val",
    }
    args.update(paths)
    argv = [
        "--params",
        str(params or root / "params.yaml"),
        "--section",
        "finetune_facere_plus",
        "--train-ann",
        str(args["train_ann"]),
        "--train-img-dir",
        str(args["train_img_dir"]),
        "--val-ann",
        str(args["val_ann"]),
        "--val-img-dir",
        str(args["val_img_dir"]),
        "--out-dir",
        str(root / "models"),
        "--live-dir",
        str(root / "dvclive"),
        "--aim-repo",
        str(root),
        "--name",
        "corpus",
    ]
    main = _stage("train").main
    return lambda: main(argv)


def _first_image(ann: Path, img_dir: Path) -> tuple[dict, Path]:
    img = json.loads(ann.read_text())["images"][0]
    return img, img_dir / img["file_name"]


def _bomb_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (Pillow checks the limit on opening)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    )


EVAL_PARAMS = {
    "evaluate": {
        "batch_size": 2,
        "num_workers": 0,
        "device": "cpu",
        "score_threshold": 0.5,
        "num_overlays": 1,
    }
}


def _eval(root: Path, gt: Path, images: Path, ckpt: Path, params: dict | None = None):
    (root / "eval_params.yaml").write_text(yaml.safe_dump(params or EVAL_PARAMS))
    argv = [
        "--params",
        str(root / "eval_params.yaml"),
        "--name",
        "x",
        "--gt",
        str(gt),
        "--images",
        str(images),
        "--checkpoint",
        str(ckpt),
        "--classes",
        "fashionfail",
        "--out",
        str(root / "eval" / "x"),
        "--no-aim",
        "--no-progress",
    ]
    main = _stage("evaluate").main
    return lambda: main(argv)


def _eval_case(root: Path) -> tuple[Path, Path, Path]:
    gt, images = make_gt(root / "data")
    return gt, images, write_checkpoint(root / "good.ckpt", "fashionpedia")


def _data_params(root: Path, split: dict | None = None, rle_encode: dict | None = None) -> Path:
    path = root / "data_params.yaml"
    sections = {"split": {"val_fraction": 0.25, "seed": 42}, "rle_encode": {"invalid": "error"}}
    sections["split"].update(split or {})
    sections["rle_encode"].update(rle_encode or {})
    path.write_text(yaml.safe_dump(sections))
    return path


def _split(root: Path, ann: Path, **split):
    argv = [
        "--params",
        str(_data_params(root, split=split)),
        "--ann",
        str(ann),
        "--train-out",
        str(root / "out/train.json"),
        "--val-out",
        str(root / "out/val.json"),
    ]
    main = _stage("split").main
    return lambda: main(argv)


def _rle(root: Path, ann: Path, **rle_encode):
    params = _data_params(root, rle_encode=rle_encode)
    argv = ["--params", str(params), "--ann", str(ann), "--out", str(root / "out/rle.json")]
    main = _stage("rle_encode").main
    return lambda: main(argv)


# --- split -------------------------------------------------------------------------------------


@case
def split_missing_file(root, syn):
    return Case(_split(root, root / "nope.json"), 1, f"error: {root}/nope.json: file not found")


@case
def split_binary_file_as_json(root, syn):
    ann = root / "ann.json"
    ann.write_bytes(bytes(range(256)) * 4)
    return Case(
        _split(root, ann),
        1,
        f"error: {ann}: malformed JSON (JSON is malformed: invalid character (byte 0))",
    )


@case
def split_html_error_page_as_json(root, syn):
    ann = root / "ann.json"
    ann.write_text("<!DOCTYPE html><html><body>503 Service Unavailable</body></html>")
    return Case(
        _split(root, ann),
        1,
        f"error: {ann}: malformed JSON (JSON is malformed: invalid character (byte 0))",
    )


@case
def split_duplicate_image_id(root, syn):
    ann = _edit(_coco_with(root), lambda d: d["images"][1].update(id=1))
    return Case(_split(root, ann), 1, f"error: {ann}: duplicate image id 1")


@case
def split_duplicate_annotation_id(root, syn):
    ann = _edit(_coco_with(root), lambda d: d["annotations"][1].update(id=11))
    return Case(_split(root, ann), 1, f"error: {ann}: duplicate annotation id 11")


@case
def split_annotation_of_unknown_image(root, syn):
    ann = _edit(_coco_with(root), lambda d: d["annotations"][0].update(image_id=99))
    return Case(
        _split(root, ann), 1, f"error: {ann}: annotation id 11 references unknown image id 99"
    )


@case
def split_one_image(root, syn):
    ann = _coco_with(root, n_images=1)
    return Case(
        _split(root, ann),
        1,
        f"error: {ann}: cannot split 1 images with val_fraction 0.25: With n_samples=1, "
        "test_size=0.25 and train_size=None, the resulting train set will be empty. "
        "Adjust any of the aforementioned parameters.",
    )


@case
def split_no_image(root, syn):
    ann = _edit(_coco_with(root), lambda d: d.update(images=[], annotations=[]))
    return Case(
        _split(root, ann),
        1,
        f"error: {ann}: cannot split 0 images with val_fraction 0.25: With n_samples=0, "
        "test_size=0.25 and train_size=None, the resulting train set will be empty. "
        "Adjust any of the aforementioned parameters.",
    )


@case
def split_images_not_a_list(root, syn):
    ann = _edit(_coco_with(root), lambda d: d.update(images={"1": {}}))
    return Case(
        _split(root, ann),
        1,
        f"error: {ann}: top-level 'images': Expected `array`, got `object` "
        "(expected a list of objects)",
    )


@case
def split_val_fraction_out_of_range(root, syn):
    return Case(
        _split(root, _coco_with(root), val_fraction=1.5),
        1,
        f"error: {root}/data_params.yaml:split.val_fraction: Value error, must be strictly "
        "between 0 and 1",
    )


@case
def split_unknown_param(root, syn):
    return Case(
        _split(root, _coco_with(root), test_size=0.3),
        1,
        f"error: {root}/data_params.yaml:split.test_size: Extra inputs are not permitted",
    )


@case
def split_seed_not_an_int(root, syn):
    return Case(
        _split(root, _coco_with(root), seed="42a"),
        1,
        f"error: {root}/data_params.yaml:split.seed: Input should be a valid integer",
    )


@case
def split_disk_full(root, syn):
    """ENOSPC while writing the second half: neither half is left behind."""
    ann = _coco_with(root)
    real = Path.write_bytes

    def full(self, data):
        if self.name.startswith(".val.json"):
            raise OSError(28, "No space left on device", str(self))
        return real(self, data)

    run = _split(root, ann)

    def run_full():
        Path.write_bytes = full
        try:
            return run()
        finally:
            Path.write_bytes = real

    line = re.escape(f"error: [Errno 28] No space left on device: '{root}/out/.val.json.")
    return Case(run_full, 1, line + r"\w+\.tmp'", regex=True)


@case
def split_unknown_category(root, syn):
    """The first stage that reads the file names it, with the validator's (training's) line."""
    ann = _edit(_coco_with(root), lambda d: d["annotations"][2].update(category_id=99))
    return Case(
        _split(root, ann),
        1,
        f"error: {ann}: annotation id 13 (image 3): category_id 99, not in 'categories' "
        "(unknown_category)",
    )


@case
def split_box_outside_image_counted(root, syn):
    """Copied as is (rle-encode drops it) but not without a word."""
    ann = _edit(_coco_with(root), lambda d: d["annotations"][1].update(bbox=[50, 2, 10, 5]))

    def check():
        both = [json.loads((root / f"out/{p}.json").read_text()) for p in ("train", "val")]
        assert sorted(a["id"] for d in both for a in d["annotations"]) == [11, 12, 13, 14]

    return Case(
        _split(root, ann),
        0,
        f"{ann}: counted 1 (bbox_outside_image 1), copied as is (rle-encode drops or counts "
        "them in its report)",
        ("out/train.json", "out/val.json"),
        check,
    )


# --- rle-encode --------------------------------------------------------------------------------


@case
def rle_unknown_category_error_under_drop(root, syn):
    """An ERROR rule of the validator stops rle-encode whatever its `invalid` policy."""
    ann = _edit(_coco_with(root), lambda d: d["annotations"][0].update(category_id=-1))
    return Case(
        _rle(root, ann, invalid="drop"),
        1,
        f"error: {ann}: annotation id 11 (image 1): category_id -1, not in 'categories' "
        "(unknown_category)",
    )


@case
def rle_box_outside_image_counted_drop(root, syn):
    ann = _edit(_coco_with(root), lambda d: d["annotations"][3].update(bbox=[2, -20, 10, 5]))

    def check():
        report = json.loads((root / "out/rle.report.json").read_text())
        assert report["dropped"]["counts"] == {"bbox_outside_image": 1}
        assert report["dropped"]["example_annotation_ids"] == {"bbox_outside_image": [14]}
        assert [
            a["id"] for a in json.loads((root / "out/rle.json").read_text())["annotations"]
        ] == [11, 12, 13]

    return Case(
        _rle(root, ann, invalid="drop"),
        0,
        f"rle-encode {ann}: 3/4 kept, dropped {{'bbox_outside_image': 1}}",
        ("out/rle.json", "out/rle.report.json"),
        check,
    )


@case
def rle_size_mismatch_error(root, syn):
    ann = _edit(
        _coco_with(root),
        lambda d: d["annotations"][1].update(segmentation={"size": [31, 40], "counts": "0"}),
    )
    return Case(
        _rle(root, ann),
        1,
        f"error: {ann}: annotation id 12 (image 2): RLE size [31, 40] != image [height, width] "
        "[30, 40] (rle_size_mismatch)",
    )


@case
def rle_size_mismatch_counted_drop(root, syn):
    ann = _edit(
        _coco_with(root),
        lambda d: d["annotations"][1].update(segmentation={"size": [31, 40], "counts": "0"}),
    )

    def check():
        report = json.loads((root / "out/rle.report.json").read_text())
        assert report["dropped"]["counts"] == {"rle_size_mismatch": 1}
        assert report["dropped"]["example_annotation_ids"] == {"rle_size_mismatch": [12]}
        assert [
            a["id"] for a in json.loads((root / "out/rle.json").read_text())["annotations"]
        ] == [11, 13, 14]

    return Case(
        _rle(root, ann, invalid="drop"), 0, "", ("out/rle.json", "out/rle.report.json"), check
    )


@case
def rle_unknown_param(root, syn):
    return Case(
        _rle(root, _coco_with(root), workers=4),
        1,
        f"error: {root}/data_params.yaml:rle_encode.workers: Extra inputs are not permitted",
    )


@case
def rle_unknown_policy(root, syn):
    return Case(
        _rle(root, _coco_with(root), invalid="skip"),
        1,
        f"error: {root}/data_params.yaml:rle_encode.invalid: Input should be 'drop' or 'error'",
    )


@case
def rle_missing_bbox(root, syn):
    ann = _edit(_coco_with(root), lambda d: d["annotations"][2].pop("bbox"))
    return Case(_rle(root, ann), 1, f"error: {ann}: annotation id 13 is missing key 'bbox'")


@case
def rle_annotations_not_objects(root, syn):
    ann = _edit(_coco_with(root), lambda d: d.update(annotations=[1, 2]))
    return Case(
        _rle(root, ann),
        1,
        f"error: {ann}: top-level 'annotations': Expected `object`, got `int` - at `$[0]` "
        "(expected a list of objects)",
    )


# --- training: params --------------------------------------------------------------------------

P = "finetune_facere_plus"


def _param_case(root, syn, line_tail: str, **overrides) -> Case:
    ff = _ff(root, syn)
    params = _train_params(root, **overrides)
    return Case(_train(root, ff), 1, f"error: {params}:{P}.{line_tail}")


@case
def train_max_epochs_minus_one(root, syn):
    return _param_case(root, syn, "max_epochs: Value error, must be >= 1", max_epochs=-1)


@case
def train_limit_train_batches_zero(root, syn):
    return _param_case(
        root,
        syn,
        "limit_train_batches: Value error, must be > 0: a fraction in (0, 1] or a "
        "number of batches >= 1",
        limit_train_batches=0,
    )


@case
def train_limit_train_batches_fraction_above_one(root, syn):
    return _param_case(
        root,
        syn,
        "limit_train_batches: Value error, a fraction must be in (0, 1] (an int is a "
        "number of batches)",
        limit_train_batches=1.5,
    )


@case
def train_monitor_typo(root, syn):
    from fashionfail.core.config import LOGGED_METRICS

    return _param_case(
        root,
        syn,
        "monitor: Value error, 'val/los' is not a metric the training logs; use one "
        f"of {', '.join(LOGGED_METRICS)}",
        monitor="val/los",
    )


@case
def train_unknown_key(root, syn):
    return _param_case(
        root, syn, "learning_rate: Extra inputs are not permitted", learning_rate=0.1
    )


@case
def train_lr_not_a_number(root, syn):
    return _param_case(root, syn, "lr: Input should be a valid number", lr="fast")


@case
def train_batch_size_zero(root, syn):
    return _param_case(root, syn, "batch_size: Value error, must be >= 1", batch_size=0)


@case
def train_lr_yaml11_string_is_accepted(root, syn):
    """`lr: 1e-3` is a string in YAML 1.1: accepted as 0.001; the run gets to the data check."""
    ff = _ff(root, syn)
    params = root / "params.yaml"
    _train_params(root)
    params.write_text(params.read_text().replace("lr: 0.001", "lr: 1e-3"))
    assert "lr: 1e-3" in params.read_text()
    return Case(
        _train(root, ff, train_ann=root / "missing.json"),
        1,
        f"error: {root}/missing.json: file not found",
    )


@case
def train_weights_not_found(root, syn):
    ff = _ff(root, syn)
    _train_params(root, weights=str(root / "facere.ckpt"))
    return Case(
        _train(root, ff),
        1,
        f"error: weights: {root}/facere.ckpt: file not found (use none, coco or a path)",
    )


@case
def train_remap_from_plain_state_dict(root, syn):
    ff = _ff(root, syn)
    from fashionfail.models.factory import build_model

    weights = root / "plain.pth"
    torch.save(build_model("tiny", 47, min_size=64, max_size=64).state_dict(), weights)
    _train_params(root, weights=str(weights), head_init="remap")
    return Case(
        _train(root, ff),
        1,
        f"error: weights: {weights}: head_init remap needs a checkpoint of this project "
        "(it names its classes); this file has no label space: use head_init random",
    )


@case
def train_remap_from_narrower_label_space(root, syn):
    """Facere (Fashionpedia) from a FashionFail checkpoint: 22 classes cannot serve 46."""
    ff = _ff(root, syn)
    ckpt = write_checkpoint(root / "ff.ckpt", "fashionfail")
    params = _train_params(root, weights=str(ckpt), head_init="remap", classes="fashionpedia")
    del params
    return Case(
        _train(root, ff),
        1,
        f"error: weights: {ckpt}: head_init remap: its fashionfail classes do not cover "
        "the fashionpedia classes; use head_init random",
    )


@case
def train_weights_of_another_architecture(root, syn):
    ff = _ff(root, syn)
    weights = root / "other.pth"
    torch.save({"backbone.body.conv1.weight": torch.zeros(3)}, weights)
    _train_params(root, weights=str(weights))
    return Case(
        _train(root, ff), 1, f"error: {weights}: no backbone weights match this architecture"
    )


@case
def train_params_binary(root, syn):
    ff = _ff(root, syn)
    params = root / "params.yaml"
    params.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    return Case(_train(root, ff), 1, f"error: {params}: not a text file (not UTF-8)")


@case
def train_params_missing_section(root, syn):
    ff = _ff(root, syn)
    params = root / "params.yaml"
    params.write_text("train_facere: {}\n")
    return Case(_train(root, ff), 1, f"error: {params}: missing section '{P}'")


# --- training: annotation files ----------------------------------------------------------------


def _ann_case(root, syn, mutate: Callable[[dict], None], line: Callable[[Path], str]) -> Case:
    ff = _ff(root, syn)
    _train_params(root)
    ann = _edit(ff / "ff_train.json", mutate)
    return Case(_train(root, ff), 1, line(ann))


@case
def train_unknown_category(root, syn):
    # 2 (sweater) is a Fashionpedia class but not a FashionFail one.
    return _ann_case(
        root,
        syn,
        lambda d: d["annotations"][0].update(category_id=2),
        lambda a: (
            f"error: {a}: annotation id 1 (image 1): category_id 2, not a "
            "fashionfail class (unknown_category)"
        ),
    )


@case
def train_rle_size_mismatch(root, syn):
    def mutate(d):
        d["annotations"][0]["segmentation"]["size"] = [64, 65]

    return _ann_case(
        root,
        syn,
        mutate,
        lambda a: (
            f"error: {a}: annotation id 1 (image 1): RLE size [64, 65] != "
            "image [height, width] [64, 64] (rle_size_mismatch)"
        ),
    )


@case
def train_duplicate_annotation_id(root, syn):
    return _ann_case(
        root,
        syn,
        lambda d: d["annotations"][1].update(id=1),
        lambda a: f"error: {a}: duplicate annotation id 1",
    )


@case
def train_unknown_image_id(root, syn):
    return _ann_case(
        root,
        syn,
        lambda d: d["annotations"][0].update(image_id=999),
        lambda a: f"error: {a}: annotation id 1 references unknown image id 999",
    )


@case
def train_bbox_not_four_numbers(root, syn):
    return _ann_case(
        root,
        syn,
        lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
        lambda a: (
            f"error: {a}: annotation id 1 (image 1): bbox [1, 2, 3] is not "
            "[x, y, w, h] (malformed_bbox)"
        ),
    )


@case
def train_bbox_string_number(root, syn):
    return _ann_case(
        root,
        syn,
        lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]),
        lambda a: (
            f"error: {a}: annotation id 1 (image 1): bbox [1, 2, '3', 4] is "
            "not [x, y, w, h] (malformed_bbox)"
        ),
    )


@case
def train_degenerate_geometry_dropped_and_counted(root, syn):
    """Tolerated problems in training sets (a negative box, as the original's
    SanitizeBoundingBoxes drops it; an empty polygon list, as rle-encode drops it) are dropped and
    counted in run.json and on stderr; the run trains on the rest and succeeds."""
    ff = _ff(root, syn)
    _train_params(root)
    _edit(ff / "ff_train.json", lambda d: d["annotations"][0].update(bbox=[5, 5, -3, 4]))
    val = _edit(ff / "ff_val.json", lambda d: d["annotations"][0].update(segmentation=[]))

    def check():
        info = json.loads((root / "models/run.json").read_text())
        train, val_checks = info["data_checks"]["train"], info["data_checks"]["val"]
        assert train["dropped"] == {"degenerate_bbox": 1}
        assert train["example_annotation_ids"] == {"degenerate_bbox": [1]}
        assert train["annotations_kept"] == train["annotations_in"] - 1
        assert val_checks["dropped"] == {"empty_segmentation": 1}
        assert info["status"] == "complete"
        leftovers = [p.name for p in (root / "models").iterdir() if p.name.endswith(".tmp")]
        assert leftovers == [] and (root / "models/best.ckpt").is_file()

    return Case(
        _train(root, ff),
        0,
        f"{val}: dropped 1 (empty_segmentation 1) (see {root}/models/run.json)",
        ("models/", "dvclive/", ".aim/", ".models.train.lock"),
        check,
    )


# --- training: images --------------------------------------------------------------------------


def _img_case(root, syn, damage: Callable[[Path, dict], str]) -> Case:
    ff = _ff(root, syn)
    _train_params(root)
    img, path = _first_image(ff / "ff_train.json", ff / "images/train")
    problem = damage(path, img)
    return Case(
        _train(root, ff),
        1,
        f"error: {path}: {problem} for image id {img['id']} of {ff}/ff_train.json",
    )


@case
def train_image_wrong_size(root, syn):
    def damage(path, img):
        Image.new("RGB", (64, 48)).save(path, "JPEG")
        return "image is 64x48 (WxH) but the annotation file says 64x64 (image_size_mismatch)"

    return _img_case(root, syn, damage)


@case
def train_image_is_html(root, syn):
    def damage(path, img):
        path.write_text("<html><body>404 Not Found</body></html>")
        return f"cannot decode image (cannot identify image file '{path}') (image_undecodable)"

    return _img_case(root, syn, damage)


@case
def train_image_truncated(root, syn):
    def damage(path, img):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return (
            "cannot decode image (image file is truncated (54 bytes not processed)) "
            "(image_undecodable)"
        )

    return _img_case(root, syn, damage)


@case
def train_image_decompression_bomb(root, syn):
    def damage(path, img):
        _bomb_png(path, 20000, 20000)
        return (
            "Image size (400000000 pixels) exceeds limit of 178956970 pixels, could be "
            "decompression bomb DOS attack. (image_too_large)"
        )

    return _img_case(root, syn, damage)


@case
def train_image_missing(root, syn):
    def damage(path, img):
        path.unlink()
        return "image file not found (image_file_missing)"

    return _img_case(root, syn, damage)


@case
def train_image_folder_missing(root, syn):
    ff = _ff(root, syn)
    _train_params(root)
    return Case(
        _train(root, ff, val_img_dir=root / "nowhere"),
        1,
        f"error: {root}/nowhere: image folder not found (images of {ff}/ff_val.json)",
    )


# --- training: faults --------------------------------------------------------------------------


@case
def train_folder_locked_by_another_training(root, syn):
    from fashionfail.core.guard import training_lock

    ff = _ff(root, syn)
    _train_params(root)
    run = _train(root, ff)

    def locked():
        with training_lock(root / "models"):
            return run()

    return Case(
        locked,
        1,
        f"error: {root}/models: another training is writing this folder (lock "
        f"{root}/.models.train.lock is held); wait for it to finish or stop it, or use "
        "another output folder",
        (".models.train.lock",),
    )


# --- evaluate ----------------------------------------------------------------------------------


def _gt_case(root, mutate: Callable[[dict], None], line: Callable[[Path], str]) -> Case:
    gt, images, ckpt = _eval_case(root)
    _edit(gt, mutate)
    return Case(_eval(root, gt, images, ckpt), 1, line(gt))


@case
def eval_gt_negative_box(root, syn):
    return _gt_case(
        root,
        lambda d: d["annotations"][0].update(bbox=[5, 5, -4, 10]),
        lambda g: (
            f"error: {g}: annotation id 1 (image 3): bbox [5, 5, -4, 10] has "
            "zero or negative size (degenerate_bbox)"
        ),
    )


@case
def eval_gt_zero_area_box(root, syn):
    return _gt_case(
        root,
        lambda d: d["annotations"][0].update(bbox=[5, 5, 0, 10]),
        lambda g: (
            f"error: {g}: annotation id 1 (image 3): bbox [5, 5, 0, 10] has "
            "zero or negative size (degenerate_bbox)"
        ),
    )


@case
def eval_gt_box_outside_image(root, syn):
    return _gt_case(
        root,
        lambda d: d["annotations"][0].update(bbox=[500, 5, 4, 10]),
        lambda g: (
            f"error: {g}: annotation id 1 (image 3): bbox [500, 5, 4, 10] lies "
            "outside the 64x64 image (bbox_outside_image)"
        ),
    )


@case
def eval_gt_rle_wrong_size(root, syn):
    def mutate(d):
        d["annotations"][0]["segmentation"]["size"] = [64, 63]

    return _gt_case(
        root,
        mutate,
        lambda g: (
            f"error: {g}: annotation id 1 (image 3): RLE size [64, 63] != "
            "image [height, width] [64, 64] (rle_size_mismatch)"
        ),
    )


@case
def eval_gt_empty_polygon(root, syn):
    return _gt_case(
        root,
        lambda d: d["annotations"][1].update(segmentation=[]),
        lambda g: f"error: {g}: annotation id 2 (image 5): empty polygon list (empty_segmentation)",
    )


@case
def eval_gt_duplicate_image_id(root, syn):
    return _gt_case(
        root, lambda d: d["images"][1].update(id=3), lambda g: f"error: {g}: duplicate image id 3"
    )


@case
def eval_gt_box_beyond_image_counted(root, syn):
    """Slightly beyond the image: scored as the original scores it, and counted in metrics.json."""
    gt, images, ckpt = _eval_case(root)
    _edit(gt, lambda d: d["annotations"][0].update(bbox=[40, 5, 30, 10]))

    def check():
        metrics = json.loads((root / "eval/x/metrics.json").read_text())
        assert metrics["gt_counted"] == {"bbox_beyond_image": 1}

    return Case(
        _eval(root, gt, images, ckpt),
        0,
        f"{gt}: counted 1 (bbox_beyond_image 1) (see metrics.json)",
        ("eval/",),
        check,
    )


@case
def eval_image_wrong_size(root, syn):
    gt, images, ckpt = _eval_case(root)
    img, path = _first_image(gt, images)
    Image.new("RGB", (10, 10)).save(path)
    return Case(
        _eval(root, gt, images, ckpt),
        1,
        f"error: {path}: image is 10x10 (WxH) but the annotation file says "
        f"{img['width']}x{img['height']} (image_size_mismatch) for image id {img['id']} "
        f"of {gt}",
    )


@case
def eval_image_missing(root, syn):
    gt, images, ckpt = _eval_case(root)
    img, path = _first_image(gt, images)
    path.unlink()
    return Case(
        _eval(root, gt, images, ckpt),
        1,
        f"error: {path}: image file not found (image_file_missing) for image id "
        f"{img['id']} of {gt}",
    )


@case
def eval_checkpoint_missing(root, syn):
    gt, images, _ = _eval_case(root)
    return Case(
        _eval(root, gt, images, root / "gone.ckpt"),
        1,
        f"error: {root}/gone.ckpt: checkpoint not found",
    )


@case
def eval_checkpoint_truncated(root, syn):
    gt, images, ckpt = _eval_case(root)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    return Case(
        _eval(root, gt, images, ckpt), 1, f"error: {ckpt}: not a readable checkpoint (RuntimeError)"
    )


@case
def eval_gt_binary_file(root, syn):
    gt, images, ckpt = _eval_case(root)
    gt.write_bytes(b"\x00\xff\xfe" * 10)
    return Case(
        _eval(root, gt, images, ckpt),
        1,
        f"error: {gt}: malformed JSON (str is not valid UTF-8: surrogates not allowed: line 1 "
        "column 1 (char 0))",
    )


@case
def eval_params_batch_size_zero(root, syn):
    gt, images, ckpt = _eval_case(root)
    params = {"evaluate": {**EVAL_PARAMS["evaluate"], "batch_size": 0}}
    return Case(
        _eval(root, gt, images, ckpt, params),
        1,
        f"error: {root}/eval_params.yaml:evaluate.batch_size: Value error, must be >= 1",
    )


# --- predict -----------------------------------------------------------------------------------


def _predict(root: Path, images: Path, ckpt: Path, *extra: str):
    from fashionfail.commands.predict import main

    argv = [
        "--images",
        str(images),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(root / "out/results.json"),
        "--device",
        "cpu",
        *extra,
    ]
    return lambda: main(argv)


@case
def predict_image_folder_missing(root, syn):
    ckpt = write_checkpoint(root / "good.ckpt", "fashionpedia")
    return Case(
        _predict(root, root / "nowhere", ckpt), 1, f"error: {root}/nowhere: image folder not found"
    )


@case
def predict_truncated_image(root, syn):
    ckpt = write_checkpoint(root / "good.ckpt", "fashionpedia")
    paths = write_images(root / "photos", [(40, 60), (40, 60)])
    paths[1].write_bytes(paths[1].read_bytes()[:200])
    return Case(
        _predict(root, root / "photos", ckpt),
        1,
        f"error: {paths[1]}: cannot decode image (Truncated File Read)",
    )


@case
def predict_html_saved_as_jpg_in_worker(root, syn):
    """Decoded in a DataLoader worker: still one line, not the worker's traceback."""
    ckpt = write_checkpoint(root / "good.ckpt", "fashionpedia")
    paths = write_images(root / "photos", [(40, 60)])
    paths[0].write_text("<html>403 Forbidden</html>")
    return Case(
        _predict(root, root / "photos", ckpt, "--workers", "1"),
        1,
        f"error: {paths[0]}: cannot decode image (cannot identify image file '{paths[0]}')",
    )


@case
def predict_checkpoint_is_a_folder(root, syn):
    paths = write_images(root / "photos", [(40, 60)])
    del paths
    (root / "ckpt").mkdir()
    return Case(
        _predict(root, root / "photos", root / "ckpt"),
        1,
        f"error: {root}/ckpt: checkpoint not found",
    )


@case
def eval_gt_missing(root, syn):
    _, images, ckpt = _eval_case(root)
    return Case(
        _eval(root, root / "nope.json", images, ckpt), 1, f"error: {root}/nope.json: file not found"
    )


@case
def eval_gt_polygon_of_two_points(root, syn):
    return _gt_case(
        root,
        lambda d: d["annotations"][1].update(segmentation=[[1, 2, 3, 4]]),
        lambda g: (
            f"error: {g}: annotation id 2 (image 5): polygon part is not a list "
            "of >= 6 numbers (3 points) (malformed_polygon)"
        ),
    )


@case
def train_params_file_missing(root, syn):
    ff = _ff(root, syn)
    return Case(
        _train(root, ff, params=root / "nope.yaml"),
        1,
        f"error: {root}/nope.yaml: params file not found",
    )


@case
def train_infinite_number_in_json(root, syn):
    ff = _ff(root, syn)
    _train_params(root)
    ann = ff / "ff_train.json"
    text = ann.read_text()
    ann.write_text(
        text.replace('"bbox": [', '"bbox": [1e999, ', 1).replace('"bbox":[', '"bbox":[1e999,', 1)
    )
    assert "1e999" in ann.read_text()
    line = re.escape(f"error: {ann}: malformed JSON (number is infinity when parsed as double: ")
    return Case(_train(root, ff), 1, line + r"line 1 column \d+ \(char \d+\)\)", regex=True)


@case
def eval_image_folder_missing(root, syn):
    gt, _, ckpt = _eval_case(root)
    return Case(
        _eval(root, gt, root / "nowhere", ckpt),
        1,
        f"error: {root}/nowhere: image folder not found (images of {gt})",
    )


@case
def split_permission_denied(root, syn):
    """An unreadable input (simulated: tests may run as root, which chmod does not stop)."""
    ann = _coco_with(root)
    real = Path.read_bytes

    def denied(self):
        if self == ann:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    run = _split(root, ann)

    def run_denied():
        Path.read_bytes = denied
        try:
            return run()
        finally:
            Path.read_bytes = real

    return Case(run_denied, 1, f"error: [Errno 13] Permission denied: '{ann}'")


# --- download ----------------------------------------------------------------------------------


def _download(root: Path, server) -> Callable[[], int]:
    from http_fault_server import official_cfg

    cfg = official_cfg(server).model_dump()
    synthetic = load_section("download", REPO / "params.yaml").synthetic.model_dump()
    params = root / "download_params.yaml"
    params.write_text(
        yaml.safe_dump(
            {"download": {"source": "official", "official": cfg, "synthetic": synthetic}}
        )
    )
    main = _stage("download").main
    argv = ["--params", str(params), "--out", str(root / "raw")]
    return lambda: main(argv)


def _server():
    from http_fault_server import FakeOfficial

    return FakeOfficial().start()


@case
def download_html_page_as_annotation_json_then_healed(root, syn):
    """A 200 that is an HTML page: the stage fails naming the URL, keeps no copy of it, and the
    next run (server fixed) completes the download."""
    from http_fault_server import ANN_VAL

    server = _server()
    good = server.files[ANN_VAL]
    server.files[ANN_VAL] = b"<!DOCTYPE html><html><body>Service Unavailable</body></html>"
    run = _download(root, server)
    name = "fashionpedia/instances_attributes_val2020.json"
    dest, staged = root / "raw" / name, root / ".official-download" / name

    def check():
        assert not dest.exists() and not staged.exists()
        assert not staged.with_name(staged.name + ".part").exists()
        server.files[ANN_VAL] = good
        assert run() == 0
        assert dest.read_bytes() == good

    return Case(
        run,
        1,
        f"error: {server.url}{ANN_VAL}: failed after 4 attempt(s); last error: content "
        f"invalid: an HTML page, not JSON (report: {root}/raw/download_report.json)",
        ("raw/", ".official-download/"),  # the layout; the download's staging folder beside it
        check,
        cleanup=server.stop,
    )


@case
def download_truncated_image_left_out_and_counted(root, syn):
    """An image that arrives truncated on every attempt is left out of its split (counted in
    download_report.json), like a missing one; the rest of the split is complete."""
    from http_fault_server import image_path

    server = _server()
    path = image_path("train_2.jpg")
    server.files[path] = server.files[path][:200]

    def check():
        report = json.loads((root / "raw/download_report.json").read_text())["official"]
        missing = {m["file_name"]: m["reason"] for m in report["missing_images"]}
        assert missing["train_2.jpg"] == (
            "failed after 4 attempt(s); last error: content invalid: not a readable image "
            "(Truncated File Read)"
        )
        ids = [
            i["id"]
            for i in json.loads((root / "raw/fashionfail/ff_train.json").read_text())["images"]
        ]
        assert ids == [1, 3]

    return Case(
        _download(root, server),
        0,
        "download (official): {'fashionpedia': {'train': 3, 'test': 2}, 'fashionfail': "
        "{'train': 2, 'val': 2, 'test': 3}}; 2 FashionFail images missing, left out (see "
        "download_report.json)",
        ("raw/", ".official-download/"),  # the layout; the download's staging folder beside it
        check,
        cleanup=server.stop,
    )


# --- The corpus --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_case(name, tmp_path, synthetic_root, capsys, monkeypatch, request):
    monkeypatch.delenv("FASHIONFAIL_DEBUG", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    root = tmp_path / "case"
    root.mkdir()
    c = CASES[name](root, synthetic_root)
    if c.cleanup is not None:
        request.addfinalizer(c.cleanup)
    capsys.readouterr()
    before = snapshot(root)
    code = c.run()
    captured = capsys.readouterr()
    err = captured.err
    changed = changes(before, snapshot(root))
    assert code == c.code, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    if c.code == 0:
        assert errors == []
        assert not c.line or c.line in (captured.out + err).splitlines(), err
    elif c.regex:
        assert len(errors) == 1 and re.fullmatch(c.line, errors[0]), err
    else:
        assert errors == [c.line]
    unexpected = {
        p
        for p in changed
        if not any(
            p == allowed or (allowed.endswith("/") and p.startswith(allowed))
            for allowed in c.may_change
        )
    }
    assert unexpected == set(), f"written or changed: {sorted(unexpected)}"
    if c.check is not None:
        c.check()


def test_corpus_has_at_least_40_cases():
    assert len(CASES) >= 40
