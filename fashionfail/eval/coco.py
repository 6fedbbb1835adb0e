"""COCO evaluation with pycocotools, plus the FashionFail paper's frequency-weighted metrics.

All numbers are fractions in [0, 1] (as COCOeval reports them); -1 means "undefined" (no
ground truth), COCOeval's own convention.

- COCO metrics (`AP`, `AP50`, `AP75`, `AR1`, `AR100`) are `COCOeval.stats` [0, 1, 2, 6, 8]:
  area "all", maxDets 100 (AR1: maxDets 1), averaged over the evaluated classes that have GT.
- Per-class AP / AR come from the same COCOeval arrays (`eval["precision"]`, `eval["recall"]`)
  with the same averaging as `COCOeval.summarize`, so their plain mean is `stats`.
- mAP_w (the paper's main metric) is the mean of the per-class AP over the 22 FashionFail
  classes, each weighted by its frequency in the GT: (#images with a non-crowd GT instance of
  the class) / (#GT images). Weights are normalised to sum to 1 over the FashionFail classes
  present in the GT, so classes without GT (AP -1 in COCOeval) drop out instead of counting as
  0, and on FashionFail-test (one object per image) the weights are exactly the frequencies.
  mAP_w50 / mAP_w75 use AP at IoU .50 / .75; mAR_w1 / mAR_w100 the per-class AR.
- mAP_plain / mAR_plain: the plain means of the per-class AP / AR100 over the same FashionFail
  classes (those with GT), which the original prints beside mAP_w.
- TP / FP / FN per class are counted at IoU .50, area "all", maxDets 100 from
  `COCOeval.evalImgs`; detections matched to crowd GT are ignored, as COCOeval ignores them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Collection, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fashionfail.core.categories import FASHIONFAIL_FP_IDS
from fashionfail.core.jsonio import DataError, load_json
from fashionfail.data.coco_checks import check_annotations, validate_coco

IOU_TYPES = ("bbox", "segm")
SUMMARY_KEYS = {"AP": 0, "AP50": 1, "AP75": 2, "AR1": 6, "AR100": 8}  # index in COCOeval.stats
WEIGHTED_KEYS = ("mAP_w", "mAP_w50", "mAP_w75", "mAR_w1", "mAR_w100")
PLAIN_KEYS = ("mAP_plain", "mAR_plain")  # unweighted means over the same FashionFail classes
_GT_KEYS = ("area", "iscrowd")  # needed by COCOeval beyond the structural checks


def load_ground_truth(path: str | os.PathLike) -> COCO:
    """Load and check a COCO GT file; DataError naming the file and id if COCOeval can't use it.

    The checks are the training sets' (fashionfail.data.coco_checks.check_annotations) in
    ground-truth mode: anything a training set would drop is an error here (dropping GT would
    silently change mAP); boxes slightly beyond their image are kept and counted in
    `coco.check_report`, as the original scores them as they are.
    Annotation ids are renumbered 1..M when any is < 1: COCOeval stores matched GT ids in
    `dtMatches` and reads 0 as "unmatched", so an annotation with id 0 could never be a TP.
    """
    data = load_json(path)
    validate_coco(data, path)
    for cat in data["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(f"{path}: every category needs 'id' and 'name' (got {cat!r})")
    for ann in data["annotations"]:
        for key in _GT_KEYS:
            if key not in ann:
                raise DataError(f"{path}: annotation id {ann['id']} is missing key {key!r}")
    report = check_annotations(data, path, tolerated="error")
    if any(ann["id"] < 1 for ann in data["annotations"]):
        for new_id, ann in enumerate(data["annotations"], start=1):
            ann["id"] = new_id
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    coco.check_report = report
    return coco


def load_results(gt: COCO, results: Sequence[dict], iou_type: str) -> COCO:
    """Results as a COCO object, as `COCO.loadRes` builds it (which fails on an empty list).

    For "segm" the boxes are dropped first, so `loadRes` takes the area from the mask rather
    than from the box (Detectron2 does the same); the IoUs are the masks' either way.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"unknown iou type {iou_type!r}; use one of {IOU_TYPES}")
    known = gt.imgs.keys()
    for r in results:
        if r["image_id"] not in known:
            raise DataError(f"prediction for image id {r['image_id']!r}, not in the GT file")
    anns = copy.deepcopy(list(results))  # loadRes adds keys to the records it is given
    if iou_type == "segm":
        for a in anns:
            a.pop("bbox", None)
    if not anns:
        empty = COCO()
        empty.dataset = {
            "images": list(gt.dataset["images"]),
            "annotations": [],
            "categories": copy.deepcopy(gt.dataset["categories"]),
        }
        with contextlib.redirect_stdout(io.StringIO()):
            empty.createIndex()
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(anns)


