"""DVC stage `report`: eval/* (+ the GT and images) -> reports/report.md, reports/index.html.

Example (what dvc.yaml runs):
  python stages/report.py --params params.yaml --eval-dir eval \
      --ff-gt data/raw/fashionfail/ff_test.json --ff-images data/raw/fashionfail/images/test \
      --fp-gt data/prepared/fp_test_rle.json --out reports

A baseline's evaluation (docs/paper.md, "The baselines' prediction files") joins the first table
with `--baseline amrcnn-spine=eval/amrcnn_spine` (the name of the paper's row, then the folder).
Bad input: one `error: ...` line on stderr, exit 1, nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fashionfail.core.cli import USER_ERRORS, error_exit, parser
from fashionfail.core.config import DownloadConfig, ReportConfig, load_section
from fashionfail.core.jsonio import DataError
from fashionfail.report.build import ReportInputs, write_report


def _baselines(values: list[str]) -> dict[str, Path]:
    out = {}
    for value in values:
        row, sep, folder = value.partition("=")
        if not sep or not row or not folder:
            raise DataError(f"--baseline {value!r}: expected ROW=EVAL_FOLDER")
        out[row] = Path(folder)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--eval-dir", type=Path, default=Path("eval"), help="the evaluations' folder")
    ap.add_argument("--ff-gt", required=True, type=Path, help="FashionFail-test GT (COCO JSON)")
    ap.add_argument("--ff-images", required=True, type=Path, help="FashionFail-test images")
    ap.add_argument("--fp-gt", required=True, type=Path, help="the GT evaluate@facere_fp used")
    ap.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="ROW=FOLDER",
        help="an evaluated prediction file's eval folder, shown as the paper's row ROW",
    )
    ap.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    args = ap.parse_args(argv)
    try:
        cfg = load_section("report", args.params, ReportConfig)
        source = load_section("download", args.params, DownloadConfig).source
        inputs = ReportInputs(
            eval_dir=args.eval_dir,
            ff_gt=args.ff_gt,
            ff_images=args.ff_images,
            fp_gt=args.fp_gt,
            synthetic=source == "synthetic",
            baselines=_baselines(args.baseline),
        )
        written = write_report(inputs, cfg, args.out)
    except USER_ERRORS as e:
        return error_exit(e)
    print(f"wrote {len(written)} files to {args.out}/ (open {args.out / 'index.html'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
