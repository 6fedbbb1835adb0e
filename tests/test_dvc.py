"""The DVC pipeline itself, in a temporary git repository holding a copy of this project:
`dvc repro` runs, `dvc status` is clean afterwards, and a params change reruns exactly the
stages that read it and their descendants."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc_helpers import copy_project, dvc_env
from dvc_helpers import run as _run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git repo with this project's tracked and untracked (not ignored) files, tiny params."""
    return copy_project(tmp_path_factory.mktemp("project"))


def _set_param(root: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_data_stages_rerun_only_what_a_param_change_touches(project):
    out = _run(["dvc", "repro", "rle-encode"], project)
    assert _ran(out) == {"download", "split", "rle-encode"}
    assert "up to date" in _run(["dvc", "status", "download", "split", "rle-encode"], project)
    _set_param(project, "split", "seed", 7)
    assert "split" in _run(["dvc", "status", "split"], project)
    out = _run(["dvc", "repro", "rle-encode"], project)
    assert _ran(out) == {"split", "rle-encode"}
    assert "Stage 'download' didn't change, skipping" in out
    _run(["git", "checkout", "params.yaml"], project)
    # rle-encode reads its section through the typed config: dvc.yaml's `params:` scopes it.
    _run(["dvc", "repro", "rle-encode"], project)
    _set_param(project, "rle_encode", "invalid", "error")
    assert "rle_encode" in _run(["dvc", "status", "rle-encode"], project)
    assert "up to date" in _run(["dvc", "status", "download", "split"], project)
    _run(["git", "checkout", "params.yaml"], project)


def test_full_pipeline_then_a_finetune_param_reruns_only_its_descendants(project):
    _run(["dvc", "repro"], project)
    assert "up to date" in _run(["dvc", "status"], project)
    assert (project / "models/facere/best.ckpt").is_file()
    assert (project / "models/facere_plus/best.ckpt").is_file()
    assert not (project / "dvclive/train-facere/dvc.yaml").exists()  # dvcyaml=False
    _run([sys.executable, "-m", "fashionfail.plots", "--out", "offline.html"], project)
    page = (project / "offline.html").read_text()
    assert page.count("<svg") >= 10 and "<script" not in page  # curves + per-class bars, offline
    assert "data:image/png;base64," in page  # the overlays
    assert not (project / "dvc_plots").exists()  # no stray copies of the overlays
    # Facere, Facere+: 6 losses (train+val) + val mAP; 4 bars; the report's per-class gain and
    # 3 calibration curves
    assert page.count("<svg") == 22
    assert not list(project.glob("models/**/*.dvc"))
    _run("git add -A && git -c user.email=t@t -c user.name=t commit -qm run", project)

    _set_param(project, "finetune_facere_plus", "lr", 0.0005)
    dry = _run(["dvc", "repro", "--dry"], project)
    ran = _ran(dry)
    assert "finetune-facere-plus" in ran
    assert not ran & {"download", "split", "rle-encode", "train-facere"}
    # only finetune, its evaluation and the report
    assert all("plus" in stage or stage == "report" for stage in ran), ran
    status = _run(["dvc", "status"], project)
    assert "finetune-facere-plus" in status and "train-facere:" not in status
    _run(["git", "checkout", "params.yaml"], project)


def test_experiments_show_params_and_metrics(project):
    out = _run(
        ["dvc", "exp", "run", "-S", "finetune_facere_plus.lr=0.0005", "-n", "lower-lr"], project
    )
    assert "Running stage 'finetune-facere-plus'" in out
    assert "Running stage 'train-facere'" not in out
    show = _run(["dvc", "exp", "show", "--no-pager", "--md"], project)
    assert "lower-lr" in show and "finetune_facere_plus.lr" in show
    assert "val.loss" in show  # dvclive metrics reach `dvc exp show` via top-level metrics:
    # The README's table (make exps) fits 160 columns and leads with the numbers to compare.
    table = _run(
        r"COLUMNS=160 dvc exp show --no-pager --only-changed --drop 'Created|.*/|fp_raw_' "
        r"--keep '(plus_)?(fp|ff)_(box|mask)|(plus_)?best_'",
        project,
    )
    print(table)
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 160 and "…" not in table, table
    header = lines[1].split()
    assert header[0] == "Experiment", header
    assert header[1:9] == [
        "fp_box",
        "fp_mask",
        "ff_box",
        "ff_mask",
        "plus_ff_box",
        "plus_ff_mask",
        "best_loss",
        "plus_best_loss",
    ]
    assert "finetune_facere_plus.lr" in header and "lower-lr" in table
    assert not any(":" in h or "/" in h for h in header)  # no detail metric (file:name), no dep
    exp_diff = _run(["dvc", "exp", "diff", "HEAD", "lower-lr", "--md"], project)
    assert "finetune_facere_plus.lr" in exp_diff
    _set_param(project, "finetune_facere_plus", "lr", 0.0005)
    assert "finetune_facere_plus.lr" in _run(["dvc", "params", "diff", "--md"], project)
    _run(["git", "checkout", "params.yaml"], project)


def test_killed_dvc_repro_resumes_training_on_the_next_repro(project):
    """persist: true keeps models/facere when DVC reruns the stage, so last.ckpt is resumed."""
    _run(["dvc", "repro", "rle-encode"], project)
    _set_param(project, "train_facere", "max_epochs", 12)
    env = dvc_env()
    started = time.time()
    proc = subprocess.Popen(
        ["dvc", "repro", "train-facere"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = project / "models/facere/last.ckpt"

    def written_by_this_run() -> bool:  # earlier tests may have left a last.ckpt behind
        return last.exists() and last.stat().st_mtime > started

    deadline = time.time() + 300
    while not written_by_this_run() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert written_by_this_run(), "training ended before writing last.ckpt"
    assert "running" in (project / "models/facere/run.json").read_text()
    out = _run(["dvc", "repro", "train-facere"], project)
    assert "Restoring states from the checkpoint path" in out
    assert '"status": "complete"' in (project / "models/facere/run.json").read_text()
    assert "up to date" in _run(["dvc", "status", "train-facere"], project)
    _run(["git", "checkout", "params.yaml"], project)