def run_cocoeval(
    gt: COCO, results: Sequence[dict], iou_type: str, category_ids: Collection[int]
) -> COCOeval:
    """Evaluate, accumulate and summarise over `category_ids` (passed explicitly: id 0 exists)."""
    dt = load_results(gt, results, iou_type)
    coco_eval = COCOeval(gt, dt, iouType=iou_type)
    coco_eval.params.catIds = sorted(category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _mean_defined(values: np.ndarray) -> float:
    """COCOeval.summarize's averaging: mean of the entries > -1, else -1."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def _iou_index(coco_eval: COCOeval, iou: float) -> int:
    (index,) = np.flatnonzero(np.isclose(coco_eval.params.iouThrs, iou))
    return int(index)


def per_class_metrics(coco_eval: COCOeval) -> dict[int, dict[str, float | int]]:
    """Per evaluated category: AP, AP50, AP75, AR1, AR100 and TP / FP / FN at IoU .50."""
    p = coco_eval.params
    precision, recall = (
        coco_eval.eval["precision"],
        coco_eval.eval["recall"],
    )  # [T,R,K,A,M], [T,K,A,M]
    area = p.areaRngLbl.index("all")
    m1, m100 = p.maxDets.index(1), p.maxDets.index(100)
    t50, t75 = _iou_index(coco_eval, 0.5), _iou_index(coco_eval, 0.75)
    counts = _match_counts(coco_eval, t50)
    table = {}
    for k, cat_id in enumerate(p.catIds):
        table[int(cat_id)] = {  # COCOeval turns catIds into numpy ints
            "AP": _mean_defined(precision[:, :, k, area, m100]),
            "AP50": _mean_defined(precision[t50, :, k, area, m100]),
            "AP75": _mean_defined(precision[t75, :, k, area, m100]),
            "AR1": _mean_defined(recall[:, k, area, m1]),
            "AR100": _mean_defined(recall[:, k, area, m100]),
            **counts.get(cat_id, {"TP": 0, "FP": 0, "FN": 0}),
        }
    return table


def _match_counts(coco_eval: COCOeval, t: int) -> dict[int, dict[str, int]]:
    """TP / FP / FN per category at IoU threshold index `t`, area "all", maxDets 100."""
    detections, objects = match_records(coco_eval, float(coco_eval.params.iouThrs[t]))
    counts: dict[int, dict[str, int]] = {}
    for d in detections:
        c = counts.setdefault(d["category_id"], {"TP": 0, "FP": 0, "FN": 0})
        c["TP" if d["matched"] else "FP"] += 1
    for g in objects:
        c = counts.setdefault(g["category_id"], {"TP": 0, "FP": 0, "FN": 0})
        c["FN"] += 0 if g["matched"] else 1
    return counts


def match_records(coco_eval: COCOeval, iou: float = 0.5) -> tuple[list[dict], list[dict]]:
    """COCOeval's own matching at IoU `iou`, area "all", maxDets 100, per record.

    Returns (detections, objects): one dict per detection {"id", "image_id", "category_id",
    "score", "matched"} and per GT object {"id", "image_id", "category_id", "area", "matched"}.
    `evalImgs` holds one entry per (category, area range, image) with the top-maxDets[-1]
    detections; ignored detections (matched to crowd GT, or outside the area range) and ignored
    GT are left out, exactly as in `COCOeval.accumulate`. Needs `coco_eval.evaluate()` run.
    """
    p = coco_eval.params
    t = _iou_index(coco_eval, iou)
    area_all = p.areaRng[p.areaRngLbl.index("all")]
    gt_anns = coco_eval.cocoGt.anns
    detections: list[dict] = []
    objects: list[dict] = []
    for e in coco_eval.evalImgs:
        if e is None or e["aRng"] != area_all:
            continue
        image_id, cat_id = int(e["image_id"]), int(e["category_id"])
        dt_ignored = e["dtIgnore"][t].astype(bool)
        for k, dt_id in enumerate(e["dtIds"]):
            if not dt_ignored[k]:
                detections.append(
                    {
                        "id": int(dt_id),
                        "image_id": image_id,
                        "category_id": cat_id,
                        "score": float(e["dtScores"][k]),
                        "matched": bool(e["dtMatches"][t][k] > 0),
                    }
                )
        for k, gt_id in enumerate(e["gtIds"]):
            if not e["gtIgnore"][k]:
                objects.append(
                    {
                        "id": int(gt_id),
                        "image_id": image_id,
                        "category_id": cat_id,
                        "area": float(gt_anns[gt_id]["area"]),
                        "matched": bool(e["gtMatches"][t][k] > 0),
                    }
                )
    return detections, objects


def summary_metrics(coco_eval: COCOeval) -> dict[str, float]:
    """AP, AP50, AP75, AR1, AR100 from `COCOeval.stats`."""
    return {key: float(coco_eval.stats[i]) for key, i in SUMMARY_KEYS.items()}


def class_image_counts(gt: COCO, category_ids: Collection[int]) -> dict[int, int]:
    """Per category: number of GT images with at least one non-crowd instance of it."""
    images: dict[int, set[int]] = {c: set() for c in category_ids}
    for ann in gt.dataset["annotations"]:
        if ann["category_id"] in images and not ann["iscrowd"]:
            images[ann["category_id"]].add(ann["image_id"])
    return {c: len(ids) for c, ids in images.items()}


def class_weights(gt: COCO, category_ids: Collection[int] = FASHIONFAIL_FP_IDS) -> dict[int, float]:
    """The paper's frequency weights, normalised to sum to 1 over classes present in the GT.

    Frequency = (#images containing the class) / (#GT images); classes absent from the GT get
    no weight (see the module docstring). Empty dict if none of the classes occurs.
    """
    counts = class_image_counts(gt, category_ids)
    num_images = len(gt.dataset["images"])
    freq = {c: n / num_images for c, n in counts.items() if n > 0}
    total = sum(freq.values())
    return {c: f / total for c, f in freq.items()}


def weighted_metrics(
    per_class: dict[int, dict[str, float | int]], weights: dict[int, float]
) -> dict[str, float]:
    """mAP_w, mAP_w50, mAP_w75, mAR_w1, mAR_w100 (-1 if no weighted class has GT)."""
    source = {
        "mAP_w": "AP",
        "mAP_w50": "AP50",
        "mAP_w75": "AP75",
        "mAR_w1": "AR1",
        "mAR_w100": "AR100",
    }
    out = {}
    for key, metric in source.items():
        if not weights:
            out[key] = -1.0
            continue
        values = {c: per_class[c][metric] for c in weights}
        undefined = [c for c, v in values.items() if v < 0]
        if undefined:  # a class with non-crowd GT always has a defined AP; guard the invariant
            raise AssertionError(f"classes {undefined} have GT images but no {metric}")
        out[key] = float(sum(weights[c] * v for c, v in values.items()))
    return out


def plain_metrics(
    per_class: dict[int, dict[str, float | int]], classes: Collection[int]
) -> dict[str, float]:
    """mAP_plain, mAR_plain: unweighted means of AP and AR100 over `classes` (-1 if none)."""
    if not classes:
        return dict.fromkeys(PLAIN_KEYS, -1.0)
    return {
        "mAP_plain": float(np.mean([per_class[c]["AP"] for c in classes])),
        "mAR_plain": float(np.mean([per_class[c]["AR100"] for c in classes])),
    }


def evaluate_results(
    gt: COCO, results: Sequence[dict], category_ids: Collection[int]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[int, dict]], dict[int, float]]:
    """COCO + weighted metrics and per-class tables for bbox and segm.

    Returns (metrics, per_class, weights): metrics[iou_type] holds SUMMARY_KEYS and
    WEIGHTED_KEYS, per_class[iou_type][category_id] the per-class values, weights the
    normalised class weights of the weighted metrics (the FashionFail classes among
    `category_ids` that occur in the GT).
    """
    weights = class_weights(gt, [c for c in FASHIONFAIL_FP_IDS if c in set(category_ids)])
    metrics, per_class = {}, {}
    for iou_type in IOU_TYPES:
        coco_eval = run_cocoeval(gt, results, iou_type, category_ids)
        per_class[iou_type] = per_class_metrics(coco_eval)
        metrics[iou_type] = {
            **summary_metrics(coco_eval),
            **weighted_metrics(per_class[iou_type], weights),
            **plain_metrics(per_class[iou_type], sorted(weights)),
        }
    return metrics, per_class, weights
