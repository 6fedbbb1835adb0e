"""A forced rerun of the whole pipeline gives the same dvc.lock as the first run, and a killed
`dvc repro` resumes its training (tests/test_dvc.py's temporary project; a file of its own so that
pytest-xdist runs it beside test_dvc.py's tests).

The kill -9 test of the training itself lives here too: what the resume keeps (run.json, dvclive's
rows, the Aim run and its tags, nothing published early) is checked on the training `dvc repro`
runs, the way users run it, instead of on a second killed training of its own."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from dvc_helpers import commit_run, dvc_env
from dvc_helpers import run as _run
from test_dvc import _digest, _lock_entries, _set_param, _stage_names

from fashionfail.core.tracking import tag_names

pytestmark = pytest.mark.slow
EPOCHS = 6  # killed ~1 s after its first epoch's last.ckpt: a tiny epoch takes ~1 s


def _aim_run(root, run_hash=None):
    """The project's Aim runs' hashes, or (run_hash given) that run, indexed as `aim up` does."""
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    repo = Repo.from_path(str(root))
    if run_hash is None:
        return set(repo.list_all_runs())
    RepoIndexManager.get_index_manager(repo).index(run_hash)
    return Repo.from_path(str(root)).get_run(run_hash)


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
    _set_param(project, "train_facere", "num_workers", 1)  # a DataLoader worker is killed too
    runs_before = _aim_run(project)
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
    os.killpg(proc.pid, signal.SIGKILL)  # as abrupt as a lost machine
    proc.wait()
    (last,) = resume.glob("*/last.ckpt")
    killed = json.loads((last.parent / "run.json").read_text())
    assert killed["status"] == "running"
    assert not (project / "models/facere/best.ckpt").exists()  # nothing published early
    killed_epoch = torch.load(last, weights_only=False)["epoch"]
    assert killed_epoch < EPOCHS - 1, "the training finished before it was killed"
    # dvclive one row ahead of last.ckpt (killed between the two writes, or a live folder
    # restored from another run) and a row cut by the kill: the resume must keep neither. And
    # dvclive's metrics.json emptied by a kill during its rewrite (it is rewritten at every
    # logging step; a CI run hit it): the resume puts back the checkpoint's copy.
    val_loss = last.parent / "dvclive/plots/metrics/val/loss.tsv"
    val_loss.write_text(val_loss.read_text() + "9999\t0.5\n1\t0.12")
    (last.parent / "dvclive/metrics.json").write_text("")
    out = _run(["dvc", "repro", "train-facere"], project)
    assert f"resuming from {last.relative_to(project)}" in out
    assert "Restoring states from the checkpoint path" in out
    assert f"epoch {killed_epoch + 2}/{EPOCHS} " in out and f"epoch 1/{EPOCHS} " not in out, out
    final = json.loads((project / "models/facere/run.json").read_text())
    assert final["status"] == "complete" and final["epochs"] == EPOCHS
    assert final["fingerprint"] == killed["fingerprint"]
    assert not resume.exists()
    rows = (project / "dvclive/train-facere/plots/metrics/val/loss.tsv").read_text().splitlines()
    steps = [int(row.split("\t")[0]) for row in rows[1:]]
    assert len(steps) == EPOCHS and steps == sorted(set(steps)), steps  # a row per epoch, in order
    # The killed run's Aim run went on: one run more than before the kill, tagged resumed.
    assert _aim_run(project) - runs_before == {killed["aim_run_hash"]}
    aim_run = _aim_run(project, killed["aim_run_hash"])
    assert tag_names(aim_run) == {"stage:train-facere", "resumed", "finished"}
    assert aim_run["fingerprint"] == final["fingerprint"]
    assert "up to date" in _run(["dvc", "status", "train-facere"], project)
    resumed = _digest(project, "dvclive/train-facere")
    resumed_lock = _lock_entries(project)["train-facere"]

    out = _run(["dvc", "repro", "-f", "-s", "train-facere"], project)  # uninterrupted
    assert f"epoch 1/{EPOCHS} " in out and "resuming" not in out, out
    assert _digest(project, "dvclive/train-facere") == resumed
    assert _lock_entries(project)["train-facere"]["outs"] == resumed_lock["outs"]  # checkpoints too
    _run(["git", "checkout", "params.yaml"], project)
