"""The report stage: eval/* outputs (+ GT and images) -> reports/{report.md, index.html, data}.

Reads the evaluations' metrics.json and per_class.csv, and (for calibration and failure cases)
their predictions.json with the GT they were scored against; see `fashionfail.report.analysis`
for the definitions. Writes, after everything is computed (nothing partial on bad input):
    report.md          the tables: the paper beside this run, per class, ECE, failure cases
    index.html         the same with charts (inline SVG) and overlays (data URIs): offline
    per_class.csv      Facere vs Facere+ per class on FashionFail-test (dvc plots)
    calibration/<evaluation>.csv   reliability bins, box and mask (dvc plots)
    metrics.json       ECE per evaluation and IoU type (dvc metrics)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fashionfail.core.categories import FASHIONPEDIA_NAMES, LabelSpace
from fashionfail.core.config import ReportConfig
from fashionfail.core.jsonio import DataError, atomic_path, dump_json, load_json
from fashionfail.eval.coco import IOU_TYPES, WEIGHTED_KEYS, load_ground_truth
from fashionfail.report import paper
from fashionfail.report.analysis import calibration, failure_cases, fixed_images, matches
from fashionfail.report.render import Section, Table, bar_chart, markdown, page, reliability_diagram

TITLE = "FashionFail reproduction report"
HEADERS = {
    "mAP_w": "mAP_w",
    "mAP_w50": "mAP_w@.50",
    "mAP_w75": "mAP_w@.75",
    "mAR_w1": "mAR_w top-1",
    "mAR_w100": "mAR_w top-100",
}
IOU_NAMES = {"bbox": "box", "segm": "mask"}
FACERE, PLUS = "facere_ff", "facere_plus_ff"  # the two models on FashionFail-test
# evaluation -> (model, paper row, test set, what it is)
EVALUATIONS: dict[str, tuple[str, str, str]] = {
    FACERE: ("Facere", "FashionFail-test", "fashionfail"),
    PLUS: ("Facere+", "FashionFail-test", "fashionfail"),
    "facere_fp_raw": ("Facere", "Fashionpedia-val (raw file, as the original)", "fashionpedia"),
    "facere_fp": ("Facere", "Fashionpedia-val (rle-encode filtered)", "fashionpedia"),
}
SYNTHETIC_NOTE = (
    "The data source is synthetic (params download.source): these test sets are generated, so "
    "only the pattern compares with the paper (Facere poor on FashionFail-test, Facere+ good), "
    "not the numbers."
)


@dataclass(frozen=True)
class ReportInputs:
    """What the report reads: eval/<name>/ folders, the GT and images of the detailed parts."""

    eval_dir: Path
    ff_gt: Path  # FashionFail-test (facere_ff, facere_plus_ff)
    ff_images: Path
    fp_gt: Path  # Fashionpedia-val as facere_fp scored it
    synthetic: bool
    baselines: Mapping[str, Path] = field(default_factory=dict)  # paper row -> eval folder


def percent(value: float) -> str:
    return "n/a" if value is None or value < 0 else f"{value * 100:.1f}"


def load_metrics(folder: Path) -> dict:
    """An evaluation's metrics.json; DataError naming the file if a metric is missing."""
    metrics = load_json(folder / "metrics.json")
    for iou_type in IOU_TYPES:
        missing = [k for k in WEIGHTED_KEYS if k not in metrics.get(iou_type, {})]
        if missing:
            raise DataError(f"{folder / 'metrics.json'}: no {iou_type} {', '.join(missing)}")
    return metrics


