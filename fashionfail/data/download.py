"""The `official` source of the download stage: real Fashionpedia and FashionFail, fetched robustly.

Layout written under `out_root` (the synthetic generator writes the same):

    fashionpedia/instances_attributes_{train,val}2020.json
    fashionpedia/images/train/...   from train2020.zip
    fashionpedia/images/test/...    from val_test2020.zip (val2020 images live in its test/)
    fashionfail/published/ff_{train,val,test}.json   as published, byte for byte
    fashionfail/ff_{train,val,test}.json             what later stages read (see below)
    fashionfail/images/{train,val,test}/<file_name>

How it stays correct on a flaky network and across interrupted runs:
- Every file streams in 1 MiB chunks to `<name>.part` and is renamed to `<name>` only once its size
  matches the server's (Content-Length of a 200, total of a 206's Content-Range).
- A leftover `.part` is resumed with `Range: bytes=<size>-`; `<name>.part.meta` keeps the first
  response's ETag/Last-Modified for `If-Range`, so a file that changed on the server is restarted
  from zero instead of being spliced from two versions. A 200 to a Range request restarts from zero;
  a 416 completes the file when the part already has the full size, otherwise restarts.
- Connection errors, dropped connections, timeouts, short bodies, 5xx, 408 and 429 are retried
  (`cfg.retries` attempts in all, waiting `cfg.backoff_s * 2**(k-1)` after attempt k, or longer if
  the server sends Retry-After); any other HTTP error (404, 403, ...) fails at once.
- Fashionpedia publishes no checksums: sizes are verified on download and zips by the CRC-32 of
  every member while extracting (a corrupt zip is deleted so the next run fetches it again).

Bookkeeping files (hidden, inside `fashionpedia/` and `fashionfail/`, the stage's outputs):
- `.download_manifest.json`: url and size of every file completed here. A rerun skips a file that
  exists with that size without sending any request.
- `fashionpedia/.<zip>.extracted`: written after a zip's folder is in place. Extraction goes to a
  temporary folder beside `images/` and is renamed into place, so an interrupted extraction never
  leaves a half-filled `images/train`. The zip is then deleted: keeping it would store 3.3 GB twice
  in the DVC cache, and the marker (not the zip) is what a rerun checks.

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

import http.client
import logging
import os
import shutil
import threading
import time
import zipfile
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from fashionfail.config import ConfigError, OfficialSource
from fashionfail.jsonio import DataError, atomic_path, dump_json, load_json

log = logging.getLogger(__name__)

CHUNK = 1 << 20
FP_ANNOTATIONS = ("instances_attributes_train2020.json", "instances_attributes_val2020.json")
FP_ZIPS = {"train2020.zip": "train", "val_test2020.zip": "test"}  # zip -> its top-level folder
FF_SPLITS = ("train", "val", "test")
FF_TRANSFORM = "f_jpg,q_auto,fl_lossy,c_fill,g_auto/"
MANIFEST = ".download_manifest.json"
MAX_RETRY_AFTER_S = 300.0
MANIFEST_SAVE_EVERY = 200  # images; bounds the work a kill mid-download throws away

# Failures of one attempt that a later attempt may not repeat. requests wraps most of them, but
# reading `raw` directly (see _receive) surfaces urllib3's and http.client's own exceptions.
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
)


class DownloadError(DataError):
    """A URL could not be fetched (final HTTP status, or every attempt failed)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class MissingImagesError(DataError):
    """FashionFail images could not be fetched and `fail_on_missing_images` is set.

    `report` is the full report download_official would have returned, so a caller can still
    write it (with every missing image) before failing.
    """

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Restart(Exception):
    """The `.part` file cannot be resumed; start again from byte 0 in the same attempt."""


# ---------------------------------------------------------------- one file over HTTP


