"""`fashionfail export-onnx`: a trained checkpoint as an ONNX file with the published interface.

Usage (see --help):
    fashionfail export-onnx --checkpoint models/facere_plus/best.ckpt \
        --out facere_plus.onnx [--classes fashionfail] [--opset 17] [--verify 3]

The command line only: the export lives in `fashionfail.inference.onnx_export` (imported once the
arguments are parsed, so --help answers without loading torch). The export-onnx DVC stage runs
this `main` with the opset and check size of params.yaml.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fashionfail.core.cli import USER_ERRORS, error_exit
from fashionfail.core.config import DEFAULT_OPSET
from fashionfail.core.jsonio import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionfail export-onnx",
        description="Export a Facere / Facere+ checkpoint of this project to ONNX with the "
        "interface of the paper's published models (input `input` float32 (1, 3, H, W) in "
        "[0, 1]; outputs boxes xyxy, labels 1..K, scores, masks (N, 1, H, W) probabilities).",
        epilog="Errors print one line 'error: ...' and exit 1 without writing the file.",
    )
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True, help="Lightning checkpoint of this project")
    add("--out", type=Path, required=True, help="ONNX file to write (replaced)")
    add(
        "--classes",
        choices=("fashionpedia", "fashionfail"),
        help="fail unless the checkpoint predicts this label space",
    )
    add("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    add(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="compare onnxruntime with PyTorch on N random images, print the differences",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fashionfail.inference.onnx_export import export_checkpoint

    try:
        try:
            report = export_checkpoint(
                args.checkpoint,
                args.out,
                classes=args.classes,
                opset=args.opset,
                verify_images=args.verify,
            )
        except (ValueError, FileNotFoundError) as e:
            raise DataError(e.args[0] if e.args else str(e)) from None
    except USER_ERRORS as e:
        return error_exit(e)
    print(
        f"wrote {args.out} ({report['classes']} classes) in {report['export_s']:.1f} s",
        file=sys.stderr,
    )
    for k, r in enumerate(report["parity"]):
        print(
            f"parity image {k}: {r['matched']}/{r['expected']} detections matched "
            f"({r['actual']} from onnxruntime), max box diff {r['max_box_diff_px']:.2e} px, "
            f"max score diff {r['max_score_diff']:.2e}, min mask IoU {r['min_mask_iou']:.4f}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