def read_per_class(path: Path) -> dict[int, dict]:
    """per_class.csv rows by category id (numbers parsed; empty AP cells -> None)."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    out = {}
    for row in rows:
        try:
            out[int(row["category_id"])] = {
                k: (row[k] if k == "class" else (float(row[k]) if row[k] != "" else None))
                for k in row
            }
        except (KeyError, ValueError) as e:
            raise DataError(f"{path}: bad row {row!r} ({e})") from None
    return out


def metric_cells(metrics: Mapping, reference: Mapping | None) -> list[str]:
    """Box then mask cells, in percent; with the paper's value known, the difference to it."""
    cells = []
    for iou_type in IOU_TYPES:
        for key in HEADERS:
            cell = percent(metrics[iou_type][key])
            ref = (reference or {}).get(iou_type, {}).get(key)
            if ref is not None:
                cell += f" ({metrics[iou_type][key] * 100 - ref:+.1f})"
            cells.append(cell)
    return cells


def paper_cells(row: Mapping) -> list[str]:
    return [
        f"{row[t][k]:.1f}" if k in row.get(t, {}) else "n/a" for t in IOU_TYPES for k in HEADERS
    ]


def results_table(
    paper_rows: Mapping[str, Mapping], run_rows: Sequence[tuple[str, str, Mapping]]
) -> Table:
    """The paper's rows, then this run's (label, paper row name, metrics) with differences."""
    header = ["model", "source"] + [
        f"{IOU_NAMES[t]} {h}" for t in IOU_TYPES for h in HEADERS.values()
    ]
    table = Table(header, right=set(range(2, len(header))))
    for name, row in paper_rows.items():
        table.rows.append([name, "paper", *paper_cells(row)])
    for label, paper_row, metrics in run_rows:
        table.rows.append([label, "this run", *metric_cells(metrics, paper_rows.get(paper_row))])
    return table


def per_class_rows(facere: Mapping[int, dict], plus: Mapping[int, dict]) -> list[dict]:
    """Facere vs Facere+ per class on FashionFail-test (the rows of per_class.csv)."""
    rows = []
    for cat_id in sorted(set(facere) | set(plus)):
        a, b = facere.get(cat_id, {}), plus.get(cat_id, {})
        row = {
            "category_id": cat_id,
            "class": FASHIONPEDIA_NAMES[cat_id],
            "frequency": (b or a).get("frequency"),
        }
        for iou_type in IOU_TYPES:
            ap_a, ap_b = a.get(f"AP_{iou_type}"), b.get(f"AP_{iou_type}")
            row[f"AP_{iou_type}_facere"] = ap_a
            row[f"AP_{iou_type}_facere_plus"] = ap_b
            row[f"AP_{iou_type}_delta"] = None if ap_a is None or ap_b is None else ap_b - ap_a
        for model, src in (("facere", a), ("facere_plus", b)):
            for key in ("TP", "FP", "FN"):
                value = src.get(f"{key}_segm")
                row[f"{key}_segm_{model}"] = None if value is None else int(value)
        rows.append(row)
    return rows


def _num(value: float | None, scale: float = 100.0) -> str:
    return "n/a" if value is None else f"{value * scale:.1f}"


def per_class_table(rows: Sequence[dict]) -> Table:
    header = [
        "class",
        "test images %",
        "box AP Facere",
        "box AP Facere+",
        "mask AP Facere",
        "mask AP Facere+",
        "mask Δ",
        "TP/FP/FN Facere",
        "TP/FP/FN Facere+",
    ]
    table = Table(header, right=set(range(1, 7)))
    for r in rows:
        counts = [
            "/".join(str(r[f"{k}_segm_{m}"]) for k in ("TP", "FP", "FN"))
            for m in ("facere", "facere_plus")
        ]
        table.rows.append(
            [
                r["class"],
                _num(r["frequency"]),
                _num(r["AP_bbox_facere"]),
                _num(r["AP_bbox_facere_plus"]),
                _num(r["AP_segm_facere"]),
                _num(r["AP_segm_facere_plus"]),
                "n/a" if r["AP_segm_delta"] is None else f"{r['AP_segm_delta'] * 100:+.1f}",
                *counts,
            ]
        )
    return table


@dataclass
class Detail:
    """One evaluation's predictions matched to its GT, both IoU types."""

    gt: object
    results: list[dict]
    matched: dict  # iou_type -> analysis.Matches


