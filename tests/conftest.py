"""Shared fixtures. Add new fixtures; do not change the existing ones other tests rely on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per xdist worker, and in the commands it starts (dvc repro, stages): workers
    # x torch's default (one thread per core) oversubscribes the cores, and OpenMP threads that
    # wait for a busy core make a tiny training step ~10x slower. Set before torch is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from dvc_helpers import copy_reproduced, reproduced_project
from http_fault_server import FakeOfficial
from pycocotools import mask as mask_utils

from fashionfail.core.categories import fashionpedia_categories
from fashionfail.core.config import SyntheticSource
from fashionfail.core.jsonio import dump_json
from fashionfail.data.synthetic import generate

# The longest files first, so that xdist (--dist loadfile, pyproject.toml) starts them at once
# and the short ones fill the gaps; the others keep their order. test_dvc.py builds the shared
# `reproduced` project while the paper-path rehearsal runs on the other worker.
LONG_FIRST = (
    "test_paper_path.py",
    "test_dvc.py",
    "test_dvc_resume.py",
    "test_install.py",
    "test_dvc_beyond_one_machine.py",
    "test_train.py",
    "test_train_ux.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


TINY_H, TINY_W = 30, 40  # not square, so a swapped height/width shows


def _box(x: float, y: float, w: float, h: float) -> list[float]:
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def _uncompressed(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE counts: run lengths of the column-major mask, zeros first."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return runs if flat[0] == 0 else [0, *runs]


@pytest.fixture
def tiny_coco() -> dict:
    """A 3-image COCO dict (ids 7, 3, 11; 30x40 images) with 2 annotations each: polygon,
    disjoint two-part polygon, compressed RLE (str counts), uncompressed RLE, polygon and two
    overlapping parts (a cross). A fresh copy per test."""
    mask = np.zeros((TINY_H, TINY_W), np.uint8)
    mask[5:15, 10:30] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    mask2 = np.zeros_like(mask)
    mask2[20:28, 2:9] = 1
    ann = {"category_id": 0, "iscrowd": 0, "area": 1.0, "attribute_ids": [1, 2]}
    images = [
        {"id": i, "width": TINY_W, "height": TINY_H, "file_name": f"{i}.jpg", "license": 1}
        for i in (7, 3, 11)
    ]
    annotations = [
        {"id": 1, "image_id": 7, "segmentation": [_box(2, 2, 10, 10)], "bbox": [2, 2, 10, 10]},
        {
            "id": 2,
            "image_id": 7,
            "segmentation": [_box(2, 2, 6, 6), _box(20, 2, 6, 6)],
            "bbox": [2, 2, 24, 6],
        },
        {
            "id": 5,
            "image_id": 3,
            "bbox": [10, 5, 20, 10],
            "segmentation": {"size": [TINY_H, TINY_W], "counts": compressed["counts"].decode()},
        },
        {
            "id": 6,
            "image_id": 3,
            "bbox": [2, 20, 7, 8],
            "segmentation": {"size": [TINY_H, TINY_W], "counts": _uncompressed(mask2)},
        },
        {
            "id": 9,
            "image_id": 11,
            "segmentation": [[1.5, 1.5, 20.25, 3.0, 9.0, 17.75]],
            "bbox": [1.5, 1.5, 18.75, 16.25],
        },
        {
            "id": 10,
            "image_id": 11,
            "segmentation": [_box(5, 10, 20, 4), _box(13, 2, 4, 20)],
            "bbox": [5, 2, 20, 20],
        },
    ]
    return {
        "info": {"description": "tiny"},
        "licenses": [{"id": 1, "name": "test", "url": ""}],
        "categories": fashionpedia_categories(),
        "images": images,
        "annotations": [{**a, **ann} for a in annotations],
    }


@pytest.fixture
def tiny_coco_path(tmp_path: Path, tiny_coco: dict) -> Path:
    """`tiny_coco` written to tmp_path/tiny.json."""
    path = tmp_path / "tiny.json"
    dump_json(tiny_coco, path)
    return path


TINY_SYNTHETIC = SyntheticSource(
    seed=3,
    image_size=64,
    fp_train_images=40,
    fp_val_images=6,
    ff_train_images=30,
    ff_val_images=4,
    ff_test_images=5,
    max_objects=4,
)


@pytest.fixture(scope="session")
def synthetic_cfg() -> SyntheticSource:
    """The sizes `synthetic_root` was generated with."""
    return TINY_SYNTHETIC


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic raw layout generated once per session from TINY_SYNTHETIC. Read only."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(TINY_SYNTHETIC, root)
    return root


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(root, log): the tiny project after one `dvc repro`, built once per test run (shared by
    the xdist workers). Read only: a test copies it (dvc_helpers.copy_reproduced)."""
    return reproduced_project(tmp_path_factory)


@pytest.fixture
def finished_project(reproduced: tuple[Path, str], tmp_path: Path) -> Path:
    """This test's own copy of `reproduced` (the run not committed), to change at will."""
    return copy_reproduced(reproduced[0], tmp_path / "project")


@pytest.fixture
def server() -> Iterator[FakeOfficial]:
    """A local fake of the official Fashionpedia/FashionFail servers, with injectable faults."""
    srv = FakeOfficial()
    srv.start()
    yield srv
    srv.stop()
