"""The installed `fashionfail` command (python -m fashionfail): its commands, their --help, and
`aim-up` serving the Aim UI with the project named after the repository folder."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fashionfail.commands.main import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
REPO_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
}


def test_usage_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)
    assert main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    assert main([]) == 2


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_without_torch(name):
    """--help answers without importing torch or Lightning (they take seconds)."""
    code = (
        "import sys\nfrom fashionfail.commands.main import main\n"
        f"try:\n    main([{name!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'pytorch_lightning', 'torchvision') "
        "if m in sys.modules)\nprint('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=REPO_ENV
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ") and "HEAVY []" in proc.stdout, proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_aim_up_names_the_project_after_the_repository(tmp_path):
    from aim import Repo

    project = tmp_path / "my-fashion-runs"
    project.mkdir()
    Repo.from_path(str(project), init=True)
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fashionfail",
            "aim-up",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--yes",
        ],
        cwd=project,
        env=REPO_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline, reply = time.time() + 120, None
        while time.time() < deadline and proc.poll() is None and reply is None:
            try:
                url = f"http://127.0.0.1:{port}/api/projects/"
                with urllib.request.urlopen(url, timeout=5) as r:
                    reply = json.loads(r.read())
            except OSError:
                time.sleep(1)
        assert reply is not None, proc.stdout.read().decode() if proc.poll() is not None else ""
        assert reply["name"] == "my-fashion-runs"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
