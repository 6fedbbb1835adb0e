"""The evaluate stage: predict a GT set with a checkpoint, score it, write tables and pictures.

Output folder (written into a temporary folder beside it, renamed into place at the end, so a
failure leaves nothing partial):
    predictions.json  COCO results (dataset category ids), from
                      `fashionfail.inference.predictor.predict`
    metrics.json      {"bbox": {...}, "segm": {...}, "num_images", "num_predictions", ...}
    per_class.csv     one row per evaluated class (dvc plot data); AP empty where no GT
    per_class.md      the same, readable
    overlays/         <image_id>.png: ground truth | prediction, first `num_overlays` image ids
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from fashionfail.core.categories import FASHIONPEDIA_NAMES, LABEL_SPACES, LabelSpace
from fashionfail.core.config import EvaluateConfig
from fashionfail.core.jsonio import DataError, atomic_dir, dump_json
from fashionfail.core.tracking import stage_run
from fashionfail.data.coco_checks import check_image_files
from fashionfail.eval.coco import (
    IOU_TYPES,
    class_image_counts,
    evaluate_results,
    load_ground_truth,
)
from fashionfail.eval.overlays import draw_detections, save_png, side_by_side
from fashionfail.eval.prediction_files import PRESETS, PredictionFormat, load_prediction_file
from fashionfail.inference.predictor import (
    ImageItem,
    group_by_image,
    load_model,
    predict,
    read_image,
)

_TABLE_METRICS = ("AP", "AP50", "TP", "FP", "FN")


def _gt_items(gt, images_dir: Path, gt_path: Path) -> list[ImageItem]:
    """GT images in id order, with the size the annotations expect; every file must exist,
    open, and have that size (coco_checks.check_image_files)."""
    check_image_files(gt.dataset["images"], images_dir, gt_path)
    return [
        ImageItem(img["id"], images_dir / img["file_name"], (img["height"], img["width"]))
        for img in sorted(gt.dataset["images"], key=lambda img: img["id"])
    ]


def per_class_rows(
    per_class: dict[str, dict[int, dict]],
    image_counts: dict[int, int],
    num_images: int,
    weights: dict[int, float],
) -> list[dict]:
    """Rows of the per-class table (one per evaluated class, in category id order)."""
    rows = []
    for cat_id in sorted(per_class[IOU_TYPES[0]]):
        row: dict = {
            "category_id": cat_id,
            "class": FASHIONPEDIA_NAMES[cat_id],
            "gt_images": image_counts[cat_id],
            "frequency": image_counts[cat_id] / num_images,
            "weight": weights.get(cat_id, 0.0),
        }
        for iou_type in IOU_TYPES:
            values = per_class[iou_type][cat_id]
            for key in _TABLE_METRICS:
                value = values[key]
                # -1 (no GT) left empty: a bar at -1 would read as a real score.
                row[f"{key}_{iou_type}"] = "" if key.startswith("AP") and value < 0 else value
        rows.append(row)
    return rows


def _write_csv(rows: Sequence[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value: object) -> str:
    if value == "":
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _write_markdown(name: str, metrics: dict, rows: Sequence[dict], path: Path) -> None:
    keys = list(metrics[IOU_TYPES[0]])
    lines = [
        f"# Evaluation `{name}`",
        "",
        f"{metrics['num_images']} images, {metrics['num_predictions']} predictions, "
        f"{len(rows)} classes. Fractions in [0, 1]; -1 / n/a: no ground truth. mAP_w weighs "
        "each FashionFail class's AP by its share of GT images (weights sum to 1).",
        "",
        "| | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for iou_type in IOU_TYPES:
        lines.append(
            f"| {iou_type} | " + " | ".join(_fmt(metrics[iou_type][k]) for k in keys) + " |"
        )
    header = ["id", "class", "GT images", "weight"] + [
        f"{iou_type} {key}" for iou_type in IOU_TYPES for key in _TABLE_METRICS
    ]
    lines += [
        "",
        "Per class: AP (IoU .50:.95), AP50; TP / FP / FN at IoU .50, area all, maxDets 100.",
        "",
        "| " + " | ".join(header) + " |",
        "|---:|---|" + "---:|" * (len(header) - 2),
    ]
    for row in rows:
        cells = [row["category_id"], row["class"], row["gt_images"], row["weight"]] + [
            row[f"{key}_{iou_type}"] for iou_type in IOU_TYPES for key in _TABLE_METRICS
        ]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def write_overlays(
    gt,
    records: Sequence[dict],
    items: Sequence[ImageItem],
    out_dir: Path,
    score_threshold: float,
) -> list[tuple[str, Path]]:
    """GT | prediction PNGs for `items`; returns (caption, path) per picture."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_image = group_by_image(records)
    names = dict(enumerate(FASHIONPEDIA_NAMES))
    written = []
    for item in items:
        image = read_image(item.path, upright=False)  # GT coordinates: stored pixels
        gt_anns = gt.imgToAnns.get(item.image_id, [])
        picture = side_by_side(
            [
                ("ground truth", draw_detections(image, gt_anns, names)),
                (
                    f"prediction (score >= {score_threshold:g})",
                    draw_detections(
                        image,
                        by_image.get(item.image_id, []),
                        names,
                        score_threshold=score_threshold,
                        empty_note=f"no detections >= {score_threshold:g}",
                    ),
                ),
            ]
        )
        path = out_dir / f"{item.image_id}.png"
        save_png(picture, path)
        written.append((f"{item.image_id}: {item.path.name}", path))
    return written


