"""The raw layout's folders (`R/fashionpedia/`, `R/fashionfail/`), built aside then swapped in,
and the image counts the download report holds. Shared by both sources of the download stage
(fashionfail.data.synthetic, fashionfail.data.download) and by fashionfail.data.sources."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

IMAGE_DIRS = {
    "fashionpedia": ("train", "test"),
    "fashionfail": ("train", "val", "test"),
}


@contextlib.contextmanager
def replace_layout(out_root: Path, prefix: str) -> Iterator[Path]:
    """Yield a temporary folder in `out_root` to build the raw layout in; when the block
    succeeds, its `fashionpedia/` and `fashionfail/` replace those of `out_root`. On any error
    `out_root` keeps what it had, and the temporary folder is removed either way."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out_root))
    try:
        yield tmp
        for sub in IMAGE_DIRS:
            target = out_root / sub
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp / sub, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def count_files(folder: Path) -> int:
    """Number of files anywhere under `folder` (0 if it does not exist).

    The one file count of the raw layout: the report's image counts and the official download's
    check that an extracted zip folder is still complete.
    """
    return sum(len(files) for _, _, files in os.walk(folder))


def count_images(out_root: Path) -> dict:
    """Number of files in each image folder of the raw layout (0 where a folder is missing)."""
    return {
        dataset: {split: count_files(out_root / dataset / "images" / split) for split in splits}
        for dataset, splits in IMAGE_DIRS.items()
    }
