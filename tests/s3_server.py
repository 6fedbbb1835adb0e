"""A real S3 server on localhost for the DVC remote tests (moto in server mode), and a TCP proxy
in front of it that can play a remote that is down or drops connections."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

BUCKET = "fashionfail-cache"
CREDENTIALS = {  # moto accepts any; real clients refuse to sign requests without some
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1 with an empty bucket BUCKET; yields its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
    """Copy src -> dst until EOF, or until `limit` bytes went through; then close both."""
    sent = 0
    try:
        while limit is None or sent < limit:
            data = src.recv(65536)
            if not data:
                break
            if limit is not None:
                data = data[: limit - sent]
            dst.sendall(data)
            sent += len(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class FlakyProxy:
    """127.0.0.1:<port> -> upstream, in daemon threads. `mode`:
    "pass": a transparent proxy; "drop": every connection is cut after the first `drop_after`
    bytes of the server's answer (requests reach the server, answers never arrive whole);
    "down": nothing listens on the port (connection refused), see `down()` / `up()`.
    """

    def __init__(self, upstream_url: str, drop_after: int = 100) -> None:
        host, port = upstream_url.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.mode = "pass"
        self.drop_after = drop_after
        self.connections = 0
        self._server: _Server | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Listen again (same port), passing everything through."""
        self.mode = "pass"
        if self._server is not None:
            return
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy.connections += 1
                try:
                    upstream = socket.create_connection(proxy.upstream, timeout=30)
                except OSError:
                    self.request.close()
                    return
                limit = proxy.drop_after if proxy.mode == "drop" else None
                forward = threading.Thread(
                    target=_pump, args=(self.request, upstream, None), daemon=True
                )
                forward.start()
                _pump(upstream, self.request, limit)
                forward.join(timeout=5)

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def down(self) -> None:
        """Stop listening: the remote's address refuses connections until `up()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stop(self) -> None:
        self.down()
