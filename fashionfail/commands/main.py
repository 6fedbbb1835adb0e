"""`fashionfail <command> ...`: the project's commands, installed by `pip install .`.

Each command is the `main(argv)` of a module, imported only when that command runs, so
`fashionfail --help` and every `fashionfail <command> --help` answer without loading torch.
The DVC stages themselves (`stages/*.py`) run from a clone of the repository (`dvc repro`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module, function, one-line description)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "predict": (
        "fashionfail.commands.predict",
        "main",
        "detect and segment the images of a folder with a trained checkpoint",
    ),
    "export-onnx": (
        "fashionfail.commands.export_onnx",
        "main",
        "a trained checkpoint as an ONNX file with the paper's published interface",
    ),
    "plots": (
        "fashionfail.commands.plots",
        "main",
        "the DVC plots (curves, per-class AP, overlays) as one offline HTML page",
    ),
    "report": (
        "fashionfail.report.revisions",
        "main",
        "the report's numbers for several revisions/experiments (mean and spread over seeds)",
    ),
    "aim-up": (
        "fashionfail.commands.aim_ui",
        "main",
        "`aim up` (same options), with the Aim project named after this one",
    ),
    "train-facere-base": (
        "fashionfail.commands.compat",
        "train_facere_base",
        "the original project's Facere training command",
    ),
    "train-facere-plus": (
        "fashionfail.commands.compat",
        "train_facere_plus",
        "the original project's Facere+ fine-tuning command",
    ),
    "make-fashionpedia": (
        "fashionfail.commands.compat",
        "make_fashionpedia_main",
        "the original project's data preparation command",
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {desc}" for name, (_, _, desc) in COMMANDS.items()]
    return (
        "usage: fashionfail <command> [options]   (fashionfail <command> --help for its options)\n"
        "\ncommands:\n" + "\n".join(lines) + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[name]
    sys.argv[0] = f"fashionfail {name}"  # argparse's prog in usage lines
    result = getattr(importlib.import_module(module), function)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
