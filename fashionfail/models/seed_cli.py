"""Command line of the original project's training scripts (train_facere_base.py,
train_facere_plus.py), kept flag-compatible and mapped onto the same `train()` as the DVC stages.

Values not given on the command line come from the params file's section for that model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from fashionfail.cli import ERRORS_EPILOG, report_errors
from fashionfail.config import TrainConfig, load_section, parse_section
from fashionfail.models.train import TRAIN_ERRORS, TrainPaths, train

_TRUE, _FALSE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off"}


def parse_bool(text: str) -> bool:
    """`--shuffle False` must mean False.

    argparse's type=bool makes every non-empty string True.
    """
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def build_parser(description: str, plus: bool) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=description,
        epilog="Flags not given take their value from the params file's section. "
        + ERRORS_EPILOG,
    )
    ap.add_argument("--train_img_dir", "--train-img-dir", required=True, type=Path,
                    help="folder of training images (~ is expanded)")  # fmt: skip
    ap.add_argument("--val_img_dir", "--val-img-dir", required=True, type=Path,
                    help="folder of validation images (for the Fashionpedia split: the same "
                         "train folder)")  # fmt: skip
    ap.add_argument("--train_ann", "--train-ann", required=True, type=Path,
                    help="training annotations, COCO JSON")  # fmt: skip
    ap.add_argument("--val_ann", "--val-ann", required=True, type=Path,
                    help="validation annotations, COCO JSON")  # fmt: skip
    ap.add_argument("--batch_size", "--batch-size", type=int, help="images per batch")
    ap.add_argument("--shuffle", type=parse_bool, help="True or False")
    ap.add_argument("--accelerator", help="cpu, gpu or auto")
    ap.add_argument("--devices", type=_devices, help="number of devices, or auto")
    ap.add_argument("--precision", help="16 (=16-mixed, GPU only), 32, bf16-mixed, ...")
    ap.add_argument("--max_epochs", "--max-epochs", type=int)
    ap.add_argument("--strategy", help="auto, ddp, ...")
    ap.add_argument("--num_nodes", "--num-nodes", type=int)
    ap.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    ap.add_argument("--lr", type=float)
    ap.add_argument("--num_workers", "--num-workers", type=int)
    ap.add_argument("--arch", help="model architecture (see params.yaml)")
    ap.add_argument("--experiment-name", "--experiment_name", dest="experiment_name",
                    default="facere_plus" if plus else "facere_base",
                    help="Aim experiment name; also names the output folder")  # fmt: skip
    if plus:
        ap.add_argument("--pretrained_model_path", "--pretrained-model-path", required=True,
                        help="Facere checkpoint to start from "
                             "(honoured, never replaced)")  # fmt: skip
    ap.add_argument("--params", default="params.yaml",
                    help="params file whose section supplies "
                         "the values not given here")  # fmt: skip
    ap.add_argument("--save_dir", "--save-dir", type=Path, default=Path("saved_models"),
                    help="checkpoints go to SAVE_DIR/EXPERIMENT/ and the best one is copied "
                         "to SAVE_DIR/EXPERIMENT.ckpt (default: saved_models)")  # fmt: skip
    return ap


_OVERRIDES = ("batch_size", "shuffle", "accelerator", "devices", "precision", "max_epochs",
              "strategy", "num_nodes", "optimizer", "lr", "num_workers", "arch")  # fmt: skip


def run(section: str, description: str, plus: bool, argv: list[str] | None = None) -> int:
    """Parse the original flags, train with `section`'s values as defaults, copy the best ckpt."""
    args = build_parser(description, plus).parse_args(argv)

    def job() -> int:
        base = load_section(section, args.params, TrainConfig).model_dump()
        base.update({k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None})
        if plus:
            base["weights"] = str(Path(args.pretrained_model_path).expanduser())
        cfg = parse_section(TrainConfig, base, f"{args.params}:{section} + command line")
        out = args.save_dir / args.experiment_name
        paths = TrainPaths(
            args.train_ann.expanduser(), args.train_img_dir.expanduser(),
            args.val_ann.expanduser(), args.val_img_dir.expanduser(),
            out, out / "dvclive", Path("."), args.experiment_name,
        )  # fmt: skip
        summary = train(cfg, paths)
        if summary["best"]:
            final = args.save_dir / f"{args.experiment_name}.ckpt"
            shutil.copyfile(summary["best"], final)
            print(f"best checkpoint copied to {final}")
        return 0

    return report_errors(job, TRAIN_ERRORS)


def main_base() -> None:
    sys.exit(run("train_facere", "Train Facere (Mask R-CNN on Fashionpedia).", plus=False))


def main_plus() -> None:
    sys.exit(run("finetune_facere_plus", "Fine-tune Facere on FashionFail (Facere+).", plus=True))