def new_session(pool_size: int = 10) -> requests.Session:
    """A Session with a pool of `pool_size` connections and no hidden retries (we retry)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "fashionfail-download/0.1"
    return session


def fetch_file(
    url: str,
    dest: Path,
    cfg: OfficialSource,
    *,
    session: requests.Session | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Download `url` to `dest` via `dest.part` with resume, retries and size check.

    Returns {"url", "bytes", "status": "downloaded" | "resumed", "attempts"}. Raises DownloadError
    (a DataError naming the URL) on a final HTTP status or when every attempt failed; the `.part`
    is then kept so the next run resumes it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    own_session = session is None
    session = session or new_session()
    reason = ""
    try:
        for attempt in range(1, cfg.retries + 1):
            try:
                size, resumed = _attempt(session, url, part, cfg.timeout_s, progress, dest.name)
            except _Retryable as e:
                reason = str(e)
                if attempt < cfg.retries:
                    delay = cfg.backoff_s * 2 ** (attempt - 1)
                    if e.retry_after is not None:
                        delay = max(delay, min(e.retry_after, MAX_RETRY_AFTER_S))
                    log.warning("%s: attempt %d/%d failed (%s); retrying in %.3g s",
                                url, attempt, cfg.retries, reason, delay)
                    time.sleep(delay)
                continue
            os.replace(part, dest)
            _meta_path(part).unlink(missing_ok=True)
            status = "resumed" if resumed else "downloaded"
            return {"url": url, "bytes": size, "status": status, "attempts": attempt}
    finally:
        if own_session:
            session.close()
    raise DownloadError(url, f"failed after {cfg.retries} attempt(s); last error: {reason}")


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".meta")


def _read_meta(part: Path, url: str) -> dict:
    """The validator/total recorded when `part` was started, if it belongs to `url`."""
    meta_path = _meta_path(part)
    try:
        meta = load_json(meta_path)
    except DataError:  # missing or unreadable: resume without If-Range
        return {}
    return meta if isinstance(meta, dict) and meta.get("url") == url else {}


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


def _attempt(
    session: requests.Session, url: str, part: Path, timeout: float, progress: bool, desc: str
) -> tuple[int, bool]:
    """One attempt: GET into `part`, resuming from its size. Returns (final size, resumed?)."""
    for _ in range(2):  # a second pass only after _Restart, from byte 0 (no Range, cannot restart)
        meta = _read_meta(part, url)
        start = part.stat().st_size if part.exists() else 0
        # identity: the size we verify must be the size of the bytes we store
        headers = {"Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
            if meta.get("validator"):
                headers["If-Range"] = meta["validator"]
        try:
            with session.get(url, headers=headers, stream=True, timeout=timeout) as r:
                return _receive(r, url, part, start, meta, progress, desc)
        except _Restart as e:
            log.warning("%s: %s; restarting from byte 0", url, e)
            _discard(part)
        except _TRANSIENT as e:
            raise _Retryable(f"{type(e).__name__}: {e}") from e
        except requests.RequestException as e:  # invalid URL, too many redirects, ...
            raise DownloadError(url, f"{type(e).__name__}: {e}") from e
    raise AssertionError("unreachable: a request from byte 0 never raises _Restart")


def _range_total(content_range: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of 'bytes a-b/total' or 'bytes */total'; None where absent or '*'."""
    if not content_range or not content_range.startswith("bytes "):
        return None, None
    span, _, total = content_range[6:].partition("/")
    first = span.split("-", 1)[0]
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


def _retry_after(r: requests.Response) -> float | None:
    value = r.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:  # absent, or an HTTP date: fall back to our own backoff
        return None


def _receive(
    r: requests.Response, url: str, part: Path, start: int, meta: dict, progress: bool, desc: str
) -> tuple[int, bool]:
    """Check the response, then stream its body into `part`; see _attempt."""
    status = r.status_code
    if status == 416 and start:
        _, total = _range_total(r.headers.get("Content-Range"))
        # The part already holds the whole file (e.g. we died after the last byte, before rename).
        if total == start and meta.get("total") in (None, total):
            return total, True
        raise _Restart(f"HTTP 416 for a {start}-byte part (server size {total})")
    if status >= 500 or status in (408, 429):
        raise _Retryable(f"HTTP {status} {r.reason}", _retry_after(r))
    if status not in (200, 206) or (status == 206 and not start):
        raise DownloadError(url, f"HTTP {status} {r.reason}")
    encoding = r.headers.get("Content-Encoding", "identity").lower()
    if encoding != "identity":
        raise DownloadError(url, f"server sent Content-Encoding {encoding!r}; size unverifiable")

    length = r.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if status == 206:
        first, total = _range_total(r.headers.get("Content-Range"))
        if first != start or total is None:
            raise _Restart(f"unusable Content-Range {r.headers.get('Content-Range')!r}")
        if meta.get("total") not in (None, total):
            raise _Restart(f"size on server changed from {meta['total']} to {total}")
        offset, mode, resumed = start, "ab", True
    else:  # 200: a fresh start, or the server ignored our Range / If-Range found a new version
        total, offset, mode, resumed = length, 0, "wb", False
        validator = r.headers.get("ETag", "")
        if not validator or validator.startswith("W/"):  # weak ETags are not allowed in If-Range
            validator = r.headers.get("Last-Modified", "")
        dump_json({"url": url, "validator": validator or None, "total": total}, _meta_path(part))
    expected = None if total is None else total - offset
    if expected is None and "chunked" not in r.headers.get("Transfer-Encoding", "").lower():
        # Without a length only chunked framing tells a complete body from a dropped connection.
        raise DownloadError(url, "no Content-Length; cannot verify the size")
    if length is not None and expected is not None and length != expected:
        raise _Retryable(f"Content-Length {length} does not match the expected {expected} bytes")

    received = 0
    with part.open(mode) as f, tqdm(
        total=total, initial=offset, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        disable=not progress, leave=False,
    ) as bar:
        # read1 on the raw response: it returns what has arrived (up to CHUNK), so a dropped or
        # stalled connection loses nothing already received; iter_content/read(CHUNK) would
        # throw away a partly filled chunk, and those bytes are what a resume should keep.
        while chunk := r.raw.read1(CHUNK, decode_content=False):
            received += len(chunk)
            if expected is not None and received > expected:
                break
            f.write(chunk)
            bar.update(len(chunk))
    if expected is not None and received > expected:
        _discard(part)  # the server is sending something else than it announced
        raise _Retryable(f"body longer than the announced {expected} bytes")
    if expected is not None and received < expected:
        raise _Retryable(f"short body: {offset + received} of {total} bytes")
    return offset + received, resumed


