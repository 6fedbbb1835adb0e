"""HTTP transfer for the official download: one file at a time, resumable, retried, verified.

- Every file streams in 1 MiB chunks to `<name>.part` and is renamed to `<name>` only once its size
  matches the server's (Content-Length of a 200, total of a 206's Content-Range).
- A leftover `.part` is resumed with `Range: bytes=<size>-`; `<name>.part.meta` keeps the first
  response's ETag/Last-Modified for `If-Range`, so a file that changed on the server is restarted
  from zero instead of being spliced from two versions. A 200 to a Range request restarts from zero;
  a 416 completes the file when the part already has the full size, otherwise restarts.
- Connection errors, dropped connections, timeouts, short bodies, 5xx, 408 and 429 are retried
  (`cfg.retries` attempts in all, waiting `cfg.backoff_s * 2**(k-1)` after attempt k, or longer if
  the server sends Retry-After); any other HTTP error (404, 403, ...) fails at once.
- `Manifest` (`.download_manifest.json`, one per folder of the download's staging area): url
  and size of every file completed there. A rerun skips a file that exists with that size
  without sending any request.
- Content (`check`, fashionfail.data.content): a file of the right size can still be an HTML
  error page or a truncated image. A finished `.part` that fails its check is deleted and the
  attempt counts as failed (retried, then reported); a file the manifest calls complete is
  checked again (parse / decode, no request) and, if it fails, deleted and fetched again.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from fashionfail.core.config import OfficialSource
from fashionfail.core.jsonio import DataError, dump_json, load_json

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MANIFEST = ".download_manifest.json"
MAX_RETRY_AFTER_S = 300.0

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


# A content check: None for a good file, else a short reason (fashionfail.data.content).
Check = Callable[[Path], "str | None"]


class DownloadError(DataError):
    """A URL could not be fetched (final HTTP status, or every attempt failed)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


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
    check: Check | None = None,
) -> dict[str, Any]:
    """Download `url` to `dest` via `dest.part` with resume, retries, size and content check.

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
                    log.warning(
                        "%s: attempt %d/%d failed (%s); retrying in %.3g s",
                        url,
                        attempt,
                        cfg.retries,
                        reason,
                        delay,
                    )
                    time.sleep(delay)
                continue
            problem = check(part) if check is not None else None
            if problem is not None:
                discard_part(part)  # a whole wrong body: the next attempt starts from zero
                reason = f"content invalid: {problem}"
                if attempt < cfg.retries:
                    log.warning(
                        "%s: attempt %d/%d: %s; retrying", url, attempt, cfg.retries, reason
                    )
                    time.sleep(cfg.backoff_s * 2 ** (attempt - 1))
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


def discard_part(part: Path) -> None:
    """Remove a `.part` file and its `.meta`: the next attempt starts from byte 0."""
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
            discard_part(part)
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
    with (
        part.open(mode) as f,
        tqdm(
            total=total,
            initial=offset,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
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
        discard_part(part)  # the server is sending something else than it announced
        raise _Retryable(f"body longer than the announced {expected} bytes")
    if expected is not None and received < expected:
        raise _Retryable(f"short body: {offset + received} of {total} bytes")
    return offset + received, resumed


# ---------------------------------------------------------------- bookkeeping


class Manifest:
    """Url and size of every file completed here, so a rerun skips it without a request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / MANIFEST
        self.entries: dict[str, dict] = load_json(self.path) if self.path.exists() else {}
        if not isinstance(self.entries, dict):
            raise DataError(f"{self.path}: expected a JSON object; delete it to re-verify files")

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def is_complete(self, path: Path, url: str, check: Check | None = None) -> bool:
        """Whether `path` is a finished download of `url`: recorded here, of the recorded size,
        and (with `check`) still of valid content; a file failing the check is deleted."""
        entry = self.entries.get(self.rel(path))
        if not (
            entry is not None
            and entry.get("url") == url
            and path.is_file()
            and path.stat().st_size == entry.get("bytes")
        ):
            return False
        problem = check(path) if check is not None else None
        if problem is not None:
            log.warning("%s: marked complete but %s; fetching it again", path, problem)
            path.unlink(missing_ok=True)
            self.forget(path)
            return False
        return True

    def record(self, path: Path, url: str, size: int) -> None:
        self.entries[self.rel(path)] = {"url": url, "bytes": size}

    def forget(self, path: Path) -> None:
        self.entries.pop(self.rel(path), None)

    def save(self) -> None:
        dump_json(self.entries, self.path, indent=True)


def fetch_tracked(
    url: str,
    dest: Path,
    cfg: OfficialSource,
    manifest: Manifest,
    session: requests.Session,
    check: Check | None = None,
) -> dict[str, Any]:
    """fetch_file, unless the manifest says `dest` is already complete (and `check` still passes);
    records it when done."""
    if manifest.is_complete(dest, url, check):
        return {"url": url, "bytes": dest.stat().st_size, "status": "skipped", "attempts": 0}
    result = fetch_file(url, dest, cfg, session=session, progress=True, check=check)
    manifest.record(dest, url, result["bytes"])
    manifest.save()
    log.info("%s: %s, %d bytes", dest.name, result["status"], result["bytes"])
    return result


class ThreadSessions:
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
