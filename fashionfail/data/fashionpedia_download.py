"""The official download, Fashionpedia: annotations and the two image zips.

- Fashionpedia publishes no checksums: sizes are verified on download (`transfer.fetch_file`) and
  zips by the CRC-32 of every member while extracting (a corrupt zip is deleted so the next run
  fetches it again).
- `fashionpedia/.<zip>.extracted`: written after a zip's folder is in place. Extraction goes to a
  temporary folder beside `images/` and is renamed into place, so an interrupted extraction never
  leaves a half-filled `images/train`. The zip is then deleted: keeping it would store 3.3 GB twice
  on disk, and the marker (not the zip) is what a rerun checks.
- All of it happens in the download's staging folder (see fashionfail.data.download), which DVC
  never deletes: the markers and the extracted folders survive a `dvc repro` that removes the
  stage's outputs.
"""

from __future__ import annotations

import os
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import requests
from tqdm import tqdm

from fashionfail.core.config import OfficialSource
from fashionfail.core.jsonio import DataError, dump_json, load_json
from fashionfail.data.content import coco_json_problem
from fashionfail.data.layout import count_files
from fashionfail.data.transfer import CHUNK, Manifest, fetch_tracked

FP_ANNOTATIONS = ("instances_attributes_train2020.json", "instances_attributes_val2020.json")
FP_ZIPS = {"train2020.zip": "train", "val_test2020.zip": "test"}  # zip -> its top-level folder


def extract_zip(zip_path: Path, top: str, images_dir: Path) -> dict[str, int]:
    """Extract the members under `top/` of `zip_path` to `images_dir/top`, all or nothing.

    Every member's CRC-32 is checked as it is read (zipfile raises BadZipFile on a mismatch).
    Members outside `top/` are skipped and counted. An existing `images_dir/top` is replaced: it
    can only be the leftover of a run that died between the rename and the marker.
    """
    tmp = images_dir.parent / f".extract-{zip_path.stem}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # a previous run's interrupted extraction
    tmp.mkdir(parents=True)
    nbytes = ignored = 0
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = tqdm(zf.infolist(), desc=f"extract {zip_path.name}", unit="file")
                for info in members:
                    parts = PurePosixPath(info.filename).parts
                    if info.filename.startswith("/") or "\\" in info.filename or ".." in parts:
                        raise DataError(f"{zip_path}: unsafe member path {info.filename!r}")
                    if not parts or parts[0] != top:
                        ignored += 1
                        continue
                    target = tmp.joinpath(*parts)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                    nbytes += info.file_size
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            # The size matched, yet the content is bad: fetch it again next run.
            zip_path.unlink(missing_ok=True)
            raise DataError(f"{zip_path}: corrupt zip ({e}); deleted, rerun to fetch again") from e
        if not (tmp / top).is_dir():
            raise DataError(f"{zip_path}: no top-level folder {top}/ in the zip")
        files = count_files(tmp / top)  # what a rerun will count (duplicate members collapse)
        dest = images_dir / top
        if dest.exists():
            shutil.rmtree(dest)
        images_dir.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / top, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"files": files, "bytes": nbytes, "ignored_members": ignored}


def fashionpedia_zip(
    name: str,
    top: str,
    cfg: OfficialSource,
    fp_dir: Path,
    manifest: Manifest,
    session: requests.Session,
) -> tuple[dict, dict]:
    """Download and extract one zip unless its marker says it is in place.

    Returns the file's transfer report and {"marker": the extraction marker (the same whether this
    run extracted or skipped), "status": "extracted" | "skipped"}.
    """
    url = f"{cfg.fashionpedia_url.rstrip('/')}/images/{name}"
    marker_path = fp_dir / f".{name}.extracted"
    folder = fp_dir / "images" / top
    marker = load_json(marker_path) if marker_path.exists() else None
    if (
        isinstance(marker, dict)
        and marker.get("url") == url
        and folder.is_dir()
        and count_files(folder) == marker.get("files")
    ):
        skipped = {"url": url, "bytes": marker["zip_bytes"], "status": "skipped", "attempts": 0}
        return skipped, {"marker": marker, "status": "skipped"}
    marker_path.unlink(missing_ok=True)
    zip_path = fp_dir / name
    fetched = fetch_tracked(url, zip_path, cfg, manifest, session)
    extracted = extract_zip(zip_path, top, fp_dir / "images")
    marker = {"url": url, "zip_bytes": fetched["bytes"], "folder": f"images/{top}", **extracted}
    dump_json(marker, marker_path, indent=True)
    zip_path.unlink()
    manifest.forget(zip_path)
    manifest.save()
    return fetched, {"marker": marker, "status": "extracted"}


def fetch_fashionpedia(
    cfg: OfficialSource,
    fp_dir: Path,
    manifest: Manifest,
    session: requests.Session,
    files: dict[str, dict],
) -> dict[str, dict]:
    """Fetch the annotations and the zips into `fp_dir` (file reports into `files`); zip reports."""
    for name in FP_ANNOTATIONS:
        dest = fp_dir / name
        url = f"{cfg.fashionpedia_url.rstrip('/')}/annotations/{name}"
        files[f"fashionpedia/{name}"] = fetch_tracked(
            url, dest, cfg, manifest, session, check=coco_json_problem
        )
    zips: dict[str, dict] = {}
    for name, top in FP_ZIPS.items():
        files[f"fashionpedia/{name}"], zips[name] = fashionpedia_zip(
            name, top, cfg, fp_dir, manifest, session
        )
    return zips
