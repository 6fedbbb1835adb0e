"""DVC stage `split`: the paper's image-wise train/val split of an annotation file.

The val image ids are exactly sklearn's train_test_split(image ids in file order,
test_size=VAL_FRACTION, random_state=SEED); images and annotations keep their file order.
"""

from __future__ import annotations

import argparse
import sys

from fashionfail.cli import USER_ERRORS, error_exit, parser
from fashionfail.config import SplitConfig, parse_section
from fashionfail.data.split import split_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--ann", required=True, help="input COCO annotation file")
    p.add_argument("--train-out", required=True, help="output: the train part")
    p.add_argument("--val-out", required=True, help="output: the val part")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.25,
        help="share of images for val, sklearn's test_size (default: %(default)s, "
        "the paper's; dvc.yaml passes params.yaml split.val_fraction)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="sklearn's random_state (default: %(default)s, the paper's; dvc.yaml "
        "passes params.yaml split.seed)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = parse_section(
            SplitConfig, {"val_fraction": args.val_fraction, "seed": args.seed}, "split arguments"
        )
        counts = split_file(args.ann, args.train_out, args.val_out, cfg.val_fraction, cfg.seed)
    except USER_ERRORS as e:
        return error_exit(e)
    print(f"split {args.ann}: train {counts['train']}, val {counts['val']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
