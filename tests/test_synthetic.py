"""Synthetic data: deterministic, Fashionpedia/FashionFail-shaped, masks matching pixels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from fashionfail.core.categories import (
    FASHIONFAIL_FP_IDS,
    NUM_FASHIONPEDIA,
    fashionpedia_categories,
)
from fashionfail.core.config import SyntheticSource
from fashionfail.core.jsonio import load_json
from fashionfail.data.synthetic import COLOURS, SHAPES, class_appearance, generate

FP_KEYS = {"info", "categories", "attributes", "images", "annotations", "licenses"}
FP_IMAGE_KEYS = {
    "id",
    "width",
    "height",
    "file_name",
    "license",
    "time_captured",
    "original_url",
    "isstatic",
    "kaggle_id",
}
FP_ANN_KEYS = {
    "id",
    "image_id",
    "category_id",
    "attribute_ids",
    "segmentation",
    "bbox",
    "area",
    "iscrowd",
}
FF_KEYS = {"info", "licenses", "categories", "images", "annotations"}
FF_IMAGE_KEYS = {"id", "file_name", "width", "height", "license", "original_url"}
FF_ANN_KEYS = {"id", "image_id", "category_id", "area", "iscrowd", "bbox", "segmentation"}

FP_FILES = {
    "instances_attributes_train2020.json": "train",
    "instances_attributes_val2020.json": "test",
}
FF_SPLITS = ("train", "val", "test")


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _mask(seg: object, h: int, w: int) -> np.ndarray:
    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
    assert isinstance(seg["counts"], str)
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})


def test_same_seed_same_bytes_other_seed_other_bytes(
    synthetic_root: Path, synthetic_cfg: SyntheticSource, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate(synthetic_cfg, again)
    first, second = _files(synthetic_root), _files(again)
    assert first == second
    assert sum(name.endswith(".jpg") for name in first) == 40 + 6 + 30 + 4 + 5
    other = tmp_path / "other"
    generate(synthetic_cfg.model_copy(update={"seed": 4}), other)
    third = _files(other)
    fp = "fashionpedia/instances_attributes_train2020.json"
    assert third[fp] != first[fp]
    assert third["fashionfail/ff_test.json"] != first["fashionfail/ff_test.json"]
    assert {v for k, v in third.items() if k.endswith(".jpg")}.isdisjoint(
        {v for k, v in first.items() if k.endswith(".jpg")}
    )


def test_report_counts(synthetic_cfg: SyntheticSource, tmp_path: Path) -> None:
    cfg = synthetic_cfg.model_copy(update={"fp_train_images": 3, "fp_val_images": 2})
    report = generate(cfg, tmp_path)
    assert report["fashionpedia"]["train2020"]["images"] == 3
    assert report["fashionfail"]["val"] == {"images": 4, "annotations": 4}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


@pytest.mark.parametrize("name", FP_FILES)
def test_fashionpedia_shape(
    synthetic_root: Path, synthetic_cfg: SyntheticSource, name: str
) -> None:
    coco = load_json(synthetic_root / "fashionpedia" / name)
    assert set(coco) == FP_KEYS
    assert coco["categories"] == fashionpedia_categories()
    assert len(coco["attributes"]) == 294
    assert all(set(a) == {"id", "name", "supercategory", "level"} for a in coco["attributes"])
    assert all(set(i) == FP_IMAGE_KEYS for i in coco["images"])
    assert all(set(a) == FP_ANN_KEYS for a in coco["annotations"])
    image_ids = [i["id"] for i in coco["images"]]
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(set(image_ids)) == len(image_ids) and len(set(ann_ids)) == len(ann_ids)
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    assert set(per_image) == set(image_ids)
    assert max(per_image.values()) <= synthetic_cfg.max_objects
    folder = synthetic_root / "fashionpedia" / "images" / FP_FILES[name]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        i["file_name"] for i in coco["images"]
    )


def test_fashionpedia_content(synthetic_root: Path) -> None:
    coco = load_json(synthetic_root / "fashionpedia" / "instances_attributes_train2020.json")
    anns = coco["annotations"]
    assert {a["category_id"] for a in anns} == set(range(NUM_FASHIONPEDIA))
    assert max(Counter(a["category_id"] for a in anns).values()) > 1  # skewed, not one each
    polygons = [a for a in anns if isinstance(a["segmentation"], list)]
    assert 0 < len(anns) - len(polygons) < 0.2 * len(anns)  # mostly polygons, a few RLE
    glasses = [a for a in polygons if a["category_id"] == 13]
    assert glasses and all(len(a["segmentation"]) == 2 for a in glasses)  # two lenses
    assert Counter(len(a["segmentation"]) for a in polygons)[2] > len(glasses)  # others too


@pytest.mark.parametrize("split", FF_SPLITS)
def test_fashionfail_shape(
    synthetic_root: Path, synthetic_cfg: SyntheticSource, split: str
) -> None:
    coco = load_json(synthetic_root / "fashionfail" / f"ff_{split}.json")
    n = getattr(synthetic_cfg, f"ff_{split}_images")
    assert set(coco) == FF_KEYS
    assert coco["categories"] == fashionpedia_categories()
    assert all(set(i) == FF_IMAGE_KEYS for i in coco["images"])
    assert all(set(a) == FF_ANN_KEYS for a in coco["annotations"])
    assert [i["id"] for i in coco["images"]] == list(range(1, n + 1))
    assert [a["image_id"] for a in coco["annotations"]] == list(range(1, n + 1))  # one each
    assert [a["id"] for a in coco["annotations"]] == list(range(1, n + 1))
    cats = Counter(a["category_id"] for a in coco["annotations"])
    assert set(cats) <= set(FASHIONFAIL_FP_IDS)
    assert max(cats.values()) - min(cats.values()) <= 1  # balanced
    if n >= len(FASHIONFAIL_FP_IDS):
        assert set(cats) == set(FASHIONFAIL_FP_IDS)
    for img in coco["images"]:
        url = f"https://assetmanagerpim-res.cloudinary.com/images/{img['file_name']}"
        assert img["original_url"] == url
    assert all(a["iscrowd"] == 0 for a in coco["annotations"])
    assert all(isinstance(a["segmentation"]["counts"], str) for a in coco["annotations"])


def _all_annotated_images(root: Path):
    for name, folder in FP_FILES.items():
        yield root / "fashionpedia" / name, root / "fashionpedia" / "images" / folder
    for split in FF_SPLITS:
        yield root / "fashionfail" / f"ff_{split}.json", root / "fashionfail" / "images" / split


def test_masks_bboxes_and_areas_agree(synthetic_root: Path) -> None:
    for ann_path, _ in _all_annotated_images(synthetic_root):
        coco = load_json(ann_path)
        images = {i["id"]: i for i in coco["images"]}
        for a in coco["annotations"]:
            img = images[a["image_id"]]
            m = _mask(a["segmentation"], img["height"], img["width"])
            assert m.shape == (img["height"], img["width"]) == (64, 64)
            rle = mask_utils.encode(np.asfortranarray(m))
            assert a["area"] == int(mask_utils.area(rle)) > 0, (ann_path.name, a["id"])
            assert a["bbox"] == pytest.approx(mask_utils.toBbox(rle).tolist()), (ann_path, a["id"])


def test_pixels_follow_masks(synthetic_root: Path) -> None:
    """Object pixels are coloured, everything else is background: the mask is what is drawn."""
    coco = load_json(synthetic_root / "fashionfail" / "ff_train.json")
    folder = synthetic_root / "fashionfail" / "images" / "train"
    for img, ann in zip(coco["images"], coco["annotations"], strict=True):
        pixels = np.asarray(Image.open(folder / img["file_name"]).convert("RGB")).astype(int)
        assert pixels.shape == (64, 64, 3)
        m = _mask(ann["segmentation"], 64, 64).astype(bool)
        # Saturation (max - min channel): the background is near-white grey, objects saturated.
        sat = pixels.max(axis=2) - pixels.min(axis=2)
        inner = m & ~_grow(~m)  # away from the edge, where JPEG blurs
        outer = ~m & ~_grow(m)
        assert (sat[inner] > 60).mean() > 0.85, img["file_name"]
        assert (sat[outer] < 30).mean() > 0.98, img["file_name"]


def _grow(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    for axis in (0, 1):
        for shift in (-1, 1):
            out |= np.roll(m, shift, axis=axis)
    return out


def test_class_looks_are_distinct() -> None:
    looks = [class_appearance(i) for i in range(NUM_FASHIONPEDIA)]
    assert len({(a.shape, a.colour) for a in looks}) == NUM_FASHIONPEDIA
    assert {a.shape for a in looks} == set(SHAPES) and {a.colour for a in looks} == set(COLOURS)
    assert class_appearance(13).shape == "pair"  # glasses: two lenses
    with pytest.raises(ValueError):
        class_appearance(NUM_FASHIONPEDIA)


@pytest.mark.slow
def test_real_profile_sizes(tmp_path: Path) -> None:
    """profile real: Fashionpedia-like images up to 1024 px with varied aspect ratios and several
    objects, FashionFail 2400 x 2400, in the same formats; masks agree with the stored boxes."""
    cfg = SyntheticSource(
        seed=1,
        image_size=64,
        fp_train_images=6,
        fp_val_images=1,
        ff_train_images=1,
        ff_val_images=1,
        ff_test_images=1,
        max_objects=13,
        profile="real",
    )
    report = generate(cfg, tmp_path)
    assert report["profile"] == "real"
    fp = load_json(tmp_path / "fashionpedia" / "instances_attributes_train2020.json")
    assert set(fp) == FP_KEYS and all(set(i) == FP_IMAGE_KEYS for i in fp["images"])
    sides = [(i["height"], i["width"]) for i in fp["images"]]
    assert all(max(s) == 1024 and 0.55 * 1024 - 1 <= min(s) <= 1024 for s in sides)
    assert len({s for s in sides}) > 1  # varied aspect ratios
    per_image = Counter(a["image_id"] for a in fp["annotations"])
    assert sum(per_image.values()) / len(fp["images"]) >= 4  # several objects per image
    multi = [a for a in fp["annotations"] if isinstance(a["segmentation"], list)]
    assert any(len(a["segmentation"]) == 2 for a in multi)  # multi-part polygons
    images = {i["id"]: i for i in fp["images"]}
    for a in fp["annotations"]:
        img = images[a["image_id"]]
        m = _mask(a["segmentation"], img["height"], img["width"])
        rle = mask_utils.encode(np.asfortranarray(m))
        assert a["area"] == int(mask_utils.area(rle)) > 0
        assert a["bbox"] == pytest.approx(mask_utils.toBbox(rle).tolist())
    first = images[fp["annotations"][0]["image_id"]]
    pixels = Image.open(tmp_path / "fashionpedia" / "images" / "train" / first["file_name"])
    assert pixels.size == (first["width"], first["height"])
    for split in FF_SPLITS:
        ff = load_json(tmp_path / "fashionfail" / f"ff_{split}.json")
        assert set(ff) == FF_KEYS
        img = ff["images"][0]
        assert (img["width"], img["height"]) == (2400, 2400)
        with Image.open(tmp_path / "fashionfail" / "images" / split / img["file_name"]) as im:
            assert im.size == (2400, 2400)
        seg = ff["annotations"][0]["segmentation"]
        assert seg["size"] == [2400, 2400]
        assert _mask(seg, 2400, 2400).sum() == ff["annotations"][0]["area"]
