"""The report: its numbers are the metrics files', its ECE and failure cases are the planted ones,
its spread over seeds is the documented one, and its page loads nothing from the network.

The fixture is a tiny FashionFail-like test set (4 images, one object each) and hand-made
prediction files scored by the real `evaluate` (prediction-file path): no model, no DVC.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from fashionfail.core.config import EvaluateConfig, ReportConfig
from fashionfail.eval.evaluate import evaluate
from fashionfail.report.analysis import calibration, failure_cases, spread, within_spread
from fashionfail.report.build import ReportInputs, write_report
from fashionfail.report.revisions import compare_sections, load_run

REPO = Path(__file__).resolve().parents[1]
H, W = 40, 50
BOXES = {1: (2, 2, 20, 20), 2: (10, 5, 30, 25), 3: (5, 10, 25, 20), 4: (20, 8, 25, 30)}
CLASSES = {1: 0, 2: 1, 3: 3, 4: 4}  # image id -> FashionFail class (Fashionpedia id)
CFG = ReportConfig(
    iou_type="segm", calibration_bins=10, failures_per_class=2, max_failures=12, score_threshold=0.5
)


def _rle(box) -> dict:
    x, y, w, h = box
    mask = np.zeros((H, W), np.uint8)
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _det(image_id: int, cat: int, box, score: float) -> dict:
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": list(box),
        "score": score,
        "segmentation": _rle(box),
    }


# Facere+ finds images 1-3, misses image 4 (the planted miss: no detection there) and has one
# confident false positive (pants on image 2, 0.95) and a weak one (0.15).
PLUS = [
    _det(1, 0, BOXES[1], 0.9),
    _det(2, 1, BOXES[2], 0.85),
    _det(3, 3, BOXES[3], 0.7),
    _det(2, 6, (0, 0, 8, 8), 0.95),
    _det(3, 7, (30, 30, 10, 8), 0.15),
]
# Facere finds only image 2 and puts its image-1 detection in the wrong place: misses 1, 3, 4.
FACERE = [_det(1, 0, (30, 20, 15, 15), 0.6), _det(2, 1, BOXES[2], 0.4)]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    images = root / "images"
    images.mkdir()
    anns = []
    for image_id, box in BOXES.items():
        Image.new("RGB", (W, H), (40 * image_id, 90, 160)).save(images / f"{image_id}.png")
        anns.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": CLASSES[image_id],
                "bbox": list(box),
                "area": box[2] * box[3],
                "iscrowd": 0,
                "segmentation": _rle(box),
            }
        )
    gt = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": W, "height": H} for i in BOXES],
        "annotations": anns,
        "categories": [{"id": i, "name": f"c{i}"} for i in range(46)],
    }
    (root / "gt.json").write_text(json.dumps(gt))
    cfg = EvaluateConfig(
        batch_size=1, num_workers=0, device="cpu", score_threshold=0.5, num_overlays=0
    )
    for name, preds, classes in (
        ("facere_ff", FACERE, "fashionfail"),
        ("facere_plus_ff", PLUS, "fashionfail"),
        ("facere_fp", FACERE, "fashionpedia"),
        ("facere_fp_raw", PLUS, "fashionpedia"),
    ):
        (root / f"{name}.json").write_text(json.dumps(preds))
        evaluate(
            name=name,
            gt_path=root / "gt.json",
            images_dir=images,
            classes=classes,
            out_dir=root / "eval" / name,
            cfg=cfg,
            predictions=root / f"{name}.json",
            progress=False,
        )
    inputs = ReportInputs(
        eval_dir=root / "eval",
        ff_gt=root / "gt.json",
        ff_images=images,
        fp_gt=root / "gt.json",
        synthetic=True,
    )
    write_report(inputs, CFG, root / "reports")
    return root


def _md_table(text: str, heading: str) -> list[list[str]]:
    """Rows (cells) of the first table after `## heading` in the markdown."""
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]


def test_first_table_equals_metrics_files(project):
    text = (project / "reports/report.md").read_text()
    assert text.index("synthetic") < text.index("## ")  # the note comes first
    rows = {r[0]: r for r in _md_table(text, "FashionFail-test: the paper beside this run")}
    assert rows["Facere+"][1] == "paper" and rows["Facere+"][2] == "93.4"
    assert rows["Facere+"][3] == "n/a"  # not published here: no invented number
    keys = ["mAP_w", "mAP_w50", "mAP_w75", "mAR_w1", "mAR_w100"]
    for label, name, paper in (
        ("Facere (facere_ff)", "facere_ff", (24.0, 24.3)),
        ("Facere+ (facere_plus_ff)", "facere_plus_ff", (93.4, 94.1)),
    ):
        metrics = json.loads((project / "eval" / name / "metrics.json").read_text())
        cells = rows[label][2:]
        expected = [metrics[t][k] * 100 for t in ("bbox", "segm") for k in keys]
        shown = [float(c.split(" ")[0]) for c in cells]
        assert shown == pytest.approx(expected, abs=0.05 + 1e-9), label
        for cell, ref, value in (
            (cells[0], paper[0], expected[0]),
            (cells[5], paper[1], expected[5]),
        ):
            diff = float(re.search(r"\(([+-][\d.]+)\)", cell).group(1))
            assert diff == pytest.approx(value - ref, abs=0.05 + 1e-9)


def test_per_class_table_equals_per_class_files(project):
    text = (project / "reports/report.md").read_text()
    rows = {r[0]: r for r in _md_table(text, "Per class: Facere vs Facere+ on FashionFail-test")}
    for name, columns in (("facere_ff", (2, 4)), ("facere_plus_ff", (3, 5))):
        with (project / "eval" / name / "per_class.csv").open() as f:
            for source in csv.DictReader(f):
                row = rows[source["class"]]
                assert float(row[1]) == pytest.approx(float(source["frequency"]) * 100, abs=0.05)
                for col, key in zip(columns, ("AP_bbox", "AP_segm"), strict=True):
                    if source[key] == "":
                        assert row[col] == "n/a"
                    else:
                        assert float(row[col]) == pytest.approx(float(source[key]) * 100, abs=0.05)
    # TP / FP / FN (masks, IoU .50) of Facere+ on the planted predictions
    assert rows["shirt, blouse"][8] == "1/0/0"
    assert rows["top, t-shirt, sweatshirt"][8] == "1/0/0"
    assert rows["jacket"][8] == "0/0/1"  # the planted miss
    assert rows["pants"][8] == "0/1/0"  # the planted false positive


def test_ece_equals_hand_computation():
    # bins of 0.5: [.1 .2 .3] mean .2, 1 of 3 matched; [.8 .9] mean .85, 1 of 2 matched
    dets = [
        {"score": s, "matched": m}
        for s, m in ((0.9, True), (0.8, False), (0.3, True), (0.2, False), (0.1, False))
    ]
    cal = calibration(dets, bins=2)
    assert cal["ece"] == pytest.approx(3 / 5 * abs(1 / 3 - 0.2) + 2 / 5 * abs(0.5 - 0.85))
    assert [b["count"] for b in cal["bins"]] == [3, 2]
    assert calibration([{"score": 1.0, "matched": True}], bins=10)["bins"][9]["count"] == 1


def test_report_ece_is_the_planted_matches(project):
    ece = json.loads((project / "reports/metrics.json").read_text())["ece"]
    # Facere+, bins of 0.1: [.9 matched, .95 not] conf .925 acc .5; .85, .7 matched; .15 not
    hand = 2 / 5 * abs(0.5 - 0.925) + 1 / 5 * (1 - 0.85) + 1 / 5 * (1 - 0.7) + 1 / 5 * 0.15
    assert ece["facere_plus_ff"]["segm"] == pytest.approx(hand)
    assert ece["facere_plus_ff"]["bbox"] == pytest.approx(hand)
    # Facere: .6 unmatched (wrong place), .4 matched
    assert ece["facere_ff"]["segm"] == pytest.approx((0.6 + 0.6) / 2)
    rows = list(csv.DictReader((project / "reports/calibration/facere_plus_ff.csv").open()))
    assert len(rows) == 10 and rows[9]["count_segm"] == "2"  # .9 and .95


def test_failure_cases_are_the_planted_ones(project):
    text = (project / "reports/report.md").read_text()
    rows = _md_table(text, "Failure cases (FashionFail-test)")
    plus = {(r[1], r[2], r[4]) for r in rows if r[0] == "Facere+"}
    assert plus == {("miss", "4", "jacket"), ("false positive", "2", "pants"),
                    ("false positive", "3", "shorts")}  # fmt: skip
    facere_misses = [r[2] for r in rows if r[0] == "Facere" and r[1] == "miss"]
    assert facere_misses == ["4", "3", "1"]  # largest GT object first (750, 500, 400 px)
    assert "Facere+ gets right (every GT object matched): 2 of 4; first 2: 1, 3." in text
    page = (project / "reports/index.html").read_text()
    assert page.count("data:image/png;base64,") == len(rows) + 2  # one overlay per case


def test_failure_selection_caps_per_class_and_orders():
    objects = [
        {"id": i, "image_id": i, "category_id": c, "area": a, "matched": m}
        for i, c, a, m in ((1, 0, 10, False), (2, 0, 30, False), (3, 0, 20, False), (4, 1, 5, True))
    ]
    dets = [
        {"id": i, "image_id": i, "category_id": 0, "score": s, "matched": m}
        for i, s, m in ((1, 0.2, False), (2, 0.9, True), (3, 0.7, False))
    ]
    cases = failure_cases(dets, objects, per_class=2, limit=5)
    assert [g["id"] for g in cases["misses"]] == [2, 3]
    assert [d["id"] for d in cases["false_positives"]] == [3, 1]
    assert len(failure_cases(dets, objects, per_class=5, limit=1)["misses"]) == 1


def test_html_loads_nothing_from_the_network(project):
    for page in (project / "reports/index.html").read_text(), _compare_page():
        assert not re.search(r"""(href|src)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
        assert "http://" not in page and "https://" not in page
        assert "<script" not in page
    page = (project / "reports/index.html").read_text()
    assert page.count("<svg") == 2 + 6  # per-class bars (box, mask) + 3 models x 2 diagrams


