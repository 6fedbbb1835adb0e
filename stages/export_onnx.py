"""DVC stage `export-onnx`: one checkpoint to one ONNX file with the published interface.

Example (what dvc.yaml runs, once per model):
  python stages/export_onnx.py --checkpoint models/facere_plus/best.ckpt --classes fashionfail \
      --out models/onnx/facere_plus.onnx

Reads params.yaml `export_onnx` (opset, verify_images: onnxruntime vs PyTorch on that many
random images, differences printed). Bad input: one `error: ...` line, exit 1, no file written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fashionfail.commands.export_onnx import main as export_main
from fashionfail.core.config import ExportOnnxConfig, load_section


def main(argv: list[str] | None = None) -> int:
    from fashionfail.core.cli import USER_ERRORS, error_exit, parser

    ap = parser(__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--checkpoint", required=True, type=Path, help="Lightning checkpoint")
    ap.add_argument(
        "--classes",
        required=True,
        choices=("fashionpedia", "fashionfail"),
        help="label space the checkpoint must predict",
    )
    ap.add_argument("--out", required=True, type=Path, help="ONNX file to write (replaced)")
    args = ap.parse_args(argv)
    try:
        cfg = load_section("export_onnx", args.params, ExportOnnxConfig)
    except USER_ERRORS as e:
        return error_exit(e)
    return export_main(
        [
            "--checkpoint",
            str(args.checkpoint),
            "--classes",
            args.classes,
            "--out",
            str(args.out),
            "--opset",
            str(cfg.opset),
            "--verify",
            str(cfg.verify_images),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