# ---------------------------------------------------------------- bookkeeping


class _Manifest:
    """Url and size of every file completed here, so a rerun skips it without a request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / MANIFEST
        self.entries: dict[str, dict] = load_json(self.path) if self.path.exists() else {}
        if not isinstance(self.entries, dict):
            raise DataError(f"{self.path}: expected a JSON object; delete it to re-verify files")

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def is_complete(self, path: Path, url: str) -> bool:
        entry = self.entries.get(self.rel(path))
        return (
            entry is not None and entry.get("url") == url and path.is_file()
            and path.stat().st_size == entry.get("bytes")
        )

    def record(self, path: Path, url: str, size: int) -> None:
        self.entries[self.rel(path)] = {"url": url, "bytes": size}

    def forget(self, path: Path) -> None:
        self.entries.pop(self.rel(path), None)

    def save(self) -> None:
        dump_json(self.entries, self.path, indent=True)


def _fetch_tracked(
    url: str, dest: Path, cfg: OfficialSource, manifest: _Manifest, session: requests.Session
) -> dict[str, Any]:
    """fetch_file, unless the manifest says `dest` is already complete; records it when done."""
    if manifest.is_complete(dest, url):
        return {"url": url, "bytes": dest.stat().st_size, "status": "skipped", "attempts": 0}
    result = fetch_file(url, dest, cfg, session=session, progress=True)
    manifest.record(dest, url, result["bytes"])
    manifest.save()
    log.info("%s: %s, %d bytes", dest.name, result["status"], result["bytes"])
    return result


# ---------------------------------------------------------------- Fashionpedia zips


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


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
        files = _count_files(tmp / top)  # what a rerun will count (duplicate members collapse)
        dest = images_dir / top
        if dest.exists():
            shutil.rmtree(dest)
        images_dir.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / top, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"files": files, "bytes": nbytes, "ignored_members": ignored}


def _fashionpedia_zip(
    name: str, top: str, cfg: OfficialSource, fp_dir: Path, manifest: _Manifest,
    session: requests.Session,
) -> tuple[dict, dict]:
    """Download and extract one zip unless its marker says it is in place; (file, zip) reports."""
    url = f"{cfg.fashionpedia_url.rstrip('/')}/images/{name}"
    marker_path = fp_dir / f".{name}.extracted"
    folder = fp_dir / "images" / top
    marker = load_json(marker_path) if marker_path.exists() else None
    if (
        isinstance(marker, dict) and marker.get("url") == url and folder.is_dir()
        and _count_files(folder) == marker.get("files")
    ):
        skipped = {"url": url, "bytes": marker["zip_bytes"], "status": "skipped", "attempts": 0}
        return skipped, {**marker, "status": "skipped"}
    marker_path.unlink(missing_ok=True)
    zip_path = fp_dir / name
    fetched = _fetch_tracked(url, zip_path, cfg, manifest, session)
    extracted = extract_zip(zip_path, top, fp_dir / "images")
    marker = {"url": url, "zip_bytes": fetched["bytes"], "folder": f"images/{top}", **extracted}
    dump_json(marker, marker_path, indent=True)
    zip_path.unlink()
    manifest.forget(zip_path)
    manifest.save()
    return fetched, {**marker, "status": "extracted", "zip_deleted": True}


# ---------------------------------------------------------------- FashionFail images


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
    return {"images": len(data["images"]), "annotations": len(annotations),
            "images_left_out": len(gone), "annotations_left_out": len(annotations) - len(kept)}


@dataclass(frozen=True)
class _ImageJob:
    split: str
    image_id: Any
    file_name: str
    url: str
    dest: Path


class _ThreadSessions:
    """One requests.Session per worker thread (Session is not documented as thread-safe)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session(pool_size=2)
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        for session in self._all:
            session.close()


