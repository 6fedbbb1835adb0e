"""The original project's command lines, kept flag-compatible, on the library's code.

The FashionFail paper's code was driven by three scripts; their commands (as its docs give them)
keep working through thin shims that only call this module:

    python fashionfail/data/make_fashionpedia.py ...   -> make_fashionpedia_main
    python fashionfail/models/train_facere_base.py ... -> train_facere_base
    python fashionfail/models/train_facere_plus.py ... -> train_facere_plus

They run the same library functions as the DVC stages (`stages/`), which are the primary entry
points: values not given on the command line come from the params file's section for that step.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from fashionfail.core.cli import (
    ERRORS_EPILOG,
    USER_ERRORS,
    add_debug_flag,
    error_exit,
    report_errors,
)
from fashionfail.core.config import (
    OPTIMIZERS,
    SOURCES,
    DownloadConfig,
    RleEncodeConfig,
    SplitConfig,
    TrainConfig,
    load_section,
    parse_section,
)

# The shims run as scripts (sys.path[0] is fashionfail/data or fashionfail/models), so the
# repo's params.yaml is found relative to this file, not to the caller's working directory.
DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
# The original `make_fashionpedia.py` downloads the real data; params.yaml's default source is the
# offline synthetic set (for `dvc repro` on a fresh machine). The original command keeps its
# behaviour; `--source synthetic` (or the params file's choice via the download stage) is offline.
ORIGINAL_SOURCE = "official"

# ---------------------------------------------------------------------------------------------
# Data: make_fashionpedia.py

MAKE_FASHIONPEDIA_DOC = """\
Prepare Fashionpedia the way the original project's data command did, in one go.

    python fashionfail/data/make_fashionpedia.py [--save_dir ~/.cache] [--source official|synthetic]

Runs the same library steps as the DVC stages download -> split -> rle-encode:
  SAVE_DIR/fashionpedia/, SAVE_DIR/fashionfail/   the raw layout (and SAVE_DIR/download_report.json)
  (--source official downloads into .official-download/ beside SAVE_DIR, kept to resume)
  SAVE_DIR/fashionpedia/fp_train.json, fp_val.json  the paper's 75/25 split of train2020
  SAVE_DIR/fashionpedia/fp_{train,val,test}_rle.json  compressed-RLE versions (test = val2020),
  each with its <stem>.report.json.
