"""Is a downloaded file what it claims to be? Cheap content checks for the official download.

A server (or a captive portal, a CDN error, a proxy) can answer 200 with an HTML page, and a
connection can end early with a consistent length; the size check of the transfer cannot see
either. Each check returns None for a good file or a short reason; the downloader deletes a file
that fails and fetches it again, and re-runs them on files its manifest says are complete, so a
corrupted cache is healed by the next `dvc repro`.

- `coco_json_problem`: parses the whole file (msgspec, without building Python objects for the
  values: ~1 s per GB) and requires a JSON object with the COCO keys images/annotations/categories.
- `image_problem`: Pillow identifies the file from its header and (JPEG, PNG) the file ends with
  its end marker; a file without it is decoded in full, so a truncation is told from trailing bytes
  (coco_checks' rule, shared with the training and evaluation image checks).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from fashionfail.data.coco_checks import looks_truncated

COCO_KEYS = ("images", "annotations", "categories")
_HTML_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")


def _html(head: bytes) -> bool:
    return head.lstrip().lower().startswith(_HTML_STARTS)


def coco_json_problem(path: Path) -> str | None:
    """None if `path` parses as a JSON object with the COCO top-level keys, else why not."""
    data = Path(path).read_bytes()
    if _html(data[:256]):
        return "an HTML page, not JSON"
    try:
        top = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:
        return "JSON, but not an object at the top level"
    except msgspec.DecodeError as e:
        return f"not valid JSON ({e})"
    missing = [k for k in COCO_KEYS if k not in top]
    if missing:
        return f"JSON without the COCO key(s) {', '.join(map(repr, missing))}"
    return None


def image_problem(path: Path) -> str | None:
    """None if Pillow reads `path` as a complete image, else why not."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    with path.open("rb") as f:
        head = f.read(256)
    if _html(head):
        return "an HTML page, not an image"
    try:
        with Image.open(path) as im:
            if looks_truncated(path, im.format):
                im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"not a readable image ({e})"
    except Image.DecompressionBombError as e:
        return f"not a usable image ({e})"
    return None
