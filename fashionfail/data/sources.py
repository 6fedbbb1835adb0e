"""The download stage: fill the raw layout from the configured source and report on it.

Raw layout under a root R (the same for both sources):
  R/fashionpedia/instances_attributes_{train,val}2020.json, R/fashionpedia/images/{train,test}/,
  R/fashionfail/ff_{train,val,test}.json, R/fashionfail/images/{train,val,test}/,
  R/download_report.json. The official source adds R/fashionfail/published/ff_{train,val,test}.json
  (see fashionfail.data.download).

Every run rebuilds R/fashionpedia and R/fashionfail from scratch: it removes them first (DVC
does too, before it runs the stage), so synthetic and real files never mix and the outputs are
plain DVC outputs that the run-cache can restore.
- source=synthetic generates them straight into R (deterministic, seconds).
- source=official downloads into the staging folder beside R, `<parent of R>/.official-download/`
  (`staging_dir`), which no run removes: it keeps `.part` files, extracted zips, markers and the
  manifests, so an interrupted multi-GB download resumes on the next run, and a run whose files
  are all there re-checks them and sends no request. Once the download is complete, the layout
  is published into R by hard links (fashionfail.data.download.publish). Deleting the staging
  folder costs only a new download; the synthetic source never touches it.
- Before the source runs, the report is replaced by {"source": <source>, "status": "running"}: a
  crash leaves that, never a stale "complete" report.
- At the end the report gets status "complete", the image counts on disk and the source's own
  report. It holds nothing that differs between two runs with the same inputs and outcome (no
  times, paths or what this run fetched versus found in place), so it is a stable DVC metric. On a
  DataError (a download that failed after its retries, bad data, FashionFail images missing with
  `fail_on_missing_images`) it gets status "failed", the error and, where the source has one, its
  report (for missing images: the full list), before the error propagates naming the report; R's
  two folders are then left absent (official) or as far as the source got (synthetic: absent).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from fashionfail.core.config import DownloadConfig
from fashionfail.core.jsonio import DataError, dump_json
from fashionfail.data.layout import IMAGE_DIRS, count_images

log = logging.getLogger(__name__)

REPORT_NAME = "download_report.json"
STAGING_NAME = ".official-download"


def staging_dir(out_root: str | os.PathLike) -> Path:
    """Where the official source downloads to for the raw layout `out_root`: a folder beside it."""
    return Path(os.path.abspath(out_root)).parent / STAGING_NAME


def _fetch(cfg: DownloadConfig, out_root: Path, staging: Path | None) -> dict[str, Any]:
    if cfg.source == "synthetic":
        from fashionfail.data.synthetic import generate

        return generate(cfg.synthetic, out_root)
    # Imported only when used: the synthetic (default, offline) path needs no HTTP stack.
    from fashionfail.data.download import download_official, publish

    staging = staging_dir(out_root) if staging is None else Path(staging)
    details = download_official(cfg.official, staging)
    this_run = details.pop("this_run")
    statuses = [f["status"] for f in this_run["files"].values()]
    log.info(
        "%s: files %s, zips %s, FashionFail images %d fetched, %d already there",
        staging,
        {s: statuses.count(s) for s in sorted(set(statuses))},
        this_run["zips"],
        this_run["images_fetched"],
        this_run["images_skipped"],
    )
    n = publish(staging, out_root)
    log.info("%s: %d files published into %s", staging, n, out_root)
    return details


def run_download(
    cfg: DownloadConfig, out_root: str | os.PathLike, staging: str | os.PathLike | None = None
) -> dict:
    """Rebuild `out_root` from `cfg.source`; write `out_root/download_report.json` atomically.

    `staging`: the official source's download folder (default: `staging_dir(out_root)`). See the
    module docstring. The report holds the source, the status, the image counts found on disk and
    the source's own report. On a DataError the report is written with status "failed" and a
    DataError naming it is raised.
    """
    out_root = Path(out_root)
    report_path = out_root / REPORT_NAME
    report: dict[str, Any] = {"source": cfg.source, "status": "running"}
    dump_json(report, report_path, indent=True)
    for name in IMAGE_DIRS:  # what DVC removes before it runs the stage: a hand-started run too
        shutil.rmtree(out_root / name, ignore_errors=True)
    try:
        details = _fetch(cfg, out_root, None if staging is None else Path(staging))
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
