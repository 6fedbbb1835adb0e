"""Process-level guards of a training run: one writer per output folder, no training left running
after the `dvc repro` that started it is killed, and no temporary files of a killed run left.

- `training_lock`: an exclusive OS file lock (filelock) on `<parent>/.<folder>.train.lock`; a
  second training on the same output folder (hence the same run.json and Aim run) stops at once
  with one line. The OS releases the lock when its holder exits, even by SIGKILL.
- `watch_parent`: a daemon thread that ends this process (and its children: data loader
  workers, DDP ranks) within a second or two when the process that started it is gone, even after
  a SIGKILL, which no signal handler sees. Under DVC (env DVC_STAGE set) it watches every ancestor
  up to the `dvc` process itself, so the intermediate shell DVC runs the command in, which
  survives its parent, does not keep the training alive (PR_SET_PDEATHSIG would only see that
  shell). Elsewhere only FASHIONFAIL_WATCH_PID (a pid), if set, is watched, so
  `nohup python stages/train.py ... &` keeps running after its terminal closes.
- `remove_stale_temp_files`: the `.*.tmp` files of a killed run, removed when the next starts.

No heavy imports here (psutil and filelock only), so it is cheap to test in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from fashionfail.core.jsonio import DataError

WATCH_ENV = "FASHIONFAIL_WATCH_PID"
TEMP_PATTERN = ".*.tmp"  # how jsonio.atomic_path and AtomicModelCheckpoint name their temp files


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files a killed run left in `folder`; returns them."""
    stale = sorted(p for p in folder.glob(TEMP_PATTERN) if p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def lock_path(out_dir: Path) -> Path:
    """The lock file of an output folder: beside it, so it is never part of a DVC output."""
    return out_dir.parent / f".{out_dir.name}.train.lock"


@contextlib.contextmanager
def training_lock(out_dir: Path, holder: str = "") -> Iterator[None]:
    """Hold the output folder's lock for the block; DataError at once if another run holds it.

    The lock is an OS file lock: it is released when the holder exits, even by SIGKILL.
    """
    from filelock import FileLock, Timeout

    path = lock_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DataError(
            f"{out_dir}: another training is writing this folder{holder} (lock {path} is held); "
            "wait for it to finish or stop it, or use another output folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _watched() -> list:
    """The processes whose death must end this one (see the module docstring)."""
    import psutil

    pid = os.environ.get(WATCH_ENV, "")
    if pid.isdigit():
        with contextlib.suppress(psutil.Error):
            return [psutil.Process(int(pid))]
        return []
    stage = os.environ.get("DVC_STAGE")
    if stage is None:
        return []
    chain = []
    proc = psutil.Process().parent()
    while proc is not None and proc.pid > 1:
        chain.append(proc)
        try:
            if proc.environ().get("DVC_STAGE") != stage:
                break  # the dvc process itself: it set DVC_STAGE for its children only
            proc = proc.parent()
        except psutil.Error:
            break
    return chain


def _gone(proc) -> bool:
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _stop(reason: str) -> None:
    import psutil

    print(f"error: {reason}; stopping (resume with the same command)", file=sys.stderr, flush=True)
    with contextlib.suppress(psutil.Error):
        children = psutil.Process().children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=5)
    os._exit(1)  # checkpoints are atomic and run.json says "running": the next run resumes


def watch_parent(interval_s: float = 1.0) -> list[int]:
    """Start the watchdog thread (once per process); returns the watched pids."""
    if getattr(watch_parent, "_started", False):
        return []
    watched = _watched()
    if not watched:
        return []
    watch_parent._started = True  # type: ignore[attr-defined]
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            for proc in watched:
                if _gone(proc):
                    _stop(f"process {proc.pid}, which started this training, is gone")

    threading.Thread(target=run, name="fashionfail-parent-watchdog", daemon=True).start()
    return [p.pid for p in watched]
