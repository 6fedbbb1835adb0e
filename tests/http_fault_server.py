"""A small HTTP/1.1 file server for download tests: Range, If-Range and scripted faults per path.

Faults are queued per path and each GET of that path consumes one, so "drop, drop, then serve"
is three faults followed by normal behaviour. Every GET is logged with its Range header.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


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
            body is not None and rng and not (fault and fault.kind == "ignore_range")
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
