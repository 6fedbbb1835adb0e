"""The paper's split: sklearn's exact ids, other keys kept, annotations follow their images."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.model_selection import train_test_split

from fashionfail.core.jsonio import DataError, dump_json, load_json
from fashionfail.data.split import split_coco, split_file


@pytest.fixture
def fp_train(synthetic_root: Path) -> Path:
    return synthetic_root / "fashionpedia" / "instances_attributes_train2020.json"


@pytest.mark.parametrize(("fraction", "seed"), [(0.25, 42), (0.4, 7)])
def test_ids_are_sklearns(fp_train: Path, tmp_path: Path, fraction: float, seed: int) -> None:
    coco = load_json(fp_train)
    ids = [img["id"] for img in coco["images"]]
    assert ids != sorted(ids)  # file order differs from id order, so the test can tell
    want_train, want_val = train_test_split(ids, test_size=fraction, random_state=seed)
    counts = split_file(fp_train, tmp_path / "a.json", tmp_path / "b.json", fraction, seed)
    train, val = load_json(tmp_path / "a.json"), load_json(tmp_path / "b.json")
    assert {i["id"] for i in train["images"]} == set(want_train)
    assert {i["id"] for i in val["images"]} == set(want_val)
    # Documented order: the input file's.
    assert [i["id"] for i in val["images"]] == [i for i in ids if i in set(want_val)]
    assert counts["val"]["images"] == len(want_val)


def test_other_keys_kept_and_annotations_follow(fp_train: Path, tmp_path: Path) -> None:
    coco = load_json(fp_train)
    split_file(fp_train, tmp_path / "a.json", tmp_path / "b.json", 0.25, 42)
    parts = [load_json(tmp_path / "a.json"), load_json(tmp_path / "b.json")]
    for part in parts:
        assert list(part) == list(coco)
        for key in coco:
            if key not in ("images", "annotations"):
                assert part[key] == coco[key], key
        image_ids = {i["id"] for i in part["images"]}
        assert all(a["image_id"] in image_ids for a in part["annotations"])
    # Every annotation lands exactly once, unchanged, in file order.
    by_image = {i["id"]: n for n, part in enumerate(parts) for i in part["images"]}
    for n, part in enumerate(parts):
        assert part["annotations"] == [
            a for a in coco["annotations"] if by_image[a["image_id"]] == n
        ]


def test_split_coco_matches_split_file(fp_train: Path, tmp_path: Path) -> None:
    train, val = split_coco(load_json(fp_train), 0.25, 42)
    split_file(fp_train, tmp_path / "a.json", tmp_path / "b.json", 0.25, 42)
    assert train == load_json(tmp_path / "a.json")
    assert val == load_json(tmp_path / "b.json")


def test_split_coco_leaves_input_alone(tiny_coco: dict) -> None:
    n_images, n_anns = len(tiny_coco["images"]), len(tiny_coco["annotations"])
    train, val = split_coco(tiny_coco, 0.34, 0)
    assert len(tiny_coco["images"]) == n_images and len(tiny_coco["annotations"]) == n_anns
    assert len(train["images"]) + len(val["images"]) == n_images
    assert len(train["annotations"]) + len(val["annotations"]) == n_anns


def test_bad_input_leaves_no_output(tiny_coco: dict, tmp_path: Path) -> None:
    tiny_coco["images"][1]["id"] = 7  # image ids 7, 7, 11
    dump_json(tiny_coco, tmp_path / "tiny.json")
    with pytest.raises(DataError, match=r"tiny\.json: duplicate image id 7$"):
        split_file(tmp_path / "tiny.json", tmp_path / "a.json", tmp_path / "b.json", 0.25, 42)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json"]
