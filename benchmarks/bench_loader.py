"""Data-loading cost of the training recipes at real image sizes, per sample and per worker.

Generates real-size synthetic data (download.synthetic.profile: real; Fashionpedia-like up to
1024 px for `facere` and `cpu`, FashionFail-like 2400 px for `facere_plus`), then for each recipe
and implementation measures, in a fresh process limited to one thread (what one DataLoader worker
does: decode, masks, augment): seconds per sample (median / p95 / max), the process' peak RSS,
and images/s through a DataLoader with N workers. The floor is decode + to-tensor only. Samples
are seeded alike, so fast and literal draw the same parameters. Each case's process is forked
from a multiprocessing forkserver that has imported torch once, as a DataLoader worker is forked
from the trainer: it pays no imports, and its RSS counts the shared pages it touches.

    python benchmarks/bench_loader.py [--samples 40] [--literal-samples 12] [--workers 2]
                                      [--data /tmp/fashionfail-bench-data]
                                      [--fp-images 24] [--ff-images 12]

Last line: `loader: facere <s> s, facere_plus <s> s per sample (median, 1 core)` for the
paper default (augment_impl: fast).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (recipe, implementation, data set); implementation "-": one implementation only
CASES = [
    ("floor", "-", "fp"),
    ("facere", "fast", "fp"),
    ("facere", "literal", "fp"),
    ("cpu", "-", "fp"),
    ("floor", "-", "ff"),
    ("facere_plus", "fast", "ff"),
    ("facere_plus", "literal", "ff"),
]


def _data(root: Path, fp_images: int, ff_images: int) -> Path:
    from fashionfail.core.config import SyntheticSource
    from fashionfail.data.synthetic import generate

    stamp = root / f"done-{fp_images}-{ff_images}"
    if not stamp.exists():
        cfg = SyntheticSource(
            seed=7,
            image_size=64,
            fp_train_images=fp_images,
            fp_val_images=1,
            ff_train_images=ff_images,
            ff_val_images=1,
            ff_test_images=1,
            max_objects=13,
            profile="real",
        )
        generate(cfg, root)
        stamp.touch()
    return root


def _dataset(root: Path, recipe: str, impl: str, which: str):
    from torchvision.transforms import v2

    from fashionfail.core.categories import LabelSpace
    from fashionfail.data.detection import DetectionDataset
    from fashionfail.data.presets import train_transforms

    if recipe == "floor":
        transforms = v2.Compose([v2.ToImage(), v2.ToDtype(__import__("torch").float32, scale=True)])
    else:
        transforms = train_transforms(recipe, "literal" if impl == "-" else impl, 800, 1333)
    if which == "fp":
        ann = root / "fashionpedia" / "instances_attributes_train2020.json"
        return DetectionDataset(
            root / "fashionpedia/images/train", ann, LabelSpace("fashionpedia"), transforms
        )
    return DetectionDataset(
        root / "fashionfail/images/train",
        root / "fashionfail/ff_train.json",
        LabelSpace("fashionfail"),
        transforms,
    )


def _one(root: Path, recipe: str, impl: str, which: str, n: int, workers: int) -> dict:
    """Measure one case in this (fresh, 1-thread) process."""
    import numpy as np
    import torch

    from fashionfail.data.detection import make_loader

    # Started by the forkserver, this process would start its DataLoader workers through a
    # forkserver of its own (each importing torch again); training forks them.
    multiprocessing.set_start_method("fork", force=True)
    torch.set_num_threads(1)
    ds = _dataset(root, recipe, impl, which)
    times = []
    for i in range(n):
        torch.manual_seed(i)
        t = time.perf_counter()
        ds[i % len(ds)]
        times.append(time.perf_counter() - t)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = np.asarray(times)
    out = {
        "median": float(np.median(t)),
        "p95": float(np.percentile(t, 95)),
        "max": float(t.max()),
        "n": n,
        "rss_mb": rss_mb,
    }
    if workers > 0:
        loader = make_loader(ds, 2, shuffle=False, num_workers=workers)
        it = iter(loader)
        next(it)  # workers started, first batch out
        start, count = time.perf_counter(), 0
        for images, _ in it:
            count += len(images)
        out["images_per_s"] = count / (time.perf_counter() - start) if count else float("nan")
    return out


def _fresh_processes() -> ProcessPoolExecutor:
    """One new process per case, forked from a server that imported torch & co. (one thread)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when the server imports it
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torchvision", "fashionfail.data.detection"])
    return ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=40, help="samples per case (fast, floor, cpu)")
    ap.add_argument("--literal-samples", type=int, default=12, help="samples per literal case")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for images/s")
    ap.add_argument("--data", default="/tmp/fashionfail-bench-data", help="synthetic data cache")
    ap.add_argument("--fp-images", type=int, default=24, help="Fashionpedia-like images made")
    ap.add_argument("--ff-images", type=int, default=12, help="FashionFail-like images made")
    args = ap.parse_args()
    root = _data(Path(args.data), fp_images=args.fp_images, ff_images=args.ff_images)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'recipe':<12} {'impl':<8} {'data':<14} {'median s':>9} {'p95 s':>8} {'max s':>8} "
        f"{'img/s':>7} {'RSS MB':>7} {'> floor':>8}"
    )
    floor_rss = {}
    medians = {}
    with _fresh_processes() as pool:
        for recipe, impl, which in CASES:
            n = args.literal_samples if impl == "literal" else args.samples
            try:
                r = pool.submit(_one, root, recipe, impl, which, n, args.workers).result()
            except Exception as e:  # noqa: BLE001 - reported in the table, the others still run
                print(f"{recipe:<12} {impl:<8} failed: {type(e).__name__}: {e}")
                continue
            data = "FP-like 1024px" if which == "fp" else "FF-like 2400px"
            if recipe == "floor":
                floor_rss[which] = r["rss_mb"]
            print(
                f"{recipe:<12} {impl:<8} {data:<14} {r['median']:>9.3f} {r['p95']:>8.3f} "
                f"{r['max']:>8.3f} {r.get('images_per_s', float('nan')):>7.1f} "
                f"{r['rss_mb']:>7.0f} {r['rss_mb'] - floor_rss.get(which, 0):>8.0f}",
                flush=True,
            )
            medians[(recipe, impl)] = r["median"]
    print(
        f"(img/s: {args.workers} DataLoader workers, batch 2; RSS: peak of the 1-core process, "
        "forked from one holding torch, as a DataLoader worker is; > floor: above decode + "
        "to-tensor only)"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"loader: facere {medians.get(('facere', 'fast'), float('nan')):.3f} s, facere_plus "
        f"{medians.get(('facere_plus', 'fast'), float('nan')):.3f} s per sample "
        "(median, 1 core)"
    )


if __name__ == "__main__":
    main()
