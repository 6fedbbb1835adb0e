"""COCO metrics, per-class counts and the paper's weighted metrics against pycocotools itself."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fashionfail.core.categories import FASHIONFAIL_FP_IDS, fashionpedia_categories
from fashionfail.core.jsonio import DataError
from fashionfail.eval.coco import (
    IOU_TYPES,
    class_image_counts,
    class_weights,
    evaluate_results,
    load_ground_truth,
    weighted_metrics,
)

H, W = 40, 50  # not square, so a swapped height/width shows


def rle_of(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def rect_mask(x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y : y + h, x : x + w] = 1
    return mask


def ann(ann_id, image_id, cat, box, *, polygon=False, crowd=False) -> dict:
    """A GT annotation of an axis-aligned rectangle, as polygon or compressed RLE."""
    x, y, w, h = box
    seg = [[x, y, x + w, y, x + w, y + h, x, y + h]] if polygon else rle_of(rect_mask(*box))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": int(crowd),
        "segmentation": seg,
    }


def gt_file(tmp_path: Path, annotations: list[dict], num_images: int) -> Path:
    images = [
        {"id": i, "file_name": f"{i}.jpg", "width": W, "height": H}
        for i in range(1, num_images + 1)
    ]
    data = {"images": images, "annotations": annotations, "categories": fashionpedia_categories()}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def perfect(gt: COCO, a: dict, score: float) -> dict:
    """A prediction identical to GT annotation `a` (same box, same rasterised mask)."""
    return {
        "image_id": a["image_id"],
        "category_id": a["category_id"],
        "bbox": list(a["bbox"]),
        "score": score,
        "segmentation": rle_of(gt.annToMask(a)),
    }


def cocoeval_by_hand(gt_path: Path, preds: list[dict], iou_type: str, cat_ids) -> COCOeval:
    """What a user would run: pycocotools on the files, nothing of ours."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dets = copy.deepcopy(preds)
        if iou_type == "segm":
            for d in dets:
                d.pop("bbox")
        dt = gt.loadRes(dets)
        e = COCOeval(gt, dt, iou_type)
        e.params.catIds = sorted(cat_ids)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


# --- A random case: polygons and RLE, crowd, FPs, duplicates, misses, empty image -------------


def random_case(tmp_path: Path, seed: int = 0) -> tuple[Path, list[dict]]:
    rng = np.random.default_rng(seed)
    cats = [0, 1, 4, 2, 13]  # id 0 exists; 2 (sweater) is not a FashionFail class
    anns, aid = [], 1
    for image_id in range(1, 7):  # image 6 stays empty
        for _ in range(rng.integers(1, 5) if image_id < 6 else 0):
            w, h = int(rng.integers(6, 30)), int(rng.integers(6, 25))
            x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            anns.append(
                ann(
                    aid,
                    image_id,
                    int(rng.choice(cats)),
                    (x, y, w, h),
                    polygon=bool(rng.integers(0, 2)),
                    crowd=aid % 5 == 0,
                )
            )
            aid += 1
    path = gt_file(tmp_path, anns, 6)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
    preds = []
    for a in anns:
        for _ in range(int(rng.integers(0, 3))):  # 0: a miss, 2: a duplicate
            x, y, w, h = a["bbox"]
            dx, dy = rng.integers(-3, 4, size=2)
            box = (int(np.clip(x + dx, 0, W - w)), int(np.clip(y + dy, 0, H - h)), w, h)
            shifted = np.roll(gt.annToMask(a), (dy, dx), axis=(0, 1))
            pred = {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": [float(v) for v in box],
                "score": float(rng.random()),
                "segmentation": rle_of(shifted),
            }
            preds.append(pred)
    for _ in range(8):  # false positives, some in classes without GT
        box = (int(rng.integers(0, 30)), int(rng.integers(0, 20)), 12, 10)
        category = int(rng.choice(cats + [23]))  # 23 (shoe) never occurs in the GT
        preds.append(
            {
                "image_id": int(rng.integers(1, 7)),
                "category_id": category,
                "bbox": [float(v) for v in box],
                "score": float(rng.random()),
                "segmentation": rle_of(rect_mask(*box)),
            }
        )
    return path, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cat_ids", [tuple(range(46)), FASHIONFAIL_FP_IDS], ids=["fp46", "ff22"])
