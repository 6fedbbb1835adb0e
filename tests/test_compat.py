"""fashionfail.commands.compat: the original project's commands, through their thin shims.

The end-to-end runs are in test_data_cli.py (make_fashionpedia) and test_train.py
(test_seed_training_commands); here: the shims stay thin and parse the original flags.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fashionfail.commands.compat import build_train_parser, parse_bool

REPO = Path(__file__).resolve().parents[1]
SHIMS = {
    "fashionfail/data/make_fashionpedia.py": "make_fashionpedia_main",
    "fashionfail/models/train_facere_base.py": "train_facere_base",
    "fashionfail/models/train_facere_plus.py": "train_facere_plus",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_no_command_line_parsing_in_the_library_packages() -> None:
    for folder in ("fashionfail/data", "fashionfail/models"):
        for path in sorted((REPO / folder).glob("*.py")):
            rel = str(path.relative_to(REPO))
            if rel in SHIMS:
                # A shim only imports its function from fashionfail.commands.compat and calls it.
                assert _imports(path) == {"sys", "fashionfail.commands.compat"}, rel
                assert f"sys.exit({SHIMS[rel]}())" in path.read_text(), rel
            else:
                assert "argparse" not in _imports(path), rel


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_shim_help_from_another_folder(shim: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / shim), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {Path(shim).name}")


def test_original_flags_parse() -> None:
    args = build_train_parser("x", plus=True).parse_args(
        [
            "--train_img_dir",
            "a",
            "--val-img-dir",
            "b",
            "--train_ann",
            "c.json",
            "--val_ann",
            "d.json",
            "--shuffle",
            "False",
            "--devices",
            "2",
            "--precision",
            "16",
            "--experiment-name",
            "run",
            "--pretrained_model_path",
            "f.ckpt",
        ]
    )
    assert args.shuffle is False and args.devices == 2 and args.precision == "16"
    assert (args.experiment_name, args.pretrained_model_path) == ("run", "f.ckpt")
    assert args.save_dir == Path("saved_models")
    with pytest.raises(SystemExit):  # plus requires the Facere checkpoint
        build_train_parser("x", plus=True).parse_args(
            ["--train_img_dir", "a", "--val_img_dir", "b", "--train_ann", "c", "--val_ann", "d"]
        )


@pytest.mark.parametrize("text", ["True", "yes", "1", "false", "OFF", "0"])
def test_parse_bool(text: str) -> None:
    assert parse_bool(text) is (text.lower() in ("true", "yes", "1"))


def test_parse_bool_rejects_other_words() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bool("maybe")


def test_every_pl_trainer_argument_is_a_flag(capsys: pytest.CaptureFixture) -> None:
    from fashionfail.commands.compat import trainer_flags

    ap = build_train_parser("x", plus=False)
    tokens = [
        "--gradient_clip_val",
        "1",
        "--accumulate-grad-batches=4",
        "--detect_anomaly",
        "true",
        "--deterministic",
        "True",
        "--val_check_interval",
        "0.5",
        "--gradient_clip_algorithm",
        "value",
        "--plugins",
        "null",
    ]
    assert trainer_flags(ap, tokens) == {
        "gradient_clip_val": 1,
        "accumulate_grad_batches": 4,
        "detect_anomaly": True,
        "deterministic": True,
        "val_check_interval": 0.5,
        "gradient_clip_algorithm": "value",
        "plugins": None,
    }
    for bad, hint in [
        (["--gradient_clip", "1"], "did you mean --gradient_clip_val?"),
        (["--batchsize", "2"], "did you mean --batch_size?"),
        (["--detect_anomaly"], "--detect_anomaly needs a value"),
    ]:
        with pytest.raises(SystemExit) as e:
            trainer_flags(ap, bad)
        assert e.value.code == 2 and hint in capsys.readouterr().err
