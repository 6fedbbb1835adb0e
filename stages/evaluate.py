"""DVC stage `evaluate@<name>`: score one model on one test set (COCO bbox/segm + mAP_w).

Example (what dvc.yaml runs, once per evaluation; params evaluate.model picks the checkpoint or
its exported ONNX file):
  python stages/evaluate.py --name facere_ff --classes fashionfail \
      --gt data/raw/fashionfail/ff_test.json --images data/raw/fashionfail/images/test \
      --checkpoint models/facere/best.ckpt --onnx models/onnx/facere.onnx --out eval/facere_ff

The paper's published models (downloaded by hand) on FashionFail-test:
  python stages/evaluate.py --name published_plus --classes fashionfail \
      --gt data/raw/fashionfail/ff_test.json --images data/raw/fashionfail/images/test \
      --onnx facere_plus.onnx --model-classes fashionfail --out eval/published_plus

A baseline's prediction file (the paper's other rows), e.g. Attribute Mask R-CNN:
  python stages/evaluate.py --name amrcnn --classes fashionfail --gt ... --images ... \
      --predictions amrcnn-spine.npy --preset amrcnn --out eval/amrcnn

Writes eval/<name>/{predictions.json, metrics.json, per_class.csv, per_class.md, overlays/}
and an Aim run `evaluate-<name>` tagged `stage:evaluate@<name>`, `exp:<DVC experiment>` and its
status (running, finished, interrupted), opened before the model predicts. Bad input: one
`error: ...` line on stderr, exit 1, nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fashionfail.core.categories import LABEL_SPACES
from fashionfail.core.cli import USER_ERRORS, error_exit, parser
from fashionfail.core.config import EvaluateConfig, load_section
from fashionfail.core.jsonio import DataError, dump_json
from fashionfail.core.tracking import default_aim_repo
from fashionfail.eval.evaluate import evaluate
from fashionfail.eval.prediction_files import BOX_ORDERS, CLASS_IDS, PRESETS, PredictionFormat


def _source(args, cfg: EvaluateConfig) -> tuple[Path | None, PredictionFormat | None]:
    """The model file to score (or None with --predictions) and the prediction file format."""
    if args.predictions is not None:
        if args.checkpoint or args.onnx:
            raise DataError("--predictions scores a file, not a model: drop --checkpoint/--onnx")
        preset = PRESETS[args.preset or "coco"]
        return None, PredictionFormat(
            args.box_order or preset.box_order, args.class_ids or preset.class_ids
        )
    if args.preset or args.box_order or args.class_ids:
        raise DataError("--preset, --box-order and --class-ids describe a --predictions file")
    if args.checkpoint and args.onnx:
        return (args.onnx if cfg.model == "onnx" else args.checkpoint), None
    if not (args.checkpoint or args.onnx):
        raise DataError("give --checkpoint, --onnx or --predictions")
    return args.checkpoint or args.onnx, None


def summary(metrics: dict, key: str) -> dict:
    """{KEY_box: bbox mAP_w, KEY_mask: segm mAP_w}: short, distinct `dvc exp show` columns."""
    return {f"{key}_box": metrics["bbox"]["mAP_w"], f"{key}_mask": metrics["segm"]["mAP_w"]}


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--name", required=True, help="evaluation name (Aim run, report title)")
    ap.add_argument("--gt", required=True, type=Path, help="ground truth (COCO JSON)")
    ap.add_argument("--images", required=True, type=Path, help="folder of the GT's images")
    ap.add_argument("--checkpoint", type=Path, help="Lightning checkpoint, or any .onnx model")
    ap.add_argument(
        "--onnx",
        type=Path,
        help="ONNX model (the published interface); with --checkpoint too, params "
        "evaluate.model picks which one is scored",
    )
    ap.add_argument(
        "--model-classes",
        choices=LABEL_SPACES,
        help="label space of an ONNX file that does not record it (the published "
        "facere_base.onnx: fashionpedia, facere_plus.onnx: fashionfail)",
    )
    ap.add_argument(
        "--predictions",
        type=Path,
        help="score a prediction file (.npy/.npz records or COCO results .json) instead of a model",
    )
    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="box order and class ids of a known baseline's prediction files "
        "(default: coco, i.e. xywh and Fashionpedia ids)",
    )
    ap.add_argument("--box-order", choices=BOX_ORDERS, help="boxes in the prediction file")
    ap.add_argument(
        "--class-ids",
        choices=CLASS_IDS,
        help="class ids in the prediction file: Fashionpedia ids 0..45, model labels "
        "1..46 (fashionpedia_label) or 1..22 (fashionfail_label)",
    )
    ap.add_argument(
        "--classes",
        required=True,
        choices=LABEL_SPACES,
        help="evaluated classes; fashionfail drops a 46-class model's other predictions",
    )
    ap.add_argument("--out", required=True, type=Path, help="output folder (replaced)")
    ap.add_argument(
        "--aim-repo",
        default=default_aim_repo(),
        type=Path,
        help="folder of the .aim repository (default: $DVC_ROOT, the project "
        "root, when run by DVC, also for queued/--temp experiments; else .)",
    )
    ap.add_argument("--no-aim", action="store_true", help="do not log to Aim")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument(
        "--summary-key",
        default="",
        metavar="KEY",
        help="also write OUT/summary.json = {KEY_box: mAP_w, KEY_mask: mAP_w}, the short "
        "columns `dvc exp show` leads with (e.g. fp, ff, plus_ff)",
    )
    args = ap.parse_args(argv)
    try:
        cfg = load_section("evaluate", args.params, EvaluateConfig)
        model, fmt = _source(args, cfg)
        metrics = evaluate(
            name=args.name,
            gt_path=args.gt,
            images_dir=args.images,
            checkpoint=model,
            classes=args.classes,
            out_dir=args.out,
            cfg=cfg,
            aim_repo=None if args.no_aim else args.aim_repo,
            progress=not args.no_progress,
            model_classes=args.model_classes,
            predictions=args.predictions,
            prediction_format=fmt,
        )
    except USER_ERRORS as e:
        return error_exit(e)
    if args.summary_key:
        dump_json(summary(metrics, args.summary_key), args.out / "summary.json", indent=True)
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        print(
            f"{args.name} {iou_type}: AP {m['AP']:.3f}  mAP_w {m['mAP_w']:.3f}  "
            f"mAP_w50 {m['mAP_w50']:.3f}  mAR_w100 {m['mAR_w100']:.3f}  "
            f"mAP {m['mAP_plain']:.3f}  mAR {m['mAR_plain']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
