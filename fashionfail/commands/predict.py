"""Run a trained Facere / Facere+ checkpoint (or ONNX file) on images and write COCO results.

Usage (see --help):
    fashionfail predict --images DIR --model CKPT_OR_ONNX --out results.json \
        [--overlays DIR] [--batch-size N] [--device auto|cpu|cuda] [--score-threshold T]

This module is the command line only; the inference itself lives in
`fashionfail.inference.predictor`, which the evaluate stage calls as well.

Results file: a COCO results list (what `COCO.loadRes` reads), one record per detection:
`image_id`, `file_name`, `category_id` (dataset id: Fashionpedia ids for both models), `bbox`
[x, y, w, h] in pixels of the (EXIF-rotated) image, `score`, `segmentation` (compressed RLE,
`counts` as str). Here `image_id` is the 0-based index of the file in the folder's files sorted
by name; images without detections have no record.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fashionfail.core.cli import USER_ERRORS, add_debug_flag, error_exit
from fashionfail.core.config import PredictConfig, parse_section
from fashionfail.core.jsonio import DataError, atomic_dir, dump_json

if TYPE_CHECKING:
    from fashionfail.inference.predictor import PredictStats

# Exit status when --skip-unreadable left images out (the other images' results are written).
EXIT_SKIPPED = 3


def run(
    images_dir: Path,
    checkpoint: Path,
    out: Path,
    *,
    overlays: Path | None = None,
    batch_size: int = 1,
    device: str = "auto",
    score_threshold: float = 0.5,
    num_workers: int = 0,
    model_classes: str | None = None,
    skip_unreadable: bool = False,
) -> tuple[list[dict], PredictStats]:
    """The CLI's work: returns the records written and what was skipped or dropped.

    The results file and the overlay folder are written atomically; the overlay folder is
    renamed into place only after the results file is. With `skip_unreadable`, images that
    cannot be decoded are left out and listed in OUT's sibling `<stem>.skipped.json`.
    """
    # Imported here, after argument parsing: torch and friends take seconds to import.
    from tqdm import tqdm

    from fashionfail.eval.overlays import draw_detections, save_png
    from fashionfail.inference.predictor import (
        ImageItem,
        PredictStats,
        group_by_image,
        list_images,
        load_model,
        predict,
        read_image,
    )

    if overlays is not None and overlays.exists() and any(overlays.iterdir()):
        raise DataError(f"{overlays}: overlay folder exists and is not empty")
    paths = list_images(images_dir)
    model, space = load_model(checkpoint, model_classes=model_classes)
    items = [ImageItem(i, p) for i, p in enumerate(paths)]
    stats = PredictStats(skip_unreadable=skip_unreadable)
    records = predict(
        model,
        space,
        items,
        batch_size=batch_size,
        device=device,
        score_threshold=score_threshold,
        num_workers=num_workers,
        stats=stats,
    )
    skipped = {path for path, _ in stats.skipped}
    items = [item for item in items if item.path not in skipped]
    with contextlib.ExitStack() as stack:
        if overlays is not None:
            tmp = stack.enter_context(atomic_dir(overlays))
            by_image = group_by_image(records)
            names = space.names()
            for item in tqdm(items, unit="img", desc="overlays"):
                image = read_image(item.path)
                drawn = draw_detections(
                    image,
                    by_image.get(item.image_id, []),
                    names,
                    empty_note=f"no detections >= {score_threshold:g}",
                )
                save_png(drawn, tmp / f"{item.path.stem}.png")
        if skip_unreadable:
            report = [{"file": str(path), "error": error} for path, error in stats.skipped]
            dump_json(report, skipped_path(out), indent=True)
        dump_json(records, out)
    return records, stats


def skipped_path(out: Path) -> Path:
    """Where --skip-unreadable lists what it left out: results.json -> results.skipped.json."""
    return out.with_name(f"{out.stem}.skipped.json")


def summary_line(records: list[dict], stats: PredictStats, out: Path, threshold: float) -> str:
    """What a run did, in one line: detections kept and dropped, images skipped."""
    images = len({r["image_id"] for r in records})
    line = (
        f"wrote {len(records)} detections on {images} images to {out}; "
        f"{stats.below_threshold} detections below --score-threshold {threshold:g} dropped"
    )
    if not records:
        line += " (no detection left: try a lower --score-threshold)"
    if stats.skipped:
        line += f"; skipped {len(stats.skipped)} unreadable images (see {skipped_path(out)})"
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionfail predict",
        description=(
            "Detect and segment fashion items in a folder of images with a Facere (46 "
            "Fashionpedia classes) or Facere+ (22 FashionFail classes) checkpoint or ONNX file. "
            "Any image size; RGB, grayscale, RGBA and palette images; EXIF orientation is applied."
        ),
        epilog=(
            "Output: a COCO results list (read by pycocotools COCO.loadRes), one record per "
            "detection with image_id, file_name, category_id (Fashionpedia id), bbox [x,y,w,h], "
            "score and segmentation (compressed RLE). image_id is the 0-based index of the file "
            "in the folder's image files sorted by name; images without detections have no "
            "record. Errors print one line 'error: ...' to stderr and exit 1 without writing. "
            "With --skip-unreadable, images that cannot be decoded are left out, listed in "
            "OUT's sibling <name>.skipped.json (file, error) and counted in the summary line; "
            f"the exit status is then {EXIT_SKIPPED} if any image was skipped, 0 otherwise."
        ),
    )
    add_debug_flag(parser)
    add = parser.add_argument
    add("--images", type=Path, required=True, help="folder of images (not recursive)")
    add(
        "--model",
        "--checkpoint",
        dest="checkpoint",
        type=Path,
        required=True,
        help="Lightning checkpoint of this project, or an ONNX file with the published "
        "interface (ours from export-onnx, or the paper's facere_base.onnx / facere_plus.onnx)",
    )
    add(
        "--model-classes",
        choices=("fashionpedia", "fashionfail"),
        help="label space of an ONNX file that does not record it (the published ones: "
        "fashionpedia for facere_base.onnx, fashionfail for facere_plus.onnx)",
    )
    add("--out", type=Path, required=True, help="results JSON file to write")
    add(
        "--overlays",
        type=Path,
        help="also write one PNG per image with its detections drawn (folder must be new or empty)",
    )
    add("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    add(
        "--device",
        default="auto",
        help="auto (cuda if available, else cpu), cpu, cuda or cuda:N (default auto)",
    )
    add(
        "--score-threshold",
        type=float,
        default=0.5,
        help="drop detections scoring below this (default 0.5; 0 keeps all, e.g. for COCO eval)",
    )
    add(
        "--workers",
        type=int,
        default=0,
        help="image-decoding worker processes (default 0: decode in the main process)",
    )
    add(
        "--skip-unreadable",
        action="store_true",
        help=f"skip images that cannot be decoded instead of failing (exit {EXIT_SKIPPED} if any)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The rules of these values live in PredictConfig (shared with the evaluate section).
        opts = parse_section(
            PredictConfig,
            {
                "batch_size": args.batch_size,
                "num_workers": args.workers,
                "device": args.device,
                "score_threshold": args.score_threshold,
            },
            "command line",
        )
        records, stats = run(
            args.images,
            args.checkpoint,
            args.out,
            overlays=args.overlays,
            batch_size=opts.batch_size,
            device=opts.device,
            score_threshold=opts.score_threshold,
            num_workers=opts.num_workers,
            skip_unreadable=args.skip_unreadable,
            model_classes=args.model_classes,
        )
    except USER_ERRORS as e:
        return error_exit(e)
    for _, error in stats.skipped:
        print(f"skipped: {error}", file=sys.stderr)
    print(summary_line(records, stats, args.out, opts.score_threshold), file=sys.stderr)
    return EXIT_SKIPPED if stats.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