"""


def make_fashionpedia(
    save_dir: str | os.PathLike,
    download: DownloadConfig,
    split: SplitConfig,
    rle_encode: RleEncodeConfig,
) -> dict:
    """Download, split train2020 and rle-encode train/val/test under `save_dir`; return reports."""
    from fashionfail.data.rle import encode_file
    from fashionfail.data.sources import run_download
    from fashionfail.data.split import split_file

    save_dir = Path(save_dir)
    fp = save_dir / "fashionpedia"
    reports = {"download": run_download(download, save_dir)}
    reports["split"] = split_file(
        fp / "instances_attributes_train2020.json",
        fp / "fp_train.json",
        fp / "fp_val.json",
        split.val_fraction,
        split.seed,
    )
    sources = {
        "fp_train": fp / "fp_train.json",
        "fp_val": fp / "fp_val.json",
        # The paper evaluates on Fashionpedia-val as its test set.
        "fp_test": fp / "instances_attributes_val2020.json",
    }
    for name, src in sources.items():
        reports[f"rle_{name}"] = encode_file(
            src, fp / f"{name}_rle.json", invalid=rle_encode.invalid
        )
    return reports


def _make_fashionpedia_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=MAKE_FASHIONPEDIA_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Split and rle-encode settings come from the params file's `split` and `rle_encode` "
        "sections, the data sources from its `download` section (--source overrides its "
        "`source`). Exit status 1 with a one-line 'error: ...' on stderr on bad params or data.",
    )
    p.add_argument(
        "--save_dir",
        type=Path,
        default=Path("~/.cache"),
        help="root of the data layout (default: %(default)s, as in the original "
        "project: files land in ~/.cache/fashionpedia/...)",
    )
    p.add_argument(
        "--source",
        choices=SOURCES,
        default=ORIGINAL_SOURCE,
        help="official: download the real Fashionpedia and FashionFail (the original "
        "behaviour); synthetic: generate the small offline data set (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--params",
        type=Path,
        default=DEFAULT_PARAMS,
        help="params file (default: the repository's params.yaml)",
    )
    add_debug_flag(p)
    return p


def make_fashionpedia_main(argv: list[str] | None = None) -> int:
    """`python fashionfail/data/make_fashionpedia.py ...`: download -> split -> rle-encode."""
    args = _make_fashionpedia_parser().parse_args(argv)
    try:
        download = load_section("download", args.params).model_copy(update={"source": args.source})
        reports = make_fashionpedia(
            args.save_dir.expanduser(),
            download,
            load_section("split", args.params),
            load_section("rle_encode", args.params),
        )
    except USER_ERRORS as e:
        return error_exit(e)
    split = reports["split"]
    print(
        f"fashionpedia ready under {args.save_dir.expanduser() / 'fashionpedia'}: "
        f"train {split['train']}, val {split['val']}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# Training: train_facere_base.py, train_facere_plus.py

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


def build_train_parser(description: str, plus: bool) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=description,
        epilog="Flags not given take their value from the params file's section. "
        "Any other pl.Trainer() argument is taken as --NAME VALUE or --NAME=VALUE (values read "
        "as YAML: 1, 0.5, true, null, [0, 1]), e.g. --gradient_clip_val 1 "
        "--accumulate_grad_batches 4; names are checked against pl.Trainer's signature (see "
        "Lightning's Trainer docs). " + ERRORS_EPILOG,
    )
    ap.add_argument(
        "--train_img_dir",
        "--train-img-dir",
        required=True,
        type=Path,
        help="folder of training images (~ is expanded)",
    )
    ap.add_argument(
        "--val_img_dir",
        "--val-img-dir",
        required=True,
        type=Path,
        help="folder of validation images (for the Fashionpedia split: the same train folder)",
    )
    ap.add_argument(
        "--train_ann",
        "--train-ann",
        required=True,
        type=Path,
        help="training annotations, COCO JSON",
    )
    ap.add_argument(
        "--val_ann", "--val-ann", required=True, type=Path, help="validation annotations, COCO JSON"
    )
    ap.add_argument("--batch_size", "--batch-size", type=int, help="images per batch")
    ap.add_argument("--shuffle", type=parse_bool, help="True or False")
    ap.add_argument("--accelerator", help="cpu, gpu or auto")
    ap.add_argument("--devices", type=_devices, help="number of devices, or auto")
    ap.add_argument("--precision", help="16 (=16-mixed, GPU only), 32, bf16-mixed, ...")
    ap.add_argument("--max_epochs", "--max-epochs", type=int)
    ap.add_argument("--strategy", help="auto, ddp, ...")
    ap.add_argument("--num_nodes", "--num-nodes", type=int)
    ap.add_argument("--optimizer", choices=OPTIMIZERS)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--num_workers", "--num-workers", type=int)
    ap.add_argument("--arch", help="model architecture (see params.yaml)")
    ap.add_argument(
        "--experiment-name",
        "--experiment_name",
        dest="experiment_name",
        default="facere_plus" if plus else "facere_base",
        help="Aim experiment name; also names the output folder",
    )
    if plus:
        ap.add_argument(
            "--pretrained_model_path",
            "--pretrained-model-path",
            required=True,
            help="Facere checkpoint to start from (honoured, never replaced)",
        )
    ap.add_argument(
        "--params",
        default="params.yaml",
        help="params file whose section supplies the values not given here",
    )
    ap.add_argument(
        "--save_dir",
        "--save-dir",
        type=Path,
        default=Path("saved_models"),
        help="checkpoints go to SAVE_DIR/EXPERIMENT/ and the best one is copied "
        "to SAVE_DIR/EXPERIMENT.ckpt (default: saved_models)",
    )
    add_debug_flag(ap)
    return ap


_OVERRIDES = (
    "batch_size",
    "shuffle",
    "accelerator",
    "devices",
    "precision",
    "max_epochs",
    "strategy",
    "num_nodes",
    "optimizer",
    "lr",
    "num_workers",
    "arch",
)


def trainer_flags(ap: argparse.ArgumentParser, tokens: list[str]) -> dict[str, object]:
    """`--name value` / `--name=value` pairs left over by `ap` -> {name: YAML value}.

    Every name must be a pl.Trainer() argument (checked against its signature, like
    LightningCLI); anything else is a usage error naming the closest flag or argument.
    """
    import difflib

    import yaml

    from fashionfail.core.config import trainer_parameters

    known = trainer_parameters()
    flags = [o.lstrip("-") for a in ap._actions for o in a.option_strings if o.startswith("--")]
    values: dict[str, object] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            ap.error(f"unexpected argument {token!r}")
        name, eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known + flags, n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            ap.error(f"--{name}: neither a flag of this command nor a pl.Trainer argument{hint}")
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                ap.error(f"--{name} needs a value")
            i += 1
            value = tokens[i]
        values[name] = yaml.safe_load(value)
        i += 1
    return values


def train_main(section: str, description: str, plus: bool, argv: list[str] | None = None) -> int:
    """Parse the original flags, train with `section`'s values as defaults, copy the best ckpt."""
    ap = build_train_parser(description, plus)
    args, rest = ap.parse_known_args(argv)
    extra = trainer_flags(ap, rest) if rest else {}
    # Imported after parsing: torch and Lightning take seconds to import (`--help` stays fast).
    from fashionfail.core.config import TRAINER_FIELDS
    from fashionfail.models.train import TRAIN_ERRORS, TrainPaths, train

    def job() -> int:
        base = load_section(section, args.params, TrainConfig).model_dump()
        base.update({k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None})
        # Trainer arguments that are fields of the section (deterministic, log_every_n_steps,
        # limit_train_batches) set the field; the others join its `trainer:` mapping.
        base.update({k: v for k, v in extra.items() if k in TRAINER_FIELDS})
        base["trainer"] = {
            **base.get("trainer", {}),
            **{k: v for k, v in extra.items() if k not in TRAINER_FIELDS},
        }
        if plus:
            base["weights"] = str(Path(args.pretrained_model_path).expanduser())
        cfg = parse_section(TrainConfig, base, f"{args.params}:{section} + command line")
        out = args.save_dir / args.experiment_name
        paths = TrainPaths(
            args.train_ann.expanduser(),
            args.train_img_dir.expanduser(),
            args.val_ann.expanduser(),
            args.val_img_dir.expanduser(),
            out,
            out / "dvclive",
            Path("."),
            args.experiment_name,
        )
        summary = train(cfg, paths)
        if summary["best"]:
            final = args.save_dir / f"{args.experiment_name}.ckpt"
            shutil.copyfile(summary["best"], final)
            print(f"best checkpoint copied to {final}")
        return 0

    return report_errors(job, TRAIN_ERRORS)


def train_facere_base(argv: list[str] | None = None) -> int:
    """`python fashionfail/models/train_facere_base.py ...`: the DVC stage `train-facere`."""
    return train_main(
        "train_facere", "Train Facere (Mask R-CNN on Fashionpedia).", plus=False, argv=argv
    )


def train_facere_plus(argv: list[str] | None = None) -> int:
    """`python fashionfail/models/train_facere_plus.py ...`: the stage `finetune-facere-plus`."""
    return train_main(
        "finetune_facere_plus", "Fine-tune Facere on FashionFail (Facere+).", plus=True, argv=argv
    )