def _fetch_image(job: _ImageJob, cfg: OfficialSource, sessions: _ThreadSessions) -> dict:
    try:
        return fetch_file(job.url, job.dest, cfg, session=sessions.get())
    except DownloadError as e:
        # An image is small: a later run refetches it whole, so leave no .part in the output.
        _discard(job.dest.with_name(job.dest.name + ".part"))
        return {"missing": e.reason}


def _fetch_images(
    jobs: list[_ImageJob], cfg: OfficialSource, manifest: _Manifest
) -> tuple[dict[str, dict], list[dict]]:
    """Fetch every image not already complete, `cfg.image_workers` at a time."""
    keys = ("total", "fetched", "skipped", "missing", "bytes")
    stats = {s: dict.fromkeys(keys, 0) for s in FF_SPLITS}
    missing: list[dict] = []
    todo = []
    for job in jobs:
        stats[job.split]["total"] += 1
        if manifest.is_complete(job.dest, job.url):
            stats[job.split]["skipped"] += 1
            stats[job.split]["bytes"] += job.dest.stat().st_size
        else:
            todo.append(job)
    sessions = _ThreadSessions()
    pool = ThreadPoolExecutor(max_workers=cfg.image_workers, thread_name_prefix="ff-image")
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="FashionFail images",
               unit="img")
    try:
        pending: dict[Future, _ImageJob] = {pool.submit(_fetch_image, j, cfg, sessions): j
                                            for j in todo}
        done_since_save = 0
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                result = future.result()  # anything but a DownloadError (disk full...) is fatal
                split = stats[job.split]
                if "missing" in result:
                    split["missing"] += 1
                    missing.append({"split": job.split, "image_id": job.image_id,
                                    "file_name": job.file_name, "url": job.url,
                                    "reason": result["missing"]})
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


# ---------------------------------------------------------------- the stage


def _check_cfg(cfg: OfficialSource) -> None:
    for key in ("retries", "image_workers"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"download.official.{key}: must be at least 1")
    if cfg.backoff_s < 0:
        raise ConfigError("download.official.backoff_s: must not be negative")
    if cfg.timeout_s <= 0:
        raise ConfigError("download.official.timeout_s: must be positive")


def _published_ff(
    cfg: OfficialSource, ff_dir: Path, manifest: _Manifest, session: requests.Session,
    files: dict[str, dict],
) -> list[_ImageJob]:
    """Fetch the published FashionFail JSONs (reports into `files`); the image jobs they list."""
    jobs = []
    for split in FF_SPLITS:
        dest = ff_dir / "published" / f"ff_{split}.json"
        url = f"{cfg.fashionfail_url.rstrip('/')}/ff_{split}.json"
        files[f"fashionfail/published/{dest.name}"] = _fetch_tracked(
            url, dest, cfg, manifest, session)
        jobs += [
            _ImageJob(split, img["id"], img["file_name"], ff_image_url(img["original_url"]),
                      ff_dir / "images" / split / img["file_name"])
            for img in read_ff_images(dest)
        ]
    return jobs


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
    fp_manifest, ff_manifest = _Manifest(fp_dir), _Manifest(ff_dir)
    files: dict[str, dict] = {}
    zips: dict[str, dict] = {}
    with new_session() as session:
        # FashionFail JSONs first: they are small, and a bad one should fail before 3.5 GB.
        jobs = _published_ff(cfg, ff_dir, ff_manifest, session, files)
        for name in FP_ANNOTATIONS:
            dest = fp_dir / name
            url = f"{cfg.fashionpedia_url.rstrip('/')}/annotations/{name}"
            files[f"fashionpedia/{name}"] = _fetch_tracked(url, dest, cfg, fp_manifest, session)
        for name, top in FP_ZIPS.items():
            files[f"fashionpedia/{name}"], zips[name] = _fashionpedia_zip(
                name, top, cfg, fp_dir, fp_manifest, session
            )
    for split in FF_SPLITS:
        (ff_dir / "images" / split).mkdir(parents=True, exist_ok=True)
    stats, missing = _fetch_images(jobs, cfg, ff_manifest)
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
        message = (f"{len(missing)} of {len(jobs)} FashionFail images could not be downloaded "
                   f"(first: {first})")
        if cfg.fail_on_missing_images:
            raise MissingImagesError(
                f"{message}; set download.official.fail_on_missing_images: false to go on "
                "without them", report)
        log.warning("%s; left out of ff_<split>.json with their annotations, listed in the "
                    "report", message)
    return report
