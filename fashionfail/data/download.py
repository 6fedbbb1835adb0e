"""The `official` source of the download stage: real Fashionpedia and FashionFail, fetched robustly.

Two folders: `staging`, where everything is downloaded, resumed and kept between runs, and
`out_root`, the raw layout the later stages read, which `publish` rebuilds from the staging folder
by hard links (a copy where the filesystem refuses one) once the download is complete. The stage
(fashionfail.data.sources) puts the staging folder beside `out_root`, outside the DVC outputs, so
that DVC may delete and restore the outputs (run-cache) while an interrupted download still
resumes. Layout published under `out_root` (the synthetic generator writes the same, without
`published/`):

    fashionpedia/instances_attributes_{train,val}2020.json
    fashionpedia/images/train/...   from train2020.zip
    fashionpedia/images/test/...    from val_test2020.zip (val2020 images live in its test/)
    fashionfail/published/ff_{train,val,test}.json   as published, byte for byte
    fashionfail/ff_{train,val,test}.json             what later stages read (see below)
    fashionfail/images/{train,val,test}/<file_name>  the images ff_<split>.json lists

The staging folder holds the same files plus the bookkeeping (`.download_manifest.json`, zip
extraction markers, `.part` files of interrupted transfers), none of which is published. A
complete file in the staging folder is never written in place, only replaced by a rename or
deleted, so a hard link to it (in `out_root`, or in DVC's cache with `cache.type` hardlink, which
also makes it read-only) never sees a half-written file. Deleting the staging folder costs a new
download, nothing else.

Split by concern: `transfer` (HTTP: resume, retries, size checks, the manifest),
`fashionpedia_download` (annotations, zips, extraction markers) and `fashionfail_download`
(published JSONs, images from the CDN, `ff_<split>.json` without the missing images); each
module's docstring says how its part stays correct across flaky networks and interrupted runs.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from fashionfail.core.config import ConfigError, OfficialSource
from fashionfail.data.fashionfail_download import (
    FF_SPLITS,
    MissingImagesError,
    fetch_images,
    published_ff,
    read_ff_images,
    write_ff_split,
)
from fashionfail.data.fashionpedia_download import FP_ANNOTATIONS, FP_ZIPS, fetch_fashionpedia
from fashionfail.data.layout import replace_layout
from fashionfail.data.transfer import Manifest, new_session

log = logging.getLogger(__name__)

# os.link's refusals that a copy gets around: another filesystem, one without hard links, a
# file with the filesystem's maximum number of links.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def _check_cfg(cfg: OfficialSource) -> None:
    for key in ("retries", "image_workers"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"download.official.{key}: must be at least 1")
    if cfg.backoff_s < 0:
        raise ConfigError("download.official.backoff_s: must not be negative")
    if cfg.timeout_s <= 0:
        raise ConfigError("download.official.timeout_s: must be positive")


def download_official(cfg: OfficialSource, staging: Path) -> dict[str, Any]:
    """Download Fashionpedia and FashionFail into `staging` (layout in the module docstring).

    What is already complete there (manifest, extraction markers) is re-checked, not fetched
    again; an interrupted transfer resumes from its `.part`. Returns a JSON-able report that is
    the same for every run that ends with the same files: per file its url and bytes, the zips'
    extraction (files, bytes), FashionFail image counts per split (total/present/missing/bytes),
    per split the published and left-out counts of `ff_<split>.json`, and the missing images
    with the reason and left-out annotations. What this run did (per file downloaded | resumed |
    skipped and its attempts, zips extracted | skipped, images fetched | skipped) is under
    "this_run", which the stage logs but does not keep. Raises DataError on any Fashionpedia or
    FashionFail JSON failure, and MissingImagesError (a DataError carrying the report, without
    "this_run") on missing images if `cfg.fail_on_missing_images`.
    """
    _check_cfg(cfg)
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    fp_dir, ff_dir = staging / "fashionpedia", staging / "fashionfail"
    fp_manifest, ff_manifest = Manifest(fp_dir), Manifest(ff_dir)
    fetched: dict[str, dict] = {}
    with new_session() as session:
        # FashionFail JSONs first: they are small, and a bad one should fail before 3.5 GB.
        jobs = published_ff(cfg, ff_dir, ff_manifest, session, fetched)
        zips = fetch_fashionpedia(cfg, fp_dir, fp_manifest, session, fetched)
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
        "files": {k: {"url": f["url"], "bytes": f["bytes"]} for k, f in fetched.items()},
        "zips": {name: z["marker"] for name, z in zips.items()},
        "fashionfail_images": {
            split: {
                "total": s["total"],
                "present": s["fetched"] + s["skipped"],
                "missing": s["missing"],
                "bytes": s["bytes"],
            }
            for split, s in stats.items()
        },
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
    this_run = {
        "files": {
            k: {"status": f["status"], "attempts": f["attempts"]} for k, f in fetched.items()
        },
        "zips": {name: z["status"] for name, z in zips.items()},
        "images_fetched": sum(s["fetched"] for s in stats.values()),
        "images_skipped": sum(s["skipped"] for s in stats.values()),
    }
    return {**report, "this_run": this_run}


def layout_files(staging: Path) -> list[str]:
    """The files of the raw layout in a complete `staging` folder (POSIX paths relative to it).

    Named, not found by listing the folder: the annotations, every file the zips' extraction put
    under `fashionpedia/images/`, the FashionFail JSONs and exactly the images `ff_<split>.json`
    lists, so no bookkeeping, leftover or stale file is ever published.
    """
    files = [f"fashionpedia/{name}" for name in FP_ANNOTATIONS]
    for top in FP_ZIPS.values():
        folder = staging / "fashionpedia" / "images" / top
        files += sorted(p.relative_to(staging).as_posix() for p in folder.rglob("*") if p.is_file())
    for split in FF_SPLITS:
        ff_json = staging / "fashionfail" / f"ff_{split}.json"
        files += [f"fashionfail/published/ff_{split}.json", f"fashionfail/ff_{split}.json"]
        names = [img["file_name"] for img in read_ff_images(ff_json)]
        files += [f"fashionfail/images/{split}/{name}" for name in names]
    return files


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` as `dst` (no extra disk); copy it where the filesystem refuses a link."""
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
        shutil.copyfile(src, dst)


def publish(staging: Path, out_root: Path) -> int:
    """Rebuild `out_root/fashionpedia` and `out_root/fashionfail` from a complete `staging` folder.

    Each file is hard-linked (or copied, see link_or_copy) into a temporary folder in `out_root`,
    and each tree is renamed into place, replacing what was there. Returns the number of files.
    """
    files = layout_files(Path(staging))
    with replace_layout(out_root, ".publish-") as tmp:
        for rel in files:
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(Path(staging) / rel, dst)
    return len(files)
