"""The report's numbers beyond metrics.json: calibration, failure cases, spread over seeds.

Matching is COCOeval's own (`fashionfail.eval.coco.match_records`: IoU .50, area "all", maxDets
100, crowd matches ignored), so a detection counted as a TP here is a TP in per_class.csv too.

- Calibration: detections binned by score into `bins` equal bins of [0, 1] (the last one closed);
  per bin the mean score (confidence) and the fraction of its detections that match a GT object
  (accuracy). ECE = sum over non-empty bins of (n_bin / n) * |accuracy - confidence|.
- Failure cases: misses are GT objects no detection matched, largest first (a missed whole
  garment before a missed small part); false positives are unmatched detections, highest score
  first; at most `per_class` of each per class and `limit` in all.
- Spread: runs whose params differ only in a seed (SEED_KEYS) form a group; its mean and sample
  standard deviation (n - 1 in the denominator; none for a single run). A difference between two
  groups' means is "within the spread" when it is smaller than the larger of their standard
  deviations.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fashionfail.eval.coco import match_records, run_cocoeval

SEED_KEYS = ("train_facere.seed", "finetune_facere_plus.seed")


@dataclass
class Matches:
    """COCOeval's matches of one result list (see `matches`), and the records by image."""

    detections: list[dict]
    objects: list[dict]
    dt_anns: dict[int, dict]  # detection id -> the result record it came from
    by_image: dict[int, list[dict]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        matched = {d["id"] for d in self.detections if d["matched"]}
        for dt_id, record in self.dt_anns.items():
            self.by_image.setdefault(record["image_id"], []).append((dt_id in matched, record))

    def image_detections(self, image_id: int, threshold: float = 0.0) -> list[dict]:
        """The result records of one image scoring >= `threshold`, and its matched ones."""
        return [r for hit, r in self.by_image.get(image_id, []) if hit or r["score"] >= threshold]


def matches(gt, results: Sequence[dict], iou_type: str, category_ids: Iterable[int]) -> Matches:
    """`results` on `gt` as COCOeval matches them at IoU .50.

    `COCO.loadRes` numbers the results 1..N in list order; detection ids map back to `results`
    through that numbering (checked against the image id and score it stored).
    """
    coco_eval = run_cocoeval(gt, results, iou_type, list(category_ids))
    detections, objects = match_records(coco_eval, 0.5)
    records = {}
    for dt_id, ann in coco_eval.cocoDt.anns.items():
        record = results[dt_id - 1]
        if record["image_id"] != ann["image_id"] or record["score"] != ann["score"]:
            raise AssertionError(f"detection id {dt_id} does not map back to result {dt_id - 1}")
        records[dt_id] = record
    return Matches(detections, objects, records)


def calibration(detections: Sequence[dict], bins: int) -> dict:
    """Reliability bins and the expected calibration error of `detections` (see module doc)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    scores = np.array([d["score"] for d in detections], dtype=float)
    hits = np.array([d["matched"] for d in detections], dtype=float)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        in_bin = index == b
        count = int(in_bin.sum())
        row = {"lower": b / bins, "upper": (b + 1) / bins, "count": count}
        if count:
            row["confidence"] = float(scores[in_bin].mean())
            row["accuracy"] = float(hits[in_bin].mean())
            ece += count / len(scores) * abs(row["accuracy"] - row["confidence"])
        rows.append(row)
    return {"bins": rows, "ece": float(ece) if len(scores) else None, "count": len(scores)}


def _capped(records: Iterable[dict], per_class: int, limit: int) -> list[dict]:
    taken: Counter = Counter()
    out = []
    for r in records:
        if len(out) == limit:
            break
        if taken[r["category_id"]] < per_class:
            taken[r["category_id"]] += 1
            out.append(r)
    return out


def failure_cases(
    detections: Sequence[dict], objects: Sequence[dict], per_class: int, limit: int
) -> dict[str, list[dict]]:
    """{"misses": unmatched GT objects, "false_positives": unmatched detections} (module doc)."""
    misses = sorted(
        (g for g in objects if not g["matched"]), key=lambda g: (-g["area"], g["image_id"], g["id"])
    )
    false_positives = sorted(
        (d for d in detections if not d["matched"]),
        key=lambda d: (-d["score"], d["image_id"], d["id"]),
    )
    return {
        "misses": _capped(misses, per_class, limit),
        "false_positives": _capped(false_positives, per_class, limit),
    }


def fixed_images(before: Sequence[dict], after: Sequence[dict]) -> list[int]:
    """Image ids where `before` misses a GT object and `after` matches every one (GT objects)."""
    missed_before = {g["image_id"] for g in before if not g["matched"]}
    missed_after = {g["image_id"] for g in after if not g["matched"]}
    seen_after = {g["image_id"] for g in after}
    return sorted((missed_before & seen_after) - missed_after)


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (n - 1) of one metric over a group's runs."""

    n: int
    mean: float
    sd: float | None  # None for a single run

    def text(self, scale: float = 1.0, decimals: int = 1) -> str:
        mean = f"{self.mean * scale:.{decimals}f}"
        return mean if self.sd is None else f"{mean} ± {self.sd * scale:.{decimals}f} (n={self.n})"


def spread(values: Sequence[float]) -> Spread:
    """Spread of `values` (at least one): mean and sample standard deviation, n - 1."""
    if not values:
        raise ValueError("spread of no values")
    arr = np.asarray(values, dtype=float)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return Spread(len(arr), float(arr.mean()), sd)


def within_spread(a: Spread, b: Spread) -> bool | None:
    """True when |mean a - mean b| is smaller than the larger standard deviation; None if
    neither group has one (single runs: no spread known)."""
    sds = [s.sd for s in (a, b) if s.sd is not None]
    if not sds:
        return None
    return abs(a.mean - b.mean) < max(sds)


def group_key(params: Mapping[str, object]) -> tuple:
    """Flat params without the seeds: runs with equal keys differ only in their seeds."""
    return tuple(sorted((k, repr(v)) for k, v in params.items() if k not in SEED_KEYS))


def flatten(params: Mapping, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, object] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
