"""DVC stage `evaluate@<name>`: score one checkpoint on one test set (COCO bbox/segm + mAP_w).

Example (what dvc.yaml runs, once per evaluation):
  python stages/evaluate.py --name facere_ff --classes fashionfail \
      --gt data/raw/fashionfail/ff_test.json --images data/raw/fashionfail/images/test \
      --checkpoint models/facere/best.ckpt --out eval/facere_ff

Writes eval/<name>/{predictions.json, metrics.json, per_class.csv, per_class.md, overlays/}
and an Aim run `evaluate-<name>`. Bad input: one `error: ...` line on stderr, exit 1, nothing
written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fashionfail.categories import LABEL_SPACES
from fashionfail.cli import USER_ERRORS, error_exit, parser
from fashionfail.config import EvaluateConfig, load_section
from fashionfail.eval.evaluate import evaluate
from fashionfail.tracking import default_aim_repo


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--name", required=True, help="evaluation name (Aim run, report title)")
    ap.add_argument("--gt", required=True, type=Path, help="ground truth (COCO JSON)")
    ap.add_argument("--images", required=True, type=Path, help="folder of the GT's images")
    ap.add_argument("--checkpoint", required=True, type=Path, help="Lightning checkpoint")
    ap.add_argument(
        "--classes", required=True, choices=LABEL_SPACES,
        help="evaluated classes; fashionfail drops a 46-class model's other predictions",
    )  # fmt: skip
    ap.add_argument("--out", required=True, type=Path, help="output folder (replaced)")
    ap.add_argument("--aim-repo", default=default_aim_repo(), type=Path,
                    help="folder of the .aim repository (default: $DVC_ROOT, the project "
                         "root, when run by DVC, also for queued/--temp experiments; else .)",
                    )  # fmt: skip
    ap.add_argument("--no-aim", action="store_true", help="do not log to Aim")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        cfg = load_section("evaluate", args.params, EvaluateConfig)
        metrics = evaluate(
            name=args.name, gt_path=args.gt, images_dir=args.images, checkpoint=args.checkpoint,
            classes=args.classes, out_dir=args.out, cfg=cfg,
            aim_repo=None if args.no_aim else args.aim_repo, progress=not args.no_progress,
        )  # fmt: skip
    except USER_ERRORS as e:
        return error_exit(e)
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        print(f"{args.name} {iou_type}: AP {m['AP']:.3f}  mAP_w {m['mAP_w']:.3f}  "
              f"mAP_w50 {m['mAP_w50']:.3f}  mAR_w100 {m['mAR_w100']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
