"""The evaluate stage end to end on a tiny GT set and a tiny random checkpoint."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_eval_coco import cocoeval_by_hand, rle_of
from test_predict import write_checkpoint, write_images

from fashionfail.core.categories import FASHIONFAIL_FP_IDS, fashionpedia_categories
from fashionfail.core.config import EvaluateConfig
from fashionfail.core.jsonio import DataError
from fashionfail.core.tracking import tag_names
from fashionfail.eval import evaluate as evaluate_module
from fashionfail.eval.evaluate import evaluate

SIZES = [(64, 64), (48, 64), (64, 48), (64, 64)]
CFG = EvaluateConfig(batch_size=2, num_workers=0, device="cpu", score_threshold=0.3, num_overlays=2)


def make_gt(root: Path) -> tuple[Path, Path]:
    """Images with one coloured rectangle each (the GT object); image ids 3, 5, 7, 9."""
    paths = write_images(root / "images", SIZES)
    images, anns = [], []
    for k, ((h, w), path) in enumerate(zip(SIZES, paths, strict=True)):
        image_id = 3 + 2 * k
        images.append({"id": image_id, "file_name": path.name, "width": w, "height": h})
        x, y, bw, bh = w // 4, h // 4, w // 2, h // 2
        mask = np.zeros((h, w), np.uint8)
        mask[y : y + bh, x : x + bw] = 1
        seg = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]] if k == 1 else rle_of(mask)
        anns.append(
            {
                "id": k + 1,
                "image_id": image_id,
                "category_id": FASHIONFAIL_FP_IDS[k],
                "bbox": [x, y, bw, bh],
                "area": bw * bh,
                "iscrowd": 0,
                "segmentation": seg,
            }
        )
    # A sweater (not a FashionFail class) in the last image.
    anns.append({**anns[-1], "id": 10, "category_id": 2})
    gt = root / "gt.json"
    gt.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": fashionpedia_categories()})
    )
    return gt, root / "images"


def run_eval(
    root: Path,
    classes: str = "fashionfail",
    ckpt_classes: str = "fashionpedia",
    cfg: EvaluateConfig = CFG,
    **kwargs,
) -> tuple[dict, Path]:
    """Evaluate a random checkpoint on the GT under root/data (made if missing)."""
    gt, images = root / "data" / "gt.json", root / "data" / "images"
    if not gt.exists():
        make_gt(root / "data")
    # Boost model labels 1 and 3: Fashionpedia ids 0 (a FashionFail class) and 2 (not one).
    boost = {1: 6.0, 3: 6.0} if ckpt_classes == "fashionpedia" else {1: 6.0}
    ckpt = write_checkpoint(root / "model.ckpt", ckpt_classes, boost)
    out = root / "eval" / "facere_ff"
    metrics = evaluate(
        name="facere_ff",
        gt_path=gt,
        images_dir=images,
        checkpoint=ckpt,
        classes=classes,
        out_dir=out,
        cfg=cfg,
        progress=False,
        **kwargs,
    )
    return metrics, out


@pytest.fixture(scope="module")
def ff_run(tmp_path_factory) -> tuple[dict, Path, Path]:
    """One Facere-on-FashionFail evaluation, logged to an Aim repo, shared by several tests."""
    root = tmp_path_factory.mktemp("ff_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_EXP_NAME", "fuzzy-owl")
        metrics, out = run_eval(root, aim_repo=root / "aimrepo")
    return metrics, out, root


def test_outputs_match_cocoeval_on_the_written_files(ff_run):
    metrics, out, root = ff_run
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "overlays",
        "per_class.csv",
        "per_class.md",
        "predictions.json",
    ]
    assert [p.name for p in (root / "eval").iterdir()] == ["facere_ff"]  # no temp folders
    preds = json.loads((out / "predictions.json").read_text())
    assert preds and {p["category_id"] for p in preds} == {0}  # sweater predictions dropped
    written = json.loads((out / "metrics.json").read_text())
    assert written == metrics
    assert written["num_images"] == 4 and written["num_predictions"] == len(preds)
    for iou_type in ("bbox", "segm"):
        e = cocoeval_by_hand(root / "data" / "gt.json", preds, iou_type, FASHIONFAIL_FP_IDS)
        got = written[iou_type]
        assert [got[k] for k in ("AP", "AP50", "AP75", "AR1", "AR100")] == [
            e.stats[i] for i in (0, 1, 2, 6, 8)
        ]


def test_per_class_table(ff_run):
    _, out, _ = ff_run
    preds = json.loads((out / "predictions.json").read_text())
    with (out / "per_class.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["category_id"]) for r in rows] == list(FASHIONFAIL_FP_IDS)
    present = {int(r["category_id"]): r for r in rows if int(r["gt_images"]) > 0}
    assert sorted(present) == list(FASHIONFAIL_FP_IDS[:4])
    assert sum(float(r["weight"]) for r in rows) == pytest.approx(1.0)
    assert all(r["AP_segm"] == "" for r in rows if int(r["gt_images"]) == 0)
    assert int(present[0]["TP_bbox"]) + int(present[0]["FN_bbox"]) == 1
    assert int(present[0]["FP_bbox"]) + int(present[0]["TP_bbox"]) == sum(
        1 for p in preds if p["category_id"] == 0
    )
    md = (out / "per_class.md").read_text()
    assert "mAP_w" in md and "| 0 | shirt, blouse | 1 | 0.250 |" in md


def test_overlays_of_the_first_image_ids(ff_run):
    _, out, _ = ff_run
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["3.png", "5.png"]
    with Image.open(out / "overlays" / "5.png") as im:  # GT | prediction, side by side
        assert im.mode == "RGB" and im.width > 2 * (im.height - 18)


def test_aim_run_has_metrics_and_overlays(ff_run):
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager
    from aim.storage.context import Context

    metrics, _, root = ff_run
    repo = Repo.from_path(str(root / "aimrepo"))
    # Aim writes each run to its own chunk; `aim up` indexes chunks before showing them.
    indexer = RepoIndexManager.get_index_manager(repo)
    for run_hash in repo.list_all_runs():
        indexer.index(run_hash)
    runs = list(Repo.from_path(str(root / "aimrepo")).iter_runs())
    assert [r.name for r in runs] == ["evaluate-facere_ff@fuzzy-owl"]
    run = runs[0]
    assert run["dvc_experiment"] == "fuzzy-owl"
    tracked = {(s.name, s.context.to_dict().get("iou_type")): s for s in run.metrics()}
    assert tracked[("mAP_w", "segm")].values.values_list() == [metrics["segm"]["mAP_w"]]
    images = run.get_image_sequence("overlays", Context({"subset": "facere_ff"}))
    steps = [step for step, _ in images.data.items()]
    assert len(steps) == CFG.num_overlays
    # Tagged like the training runs (fashionfail.core.tracking): stage, DVC experiment, status.
    assert tag_names(run) == {"stage:evaluate@facere_ff", "exp:fuzzy-owl", "finished"}


def _aim_run(repo_dir: Path):
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    repo = Repo.from_path(str(repo_dir))
    indexer = RepoIndexManager.get_index_manager(repo)  # what `aim up` does before listing
    for run_hash in repo.list_all_runs():
        indexer.index(run_hash)
    (run,) = Repo.from_path(str(repo_dir)).iter_runs()
    return run


def test_aim_run_spans_the_predictions(tmp_path, monkeypatch):
    """The run opens before the model predicts: Aim's duration is the evaluation's."""
    real = evaluate_module.predict

    def slow_predict(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setattr(evaluate_module, "predict", slow_predict)
    run_eval(tmp_path, cfg=CFG.model_copy(update={"num_overlays": 0}), aim_repo=tmp_path / "aim")
    run = _aim_run(tmp_path / "aim")
    assert run.duration >= 1.5
    assert tag_names(run) == {"stage:evaluate@facere_ff", "finished"}


def test_aim_run_of_a_failed_evaluation_is_tagged_interrupted(tmp_path, monkeypatch):
    def broken_predict(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setattr(evaluate_module, "predict", broken_predict)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_eval(tmp_path, aim_repo=tmp_path / "aim")
    assert tag_names(_aim_run(tmp_path / "aim")) == {"stage:evaluate@facere_ff", "interrupted"}
    assert not (tmp_path / "eval").exists() or not any((tmp_path / "eval").iterdir())


def test_fashionpedia_classes_keep_every_prediction(tmp_path):
    _, out = run_eval(
        tmp_path, classes="fashionpedia", cfg=CFG.model_copy(update={"num_overlays": 0})
    )
    preds = json.loads((out / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} == {0, 2}
    with (out / "per_class.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 46
    # mAP_w still weighs FashionFail classes only: the sweater GT gets no weight.
    md = (out / "per_class.md").read_text()
    assert "| 2 | sweater | 1 | 0.000 |" in md
    assert not (out / "overlays").exists() or not any((out / "overlays").iterdir())


def test_fashionfail_model_cannot_score_fashionpedia_classes(tmp_path):
    with pytest.raises(DataError, match="predicts fashionfail classes"):
        run_eval(tmp_path, classes="fashionpedia", ckpt_classes="fashionfail")
    assert not (tmp_path / "eval").exists() or not any((tmp_path / "eval").iterdir())


def test_failure_keeps_previous_outputs(tmp_path):
    out = tmp_path / "eval" / "facere_ff"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("previous")
    make_gt(tmp_path / "data")
    (tmp_path / "data" / "images" / "img_02.jpg").write_bytes(b"broken")
    # Decoded in a DataLoader worker: the error still arrives as one DataError line.
    with pytest.raises(DataError, match="img_02.jpg: cannot decode image") as err:
        run_eval(tmp_path, cfg=CFG.model_copy(update={"num_workers": 1}))
    assert "\n" not in str(err.value)
    assert (out / "metrics.json").read_text() == "previous"
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["facere_ff"]
