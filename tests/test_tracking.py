"""Where Aim runs go: the project's Aim repository, also for queued experiments, which may start
together on a project that has none yet (`pytest -k queue` selects these and the DVC queue test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from train_helpers import REPO, aim_runs

from fashionfail.core.tracking import default_aim_repo

# One "experiment": waits until every other one has imported Aim, then opens a run at once.
_RUN = """
import sys, time
from pathlib import Path
from aim import Run
from fashionfail.core.tracking import ensure_aim_repo
root, me, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(root / f"ready-{me}").touch()
while len(list(root.glob("ready-*"))) < n:
    time.sleep(0.001)
ensure_aim_repo(root)
run = Run(repo=str(root), experiment="x", system_tracking_interval=None, log_system_params=False,
          capture_terminal_logs=False)
run.name = me
run["hparams"] = {"me": me}
run.track(1.0, name="loss")
run.close()
"""


def test_queue_aim_repo_defaults_to_the_project_dvc_runs_in(monkeypatch, tmp_path):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert default_aim_repo() == Path(".")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # what DVC sets, also in a queued temp copy
    assert default_aim_repo() == tmp_path


def test_queue_parallel_runs_create_a_missing_aim_repo_together(tmp_path):
    """Aim alone fails one of them ("... which is out of date"): it opens a half-made repo."""
    n = 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN, str(tmp_path), f"run{i}", str(n)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * n, "\n".join(o[-1500:] for o in outs)
    assert sorted(aim_runs(tmp_path)) == [f"run{i}" for i in range(n)]