def test_every_number_equals_cocoeval(tmp_path, seed, cat_ids):
    gt_path, preds = random_case(tmp_path, seed)
    metrics, per_class, _ = evaluate_results(load_ground_truth(gt_path), preds, cat_ids)
    raw = json.loads(gt_path.read_text())
    for iou_type in IOU_TYPES:
        e = cocoeval_by_hand(gt_path, preds, iou_type, cat_ids)
        got = metrics[iou_type]
        assert [got[k] for k in ("AP", "AP50", "AP75", "AR1", "AR100")] == [
            e.stats[i] for i in (0, 1, 2, 6, 8)
        ]
        prec, rec = e.eval["precision"], e.eval["recall"]
        defined = []
        for k, cat in enumerate(sorted(cat_ids)):
            row = per_class[iou_type][cat]
            p = prec[:, :, k, 0, 2]
            ap = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
            assert row["AP"] == ap
            assert row["AP50"] == (float(np.mean(prec[0, :, k, 0, 2])) if ap > -1 else -1.0)
            assert row["AP75"] == (float(np.mean(prec[5, :, k, 0, 2])) if ap > -1 else -1.0)
            assert row["AR100"] == (float(np.mean(rec[:, k, 0, 2])) if ap > -1 else -1.0)
            assert row["AR1"] == (float(np.mean(rec[:, k, 0, 0])) if ap > -1 else -1.0)
            # TP + FN = non-crowd GT; TP / (TP + FN) = COCOeval's recall at IoU .5, maxDets 100.
            n_gt = sum(
                1 for a in raw["annotations"] if a["category_id"] == cat and not a["iscrowd"]
            )
            assert row["TP"] + row["FN"] == n_gt
            if n_gt:
                assert row["TP"] / n_gt == pytest.approx(rec[0, k, 0, 2], abs=1e-12)
                defined.append(ap)
        # stats[0] is the mean of the per-class APs of the classes with GT.
        assert np.mean(defined) == pytest.approx(e.stats[0], abs=1e-12)


def test_empty_predictions_score_zero(tmp_path):
    gt_path, _ = random_case(tmp_path, 0)
    metrics, per_class, _ = evaluate_results(load_ground_truth(gt_path), [], FASHIONFAIL_FP_IDS)
    for iou_type in IOU_TYPES:
        assert metrics[iou_type]["AP"] == 0.0
        assert metrics[iou_type]["mAP_w"] == 0.0
        assert sum(r["FP"] + r["TP"] for r in per_class[iou_type].values()) == 0


# --- A hand-computed case ----------------------------------------------------------------------


def hand_case(tmp_path: Path) -> tuple[Path, list[dict]]:
    """Class 0 in images 1-3 (2 of 3 found), class 1 in images 2-3 (both found, plus a low
    FP on image 1), class 2 (not FashionFail) in image 4, a crowd region of class 0 in image 4
    with a detection on it (ignored)."""
    anns = [
        ann(1, 1, 0, (2, 2, 20, 15)),
        ann(2, 2, 0, (5, 5, 20, 20), polygon=True),
        ann(3, 3, 0, (10, 10, 25, 20)),
        ann(4, 2, 1, (30, 2, 15, 30)),
        ann(5, 3, 1, (1, 1, 8, 8), polygon=True),
        ann(6, 4, 2, (5, 5, 30, 30)),
        ann(7, 4, 0, (36, 20, 12, 18), crowd=True),
    ]
    path = gt_file(tmp_path, anns, 4)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
    a = gt.anns
    preds = [
        perfect(gt, a[1], 0.9),
        perfect(gt, a[2], 0.8),  # a[3] missed
        perfect(gt, a[4], 0.7),
        perfect(gt, a[5], 0.6),
        perfect(gt, a[6], 0.95),
        perfect(gt, a[7], 0.99),
    ]
    fp = perfect(gt, a[4], 0.1)
    fp["image_id"] = 1  # class 1 does not occur in image 1
    return path, preds + [fp]


def test_hand_computed_weighted_metrics(tmp_path):
    gt_path, preds = hand_case(tmp_path)
    gt = load_ground_truth(gt_path)
    # Images with class 0: 1, 2, 3 (the crowd in 4 does not count); class 1: 2, 3.
    assert class_weights(gt) == pytest.approx({0: 3 / 5, 1: 2 / 5})
    metrics, per_class, weights = evaluate_results(gt, preds, tuple(range(46)))
    assert weights == pytest.approx({0: 3 / 5, 1: 2 / 5})
    ap0 = 67 / 101  # precision 1 up to recall 2/3: recall thresholds 0.00 .. 0.66
    for iou_type in IOU_TYPES:
        rows = per_class[iou_type]
        assert rows[0]["AP"] == pytest.approx(ap0) and rows[0]["AR100"] == pytest.approx(2 / 3)
        assert rows[1]["AP"] == pytest.approx(1.0) and rows[1]["AR1"] == pytest.approx(1.0)
        assert rows[2]["AP"] == pytest.approx(1.0)
        assert rows[3]["AP"] == -1.0  # no GT
        assert (rows[0]["TP"], rows[0]["FP"], rows[0]["FN"]) == (2, 0, 1)  # crowd match ignored
        assert (rows[1]["TP"], rows[1]["FP"], rows[1]["FN"]) == (2, 1, 0)
        m = metrics[iou_type]
        for key in ("mAP_w", "mAP_w50", "mAP_w75"):
            assert m[key] == pytest.approx(3 / 5 * ap0 + 2 / 5 * 1.0)
        assert m["mAR_w100"] == pytest.approx(3 / 5 * 2 / 3 + 2 / 5)
        assert m["mAR_w1"] == pytest.approx(3 / 5 * 2 / 3 + 2 / 5)
        assert m["AP"] == pytest.approx((ap0 + 1 + 1) / 3)  # COCO mean over classes 0, 1, 2


