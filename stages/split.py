"""DVC stage `split`: the paper's image-wise train/val split of an annotation file.

The val image ids are exactly sklearn's train_test_split(image ids in file order,
test_size=split.val_fraction, random_state=split.seed) with the params file's `split` section;
images and annotations keep their file order.

The annotations go through the validator's category and box rules first (fashionfail.data.
coco_checks): an unknown category id or a malformed box stops the stage with the one-line error
training would give; a box outside its image is copied as is and counted on stderr (rle-encode
drops it and counts it in its report).
"""

from __future__ import annotations

import argparse
import sys

from fashionfail.core.cli import USER_ERRORS, error_exit, parser
from fashionfail.core.config import SplitConfig, load_section
from fashionfail.data.split import split_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file; its `split` section (val_fraction, seed) is read (default: %(default)s)",
    )
    p.add_argument("--ann", required=True, help="input COCO annotation file")
    p.add_argument("--train-out", required=True, help="output: the train part")
    p.add_argument("--val-out", required=True, help="output: the val part")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_section("split", args.params, SplitConfig)
        counts = split_file(args.ann, args.train_out, args.val_out, cfg.val_fraction, cfg.seed)
    except USER_ERRORS as e:
        return error_exit(e)
    print(f"split {args.ann}: train {counts['train']}, val {counts['val']}")
    counted = counts["checks"]["counted"]
    if counted:
        detail = ", ".join(f"{rule} {n}" for rule, n in counted.items())
        print(
            f"{args.ann}: counted {sum(counted.values())} ({detail}), copied as is (rle-encode "
            "drops or counts them in its report)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
