"""The official download, FashionFail: the published JSONs and the images they link to.

FashionFail images are not in the Hugging Face dataset: each image entry's `original_url` points at
the adidas (Cloudinary) CDN, and the original downloader inserts `f_jpg,q_auto,fl_lossy,c_fill,
g_auto/` after `images/` (see `ff_image_url`). Links rot: an image that cannot be fetched is listed
in the report, and fails the stage only if `cfg.fail_on_missing_images`.

Training (torchvision CocoDetection) and evaluation (pycocotools) open every image a COCO file
lists, so `fashionfail/ff_<split>.json` is the published file minus the images that could not be
fetched and their annotations: a counted skip, reported per split (`fashionfail_json`), each
missing image listed with the ids of its left-out annotations. With nothing missing it is a
byte-identical copy of `published/ff_<split>.json`. The manifest tracks the published file, so a
rerun does not fetch it again; it rewrites every `ff_<split>.json` from it and from the images now
on disk, so a rerun that fetches a previously missing image restores the complete file. They are
written before the stage fails on missing images too, so they match the images on disk.
"""

from __future__ import annotations

import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from fashionfail.core.config import OfficialSource
from fashionfail.core.jsonio import DataError, atomic_path, dump_json, load_json
from fashionfail.data.content import coco_json_problem, image_problem
from fashionfail.data.transfer import (
    DownloadError,
    Manifest,
    ThreadSessions,
    discard_part,
    fetch_file,
    fetch_tracked,
)

FF_SPLITS = ("train", "val", "test")
FF_TRANSFORM = "f_jpg,q_auto,fl_lossy,c_fill,g_auto/"
MANIFEST_SAVE_EVERY = 200  # images; bounds the work a kill mid-download throws away


class MissingImagesError(DataError):
    """FashionFail images could not be fetched and `fail_on_missing_images` is set.

    `report` is the full report download_official would have returned, so a caller can still
    write it (with every missing image) before failing.
    """

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def ff_image_url(original_url: str) -> str:
    """The URL the original downloader fetched: FF_TRANSFORM inserted after the first `images/`.

    On the adidas Cloudinary CDN this asks for a JPEG at automatic quality. A URL without
    `images/` (not on that CDN) is used unchanged. (The original used str.replace, which would
    also rewrite a second `images/`; the FashionFail URLs have one.)
    """
    head, sep, tail = original_url.partition("images/")
    return f"{head}{sep}{FF_TRANSFORM}{tail}" if sep else original_url


def read_ff_images(path: Path) -> list[dict]:
    """The `images` of a FashionFail JSON, checked to have a unique int id, a safe, unique
    file_name and a URL."""
    data = load_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(f"{path}: expected an object with an 'images' list")
    seen: dict[str, Any] = {}
    ids: set[int] = set()
    for img in images:
        if not isinstance(img, dict) or "id" not in img:
            raise DataError(f"{path}: image entry without an id: {str(img)[:80]}")
        image_id = img["id"]
        # Left-out annotations are found by image id (write_ff_split): it must name one image.
        if type(image_id) is not int or image_id in ids:
            raise DataError(f"{path}: image id {image_id!r} is not a unique integer")
        ids.add(image_id)
        for key in ("file_name", "original_url"):
            if not isinstance(img.get(key), str) or not img[key]:
                raise DataError(f"{path}: image {image_id}: missing or empty {key!r}")
        name = img["file_name"]
        # The name becomes a path under images/<split>/: it must not escape that folder.
        if "/" in name or "\\" in name or "\0" in name or ".." in name or name == ".":
            raise DataError(f"{path}: image {image_id}: unsafe file_name {name!r}")
        if name in seen:
            raise DataError(f"{path}: images {seen[name]} and {image_id} share file_name {name!r}")
        seen[name] = image_id
    return images


