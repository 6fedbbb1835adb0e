"""Faults around a run: the parent `dvc` killed, a full disk while checkpointing, temp files of a
killed run, errors raised in data-loader workers, and --debug for tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fashionfail.core.cli import error_exit, one_line, report_errors
from fashionfail.core.guard import remove_stale_temp_files, training_lock, watch_parent
from fashionfail.core.jsonio import DataError
from fashionfail.models.safety import AtomicModelCheckpoint

REPO = Path(__file__).resolve().parents[1]

# A training stand-in: starts the watchdog as train() does, then works for a minute.
CHILD = textwrap.dedent("""
    import sys, time
    from fashionfail.core.guard import watch_parent
    print("watching", watch_parent(interval_s=0.2), flush=True)
    time.sleep(60)
""")
# `dvc repro` stand-in: runs the command in a shell that does not exec it (as DVC runs stages),
# with DVC_STAGE set for the command only, as DVC sets it.
FAKE_DVC = textwrap.dedent("""
    import os, subprocess, sys
    env = dict(os.environ, DVC_STAGE="train-facere")
    cmd = f"{sys.executable} -c '{sys.argv[1]}'; echo shell-done"
    subprocess.run(["/bin/sh", "-c", cmd], env=env)
""")


def _python_descendant(proc: psutil.Process, timeout: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in proc.children(recursive=True):
            try:
                if child.name().startswith("python") and "watch_parent" in " ".join(
                    child.cmdline()
                ):
                    return child
            except psutil.Error:
                pass
        time.sleep(0.1)
    raise AssertionError("the training stand-in did not start")


@pytest.mark.slow
def test_training_stops_when_the_dvc_process_is_killed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"}
    env["PYTHONPATH"] = str(REPO)
    dvc = subprocess.Popen(
        [sys.executable, "-c", FAKE_DVC, CHILD],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        child = _python_descendant(psutil.Process(dvc.pid))
        shell = child.parent()
        assert shell.name() == "sh"
        time.sleep(1.0)  # the watchdog is running (it printed the watched pids)
        os.kill(dvc.pid, signal.SIGKILL)  # no handler runs: only the watchdog can notice
        dvc.wait(timeout=10)
        started = time.monotonic()
        child.wait(timeout=15)
        assert time.monotonic() - started < 10
        out, err = dvc.communicate(timeout=10)
    finally:
        if dvc.poll() is None:
            dvc.kill()
    assert f"watching [{shell.pid}, {dvc.pid}]" in out
    assert f"error: process {dvc.pid}, which started this training, is gone; stopping" in err


def test_watchdog_off_outside_dvc(monkeypatch):
    # `nohup python stages/train.py &` must survive its terminal: nothing is watched.
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.delenv("FASHIONFAIL_WATCH_PID", raising=False)
    assert watch_parent() == []


def test_lock_is_exclusive_across_processes(tmp_path):
    out = tmp_path / "models"
    code = (
        "import sys, time; from pathlib import Path\n"
        "from fashionfail.core.guard import training_lock\n"
        f"with training_lock(Path({str(out)!r})):\n    print('locked', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(DataError, match="another training is writing this folder"),
            training_lock(out),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with training_lock(out):  # released by the OS when its holder died
        pass


class _Trainer:
    """What ModelCheckpoint._save_checkpoint touches of a Trainer."""

    is_global_zero = True
    global_step = 7
    loggers: list = []

    class strategy:  # noqa: N801
        @staticmethod
        def barrier(name: str) -> None:
            pass

    def __init__(self, fail: bool):
        self.fail = fail

    def save_checkpoint(self, path: str, weights_only: bool = False) -> None:
        with open(path, "wb") as f:
            f.write(b"partial")
            if self.fail:
                raise OSError(28, "No space left on device", path)
            f.write(b" and the rest")


def test_checkpoint_is_written_whole_or_not_at_all(tmp_path):
    best = tmp_path / "best.ckpt"
    best.write_bytes(b"previous best")
    cb = AtomicModelCheckpoint(dirpath=tmp_path, filename="best")
    with pytest.raises(OSError, match="No space left"):
        cb._save_checkpoint(_Trainer(fail=True), str(best))
    assert best.read_bytes() == b"previous best"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]
    cb._save_checkpoint(_Trainer(fail=False), str(best))
    assert best.read_bytes() == b"partial and the rest"
    assert cb._last_checkpoint_saved == str(best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".last.ckpt.tmp").write_bytes(b"half")
    (tmp_path / ".run.json.x1y2.tmp").write_text("{")
    (tmp_path / "last.ckpt").write_bytes(b"whole")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".last.ckpt.tmp", ".run.json.x1y2.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class _Broken(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        if i == 1:
            raise DataError("/data/img_01.jpg: cannot decode image (image file is truncated)")
        return torch.zeros(1)


def test_worker_errors_are_one_line(capsys):
    loader = DataLoader(_Broken(), batch_size=1, num_workers=1)
    with pytest.raises(DataError) as err:
        list(loader)
    assert "Traceback" in str(err.value)  # what torch re-raises: the worker's traceback
    assert one_line(err.value) == "/data/img_01.jpg: cannot decode image (image file is truncated)"
    assert error_exit(err.value) == 1
    assert capsys.readouterr().err == (
        "error: /data/img_01.jpg: cannot decode image (image file is truncated)\n"
    )


def test_debug_shows_the_traceback(monkeypatch, capsys):
    def job() -> int:
        raise DataError("x.json: duplicate image id 1")

    monkeypatch.delenv("FASHIONFAIL_DEBUG", raising=False)
    assert report_errors(job) == 1
    assert capsys.readouterr().err == "error: x.json: duplicate image id 1\n"
    monkeypatch.setenv("FASHIONFAIL_DEBUG", "1")
    with pytest.raises(DataError, match="duplicate image id 1"):
        report_errors(job)


@pytest.mark.slow
def test_debug_flag_on_a_stage(tmp_path):
    """--debug on the command line: the traceback reaches the user; without it, one line."""
    bad = tmp_path / "ann.json"
    bad.write_text("{}")
    cmd = [
        sys.executable,
        "stages/split.py",
        "--ann",
        str(bad),
        "--train-out",
        str(tmp_path / "t.json"),
        "--val-out",
        str(tmp_path / "v.json"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "FASHIONFAIL_DEBUG"}
    plain = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    debug = subprocess.run([*cmd, "--debug"], cwd=REPO, capture_output=True, text=True, env=env)
    assert plain.returncode == 1 and plain.stderr == (
        f"error: {bad}: missing top-level key 'images'\n"
    )
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().endswith(f"DataError: {bad}: missing top-level key 'images'")


def test_stale_output_folders_of_a_killed_run_are_removed(tmp_path):
    from fashionfail.core.jsonio import atomic_dir

    (tmp_path / ".x.abc123.tmp").mkdir()  # killed while writing
    (tmp_path / ".x.def456.old").mkdir()  # killed between the two renames
    (tmp_path / ".x.def456.old" / "x").mkdir()
    (tmp_path / ".y.abc123.tmp").mkdir()  # another output's: kept
    with atomic_dir(tmp_path / "x") as tmp:
        (tmp / "metrics.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".y.abc123.tmp", "x"]


def test_monitor_names_are_the_metrics_the_module_logs():
    from fashionfail.core.config import LOGGED_METRICS, MAP_METRICS
    from fashionfail.models.factory import build_model
    from fashionfail.models.module import _MAP_KEYS

    assert set(_MAP_KEYS.values()) == set(MAP_METRICS)
    model = build_model("tiny", 3, min_size=64, max_size=64).train()
    masks = torch.zeros((1, 64, 64), dtype=torch.uint8)
    masks[0, 10:30, 10:30] = 1
    target = {
        "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]),
        "labels": torch.tensor([1]),
        "masks": masks,
    }
    losses = model([torch.rand(3, 64, 64)], [target])
    for stage in ("train", "val"):
        assert {f"{stage}/loss", *(f"{stage}/{k}" for k in losses)} <= set(LOGGED_METRICS)
    assert len(LOGGED_METRICS) == 2 * (len(losses) + 1) + 2 * len(MAP_METRICS)