def _runs(values: dict[str, tuple[float, int, float]]) -> list[dict]:
    """Runs read through `load_run` from in-memory files: rev -> (mAP_w, seed, lr)."""
    files = {}
    for rev, (value, seed, lr) in values.items():
        files[rev, "params.yaml"] = f"finetune_facere_plus:\n  seed: {seed}\n  lr: {lr}\n"
        files[rev, "eval/facere_plus_ff/metrics.json"] = json.dumps(
            {"bbox": {"mAP_w": value}, "segm": {"mAP_w": value}}
        )
    return [load_run(lambda path, rev: files.get((rev, path)), rev) for rev in values]


def test_spread_over_three_seeds_is_sample_sd():
    s = spread([0.5, 0.6, 0.7])
    assert (s.n, s.mean) == (3, pytest.approx(0.6))
    assert s.sd == pytest.approx(0.1)  # sqrt(((-.1)**2 + 0 + .1**2) / (3 - 1))
    assert spread([0.4]).sd is None
    assert within_spread(s, spread([0.65])) is True
    assert within_spread(s, spread([0.75])) is False
    assert within_spread(spread([0.4]), spread([0.9])) is None


def test_compare_groups_seeds_and_marks_small_differences():
    runs = _runs(
        {
            "s1": (0.5, 1, 0.001),
            "s2": (0.6, 2, 0.001),
            "s3": (0.7, 3, 0.001),
            "lower-lr": (0.65, 1, 0.0005),
            "higher-lr": (0.9, 1, 0.002),
        }
    )
    sections = compare_sections(runs)
    groups = {r[1]: r for r in sections[1].tables[0].rows}
    assert groups["s1, s2, s3"][2] == "0.600 ± 0.100 (n=3)"
    assert groups["lower-lr"][2] == "0.650; +0.050 vs group 1 (within spread)"
    assert groups["higher-lr"][2] == "0.900; +0.300 vs group 1"
    header = sections[0].tables[0].header
    assert "finetune_facere_plus.lr" in header and "finetune_facere_plus.seed" in header


def _compare_page() -> str:
    from fashionfail.report.render import page

    return page("t", [], compare_sections(_runs({"a": (0.5, 1, 0.1), "b": (0.6, 2, 0.1)})))


def test_stage_bad_input_is_one_line_and_writes_nothing(project, tmp_path):
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages/report.py"), "--params", str(REPO / "params.yaml"),
         "--eval-dir", str(tmp_path / "missing"), "--ff-gt", str(project / "gt.json"),
         "--ff-images", str(project / "images"), "--fp-gt", str(project / "gt.json"),
         "--out", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "missing" in proc.stderr
    assert "metrics.json" in proc.stderr
    assert not out.exists()