def write_ff_split(published: Path, dest: Path, missing: list[dict]) -> dict[str, int]:
    """Write `dest`: the FashionFail JSON `published` minus the `missing` images (this split's).

    Their annotations are left out too, and each `missing` entry gets their ids as
    `annotation_ids` (in place). With nothing missing `dest` is a byte-identical copy. Written
    atomically; returns the published counts and how many images/annotations were left out.
    """
    data = load_json(published)
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise DataError(f"{published}: expected an 'annotations' list of objects")
    gone = {m["image_id"]: m for m in missing}
    for entry in missing:
        entry["annotation_ids"] = []
    kept = []
    for ann in annotations:
        entry = gone.get(ann.get("image_id"))
        if entry is None:
            kept.append(ann)
        else:
            entry["annotation_ids"].append(ann.get("id"))
    if gone:
        images = [img for img in data["images"] if img["id"] not in gone]
        dump_json({**data, "images": images, "annotations": kept}, dest)
    else:
        with atomic_path(dest) as tmp:
            shutil.copyfile(published, tmp)
    return {
        "images": len(data["images"]),
        "annotations": len(annotations),
        "images_left_out": len(gone),
        "annotations_left_out": len(annotations) - len(kept),
    }


@dataclass(frozen=True)
class _ImageJob:
    split: str
    image_id: Any
    file_name: str
    url: str
    dest: Path


def _fetch_image(job: _ImageJob, cfg: OfficialSource, sessions: ThreadSessions) -> dict:
    try:
        return fetch_file(job.url, job.dest, cfg, session=sessions.get(), check=image_problem)
    except DownloadError as e:
        # An image is small: a later run refetches it whole, so leave no .part behind.
        discard_part(job.dest.with_name(job.dest.name + ".part"))
        return {"missing": e.reason}


def fetch_images(
    jobs: list[_ImageJob], cfg: OfficialSource, manifest: Manifest
) -> tuple[dict[str, dict], list[dict]]:
    """Fetch every image not already complete, `cfg.image_workers` at a time."""
    keys = ("total", "fetched", "skipped", "missing", "bytes")
    stats = {s: dict.fromkeys(keys, 0) for s in FF_SPLITS}
    missing: list[dict] = []
    todo = []
    for job in jobs:
        stats[job.split]["total"] += 1
        if manifest.is_complete(job.dest, job.url, image_problem):
            stats[job.split]["skipped"] += 1
            stats[job.split]["bytes"] += job.dest.stat().st_size
        else:
            todo.append(job)
    sessions = ThreadSessions()
    pool = ThreadPoolExecutor(max_workers=cfg.image_workers, thread_name_prefix="ff-image")
    bar = tqdm(
        total=len(jobs), initial=len(jobs) - len(todo), desc="FashionFail images", unit="img"
    )
    try:
        pending: dict[Future, _ImageJob] = {
            pool.submit(_fetch_image, j, cfg, sessions): j for j in todo
        }
        done_since_save = 0
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                result = future.result()  # anything but a DownloadError (disk full...) is fatal
                split = stats[job.split]
                if "missing" in result:
                    split["missing"] += 1
                    missing.append(
                        {
                            "split": job.split,
                            "image_id": job.image_id,
                            "file_name": job.file_name,
                            "url": job.url,
                            "reason": result["missing"],
                        }
                    )
                else:
                    split["fetched"] += 1
                    split["bytes"] += result["bytes"]
                    manifest.record(job.dest, job.url, result["bytes"])
                    done_since_save += 1
                bar.update()
            if done_since_save >= MANIFEST_SAVE_EVERY:
                manifest.save()
                done_since_save = 0
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        sessions.close()
        manifest.save()
    missing.sort(key=lambda m: (FF_SPLITS.index(m["split"]), m["file_name"]))
    return stats, missing


def published_ff(
    cfg: OfficialSource,
    ff_dir: Path,
    manifest: Manifest,
    session: requests.Session,
    files: dict[str, dict],
) -> list[_ImageJob]:
    """Fetch the published FashionFail JSONs (reports into `files`); the image jobs they list."""
    jobs = []
    for split in FF_SPLITS:
        dest = ff_dir / "published" / f"ff_{split}.json"
        url = f"{cfg.fashionfail_url.rstrip('/')}/ff_{split}.json"
        files[f"fashionfail/published/{dest.name}"] = fetch_tracked(
            url, dest, cfg, manifest, session, check=coco_json_problem
        )
        jobs += [
            _ImageJob(
                split,
                img["id"],
                img["file_name"],
                ff_image_url(img["original_url"]),
                ff_dir / "images" / split / img["file_name"],
            )
            for img in read_ff_images(dest)
        ]
    return jobs
