"""DVC stage `download`: fill the raw data folder from params.yaml's `download` section.

source=synthetic generates the embedded synthetic data offline (seconds); source=official fetches
Fashionpedia from its S3 bucket and FashionFail from Hugging Face + the adidas CDN.

Every run rebuilds OUT/fashionpedia/ and OUT/fashionfail/ from scratch (DVC removes them before it
runs the stage, and so does a run started by hand). The official source downloads into a staging
folder beside OUT (--staging), which is kept: an interrupted download resumes from there on the
next run, and files already complete there are only re-checked, with no request sent. The files
are then hard-linked into OUT (copied where the filesystem refuses a link).
Deleting the staging folder only costs a new download. The synthetic source never touches it.
"""

from __future__ import annotations

import argparse
import sys

from fashionfail.core.cli import USER_ERRORS, add_debug_flag, error_exit
from fashionfail.core.config import load_section
from fashionfail.data.sources import REPORT_NAME, STAGING_NAME, run_download


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Writes OUT/fashionpedia/, OUT/fashionfail/ and OUT/{REPORT_NAME}. "
        "Exit status 1 with a one-line 'error: ...' on stderr on bad params or data; "
        f"after a failed download OUT/{REPORT_NAME} has status 'failed' and the details "
        "(e.g. the missing images), and nothing is published into OUT.",
    )
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file; its `download` section is read (default: %(default)s)",
    )
    p.add_argument(
        "--out", default="data/raw", help="root folder of the raw layout (default: %(default)s)"
    )
    p.add_argument(
        "--staging",
        help="download folder of the official source, kept between runs (default: "
        f"{STAGING_NAME}/ beside OUT, i.e. data/{STAGING_NAME} for the default OUT)",
    )
    add_debug_flag(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run_download(load_section("download", args.params), args.out, args.staging)
    except USER_ERRORS as e:
        return error_exit(e)
    missing = report.get("official", {}).get("images_missing", 0)
    line = f"download ({report['source']}): {report['image_counts']}"
    if missing:
        line += f"; {missing} FashionFail images missing, left out (see {REPORT_NAME})"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
