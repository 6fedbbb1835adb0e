"""fashionfail.inference.predictor (image decoding, batched prediction, COCO records) and the
predict CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from fashionfail.commands.predict import main
from fashionfail.core.categories import FASHIONFAIL_FP_IDS, LabelSpace
from fashionfail.core.jsonio import DataError
from fashionfail.inference.predictor import (
    ImageItem,
    list_images,
    load_model,
    predict,
    read_image,
    resolve_device,
)
from fashionfail.models.factory import build_model, load_trained

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


def write_checkpoint(
    path: Path, classes: str, boost: dict[int, float] | None = None, num_classes: int | None = None
) -> Path:
    """A tiny 64 px checkpoint in the LightningModule's format.

    `boost` raises the classifier bias of some model labels: a random model then returns
    confident detections of those labels (without it, every score is ~1/N, below 0.05).
    """
    space = LabelSpace(classes)
    torch.manual_seed(0)
    model = build_model("tiny", num_classes or space.num_classes, min_size=SIZE, max_size=SIZE)
    with torch.no_grad():
        for label, value in (boost or {}).items():
            model.roi_heads.box_predictor.cls_score.bias[label] += value
    hparams = {"train": {"classes": classes, "arch": "tiny", "min_size": SIZE, "max_size": SIZE}}
    state = {"model." + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)
    return path


def load_fast(ckpt: Path):
    """load_trained, keeping at most 10 detections per image (the mask head dominates)."""
    model, space = load_trained(ckpt)
    model.roi_heads.detections_per_img = 10
    return model, space


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Random-background JPEGs (height, width) with a coloured rectangle each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        pixels = rng.integers(150, 230, size=(h, w, 3), dtype=np.uint8)
        pixels[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = rng.integers(0, 255, size=3)
        path = folder / f"img_{i:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=95)
        paths.append(path)
    return paths


# --- Decoding ------------------------------------------------------------------------------


def test_read_image_modes(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")  # mode L
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15] = (10, 20, 30, 255)  # left half opaque, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for name in ("rgb", "gray", "palette", "rgba"):
        t = read_image(tmp_path / f"{name}.png")
        assert t.dtype == torch.uint8 and t.shape == (3, 20, 30), name
    assert read_image(tmp_path / "gray.png")[:, 0, 0].tolist() == [200, 200, 200]
    assert read_image(tmp_path / "palette.png")[:, 0, 0].tolist() == [200, 0, 0]
    rgba_t = read_image(tmp_path / "rgba.png")
    assert rgba_t[:, 0, 0].tolist() == [10, 20, 30]
    assert rgba_t[:, 0, 29].tolist() == [255, 255, 255]  # transparent -> white, not black


def test_read_image_applies_exif_orientation(tmp_path):
    stored = np.full((20, 30, 3), 255, np.uint8)
    stored[:4, :4] = (255, 0, 0)  # red top-left corner as stored
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    t = read_image(tmp_path / "rotated.jpg")
    assert t.shape == (3, 30, 20)  # upright: portrait
    assert t[0, 1, -2] > 200 and t[1, 1, -2] < 60  # stored top-left is now top-right
    # Dataset images keep the stored orientation: their annotations refer to stored pixels.
    stored_t = read_image(tmp_path / "rotated.jpg", upright=False)
    assert stored_t.shape == (3, 20, 30) and stored_t[0, 1, 1] > 200 and stored_t[1, 1, 1] < 60


def test_undecodable_and_truncated_images_are_named(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"definitely not a JPEG")
    with pytest.raises(DataError, match="junk.jpg: cannot decode image"):
        read_image(tmp_path / "junk.jpg")
    good = write_images(tmp_path / "ok", [(64, 64)])[0]
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_list_images_sorted_and_filtered(tmp_path):
    for name in ("b.JPG", "a.png", "c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()  # a folder, not an image
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp"]
    with pytest.raises(DataError, match="no image files"):
        list_images(tmp_path / "sub.jpg")
    with pytest.raises(DataError, match="image folder not found"):
        list_images(tmp_path / "missing")


def test_checkpoint_errors_are_one_line(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="junk.ckpt: not a readable checkpoint"):
        load_model(tmp_path / "junk.ckpt")
    with pytest.raises(DataError, match="missing.ckpt: checkpoint not found"):
        load_model(tmp_path / "missing.ckpt")
    wrong = write_checkpoint(tmp_path / "wrong.ckpt", "fashionfail", num_classes=47)
    with pytest.raises(DataError, match="wrong.ckpt: weights do not fit tiny with 23") as err:
        load_model(wrong)
    assert "\n" not in str(err.value)


def test_cuda_without_gpu_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(DataError, match="no CUDA GPU"):
        resolve_device("cuda")


# --- Prediction ----------------------------------------------------------------------------


def test_records_are_coco_results_in_dataset_ids(tmp_path):
    # FashionFail model, label 2 -> Fashionpedia id 1; label 3 -> Fashionpedia id 3.
    ckpt = write_checkpoint(tmp_path / "ff.ckpt", "fashionfail", {2: 6.0, 3: 6.0})
    model, space = load_fast(ckpt)
    sizes = [(48, 80), (64, 64), (90, 40)]  # any size, mixed in one batch
    paths = write_images(tmp_path / "img", sizes)
    items = [ImageItem(10 + i, p) for i, p in enumerate(paths)]
    records = predict(
        model, space, items, batch_size=3, device="cpu", score_threshold=0.2, progress=False
    )
    assert records
    assert {r["category_id"] for r in records} <= {1, 3}
    for r in records:
        h, w = sizes[r["image_id"] - 10]
        assert r["file_name"] == paths[r["image_id"] - 10].name
        assert r["score"] >= 0.2
        assert r["segmentation"]["size"] == [h, w]
        assert isinstance(r["segmentation"]["counts"], str)
        mask = mask_utils.decode(
            {**r["segmentation"], "counts": r["segmentation"]["counts"].encode()}
        )
        assert mask.shape == (h, w)
        x, y, bw, bh = r["bbox"]
        assert x >= 0 and y >= 0 and x + bw <= w + 0.01 and y + bh <= h + 0.01
    json.dumps(records)  # plain JSON types only


def test_keep_categories_drops_other_classes(tmp_path):
    # Fashionpedia model boosted on id 0 (FashionFail class) and id 2 (sweater, not one).
    ckpt = write_checkpoint(tmp_path / "fp.ckpt", "fashionpedia", {1: 6.0, 3: 6.0})
    model, space = load_fast(ckpt)
    model.roi_heads.detections_per_img = 100  # the default: enough for both classes to appear
    items = [ImageItem(0, p) for p in write_images(tmp_path / "img", [(64, 64)])]
    every = predict(model, space, items, device="cpu", progress=False)
    kept = predict(
        model, space, items, device="cpu", keep_categories=FASHIONFAIL_FP_IDS, progress=False
    )
    assert {r["category_id"] for r in every} == {0, 2}
    assert kept == [r for r in every if r["category_id"] == 0]


def test_batching_does_not_change_results(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ff.ckpt", "fashionfail", {1: 6.0})
    model, space = load_fast(ckpt)
    paths = write_images(tmp_path / "img", [(SIZE, SIZE)] * 3)
    items = [ImageItem(i, p) for i, p in enumerate(paths)]
    one = predict(model, space, items, batch_size=1, device="cpu", progress=False)
    # Batched, and decoded in a DataLoader worker process as the evaluate stage does.
    three = predict(model, space, items, batch_size=3, device="cpu", num_workers=1, progress=False)
    assert [r["image_id"] for r in one] == [r["image_id"] for r in three]
    assert len({r["image_id"] for r in one}) == 3  # each image's detections stay its own
    np.testing.assert_allclose([r["bbox"] for r in one], [r["bbox"] for r in three], atol=0.02)
    np.testing.assert_allclose([r["score"] for r in one], [r["score"] for r in three], atol=1e-4)


def test_size_mismatch_with_annotations_is_named(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ff.ckpt", "fashionfail")
    model, space = load_fast(ckpt)
    path = write_images(tmp_path / "img", [(40, 60)])[0]
    with pytest.raises(DataError, match="img_00.jpg: image is 60x40 .* says 40x60 for image id 5"):
        predict(model, space, [ImageItem(5, path, (60, 40))], device="cpu", progress=False)


# --- CLI ------------------------------------------------------------------------------------


def test_help_documents_the_output(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in (
        "--images",
        "--checkpoint",
        "--out",
        "--overlays",
        "--batch-size",
        "--device",
        "--score-threshold",
        "image_id",
        "sorted",
    ):
        assert word in text


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--batch-size", "0", "batch_size"),
        ("--workers", "-1", "num_workers"),
        ("--score-threshold", "1.5", "score_threshold"),
    ],
)
def test_cli_options_follow_the_config_rules(tmp_path, capsys, flag, value, field):
    """The CLI's options are checked by config.PredictConfig, the evaluate section's rules."""
    out = tmp_path / "out.json"
    args = ["--images", str(tmp_path), "--checkpoint", "x.ckpt", "--out", str(out), flag, value]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: command line.{field}: ")
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_results_and_overlays(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ff.ckpt", "fashionfail", {1: 6.0})
    folder = tmp_path / "photos"
    write_images(folder, [(64, 64), (50, 70)])
    Image.new("L", (40, 30), 128).save(folder / "a_gray.png")  # sorts first: image_id 0
    (folder / "readme.txt").write_text("not an image")
    out, overlays = tmp_path / "out" / "results.json", tmp_path / "overlays"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashionfail.commands.predict",
            "--images",
            str(folder),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--overlays",
            str(overlays),
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--score-threshold",
            "0.3",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # small ops; threads only contend here
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())
    names = ["a_gray.png", "img_00.jpg", "img_01.jpg"]
    assert records and all(names[r["image_id"]] == r["file_name"] for r in records)
    assert all(r["score"] >= 0.3 and r["category_id"] == 0 for r in records)
    assert sorted(p.name for p in overlays.iterdir()) == ["a_gray.png", "img_00.png", "img_01.png"]
    with Image.open(overlays / "img_00.png") as im:
        assert im.mode == "RGB" and max(im.size) >= 256


def test_cli_skips_unreadable_images_on_request_and_says_what_it_dropped(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ff.ckpt", "fashionfail", {1: 6.0})
    folder = tmp_path / "photos"
    write_images(folder, [(64, 64), (50, 70)])
    (folder / "img_01b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "results.json"
    base = [
        "--images",
        str(folder),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]

    assert main(base) == 1  # by default one unreadable file fails the run, nothing written
    assert "img_01b.jpg: cannot decode image" in capsys.readouterr().err
    assert not out.exists()

    assert main([*base, "--skip-unreadable", "--score-threshold", "0"]) == 3
    scores = sorted(r["score"] for r in json.loads(out.read_text()))
    threshold = round(scores[len(scores) // 2], 4)
    capsys.readouterr()
    assert main([*base, "--skip-unreadable", "--score-threshold", str(threshold)]) == 3
    err = capsys.readouterr().err
    records = json.loads(out.read_text())
    assert records and {r["file_name"] for r in records} <= {"img_00.jpg", "img_01.jpg"}
    skipped = json.loads((tmp_path / "results.skipped.json").read_text())
    assert [Path(s["file"]).name for s in skipped] == ["img_01b.jpg"]
    assert "cannot decode image" in skipped[0]["error"]
    summary = err.strip().splitlines()[-1]
    assert err.count("skipped: ") == 1
    below = sum(score < threshold for score in scores)
    assert below > 0 and len(records) == len(scores) - below
    assert summary.startswith(
        f"wrote {len(records)} detections on 2 images to {out}; {below} detections below "
        f"--score-threshold {threshold:g} dropped; skipped 1 unreadable images (see "
    )

    # Nothing left above the threshold: exit 0, an empty list, and a hint.
    assert (
        main([*base[:-2], "--batch-size", "1", "--skip-unreadable", "--score-threshold", "1.0"])
        == 3
    )
    assert json.loads(out.read_text()) == []
    assert "no detection left: try a lower --score-threshold" in capsys.readouterr().err
