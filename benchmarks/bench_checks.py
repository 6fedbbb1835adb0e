"""Cost of the input checks every training and evaluation run pays before any work (issue #10).

    python benchmarks/bench_checks.py [--images 500] [--annotations 333401]

Prints, per item: the annotation validator (`check_annotations`) on a Fashionpedia-sized list of
compressed-RLE annotations, the image checks (`check_image_files`: header, size, end marker) on
real JPEGs of Fashionpedia's size (1024 px long side), and the download's re-validation of a
complete COCO JSON (`coco_json_problem`: full parse). Extrapolated to the real data sets.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionfail.data.coco_checks import check_annotations, check_image_files  # noqa: E402
from fashionfail.data.content import coco_json_problem  # noqa: E402

FP_TRAIN_IMAGES, FP_TRAIN_ANNOTATIONS = 45_623, 333_401


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--annotations", type=int, default=FP_TRAIN_ANNOTATIONS)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_img = max(1, args.annotations // 7)
        images = [
            {"id": i, "width": 1024, "height": 683, "file_name": f"{i}.jpg"} for i in range(n_img)
        ]
        anns = [
            {
                "id": k,
                "image_id": k % n_img,
                "category_id": int(k % 46),
                "iscrowd": 0,
                "area": 100.0,
                "bbox": [10.5, 20.0, 100.25, 50.0],
                "segmentation": {"size": [683, 1024], "counts": "abc"},
            }
            for k in range(args.annotations)
        ]
        coco = {"images": images, "annotations": anns, "categories": [{"id": i} for i in range(46)]}
        path = folder / "ann.json"
        path.write_bytes(orjson.dumps(coco))
        t = time.perf_counter()
        check_annotations(coco, path)
        dt = time.perf_counter() - t
        print(
            f"check_annotations: {args.annotations} annotations in {dt:.2f} s "
            f"({dt / args.annotations * 1e6:.1f} us each)"
        )
        t = time.perf_counter()
        assert coco_json_problem(path) is None
        dt = time.perf_counter() - t
        mb = path.stat().st_size / 1e6
        print(f"coco_json_problem: {mb:.0f} MB in {dt:.2f} s ({dt / mb * 540:.1f} s for 540 MB)")

        pixels = rng.integers(0, 255, (683, 1024, 3), dtype=np.uint8)
        img_dir = folder / "images"
        img_dir.mkdir()
        for i in range(args.images):
            Image.fromarray(np.roll(pixels, i, axis=1)).save(img_dir / f"{i}.jpg", quality=90)
        for workers in (1, 8):
            t = time.perf_counter()
            check_image_files(images[: args.images], img_dir, path, workers=workers)
            dt = time.perf_counter() - t
            print(
                f"check_image_files ({workers} threads): {args.images} JPEGs 1024x683 in "
                f"{dt:.2f} s ({dt / args.images * 1e3:.2f} ms each; "
                f"{dt / args.images * FP_TRAIN_IMAGES:.0f} s for Fashionpedia-train)"
            )


if __name__ == "__main__":
    main()
