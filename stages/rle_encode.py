"""DVC stage `rle_encode`: every segmentation of an annotation file as compressed RLE.

Polygons become the RLE of the union of their parts (pycocotools merge(frPyObjects(...))),
uncompressed RLE is compressed, compressed RLE is kept. Invalid geometry (unknown image id,
zero-size bbox or one outside its image, empty segmentation, polygon parts with < 6 or an odd
number of values, RLE of the wrong size, empty masks) is dropped and counted in the report (params
`rle_encode.invalid: drop`) or fails the stage naming the annotation id (`invalid: error`). In a
multi-part polygon only the invalid parts are dropped (counted under dropped_polygon_parts).
An unknown category id or a malformed / non-finite bbox fails the stage under either policy, with
the line training gives (the validator in fashionfail/data/coco_checks.py); a bbox more than 1 px
beyond its image is kept and counted under "counted".
"""

from __future__ import annotations

import argparse
import sys

from fashionfail.core.cli import USER_ERRORS, error_exit, parser
from fashionfail.core.config import RleEncodeConfig, load_section
from fashionfail.data.rle import encode_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file; its `rle_encode` section (invalid: drop | error) is read "
        "(default: %(default)s)",
    )
    p.add_argument("--ann", required=True, help="input COCO annotation file")
    p.add_argument("--out", required=True, help="output annotation file")
    p.add_argument(
        "--report",
        default=None,
        help="JSON report (counts per segmentation kind, dropped annotations per "
        "reason with example ids); default: <OUT stem>.report.json next to OUT",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: all cores for files >= 16 MB, else 1)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_section("rle_encode", args.params, RleEncodeConfig)
        report = encode_file(args.ann, args.out, args.report, cfg.invalid, args.workers)
    except USER_ERRORS as e:
        return error_exit(e)
    dropped = report["dropped"]["counts"]
    print(
        f"rle-encode {args.ann}: {report['annotations_out']}/{report['annotations_in']} kept"
        + (f", dropped {dropped}" if dropped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
