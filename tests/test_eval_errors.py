"""Bad input to the two command lines: one `error:` line naming the culprit, exit 1, no output.

All commands start at once (each pays ~3 s of imports) and every test checks its own result.
Other bad inputs (broken image in the GT set, unreadable checkpoint, ...) are checked in-process
in test_eval_stage.py / test_predict.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval_stage import make_gt
from test_predict import write_checkpoint, write_images

# ~4 s of CPU per command (torch import): slow on the shared 2-core machines.
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PARAMS = """evaluate:
  batch_size: 2
  num_workers: 0
  device: cpu
  score_threshold: 0.5
  num_overlays: 1
"""


def _evaluate(root: Path, gt: Path, images: Path, ckpt: Path) -> list[str]:
    return [
        sys.executable,
        "stages/evaluate.py",
        "--params",
        str(root / "params.yaml"),
        "--name",
        "x",
        "--gt",
        str(gt),
        "--images",
        str(images),
        "--checkpoint",
        str(ckpt),
        "--classes",
        "fashionfail",
        "--out",
        str(root / "eval" / "x"),
        "--no-aim",
        "--no-progress",
    ]


def _predict(root: Path, images: Path, ckpt: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fashionfail.commands.predict",
        "--images",
        str(images),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(root / "out" / "results.json"),
        "--overlays",
        str(root / "out" / "overlays"),
        "--device",
        "cpu",
    ]


def _case_root(base: Path, name: str) -> tuple[Path, Path, Path, Path]:
    root = base / name
    gt, images = make_gt(root / "data")
    (root / "params.yaml").write_text(PARAMS)
    ckpt = write_checkpoint(root / "good.ckpt", "fashionpedia")
    return root, gt, images, ckpt


def _cases(base: Path) -> dict[str, tuple[list[str], Path, str]]:
    """name -> (command, folder whose outputs must not appear, text the error must contain)."""
    cases = {}

    root, gt, images, _ = _case_root(base, "eval_wrong_ckpt")
    # Claims 22 FashionFail classes but holds a 47-output (Facere-sized) head.
    bad = write_checkpoint(root / "wrong.ckpt", "fashionfail", num_classes=47)
    cases["eval_wrong_ckpt"] = (_evaluate(root, gt, images, bad), root, "wrong.ckpt")

    root, gt, images, ckpt = _case_root(base, "eval_gt_missing_key")
    data = json.loads(gt.read_text())
    del data["annotations"][2]["bbox"]
    gt.write_text(json.dumps(data))
    cases["eval_gt_missing_key"] = (
        _evaluate(root, gt, images, ckpt),
        root,
        "gt.json: annotation id 3 is missing key 'bbox'",
    )

    root, _, _, ckpt = _case_root(base, "predict_empty_dir")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    cases["predict_empty_dir"] = (_predict(root, root / "empty", ckpt), root, "no image files")

    root, _, _, ckpt = _case_root(base, "predict_broken_image")
    folder = root / "photos"
    write_images(folder, [(64, 64), (64, 64)])
    (folder / "img_01.jpg").write_bytes(b"GIF89a truncated")
    cases["predict_broken_image"] = (_predict(root, folder, ckpt), root, "img_01.jpg")

    return cases


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path, str]]:
    base = tmp_path_factory.mktemp("errors")
    cases = _cases(base)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the processes share the CPU
    procs = {
        name: subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (cmd, _, _) in cases.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (
            subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr),
            cases[name][1],
            cases[name][2],
        )
    return out


@pytest.mark.parametrize(
    "name",
    ["eval_wrong_ckpt", "eval_gt_missing_key", "predict_empty_dir", "predict_broken_image"],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(results, name):
    proc, root, expected = results[name]
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # tqdm may have drawn its bar before a bad image turned up; the error is the last line.
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert expected in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not (root / "eval").exists() or not any((root / "eval").iterdir())
    assert not (root / "out").exists() or not any((root / "out").iterdir())
