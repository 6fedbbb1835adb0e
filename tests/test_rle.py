"""rle-encode: exact equality with pycocotools, each invalid-geometry case under both policies."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fashionfail.core.jsonio import DataError, dump_json, load_json
from fashionfail.data import rle
from fashionfail.data.rle import default_report_path, encode_coco, encode_file


def _decode(seg: dict) -> np.ndarray:
    assert isinstance(seg["counts"], str)
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})


def _expected(seg: object, h: int, w: int) -> np.ndarray:
    """What pycocotools (and so torchvision's COCO loader) reads from the input segmentation."""
    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
    if isinstance(seg["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})


def test_every_kind_decodes_to_what_pycocotools_reads(tiny_coco: dict) -> None:
    original = copy.deepcopy(tiny_coco)
    report = encode_coco(tiny_coco, "tiny.json")
    by_id = {a["id"]: a for a in original["annotations"]}
    assert [a["id"] for a in tiny_coco["annotations"]] == [1, 2, 5, 6, 9, 10]  # order kept
    for ann in tiny_coco["annotations"]:
        seg = ann["segmentation"]
        assert seg["size"] == [30, 40]
        expected = _expected(by_id[ann["id"]]["segmentation"], 30, 40)
        assert expected.any()
        np.testing.assert_array_equal(_decode(seg), expected, err_msg=f"annotation {ann['id']}")
        # Everything else is untouched.
        rest = {k: v for k, v in ann.items() if k != "segmentation"}
        assert rest == {k: v for k, v in by_id[ann["id"]].items() if k != "segmentation"}
    assert report["segmentation_in"] == {
        "compressed_rle": 1,
        "polygon": 4,
        "uncompressed_rle": 1,
    }
    assert report["annotations_out"] == report["annotations_in"] == 6
    assert report["dropped"]["counts"] == {}


def test_multi_part_polygon_is_the_union(tiny_coco: dict) -> None:
    encode_coco(tiny_coco, "tiny.json")
    cross = _decode(tiny_coco["annotations"][5]["segmentation"])
    bar_h = mask_utils.decode(mask_utils.frPyObjects([[5, 10, 25, 10, 25, 14, 5, 14]], 30, 40))
    bar_v = mask_utils.decode(mask_utils.frPyObjects([[13, 2, 17, 2, 17, 22, 13, 22]], 30, 40))
    np.testing.assert_array_equal(cross, (bar_h | bar_v)[..., 0])
    assert cross.sum() < bar_h.sum() + bar_v.sum()  # the parts overlap: a union, not a sum


def test_compressed_rle_kept_verbatim(tiny_coco: dict) -> None:
    counts = tiny_coco["annotations"][2]["segmentation"]["counts"]
    encode_coco(tiny_coco, "tiny.json")
    assert tiny_coco["annotations"][2]["segmentation"] == {"size": [30, 40], "counts": counts}


# (annotation index, mutation, reason)
INVALID = [
    (0, {"segmentation": [[1, 1, 9, 9]]}, "polygon_too_short"),  # 4 numbers: a box to pycocotools
    (0, {"segmentation": [[1, 1]]}, "polygon_too_short"),
    (0, {"segmentation": [[1, 1, 9, 1, 9, 9, 1]]}, "polygon_odd_length"),
    (0, {"segmentation": []}, "empty_segmentation"),
    (0, {"segmentation": [[]]}, "polygon_too_short"),
    (0, {"segmentation": [[1, 1, 5, 5, 9, 9]]}, "empty_mask"),  # collinear
    (0, {"segmentation": "nope"}, "malformed_segmentation"),
    (0, {"bbox": [2, 2, 0, 10]}, "degenerate_bbox"),
    (0, {"bbox": [45, 2, 10, 10]}, "bbox_outside_image"),  # the image is 40 wide
    (0, {"image_id": 999}, "unknown_image_id"),
    (2, {"segmentation": {"size": [40, 30], "counts": "PP"}}, "rle_size_mismatch"),
    (3, {"segmentation": {"size": [30, 40], "counts": [5, 7]}}, "malformed_segmentation"),
]


@pytest.mark.parametrize(("index", "change", "reason"), INVALID)
def test_invalid_dropped_and_counted(
    tiny_coco: dict, index: int, change: dict, reason: str
) -> None:
    tiny_coco["annotations"][index].update(change)
    bad_id = tiny_coco["annotations"][index]["id"]
    report = encode_coco(tiny_coco, "tiny.json", invalid="drop")
    kept = [a["id"] for a in tiny_coco["annotations"]]
    assert bad_id not in kept and len(kept) == 5
    assert report["dropped"]["counts"] == {reason: 1}
    assert report["dropped"]["example_annotation_ids"] == {reason: [bad_id]}
    assert report["annotations_out"] == 5


@pytest.mark.parametrize(("index", "change", "reason"), INVALID)
def test_invalid_is_an_error(tiny_coco: dict, index: int, change: dict, reason: str) -> None:
    tiny_coco["annotations"][index].update(change)
    bad_id = tiny_coco["annotations"][index]["id"]
    image = tiny_coco["annotations"][index]["image_id"]
    where = rf"^tiny\.json: annotation id {bad_id} \(image {image}\): "
    with pytest.raises(DataError, match=rf"{where}.*\({reason}\)$"):
        encode_coco(tiny_coco, "tiny.json", invalid="error")


# The validator's ERROR rules (coco_checks): an error under either policy, as in training.
ALWAYS_ERRORS = [
    ({"category_id": 99}, "category_id 99, not in 'categories' (unknown_category)"),
    ({"bbox": [2, 2, 10]}, "bbox [2, 2, 10] is not [x, y, w, h] (malformed_bbox)"),
    ({"bbox": [2, 2, float("nan"), 3]}, "bbox [2, 2, nan, 3] is not finite (non_finite_bbox)"),
]


@pytest.mark.parametrize("invalid", ["drop", "error"])
@pytest.mark.parametrize(("change", "message"), ALWAYS_ERRORS)
def test_validator_errors_stop_under_either_policy(
    tiny_coco: dict, change: dict, message: str, invalid: str
) -> None:
    tiny_coco["annotations"][1].update(change)
    with pytest.raises(DataError) as err:
        encode_coco(tiny_coco, "tiny.json", invalid=invalid)
    assert str(err.value) == f"tiny.json: annotation id 2 (image 7): {message}"


def test_box_beyond_the_image_is_kept_and_counted(tiny_coco: dict) -> None:
    tiny_coco["annotations"][1]["bbox"] = [30, 2, 15, 6]  # 5 px beyond the 40 px wide image
    report = encode_coco(tiny_coco, "tiny.json", invalid="error")
    assert [a["id"] for a in tiny_coco["annotations"]] == [1, 2, 5, 6, 9, 10]
    assert report["counted"] == {
        "counts": {"bbox_beyond_image": 1},
        "example_annotation_ids": {"bbox_beyond_image": [2]},
    }


def test_invalid_parts_of_a_multi_polygon_are_dropped(tiny_coco: dict) -> None:
    good = [2, 2, 12, 2, 12, 12, 2, 12]
    area_before_1 = tiny_coco["annotations"][1]["area"]
    tiny_coco["annotations"][0]["segmentation"] = [good, [1, 1, 3, 3], [0, 0, 5, 0, 5, 5, 0]]
    report = encode_coco(tiny_coco, "tiny.json")
    seg = tiny_coco["annotations"][0]["segmentation"]
    np.testing.assert_array_equal(_decode(seg), _expected([good], 30, 40))
    assert report["dropped"]["counts"] == {}
    assert report["dropped_polygon_parts"]["counts"] == {
        "polygon_odd_length": 1,
        "polygon_too_short": 1,
    }
    assert report["dropped_polygon_parts"]["example_annotation_ids"]["polygon_too_short"] == [1]
    # `area` follows the parts that were kept (COCOeval's small/medium/large ranges read it),
    assert tiny_coco["annotations"][0]["area"] == float(_expected([good], 30, 40).sum())
    # while annotations without dropped parts keep the area the file gave them.
    assert tiny_coco["annotations"][1]["area"] == area_before_1


def test_area_of_kept_parts_survives_the_file_round_trip(tiny_coco: dict, tmp_path) -> None:
    good = [2, 2, 12, 2, 12, 12, 2, 12]
    tiny_coco["annotations"][0]["segmentation"] = [good, [1, 1, 3, 3]]
    tiny_coco["annotations"][0]["area"] = 999.0
    dump_json(tiny_coco, tmp_path / "in.json")
    encode_file(tmp_path / "in.json", tmp_path / "out.json", workers=1)
    out = load_json(tmp_path / "out.json")["annotations"][0]
    assert out["area"] == float(_expected([good], 30, 40).sum())


def test_invalid_part_is_an_error_under_error(tiny_coco: dict) -> None:
    tiny_coco["annotations"][1]["segmentation"].append([1, 1, 3, 3])
    with pytest.raises(DataError, match=r"annotation id 2 \(image 7\): .*polygon_too_short"):
        encode_coco(tiny_coco, "tiny.json", invalid="error")


def test_unknown_policy_rejected(tiny_coco: dict) -> None:
    with pytest.raises(ValueError, match="invalid must be one of"):
        encode_coco(tiny_coco, "tiny.json", invalid="skip")


def test_encode_file_writes_output_and_default_report(tiny_coco_path, tiny_coco, tmp_path) -> None:
    out = tmp_path / "out" / "tiny_rle.json"
    report = encode_file(tiny_coco_path, out)
    assert default_report_path(out) == tmp_path / "out" / "tiny_rle.report.json"
    assert load_json(default_report_path(out)) == report
    assert report["input"] == str(tiny_coco_path) and report["output"] == str(out)
    written = load_json(out)
    # Lazy loading must not change anything but the segmentations.
    expected = copy.deepcopy(tiny_coco)
    encode_coco(expected, "tiny.json")
    assert written == expected


def test_pool_gives_the_same_bytes_in_the_same_order(tmp_path, tiny_coco, monkeypatch) -> None:
    # Many annotations over many chunks, so that the pool sees several in flight.
    anns = []
    for k in range(60):
        a = copy.deepcopy(tiny_coco["annotations"][k % 6])
        a["id"] = 1000 - k  # not sorted: order must come from the file
        anns.append(a)
    anns[17]["segmentation"] = [[1, 1, 2, 2]]  # one dropped, mid-file
    tiny_coco["annotations"] = anns
    src = tmp_path / "many.json"
    dump_json(tiny_coco, src)
    monkeypatch.setattr(rle, "CHUNK", 7)
    r1 = encode_file(src, tmp_path / "serial.json", tmp_path / "r1.json", workers=1)
    r2 = encode_file(src, tmp_path / "pool.json", tmp_path / "r2.json", workers=2)
    assert (tmp_path / "serial.json").read_bytes() == (tmp_path / "pool.json").read_bytes()
    assert [a["id"] for a in load_json(tmp_path / "pool.json")["annotations"]] == [
        1000 - k for k in range(60) if k != 17
    ]
    r1.pop("output"), r2.pop("output")
    assert r1 == r2 and r1["dropped"]["counts"] == {"polygon_too_short": 1}


def test_error_leaves_no_output(tiny_coco, tmp_path) -> None:
    tiny_coco["annotations"][4]["bbox"] = [0, 0, 0, 0]
    src = tmp_path / "bad.json"
    dump_json(tiny_coco, src)
    with pytest.raises(DataError, match=r"bad\.json: annotation id 9"):
        encode_file(src, tmp_path / "out.json", invalid="error")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]