def log_to_aim(
    run, name: str, metrics: dict, overlays: Sequence[tuple[str, Path]], hparams: dict
) -> None:
    """Metrics, overlay images and hparams of one evaluation on its Aim run (`stage_run`)."""
    import aim  # imported here: it is slow to import and only this function needs it

    run["hparams"] = hparams
    for iou_type in IOU_TYPES:
        for key, value in metrics[iou_type].items():
            run.track(value, name=key, context={"subset": name, "iou_type": iou_type})
    for step, (caption, path) in enumerate(overlays):
        with Image.open(path) as im:
            run.track(
                aim.Image(im.copy(), caption=caption),
                name="overlays",
                step=step,
                context={"subset": name},
            )


def evaluate(
    *,
    name: str,
    gt_path: Path,
    images_dir: Path,
    checkpoint: Path | None = None,
    classes: str,
    out_dir: Path,
    cfg: EvaluateConfig,
    aim_repo: Path | None = None,
    progress: bool = True,
    model_classes: str | None = None,
    predictions: Path | None = None,
    prediction_format: PredictionFormat | None = None,
) -> dict:
    """Run one evaluation (see the module docstring); returns the metrics written.

    The detections come from `checkpoint` (a Lightning checkpoint, or a `.onnx` file with the
    published interface; `model_classes` names an ONNX file's label space when the file does not)
    or, instead, from a baseline's prediction file `predictions` read with `prediction_format`
    (see `fashionfail.eval.prediction_files`).
    `classes` is the evaluated class set: "fashionpedia" (46) or "fashionfail" (22). With
    "fashionfail" a 46-class model's predictions outside the 22 classes are dropped, as in the
    paper. DataError for bad input (names the file / id); nothing is written then.
    """
    if classes not in LABEL_SPACES:
        raise DataError(f"unknown class set {classes!r}; use one of {', '.join(LABEL_SPACES)}")
    if (checkpoint is None) == (predictions is None):
        raise DataError("evaluate needs either a model file or a prediction file, not both")
    gt = load_ground_truth(gt_path)
    items = _gt_items(gt, images_dir, gt_path)
    evaluated = LabelSpace(classes).dataset_ids
    records = None
    if predictions is not None:
        fmt = prediction_format or PRESETS["coco"]
        allowed = set(evaluated)
        records = [
            r for r in load_prediction_file(predictions, gt, fmt) if r["category_id"] in allowed
        ]
        source = {"predictions": str(predictions), **dataclasses.asdict(fmt)}
    else:
        model, space = load_model(checkpoint, model_classes=model_classes)
        if not all(space.contains(c) for c in evaluated):
            raise DataError(
                f"{checkpoint}: predicts {space.name} classes, cannot be evaluated on "
                f"{classes} classes"
            )
        source = {"checkpoint": str(checkpoint)}
    # The Aim run opens once the inputs are known good and before the predictions, so Aim's
    # duration is the evaluation's; it is tagged like a training run (fashionfail.core.tracking).
    tracked = (
        stage_run(aim_repo, f"evaluate@{name}", f"evaluate-{name}")
        if aim_repo is not None
        else contextlib.nullcontext()
    )
    with tracked as run:
        if records is None:
            records = predict(
                model,
                space,
                items,
                batch_size=cfg.batch_size,
                device=cfg.device,
                keep_categories=evaluated,
                num_workers=cfg.num_workers,
                progress=progress,
                box_decimals=cfg.box_decimals,
            )
        metrics, per_class, weights = evaluate_results(gt, records, evaluated)
        metrics.update({"num_images": len(items), "num_predictions": len(records)})
        if gt.check_report.counted:  # GT kept as the original scores it, but not silently
            metrics["gt_counted"] = dict(gt.check_report.counted)
            print(f"{gt_path}: {gt.check_report.summary()} (see metrics.json)", file=sys.stderr)
        rows = per_class_rows(per_class, class_image_counts(gt, evaluated), len(items), weights)
        with atomic_dir(out_dir) as tmp:
            dump_json(records, tmp / "predictions.json")
            dump_json(metrics, tmp / "metrics.json", indent=True)
            _write_csv(rows, tmp / "per_class.csv")
            _write_markdown(name, metrics, rows, tmp / "per_class.md")
            overlays = write_overlays(
                gt, records, items[: cfg.num_overlays], tmp / "overlays", cfg.score_threshold
            )
            if run is not None:
                hparams = {**source, "gt": str(gt_path), "classes": classes, **cfg.model_dump()}
                log_to_aim(run, name, metrics, overlays, hparams)
    return metrics
