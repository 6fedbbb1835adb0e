"""Benchmark the data steps at Fashionpedia scale: split, then rle-encode of both halves.

    python benchmarks/bench_data.py [--images 45623] [--annotations 333401] [--keep DIR]

Generates (untimed) a Fashionpedia-shaped annotation file in a temporary folder: realistic image
sizes (long side <= 1024), 1-3 polygon parts of 10-100 points (20-200 numbers) per object, ~3.4 %
compressed-RLE segmentations, two-decimal coordinates (~540 MB, like the real train2020 file).
Then runs each step as the DVC stage would (`python stages/<step>.py ...`, a fresh process) and
prints its wall time and peak memory:
  - peak RSS of the process tree: the sum of RSS over the step's process and all its children,
    sampled every 20 ms with psutil (shared copy-on-write pages count once per process, so this
    over- rather than under-estimates);
  - max RSS of any single process in the tree, from the kernel (os.wait4 rusage, exact).
Target (2 cores): split + rle-encode <= 30 s wall and <= 4 GB peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import psutil
from pycocotools import mask as mask_utils

from fashionfail.core.categories import NUM_FASHIONPEDIA, fashionpedia_categories

REPO = Path(__file__).resolve().parents[1]
CHUNK = 20_000
RLE_FRACTION = 0.034  # FACTS.md: ~96.6 % polygons


def _images(rng: np.random.Generator, n: int) -> list[dict]:
    long_side = rng.integers(600, 1025, n)
    short_side = (long_side * rng.uniform(0.55, 1.0, n)).astype(int)
    portrait = rng.random(n) < 0.7
    ids = rng.choice(np.arange(1, 2 * n), n, replace=False)
    return [
        {
            "id": int(ids[k]),
            "width": int(short_side[k] if portrait[k] else long_side[k]),
            "height": int(long_side[k] if portrait[k] else short_side[k]),
            "file_name": f"{k:032x}.jpg",
            "license": 1,
            "time_captured": "March-August, 2018",
            "original_url": f"https://example.invalid/{k}.jpg",
            "isstatic": 1,
            "kaggle_id": f"{k:032x}",
        }
        for k in range(n)
    ]


def _polygon(rng: np.random.Generator, w: int, h: int) -> list[list[float]]:
    """1-3 star-shaped parts around one centre, 10-100 points each."""
    r_max = 0.4 * min(w, h)
    r = float(np.exp(rng.uniform(np.log(4), np.log(r_max))))
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    parts = []
    for _ in range(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])):
        n = int(rng.integers(10, 101))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.6, 1.0, n) / (1 + len(parts))
        ox, oy = rng.uniform(-r, r, 2) * (len(parts) > 0)
        xy = np.stack([cx + ox + rad * np.cos(t), cy + oy + rad * np.sin(t)], axis=1)
        xy = np.clip(xy, 0, [w - 1, h - 1]).round(2)
        parts.append(xy.ravel().tolist())
    return parts


def _annotation(rng: np.random.Generator, ann_id: int, img: dict) -> dict:
    w, h = img["width"], img["height"]
    parts = _polygon(rng, w, h)
    xs = [v for p in parts for v in p[0::2]]
    ys = [v for p in parts for v in p[1::2]]
    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    seg: object = parts
    if rng.random() < RLE_FRACTION:
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
        seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    return {
        "id": ann_id,
        "image_id": img["id"],
        "category_id": int(rng.integers(0, NUM_FASHIONPEDIA)),
        "attribute_ids": sorted(int(a) for a in rng.choice(294, int(rng.integers(0, 4)))),
        "segmentation": seg,
        "bbox": [round(v, 2) for v in bbox],
        "area": round(bbox[2] * bbox[3] * 0.6, 1),
        "iscrowd": 0,
    }


def make_annotation_file(path: Path, n_images: int, n_annotations: int, seed: int = 0) -> None:
    """Write a Fashionpedia-shaped file, streaming the annotations chunk by chunk."""
    rng = np.random.default_rng(seed)
    images = _images(rng, n_images)
    owner = np.sort(rng.integers(0, n_images, n_annotations))
    head = {
        "info": {"description": "benchmark file", "year": 2020},
        "categories": fashionpedia_categories(),
        "attributes": [
            {"id": i, "name": f"a{i}", "supercategory": "s", "level": 1} for i in range(294)
        ],
        "images": images,
        "licenses": [{"id": 1, "name": "benchmark", "url": ""}],
    }
    with path.open("wb") as f:
        f.write(orjson.dumps(head)[:-1] + b',"annotations":[')
        for start in range(0, n_annotations, CHUNK):
            anns = [
                _annotation(rng, k + 1, images[owner[k]])
                for k in range(start, min(start + CHUNK, n_annotations))
            ]
            f.write((b"," if start else b"") + orjson.dumps(anns)[1:-1])
        f.write(b"]}")


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited between listing and reading
            total += p.memory_info().rss
    return total


def run_step(cmd: list[str]) -> dict:
    """Run `cmd`, return wall seconds, peak tree RSS (sampled) and max single-process RSS."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=REPO)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        proc = psutil.Process(child.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], _tree_rss(proc))
            except psutil.Error:
                return
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4 rather than Popen.wait: it returns the kernel's max RSS of this child's tree.
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"step failed ({child.returncode}): {' '.join(cmd)}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # includes the pool workers (waited for)
        "tree_rss_mb": peak[0] / 2**20,
        "max_proc_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=45_623, help="default: %(default)s (train2020)")
    p.add_argument("--annotations", type=int, default=333_401, help="default: %(default)s")
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="work in this folder and keep the files (default: a temporary folder)",
    )
    p.add_argument(
        "--generate-only",
        type=Path,
        default=None,
        metavar="FILE",
        help="only write the annotation file to FILE (used internally)",
    )
    args = p.parse_args()
    if args.generate_only:
        make_annotation_file(args.generate_only, args.images, args.annotations)
        return

    with tempfile.TemporaryDirectory(prefix="bench_data-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src = work / "instances_attributes_train2020.json"
        t = time.perf_counter()
        # In a child process: a forked child inherits its parent's max RSS, so this process must
        # stay small for the per-step kernel numbers to be the steps' own.
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate-only",
                str(src),
                "--images",
                str(args.images),
                "--annotations",
                str(args.annotations),
            ],
            check=True,
        )
        print(
            f"generated {src.stat().st_size / 1e6:.0f} MB ({args.images} images, "
            f"{args.annotations} annotations) in {time.perf_counter() - t:.1f} s (not timed)"
        )
        py, stages = sys.executable, REPO / "stages"
        steps = {
            "split": [
                py,
                stages / "split.py",
                "--ann",
                src,
                "--train-out",
                work / "fp_train.json",
                "--val-out",
                work / "fp_val.json",
            ],
            "rle-encode train": [
                py,
                stages / "rle_encode.py",
                "--ann",
                work / "fp_train.json",
                "--out",
                work / "fp_train_rle.json",
            ],
            "rle-encode val": [
                py,
                stages / "rle_encode.py",
                "--ann",
                work / "fp_val.json",
                "--out",
                work / "fp_val_rle.json",
            ],
        }
        load = os.getloadavg()  # other jobs on the machine slow the steps down: say so
        results = {name: run_step([str(c) for c in cmd]) for name, cmd in steps.items()}

    rle = [results["rle-encode train"], results["rle-encode val"]]
    results["rle-encode (both)"] = _combine(rle)
    results["split + rle-encode"] = _combine([results["split"], *rle])
    print(f"\n{'step':<20}{'wall s':>8}{'cpu s':>8}{'peak tree RSS MB':>18}{'max proc RSS MB':>17}")
    for name, r in results.items():
        print(
            f"{name:<20}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}"
            f"{r['tree_rss_mb']:>18.0f}{r['max_proc_rss_mb']:>17.0f}"
        )
    print(
        f"(steps run one after the other, as dvc repro does; cpus available: "
        f"{len(os.sched_getaffinity(0))}, load average before: {load[0]:.2f}; "
        "target: split + rle-encode <= 30 s, <= 4096 MB)"
    )


def _combine(steps: list[dict]) -> dict:
    """Steps run one after the other: times add up, memory peaks do not."""
    return {
        "wall_s": sum(r["wall_s"] for r in steps),
        "cpu_s": sum(r["cpu_s"] for r in steps),
        "tree_rss_mb": max(r["tree_rss_mb"] for r in steps),
        "max_proc_rss_mb": max(r["max_proc_rss_mb"] for r in steps),
    }


if __name__ == "__main__":
    main()
