"""Prepare Fashionpedia the way the original project's data command did, in one go.

    python fashionfail/data/make_fashionpedia.py [--save_dir ~/.cache] [--source official]

Runs the same library steps as the DVC stages download -> split -> rle-encode:
  SAVE_DIR/fashionpedia/, SAVE_DIR/fashionfail/   the raw layout (and SAVE_DIR/download_report.json)
  SAVE_DIR/fashionpedia/fp_train.json, fp_val.json  the paper's 75/25 split of train2020
  SAVE_DIR/fashionpedia/fp_{train,val,test}_rle.json  compressed-RLE versions (test = val2020),
  each with its <stem>.report.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fashionfail.cli import USER_ERRORS, error_exit
from fashionfail.config import (
    DownloadConfig,
    RleEncodeConfig,
    SplitConfig,
    load_section,
)
from fashionfail.data.rle import encode_file
from fashionfail.data.sources import run_download
from fashionfail.data.split import split_file

# This file is run as a script (sys.path[0] is fashionfail/data), so the repo's params.yaml is
# found relative to it, not to the caller's working directory.
DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def make_fashionpedia(
    save_dir: str | os.PathLike,
    download: DownloadConfig,
    split: SplitConfig,
    rle_encode: RleEncodeConfig,
) -> dict:
    """Download, split train2020 and rle-encode train/val/test under `save_dir`; return reports."""
    save_dir = Path(save_dir)
    fp = save_dir / "fashionpedia"
    reports = {"download": run_download(download, save_dir)}
    reports["split"] = split_file(
        fp / "instances_attributes_train2020.json",
        fp / "fp_train.json",
        fp / "fp_val.json",
        split.val_fraction,
        split.seed,
    )
    sources = {
        "fp_train": fp / "fp_train.json",
        "fp_val": fp / "fp_val.json",
        # The paper evaluates on Fashionpedia-val as its test set.
        "fp_test": fp / "instances_attributes_val2020.json",
    }
    for name, src in sources.items():
        reports[f"rle_{name}"] = encode_file(
            src, fp / f"{name}_rle.json", invalid=rle_encode.invalid
        )
    return reports


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Split and rle-encode settings come from the params file's `split` and `rle_encode` "
        "sections, the data sources from its `download` section (--source overrides its "
        "`source`). Exit status 1 with a one-line 'error: ...' on stderr on bad params or data.",
    )
    p.add_argument(
        "--save_dir",
        type=Path,
        default=Path("~/.cache"),
        help="root of the data layout (default: %(default)s, as in the original "
        "project: files land in ~/.cache/fashionpedia/...)",
    )
    p.add_argument(
        "--source",
        choices=("official", "synthetic"),
        default="official",
        help="official: download the real Fashionpedia and FashionFail (the original "
        "behaviour); synthetic: generate the small offline data set (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--params",
        type=Path,
        default=DEFAULT_PARAMS,
        help="params file (default: the repository's params.yaml)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        download = load_section("download", args.params).model_copy(update={"source": args.source})
        reports = make_fashionpedia(
            args.save_dir.expanduser(),
            download,
            load_section("split", args.params),
            load_section("rle_encode", args.params),
        )
    except USER_ERRORS as e:
        return error_exit(e)
    split = reports["split"]
    print(
        f"fashionpedia ready under {args.save_dir.expanduser() / 'fashionpedia'}: "
        f"train {split['train']}, val {split['val']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
