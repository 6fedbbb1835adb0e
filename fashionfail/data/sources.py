"""The download stage: fetch the raw layout from the configured source and report on it.

Raw layout under a root R (the same for both sources):
  R/fashionpedia/instances_attributes_{train,val}2020.json, R/fashionpedia/images/{train,test}/,
  R/fashionfail/ff_{train,val,test}.json, R/fashionfail/images/{train,val,test}/,
  R/download_report.json.
"""

from __future__ import annotations

import os
from pathlib import Path

from fashionfail.config import DownloadConfig
from fashionfail.jsonio import dump_json

REPORT_NAME = "download_report.json"
IMAGE_DIRS = {
    "fashionpedia": ("train", "test"),
    "fashionfail": ("train", "val", "test"),
}


def _count_files(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.is_file())


def count_images(out_root: Path) -> dict:
    """Number of files in each image folder of the raw layout (0 where a folder is missing)."""
    return {
        dataset: {split: _count_files(out_root / dataset / "images" / split) for split in splits}
        for dataset, splits in IMAGE_DIRS.items()
    }


def run_download(cfg: DownloadConfig, out_root: str | os.PathLike) -> dict:
    """Fill `out_root` from `cfg.source` and write `out_root/download_report.json` atomically.

    The report holds the source, the image counts found on disk and the source's own report.
    """
    out_root = Path(out_root)
    if cfg.source == "synthetic":
        from fashionfail.data.synthetic import generate

        details = generate(cfg.synthetic, out_root)
    else:
        # Imported only when used: the synthetic (default, offline) path needs no HTTP stack.
        from fashionfail.data.download import download_official

        details = download_official(cfg.official, out_root)
    report = {"source": cfg.source, "image_counts": count_images(out_root), cfg.source: details}
    dump_json(report, out_root / REPORT_NAME, indent=True)
    return report