def load_detail(gt_path: Path, folder: Path, classes: str) -> Detail:
    gt = load_ground_truth(gt_path)
    results = load_json(folder / "predictions.json")
    if not isinstance(results, list):
        raise DataError(f"{folder / 'predictions.json'}: expected a list of COCO results")
    ids = LabelSpace(classes).dataset_ids
    return Detail(gt, results, {t: matches(gt, results, t, ids) for t in IOU_TYPES})


def _picture(image_path: Path, panels: Sequence[tuple[str, Sequence[dict], float]]) -> Image.Image:
    """Side-by-side overlays of one image: (title, records drawn, threshold they were chosen
    with: named on an empty panel) per panel."""
    import torch

    from fashionfail.eval.overlays import draw_detections, side_by_side, to_pil

    try:
        with Image.open(image_path) as im:
            rgb = np.asarray(im.convert("RGB")).copy()
    except OSError as e:
        raise DataError(f"{image_path}: cannot read image ({e})") from None
    image = torch.from_numpy(rgb).permute(2, 0, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small images: threads only add overhead (3x slower on 2 cores)
    names = dict(enumerate(FASHIONPEDIA_NAMES))
    try:
        drawn = [
            (
                title,
                draw_detections(
                    image,
                    anns,
                    names,
                    max_side=320,
                    empty_note=f"none >= {t:g}" if t > 0 else "none",
                ),
            )
            for title, anns, t in panels
        ]
    finally:
        torch.set_num_threads(threads)
    return to_pil(side_by_side(drawn))


def failure_section(details: Mapping[str, Detail], images: Path, cfg: ReportConfig) -> Section:
    """Misses and confident false positives per model; images Facere fails and Facere+ fixes."""
    from fashionfail.report.render import png_img

    section = Section(
        "Failure cases (FashionFail-test)",
        [
            f"Matching at IoU .50 on {IOU_NAMES[cfg.iou_type]}s, as COCOeval matches. Misses: GT "
            "objects no detection matched, largest first; false positives: unmatched detections, "
            f"highest score first; at most {cfg.failures_per_class} per class and "
            f"{cfg.max_failures} in all per model. Overlays show the detections scoring >= "
            f"{cfg.score_threshold:g} and every matched one.",
        ],
    )
    table = Table(["model", "kind", "image id", "file", "class", "area / score"], right={2, 5})
    section.tables.append(table)
    for name, detail in details.items():
        model = EVALUATIONS[name][0]
        m = detail.matched[cfg.iou_type]
        cases = failure_cases(m.detections, m.objects, cfg.failures_per_class, cfg.max_failures)
        imgs = detail.gt.imgs
        for g in cases["misses"]:
            ann = detail.gt.anns[g["id"]]
            img = imgs[g["image_id"]]
            dets = m.image_detections(g["image_id"], cfg.score_threshold)
            table.rows.append(
                [
                    model,
                    "miss",
                    str(img["id"]),
                    img["file_name"],
                    FASHIONPEDIA_NAMES[g["category_id"]],
                    f"{g['area']:.0f} px",
                ]
            )
            pic = _picture(
                images / img["file_name"],
                [
                    ("missed GT object", [ann], 0.0),
                    (f"{model} detections", dets, cfg.score_threshold),
                ],
            )
            section.figures.append(
                (
                    f"{model}: missed {FASHIONPEDIA_NAMES[ann['category_id']]}, "
                    f"image {img['id']} ({img['file_name']})",
                    png_img(pic),
                )
            )
        for d in cases["false_positives"]:
            img = imgs[d["image_id"]]
            table.rows.append(
                [
                    model,
                    "false positive",
                    str(img["id"]),
                    img["file_name"],
                    FASHIONPEDIA_NAMES[d["category_id"]],
                    f"{d['score']:.3f}",
                ]
            )
            pic = _picture(
                images / img["file_name"],
                [
                    ("ground truth", detail.gt.imgToAnns.get(img["id"], []), 0.0),
                    (f"{model} false positive", [m.dt_anns[d["id"]]], 0.0),
                ],
            )
            section.figures.append(
                (
                    f"{model}: false positive {FASHIONPEDIA_NAMES[d['category_id']]}"
                    f" {d['score']:.2f}, image {img['id']}",
                    png_img(pic),
                )
            )
    if FACERE in details and PLUS in details:
        a, b = details[FACERE], details[PLUS]
        fixed = fixed_images(a.matched[cfg.iou_type].objects, b.matched[cfg.iou_type].objects)
        shown = fixed[: cfg.max_failures]
        section.after.append(
            f"Images Facere fails (a missed GT object) and Facere+ gets right (every GT object "
            f"matched): {len(fixed)} of {len(a.gt.imgs)}; first {len(shown)}: "
            + (", ".join(map(str, shown)) or "none")
            + "."
        )
        for image_id in shown:
            img = a.gt.imgs[image_id]
            pic = _picture(
                images / img["file_name"],
                [
                    ("ground truth", a.gt.imgToAnns.get(image_id, []), 0.0),
                    (
                        "Facere",
                        a.matched[cfg.iou_type].image_detections(image_id, cfg.score_threshold),
                        cfg.score_threshold,
                    ),
                    (
                        "Facere+",
                        b.matched[cfg.iou_type].image_detections(image_id, cfg.score_threshold),
                        cfg.score_threshold,
                    ),
                ],
            )
            section.figures.append((f"Facere fails, Facere+ right: image {image_id}", png_img(pic)))
    return section


def calibration_rows(cal: Mapping[str, dict]) -> list[dict]:
    """One row per bin, box and mask side by side (the calibration/<evaluation>.csv rows)."""
    rows = []
    for k, bbox in enumerate(cal["bbox"]["bins"]):
        segm = cal["segm"]["bins"][k]
        rows.append(
            {
                "lower": bbox["lower"],
                "upper": bbox["upper"],
                **{
                    f"{key}_{t}": b.get(key, "")
                    for t, b in (("bbox", bbox), ("segm", segm))
                    for key in ("count", "confidence", "accuracy")
                },
            }
        )
    return rows


def _csv_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def build(inputs: ReportInputs, cfg: ReportConfig) -> dict[str, str | dict]:
    """Every output of the stage, by relative path: text, or a dict (JSON)."""
    evals = {name: load_metrics(inputs.eval_dir / name) for name in EVALUATIONS}
    baselines = {row: load_metrics(folder) for row, folder in inputs.baselines.items()}
    intro = [SYNTHETIC_NOTE] if inputs.synthetic else []
    intro.append(
        "Fractions as percent (the paper's unit); this run's cells show the difference to the "
        "paper's value in brackets where the paper gives one; n/a: not published here (only "
        "mAP_w is) or undefined. Sources: eval/<evaluation>/metrics.json."
    )
    ff_rows = [(f"{EVALUATIONS[n][0]} ({n})", EVALUATIONS[n][0], evals[n]) for n in (FACERE, PLUS)]
    ff_rows += [(f"{row} (prediction file)", row, m) for row, m in baselines.items()]
    fp_rows = [(f"Facere ({n})", "Facere", evals[n]) for n in ("facere_fp_raw", "facere_fp")]
    sections = [
        Section(
            "FashionFail-test: the paper beside this run",
            tables=[results_table(paper.FASHIONFAIL_TEST, ff_rows)],
        ),
        Section(
            "Fashionpedia-val: Facere",
            [
                "facere_fp_raw: scored against the raw val file, as the original; facere_fp: "
                "against the rle-encode filtered copy."
            ],
            tables=[results_table(paper.FASHIONPEDIA_VAL, fp_rows)],
        ),
    ]

    facere_pc = read_per_class(inputs.eval_dir / FACERE / "per_class.csv")
    plus_pc = read_per_class(inputs.eval_dir / PLUS / "per_class.csv")
    pc_rows = per_class_rows(facere_pc, plus_pc)
    labels = [r["class"] for r in pc_rows]
    sections.append(
        Section(
            "Per class: Facere vs Facere+ on FashionFail-test",
            [
                "AP (IoU .50:.95) in percent; test images %: the class's share of test images "
                "(its mAP_w weight); TP / FP / FN: mask matches at IoU .50 (area all, maxDets "
                "100). Sources: eval/facere_ff/per_class.csv, eval/facere_plus_ff/per_class.csv."
            ],
            [per_class_table(pc_rows)],
            figures=[
                (
                    f"{IOU_NAMES[t]} AP per class",
                    bar_chart(
                        f"{IOU_NAMES[t]} AP",
                        labels,
                        {
                            "Facere": [r[f"AP_{t}_facere"] for r in pc_rows],
                            "Facere+": [r[f"AP_{t}_facere_plus"] for r in pc_rows],
                        },
                    ),
                )
                for t in IOU_TYPES
            ],
        )
    )

    details = {
        FACERE: load_detail(inputs.ff_gt, inputs.eval_dir / FACERE, "fashionfail"),
        PLUS: load_detail(inputs.ff_gt, inputs.eval_dir / PLUS, "fashionfail"),
        "facere_fp": load_detail(inputs.fp_gt, inputs.eval_dir / "facere_fp", "fashionpedia"),
    }
    outputs: dict[str, str | dict] = {}
    cal_section = Section(
        "Calibration",
        [
            f"Detections (score >= 0.05, <= 100 per image) in {cfg.calibration_bins} equal score "
            "bins; accuracy: the fraction matching a GT object at IoU .50 (COCOeval's matching). "
            "ECE = sum over bins of (n_bin / n) * |accuracy - mean score|. Bars: accuracy; red "
            "line: the bin's mean score; dashed: perfect calibration."
        ],
    )
    ece_table = Table(["evaluation", "detections", "box ECE", "mask ECE"], right={1, 2, 3})
    ece: dict[str, dict[str, float | None]] = {}
    for name, detail in details.items():
        cal = {
            t: calibration(detail.matched[t].detections, cfg.calibration_bins) for t in IOU_TYPES
        }
        ece[name] = {t: cal[t]["ece"] for t in IOU_TYPES}
        ece_table.rows.append(
            [
                f"{EVALUATIONS[name][0]} on {EVALUATIONS[name][1]} ({name})",
                str(cal["segm"]["count"]),
                *["n/a" if ece[name][t] is None else f"{ece[name][t]:.3f}" for t in IOU_TYPES],
            ]
        )
        outputs[f"calibration/{name}.csv"] = _csv_text(calibration_rows(cal))
        for t in IOU_TYPES:
            cal_section.figures.append(
                (
                    f"{name}, {IOU_NAMES[t]}",
                    reliability_diagram(
                        f"{EVALUATIONS[name][0]} ({name}), {IOU_NAMES[t]}",
                        cal[t]["bins"],
                        cal[t]["ece"],
                    ),
                )
            )
    cal_section.tables.append(ece_table)
    sections.append(cal_section)
    failures = failure_section({n: details[n] for n in (FACERE, PLUS)}, inputs.ff_images, cfg)
    sections.append(failures)

    outputs["report.md"] = markdown(TITLE, intro, sections) + (
        "\nCharts, reliability diagrams and failure overlays: reports/index.html.\n"
    )
    outputs["index.html"] = page(TITLE, intro, sections)
    outputs["per_class.csv"] = _csv_text(pc_rows)
    outputs["metrics.json"] = {"ece": ece}
    return outputs


def write_report(inputs: ReportInputs, cfg: ReportConfig, out_dir: Path) -> list[Path]:
    """Build every output, then write each atomically; returns the paths written."""
    outputs = build(inputs, cfg)
    written = []
    for rel, content in outputs.items():
        path = out_dir / rel
        if isinstance(content, dict):
            dump_json(content, path, indent=True)
        else:
            with atomic_path(path) as tmp:
                tmp.write_text(content, encoding="utf-8")
        written.append(path)
    return written
