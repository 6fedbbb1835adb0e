"""The `official` source of the download stage: real Fashionpedia and FashionFail, fetched robustly.

Layout written under `out_root` (the synthetic generator writes the same):

    fashionpedia/instances_attributes_{train,val}2020.json
    fashionpedia/images/train/...   from train2020.zip
    fashionpedia/images/test/...    from val_test2020.zip (val2020 images live in its test/)
    fashionfail/published/ff_{train,val,test}.json   as published, byte for byte
    fashionfail/ff_{train,val,test}.json             what later stages read (see below)
    fashionfail/images/{train,val,test}/<file_name>

Split by concern: `transfer` (HTTP: resume, retries, size checks, the manifest),
`fashionpedia_download` (annotations, zips, extraction markers) and `fashionfail_download`
(published JSONs, images from the CDN, `ff_<split>.json` without the missing images); each
module's docstring says how its part stays correct across flaky networks and interrupted runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fashionfail.config import ConfigError, OfficialSource
from fashionfail.data.fashionfail_download import (
    FF_SPLITS,
    MissingImagesError,
    fetch_images,
    published_ff,
    write_ff_split,
)
from fashionfail.data.fashionpedia_download import fetch_fashionpedia
from fashionfail.data.transfer import Manifest, new_session

log = logging.getLogger(__name__)


def _check_cfg(cfg: OfficialSource) -> None:
    for key in ("retries", "image_workers"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"download.official.{key}: must be at least 1")
    if cfg.backoff_s < 0:
        raise ConfigError("download.official.backoff_s: must not be negative")
    if cfg.timeout_s <= 0:
        raise ConfigError("download.official.timeout_s: must be positive")


def download_official(cfg: OfficialSource, out_root: Path) -> dict[str, Any]:
    """Download Fashionpedia and FashionFail into `out_root` (layout in the module docstring).

    Returns a JSON-able report: per-file url/bytes/status (downloaded | resumed | skipped), the
    zips' extraction (files, bytes, skipped or extracted), FashionFail image counts per split
    (total/fetched/skipped/missing/bytes), per split the published and left-out counts of
    `ff_<split>.json`, and the list of missing images with the reason and left-out annotations.
    Raises DataError on any Fashionpedia or FashionFail JSON failure, and MissingImagesError
    (a DataError carrying the report) on missing images if `cfg.fail_on_missing_images`.
    """
    _check_cfg(cfg)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    fp_dir, ff_dir = out_root / "fashionpedia", out_root / "fashionfail"
    # One manifest per output folder: a folder DVC deletes takes its bookkeeping with it.
    fp_manifest, ff_manifest = Manifest(fp_dir), Manifest(ff_dir)
    files: dict[str, dict] = {}
    with new_session() as session:
        # FashionFail JSONs first: they are small, and a bad one should fail before 3.5 GB.
        jobs = published_ff(cfg, ff_dir, ff_manifest, session, files)
        zips = fetch_fashionpedia(cfg, fp_dir, fp_manifest, session, files)
    for split in FF_SPLITS:
        (ff_dir / "images" / split).mkdir(parents=True, exist_ok=True)
    stats, missing = fetch_images(jobs, cfg, ff_manifest)
    ff_json = {
        split: write_ff_split(
            ff_dir / "published" / f"ff_{split}.json",
            ff_dir / f"ff_{split}.json",
            [m for m in missing if m["split"] == split],
        )
        for split in FF_SPLITS
    }
    report = {
        "source": "official",
        "files": files,
        "zips": zips,
        "fashionfail_images": stats,
        "images_fetched": sum(s["fetched"] for s in stats.values()),
        "images_skipped": sum(s["skipped"] for s in stats.values()),
        "images_missing": len(missing),
        "fashionfail_json": ff_json,
        "missing_images": missing,
    }
    if missing:
        first = ", ".join(f"{m['split']}/{m['file_name']} ({m['reason']})" for m in missing[:5])
        message = (
            f"{len(missing)} of {len(jobs)} FashionFail images could not be downloaded "
            f"(first: {first})"
        )
        if cfg.fail_on_missing_images:
            raise MissingImagesError(
                f"{message}; set download.official.fail_on_missing_images: false to go on "
                "without them",
                report,
            )
        log.warning(
            "%s; left out of ff_<split>.json with their annotations, listed in the report", message
        )
    return report
