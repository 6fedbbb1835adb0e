"""Reading and writing outputs safely: clear errors naming the file, atomic files and folders."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class DataError(Exception):
    """Bad input data; the message names the file and, where known, the offending id."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """A JSON file's bytes; DataError naming the file if it is missing or a folder."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a JSON file") from None


def load_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; DataError (one line, naming the file) if it is missing or malformed."""
    data = read_bytes(path)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Nothing partial is ever left at `path`: on error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path`; it replaces `path` only if the block succeeds.

    The one output-folder transaction of the project (predict's overlays, evaluate's folder): on
    any error, interrupt included, the temporary folder is removed and `path` is left as it was.
    An existing `path` is moved aside before the rename and deleted after it. Folders a killed
    run left beside `path` (`.<name>.*.tmp`, `.<name>.*.old`) are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("tmp", "old"):
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.{suffix}"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; give the folder normal permissions
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def dump_json(obj: Any, path: str | os.PathLike, *, indent: bool = False) -> None:
    """Write `obj` as JSON to `path` atomically (temp file, then rename)."""
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    data = orjson.dumps(obj, option=option)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data + (b"\n" if indent else b""))
