"""The download stage: fetch the raw layout from the configured source and report on it.

Raw layout under a root R (the same for both sources):
  R/fashionpedia/instances_attributes_{train,val}2020.json, R/fashionpedia/images/{train,test}/,
  R/fashionfail/ff_{train,val,test}.json, R/fashionfail/images/{train,val,test}/,
  R/download_report.json. The official source adds its bookkeeping and
  R/fashionfail/published/ff_{train,val,test}.json (see fashionfail.data.download).

DVC keeps R/fashionpedia, R/fashionfail and the report between runs (`persist: true`), so that an
interrupted multi-GB official download resumes on the next `dvc repro`. What may stay is decided
here, from the report of the previous run:
- source=synthetic wipes R/fashionpedia and R/fashionfail, then regenerates them (deterministic,
  seconds): nothing of an earlier official run survives.
- source=official wipes them only if the report names the synthetic source, so no synthetic file
  mixes with real data. With no report, or one of an official run (complete, failed or
  interrupted), nothing is wiped and the download resumes. A report deleted by hand after a
  synthetic run cannot be detected: then delete the two folders too.
- After any wipe, and before the source runs, the report is replaced by {"source": <source>,
  "status": "running"}: a crash at any point thus leaves a report naming the source whose files
  may be on disk (a crash mid-wipe leaves the old one, so the next run wipes again), never a
  stale "complete" one.
- At the end the report gets status "complete". On a DataError (a download that failed after its
  retries, bad data, FashionFail images missing with `fail_on_missing_images`) it gets status
  "failed", the error and, where the source has one, its report (for missing images: the full
  list), before the error propagates naming the report.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from fashionfail.config import SOURCES, DownloadConfig
from fashionfail.jsonio import DataError, dump_json, load_json

log = logging.getLogger(__name__)

REPORT_NAME = "download_report.json"
IMAGE_DIRS = {
    "fashionpedia": ("train", "test"),
    "fashionfail": ("train", "val", "test"),
}


def count_files(folder: Path) -> int:
    """Number of files anywhere under `folder` (0 if it does not exist).

    The one file count of the raw layout: the report's image counts and the official download's
    check that an extracted zip folder is still complete.
    """
    return sum(len(files) for _, _, files in os.walk(folder))


def count_images(out_root: Path) -> dict:
    """Number of files in each image folder of the raw layout (0 where a folder is missing)."""
    return {
        dataset: {split: count_files(out_root / dataset / "images" / split) for split in splits}
        for dataset, splits in IMAGE_DIRS.items()
    }


def previous_source(report_path: Path) -> str | None:
    """The source named by an earlier run's report; None if there is no report."""
    if not report_path.exists():
        return None
    report = load_json(report_path)
    source = report.get("source") if isinstance(report, dict) else None
    if source not in SOURCES:
        raise DataError(
            f"{report_path}: names no known source ({source!r}); delete it, and the folders "
            "beside it if they hold synthetic data, to go on"
        )
    return source


def wipe_for(source: str, out_root: Path) -> list[str]:
    """Remove the output folders whose content must not survive a run of `source`.

    See the module docstring; returns the names of the folders removed.
    """
    if source == "official" and previous_source(out_root / REPORT_NAME) != "synthetic":
        return []
    wiped = []
    for name in IMAGE_DIRS:
        folder = out_root / name
        if folder.exists():
            shutil.rmtree(folder)
            wiped.append(name)
    if wiped:
        log.info("%s: removed %s before the %s run", out_root, ", ".join(wiped), source)
    return wiped


def _fetch(cfg: DownloadConfig, out_root: Path) -> dict[str, Any]:
    if cfg.source == "synthetic":
        from fashionfail.data.synthetic import generate

        return generate(cfg.synthetic, out_root)
    # Imported only when used: the synthetic (default, offline) path needs no HTTP stack.
    from fashionfail.data.download import download_official

    return download_official(cfg.official, out_root)


def run_download(cfg: DownloadConfig, out_root: str | os.PathLike) -> dict:
    """Fill `out_root` from `cfg.source` and write `out_root/download_report.json` atomically.

    Wipes first where the module docstring says so. The report holds the source, the status, the
    image counts found on disk and the source's own report. On a DataError the
    report is written with status "failed" and a DataError naming it is raised.
    """
    out_root = Path(out_root)
    report_path = out_root / REPORT_NAME
    # What was wiped is logged, not reported: the report is a git-tracked output and must be
    # the same on a fresh clone (nothing to wipe) as after a rerun (DVC kept the folders).
    wipe_for(cfg.source, out_root)
    report: dict[str, Any] = {"source": cfg.source, "status": "running"}
    dump_json(report, report_path, indent=True)
    try:
        details = _fetch(cfg, out_root)
    except DataError as e:
        report.update(status="failed", error=str(e), image_counts=count_images(out_root))
        if getattr(e, "report", None) is not None:  # MissingImagesError: what is missing
            report[cfg.source] = e.report
        dump_json(report, report_path, indent=True)
        raise DataError(f"{e} (report: {report_path})") from e
    report.update(status="complete", image_counts=count_images(out_root))
    report[cfg.source] = details
    dump_json(report, report_path, indent=True)
    return report
