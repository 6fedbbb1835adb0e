"""DVC stage `train-facere` / `finetune-facere-plus`: train one model from a params.yaml section.

Example (what dvc.yaml runs):
  python stages/train.py --section train_facere \
      --train-ann data/prepared/fp_train_rle.json \
      --train-img-dir data/raw/fashionpedia/images/train \
      --val-ann data/prepared/fp_val_rle.json --val-img-dir data/raw/fashionpedia/images/train \
      --out-dir models/facere --live-dir dvclive/train-facere --name train-facere
"""

from __future__ import annotations

import sys
from pathlib import Path

from fashionfail.core.cli import parser, report_errors
from fashionfail.core.config import TrainConfig, load_section
from fashionfail.core.tracking import default_aim_repo
from fashionfail.models.train import TRAIN_ERRORS, TrainPaths, train


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--section", required=True, help="params section, e.g. train_facere")
    ap.add_argument(
        "--train-ann", required=True, type=Path, help="training annotations (COCO JSON)"
    )
    ap.add_argument("--train-img-dir", required=True, type=Path, help="folder of training images")
    ap.add_argument(
        "--val-ann", required=True, type=Path, help="validation annotations (COCO JSON)"
    )
    ap.add_argument("--val-img-dir", required=True, type=Path, help="folder of validation images")
    ap.add_argument(
        "--out-dir",
        required=True,
        type=Path,
        help="checkpoint folder (best.ckpt, last.ckpt, run.json)",
    )
    ap.add_argument("--live-dir", required=True, type=Path, help="dvclive output folder")
    ap.add_argument(
        "--aim-repo",
        default=default_aim_repo(),
        type=Path,
        help="folder of the .aim repository (default: $DVC_ROOT, the project root, when run by "
        "DVC, also for queued and --temp experiments; else .)",
    )
    ap.add_argument(
        "--name", required=True, help="run name in Aim (the DVC experiment name is appended)"
    )
    ap.add_argument(
        "--summary-key",
        default="",
        help="writes LIVE_DIR/best.json = {KEY: best monitored value} for `dvc exp show` "
        "(e.g. best_loss)",
    )
    args = ap.parse_args(argv)

    def job() -> int:
        cfg = load_section(args.section, args.params, TrainConfig)
        paths = TrainPaths(
            args.train_ann,
            args.train_img_dir,
            args.val_ann,
            args.val_img_dir,
            args.out_dir,
            args.live_dir,
            args.aim_repo,
            args.name,
            args.summary_key,
        )
        summary = train(cfg, paths)
        print(
            f"best checkpoint: {summary['best']} ({summary['monitor']} = {summary['best_score']})"
        )
        return 0

    return report_errors(job, TRAIN_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