def test_weights_count_images_not_instances(tmp_path):
    """The paper's frequency is per image: 3 shirts in one image weigh as much as 1 shirt.

    Class 0 has 4 instances in 2 images, class 1 has 2 instances in 2 images (plus a crowd
    region, which does not count): weights 1/2 and 1/2, not 4/6 and 2/6 (instance counts).
    """
    anns = [
        ann(1, 1, 0, (1, 1, 10, 10)),
        ann(2, 1, 0, (20, 1, 10, 10), polygon=True),
        ann(3, 1, 0, (1, 20, 12, 10)),
        ann(4, 2, 0, (5, 5, 20, 20)),
        ann(5, 3, 1, (2, 2, 20, 15)),
        ann(6, 4, 1, (10, 10, 25, 20), polygon=True),
        ann(7, 2, 1, (30, 20, 15, 15), crowd=True),
    ]
    gt = load_ground_truth(gt_file(tmp_path, anns, 4))
    assert class_image_counts(gt, [0, 1, 2]) == {0: 2, 1: 2, 2: 0}
    assert class_weights(gt) == pytest.approx({0: 1 / 2, 1: 1 / 2})
    a = gt.anns
    # Every class-0 instance found (AP 1); one of the two class-1 instances (recall 1/2).
    preds = [perfect(gt, a[k], 0.9 - k / 100) for k in (1, 2, 3, 4, 5)]
    metrics, per_class, weights = evaluate_results(gt, preds, tuple(range(46)))
    assert weights == pytest.approx({0: 1 / 2, 1: 1 / 2})
    ap1 = 51 / 101  # precision 1 up to recall 1/2: recall thresholds 0.00 .. 0.50
    for iou_type in IOU_TYPES:
        assert per_class[iou_type][0]["AP"] == pytest.approx(1.0)
        assert per_class[iou_type][1]["AP"] == pytest.approx(ap1)
        assert metrics[iou_type]["mAP_w"] == pytest.approx(1 / 2 * 1.0 + 1 / 2 * ap1)


def test_weighted_metrics_undefined_without_gt():
    assert weighted_metrics({0: {"AP": 0.5}}, {})["mAP_w"] == -1.0


def test_weights_only_from_weighted_classes(tmp_path):
    gt_path, _ = hand_case(tmp_path)
    gt = load_ground_truth(gt_path)
    # Class 2 (sweater) is not a FashionFail class: it never gets weight.
    assert 2 not in class_weights(gt)
    assert class_weights(gt, [1]) == {1: 1.0}


# --- Ground-truth checks --------------------------------------------------------------------


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("annotations"), "missing top-level key 'annotations'"),
        (lambda d: d["annotations"][0].pop("iscrowd"), "annotation id 1 is missing key 'iscrowd'"),
        (lambda d: d["annotations"][0].pop("area"), "annotation id 1 is missing key 'area'"),
        (lambda d: d["images"][0].pop("height"), "image id 1 is missing key 'height'"),
        (lambda d: d["annotations"][1].update(segmentation=[[1, 2, 3, 4]]), "annotation id 2"),
        (lambda d: d["annotations"][0].update(category_id=99), "category_id 99"),
    ],
)
def test_bad_ground_truth_is_named(tmp_path, mutate, message):
    gt_path, _ = hand_case(tmp_path)
    data = json.loads(gt_path.read_text())
    mutate(data)
    with pytest.raises(DataError, match=message) as err:
        load_ground_truth(_write(tmp_path, data))
    assert "bad.json" in str(err.value) and "\n" not in str(err.value)


def test_annotation_id_zero_is_renumbered(tmp_path):
    # COCOeval stores matched GT ids in dtMatches and reads 0 as "unmatched".
    gt_path, preds = hand_case(tmp_path)
    data = json.loads(gt_path.read_text())
    for a in data["annotations"]:
        a["id"] -= 1  # ids 0..6
    path = _write(tmp_path, data)
    _, per_class, _ = evaluate_results(load_ground_truth(path), preds, tuple(range(46)))
    assert (per_class["bbox"][0]["TP"], per_class["bbox"][0]["FN"]) == (2, 1)


def test_prediction_for_unknown_image(tmp_path):
    gt_path, preds = hand_case(tmp_path)
    preds[0]["image_id"] = 77
    with pytest.raises(DataError, match="image id 77"):
        evaluate_results(load_ground_truth(gt_path), preds, FASHIONFAIL_FP_IDS)
