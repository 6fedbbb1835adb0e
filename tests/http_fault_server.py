"""A small HTTP/1.1 file server for download tests: Range, If-Range and scripted faults per path;
and a fake official mirror served by it (`FakeOfficial`, `expected_tree`).

Faults are queued per path and each GET of that path consumes one, so "drop, drop, then serve"
is three faults followed by normal behaviour. Every GET is logged with its Range header.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
import time
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fashionfail.core.config import OfficialSource
from fashionfail.data.fashionfail_download import FF_TRANSFORM


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for one request.

    kind: "drop" (send `n` body bytes, then close the connection), "status" (answer HTTP `n`),
    "lie" (advertise `n` more bytes than the body has, send the body, close), "ignore_range"
    (answer 200 with the whole body even to a Range request), "stall" (send half the body, then
    go silent for `n` ms and close).
    """

    kind: str
    n: int = 0


@dataclass(frozen=True)
class Logged:
    path: str
    range: str | None
    if_range: str | None
    status: int


class FaultServer:
    """Serves `files` (URL path -> bytes) on 127.0.0.1 at an ephemeral port, in a daemon thread."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.faults: dict[str, list[Fault]] = {}
        self.log: list[Logged] = []
        self.send_etag = True  # False: a server without validators (no If-Range possible)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fault_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def add_faults(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self.faults.setdefault(path, []).extend(faults)

    def next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self.faults.get(path)
            return queue.pop(0) if queue else None

    def record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def requests_for(self, path: str) -> list[Logged]:
        with self._lock:
            return [e for e in self.log if e.path == path]

    def count(self, prefix: str = "/") -> int:
        """Requests whose path starts with `prefix`."""
        with self._lock:
            return sum(e.path.startswith(prefix) for e in self.log)


def etag(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers: a dropped connection must show

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        srv: FaultServer = self.server.fault_server  # type: ignore[attr-defined]
        path = unquote(urlsplit(self.path).path)
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        fault = srv.next_fault(path)
        body = srv.files.get(path)
        status = 404 if body is None else 200
        if fault is not None and fault.kind == "status":
            status = fault.n
        elif (
            body is not None
            and rng
            and not (fault and fault.kind == "ignore_range")
            and (if_range is None or if_range == etag(body))  # else: changed, send it all
        ):
            status = 206
        start = int(rng.removeprefix("bytes=").split("-")[0]) if status == 206 else 0
        if status == 206 and start >= len(body):
            status = 416
        srv.record(Logged(path, rng, if_range, status))
        if status == 416:
            self._empty(416, {"Content-Range": f"bytes */{len(body)}"})
            return
        if status not in (200, 206):
            self._empty(status)
            return

        payload = body[start:]
        extra = fault.n if fault is not None and fault.kind == "lie" else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload) + extra))
        if srv.send_etag:
            self.send_header("ETag", etag(body))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if fault is not None and fault.kind == "drop":
            self.wfile.write(payload[: fault.n])
            self.close_connection = True
        elif fault is not None and fault.kind == "stall":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            time.sleep(fault.n / 1000)
            self.close_connection = True
        else:
            self.wfile.write(payload)
            self.close_connection = extra > 0


# ---------------------------------------------------------------- a fake official mirror
# Fashionpedia's bucket, the FashionFail JSONs and the adidas CDN on one FaultServer, shared by
# test_download.py and test_sources.py.

FP, FF = "/fp", "/ff"
ANN_TRAIN = f"{FP}/annotations/instances_attributes_train2020.json"
ANN_VAL = f"{FP}/annotations/instances_attributes_val2020.json"
ZIP_TRAIN = f"{FP}/images/train2020.zip"
ZIP_VAL = f"{FP}/images/val_test2020.zip"
FF_SPLITS = ("train", "val", "test")
MISSING = "val_1.jpg"  # the one FashionFail image the mirror does not have (link rot)


def image_path(file_name: str) -> str:
    """The URL path the downloader requests for FashionFail image `file_name`."""
    return f"/images/{FF_TRANSFORM}{file_name}"


def _jpeg_like(rng: random.Random, n: int = 1500) -> bytes:
    return b"\xff\xd8\xff\xe0" + rng.randbytes(n)


def real_jpeg(rng: random.Random, side: int = 8) -> bytes:
    """A decodable JPEG of random pixels (the downloader checks FashionFail images' content)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), rng.randbytes(3 * side * side)).save(buf, "JPEG")
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _ff_json(split: str, base_url: str) -> bytes:
    """Three images (ids 1-3), one annotation each (ids 101-103); json.dumps spacing, so a
    re-serialised copy would differ from the served bytes."""
    images = [
        {
            "id": i,
            "file_name": f"{split}_{i}.jpg",
            "width": 8,
            "height": 8,
            "original_url": f"{base_url}/images/{split}_{i}.jpg",
        }
        for i in (1, 2, 3)
    ]
    annotations = [{"id": 100 + i, "image_id": i, "category_id": 0} for i in (1, 2, 3)]
    data = {
        "info": {"split": split},
        "images": images,
        "annotations": annotations,
        "categories": [],
    }
    return json.dumps(data).encode()


class FakeOfficial(FaultServer):
    """Every official file, except FashionFail image MISSING; start() it.

    `train_members` / `test_members` are the zips' members (path in the zip -> bytes).
    """

    def __init__(self) -> None:
        super().__init__({})
        rng = random.Random(0)
        self.train_members = {f"train/{k}.jpg": _jpeg_like(rng) for k in "abc"}
        self.test_members = {f"test/{k}.jpg": _jpeg_like(rng) for k in "de"}
        self.files.update(
            {
                # big enough that a drop after a few hundred bytes is mid-file
                # COCO keys: the downloader checks them (content validation).
                ANN_TRAIN: json.dumps(
                    {"images": [{"id": i} for i in range(300)], "annotations": [], "categories": []}
                ).encode(),
                ANN_VAL: json.dumps(
                    {"images": [{"id": 1}], "annotations": [], "categories": []}
                ).encode(),
                ZIP_TRAIN: make_zip(self.train_members),
                ZIP_VAL: make_zip(self.test_members),
            }
        )
        for split in FF_SPLITS:
            self.files[f"{FF}/ff_{split}.json"] = _ff_json(split, self.url)
            for i in (1, 2, 3):
                name = f"{split}_{i}.jpg"
                if name != MISSING:
                    self.files[image_path(name)] = real_jpeg(rng)


def official_cfg(srv: FaultServer, **overrides: object) -> OfficialSource:
    """Settings for a mirror at `srv`: fast retries, images not required."""
    values = dict(
        fashionpedia_url=srv.url + FP,
        fashionfail_url=srv.url + FF,
        retries=4,
        backoff_s=0.001,
        timeout_s=5.0,
        image_workers=3,
        fail_on_missing_images=False,
    )
    return OfficialSource(**{**values, **overrides})


def filtered_ff(served: bytes, left_out: set[str]) -> dict:
    """The served FashionFail JSON without the images named in `left_out` and their annotations."""
    data = json.loads(served)
    ids = {img["id"] for img in data["images"] if img["file_name"] in left_out}
    data["images"] = [img for img in data["images"] if img["id"] not in ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in ids]
    return data


def expected_tree(srv: FakeOfficial, absent: tuple[str, ...] = ()) -> dict[str, bytes | dict]:
    """What a download from `srv` must leave (bookkeeping aside) when the images not served and
    those in `absent` are missing: bytes, or the parsed JSON for a filtered ff_<split>.json."""
    tree: dict[str, bytes | dict] = {
        "fashionpedia/instances_attributes_train2020.json": srv.files[ANN_TRAIN],
        "fashionpedia/instances_attributes_val2020.json": srv.files[ANN_VAL],
        **{f"fashionpedia/images/{k}": v for k, v in srv.train_members.items()},
        **{f"fashionpedia/images/{k}": v for k, v in srv.test_members.items()},
    }
    for split in FF_SPLITS:
        served = srv.files[f"{FF}/ff_{split}.json"]
        left_out = set()
        for name in (f"{split}_{i}.jpg" for i in (1, 2, 3)):
            body = srv.files.get(image_path(name))
            if body is None or name in absent:
                left_out.add(name)
            else:
                tree[f"fashionfail/images/{split}/{name}"] = body
        tree[f"fashionfail/published/ff_{split}.json"] = served
        tree[f"fashionfail/ff_{split}.json"] = filtered_ff(served, left_out) if left_out else served
    return tree


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative POSIX path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_tree(root: Path, expected: dict[str, bytes | dict], extra: set[str]) -> None:
    """`root` holds exactly `expected` plus the files `extra` (bookkeeping, not compared)."""
    tree = read_tree(root)
    assert set(tree) == set(expected) | extra, set(tree) ^ (set(expected) | extra)
    for path, want in expected.items():
        got = json.loads(tree[path]) if isinstance(want, dict) else tree[path]
        assert got == want, path
