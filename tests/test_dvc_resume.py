"""A forced rerun of the whole pipeline gives the same dvc.lock as the first run, and a killed
`dvc repro` resumes its training (tests/test_dvc.py's temporary project; a file of its own so that
pytest-xdist runs it beside test_dvc.py's tests)."""

import os
import signal
import subprocess
import time

import pytest
import torch
from dvc_helpers import commit_run, dvc_env
from dvc_helpers import run as _run
from test_dvc import _digest, _lock_entries, _set_param, _stage_names

pytestmark = pytest.mark.slow
EPOCHS = 6  # killed ~1 s after its first epoch's last.ckpt: a tiny epoch takes ~1 s


@pytest.fixture
def project(finished_project):
    """This test's copy of the project after `dvc repro`, the run committed."""
    return commit_run(finished_project)


def test_forced_rerun_gives_the_same_lock_then_a_killed_dvc_repro_resumes_training(
    project, reproduced
):
    """`dvc repro -f` in this copy gives dvc.lock entries identical to the shared first run's,
    made in another folder (no pid, time, host or path). Then kill -9 in an epoch, then `dvc
    repro`: the training resumes from its last epoch (kept outside the outputs DVC deletes) and
    ends with an uninterrupted run's outputs (`dvc repro -f -s`)."""
    _run(["dvc", "repro", "-f"], project)
    forced, first = _lock_entries(project), _lock_entries(reproduced[0])
    assert forced.keys() == first.keys() == _stage_names(project)
    for stage in forced:
        assert forced[stage] == first[stage], f"{stage}: dvc.lock differs between two runs"

    _set_param(project, "train_facere", "max_epochs", EPOCHS)
    proc = subprocess.Popen(
        ["dvc", "repro", "train-facere"],
        cwd=project,
        env=dvc_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    resume = project / "models/.facere.resume"
    deadline = time.time() + 300
    while not list(resume.glob("*/last.ckpt")) and time.time() < deadline:
        assert proc.poll() is None, "dvc repro ended before the training wrote last.ckpt"
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (last,) = resume.glob("*/last.ckpt")
    assert '"status": "running"' in (last.parent / "run.json").read_text()
    killed_epoch = torch.load(last, weights_only=False)["epoch"]
    assert killed_epoch < EPOCHS - 1, "the training finished before it was killed"
    out = _run(["dvc", "repro", "train-facere"], project)
    assert f"resuming from {last.relative_to(project)}" in out
    assert "Restoring states from the checkpoint path" in out
    assert f"epoch {killed_epoch + 2}/{EPOCHS} " in out and f"epoch 1/{EPOCHS} " not in out, out
    assert '"status": "complete"' in (project / "models/facere/run.json").read_text()
    assert not resume.exists()
    assert "up to date" in _run(["dvc", "status", "train-facere"], project)
    resumed = _digest(project, "dvclive/train-facere")
    resumed_lock = _lock_entries(project)["train-facere"]

    out = _run(["dvc", "repro", "-f", "-s", "train-facere"], project)  # uninterrupted
    assert f"epoch 1/{EPOCHS} " in out and "resuming" not in out, out
    assert _digest(project, "dvclive/train-facere") == resumed
    assert _lock_entries(project)["train-facere"]["outs"] == resumed_lock["outs"]  # checkpoints too
    _run(["git", "checkout", "params.yaml"], project)
