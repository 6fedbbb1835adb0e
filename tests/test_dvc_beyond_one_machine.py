"""The pipeline shared and run side by side, in a temporary copy of this project (tiny params):
a DVC remote on a real S3 server (moto, on localhost) used by a fresh clone, `dvc exp push/pull`
through a bare git remote, a remote that is down or drops connections, and two queued experiments
run in parallel that each keep their Aim runs in the project's Aim repository.

`pytest -k remote` and `pytest -k queue` select these tests."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
import yaml
from dvc_helpers import copy_reproduced, run
from s3_server import BUCKET, CREDENTIALS, FlakyProxy, moto_s3
from train_helpers import aim_runs

pytestmark = pytest.mark.slow

QUEUED = {"q-lr-low": 0.0005, "q-lr-high": 0.002}  # experiment name -> finetune_facere_plus.lr


def _commit(root: Path, message: str) -> None:
    run(f"git add -A && git -c user.email=t@t -c user.name=t commit -qm '{message}'", root)


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def project(reproduced, tmp_path_factory) -> Path:
    """A copy of the project after `dvc repro` (shared: tests/dvc_helpers.py), committed, with a
    bare git remote `origin`."""
    root = copy_reproduced(reproduced[0], tmp_path_factory.mktemp("beyond") / "project")
    _commit(root, "repro")
    bare = root.parent / "origin.git"
    run(f"git init -q --bare -b main {bare} && git remote add origin {bare}", root)
    run("git push -q origin main", root)
    return root


@pytest.fixture(scope="module")
def s3(project: Path):
    """moto's S3 server behind a proxy that can fail; the project's default DVC remote (committed
    and pushed to origin, as a team would)."""
    with pytest.MonkeyPatch.context() as mp, moto_s3() as url:
        for var, value in CREDENTIALS.items():
            mp.setenv(var, value)
        proxy = FlakyProxy(url)
        run(
            f"dvc remote add -d storage s3://{BUCKET}/dvc && "
            f"dvc remote modify storage endpointurl {proxy.url}",
            project,
        )
        _commit(project, "DVC remote")
        run("git push -q origin main", project)
        try:
            yield proxy
        finally:
            proxy.stop()


def _clone(project: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(project.parent / "origin.git"), str(dest)], project.parent)
    return dest


def _cached_outputs(root: Path) -> dict[str, str]:
    """{path: md5} of every cached output in dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    uncached = set()
    for stage in dvc_yaml["stages"].values():
        for out in stage.get("do", stage).get("outs", []):
            if isinstance(out, dict) and not next(iter(out.values())).get("cache", True):
                uncached.add(next(iter(out)).split("/")[-1])
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"].split("/")[-1] not in uncached
    }


def test_remote_push_then_a_fresh_clone_pulls_every_output(project, s3, tmp_path):
    pushed = run(["dvc", "push"], project)
    assert re.search(r"\d+ files? pushed", pushed), pushed
    outputs = _cached_outputs(project)
    assert {
        "models/facere",
        "models/facere_plus",
        "data/raw/fashionpedia",
        "data/prepared/fp_train_rle.json",
        "eval/facere_ff/predictions.json",
    } <= set(outputs)

    clone = _clone(project, tmp_path / "clone")
    assert not (clone / "models/facere").exists()  # git has no cached output, only DVC does
    run(["dvc", "pull"], clone)
    for path in outputs:
        assert (clone / path).exists(), path
    assert (clone / "models/facere/best.ckpt").read_bytes() == (
        project / "models/facere/best.ckpt"
    ).read_bytes()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone)
    repro = run(["dvc", "repro"], clone)
    assert _ran(repro) == [] and "Data and pipelines are up to date" in repro
    assert "Cache and remote 'storage' are in sync" in run(["dvc", "status", "-c"], clone)


@pytest.fixture(scope="module")
def queued(project: Path) -> dict[str, str]:
    """Two experiments queued with -S, run by `dvc queue start -j 2`; {name: its queue log}."""
    for name, lr in QUEUED.items():
        run(
            ["dvc", "exp", "run", "--queue", "-S", f"finetune_facere_plus.lr={lr}", "-n", name],
            project,
        )
    run(["dvc", "queue", "start", "-j", "2"], project)
    try:
        deadline = time.time() + 900
        while True:
            status = run(["dvc", "queue", "status"], project)
            rows = [line for line in status.splitlines() if any(n in line for n in QUEUED)]
            if len(rows) == len(QUEUED) and not any(
                s in row for row in rows for s in ("Queued", "Running")
            ):
                break
            assert time.time() < deadline, status
            time.sleep(5)
    finally:
        run(["dvc", "queue", "stop", "--kill"], project, check=False)  # idle ones exit anyway
    assert all("Success" in row for row in rows), status
    return {name: run(["dvc", "queue", "logs", name], project) for name in QUEUED}


def test_queue_two_parallel_experiments_keep_their_aim_runs(project, queued):
    for name, log in queued.items():
        ran = _ran(log)  # Facere+ and what depends on it, not the data or Facere's training
        assert {"finetune-facere-plus", "evaluate@facere_plus_ff"} <= set(ran), log
        assert not {"download", "split", "rle-encode", "train-facere"} & set(ran), log
        bad = [
            line
            for line in log.splitlines()
            if re.search(r"(?i)lock|corrupt", line) and "dvc.lock" not in line
        ]
        assert not bad, name

    runs = aim_runs(project)  # the project's Aim repo, not the deleted temp copies'
    for name, lr in QUEUED.items():
        _, series, hparams = runs[f"finetune-facere-plus@{name}"]
        assert hparams["train"]["lr"] == lr and hparams["dvc_experiment"] == name
        assert len(series[("loss", "val")]) == 1 and len(series[("loss", "train")]) >= 1
        assert f"evaluate-facere_plus_ff@{name}" in runs
    assert "train-facere" in runs and "finetune-facere-plus" in runs  # the baseline's, kept

    show = run(["dvc", "exp", "show", "--no-pager", "--md"], project)
    table = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in show.splitlines()
        if line.startswith("|")
    ]
    header, rows = table[0], table[2:]
    loss_cols = [i for i, col in enumerate(header) if col.endswith("val.loss")]
    lr_col = header.index("finetune_facere_plus.lr")
    assert loss_cols, header
    for name, lr in QUEUED.items():
        row = next(row for row in rows if name in row[0])
        assert float(row[lr_col]) == lr
        for i in loss_cols:  # Facere's (from the baseline) and Facere+'s (this experiment's)
            assert float(row[i]) > 0, (header[i], row[i])


def test_remote_exp_push_and_pull_through_git_and_dvc_remotes(project, s3, queued, tmp_path):
    name = "q-lr-low"
    run(["dvc", "exp", "push", "origin", name], project)  # the git ref and the DVC outputs
    clone = _clone(project, tmp_path / "clone")
    run(["dvc", "exp", "pull", "origin", name], clone)
    assert name in run(["dvc", "exp", "list", "--name-only"], clone)
    run(["dvc", "exp", "apply", name], clone)
    assert (
        yaml.safe_load((clone / "params.yaml").read_text())["finetune_facere_plus"]["lr"]
        == (QUEUED[name])
    )
    ckpt = torch.load(clone / "models/facere_plus/best.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["train"]["lr"] == QUEUED[name]
    assert (clone / "eval/facere_plus_ff/predictions.json").is_file()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone)


def test_remote_down_or_dropping_connections_fails_clearly_and_keeps_local_data(
    project, s3, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # fail fast; s3fs still retries a few times
    clone = _clone(project, tmp_path / "clone")
    new = clone / "data/notes.bin"
    new.write_bytes(bytes(range(256)) * 400)
    run(["dvc", "add", "data/notes.bin"], clone)
    local = new.read_bytes()

    for mode in ("drop", "down"):
        if mode == "down":
            s3.down()
        else:
            s3.mode = "drop"
        out = run(["dvc", "push", "data/notes.bin.dvc"], clone, check=False)
        assert "ERROR" in out and s3.url in out, out  # names the unreachable endpoint
        expected = "Connection was closed" if mode == "drop" else "Could not connect"
        assert expected in out, out
        assert new.read_bytes() == local  # nothing lost: the file and its cache are intact
        assert "up to date" in run(["dvc", "status", "data/notes.bin.dvc"], clone)
        s3.up()

    # Pulling from a remote that is down fails and leaves the workspace as it was.
    s3.down()
    out = run(["dvc", "pull", "models/facere_plus"], clone, check=False)
    assert "failed to pull data from the cloud" in out and s3.url in out, out
    assert not (clone / "models/facere_plus").exists() and new.read_bytes() == local
    s3.up()

    # Once the remote is back, the same commands succeed and another clone gets the new file.
    assert "1 file pushed" in run(["dvc", "push", "data/notes.bin.dvc"], clone)
    run(["git", "add", "data"], clone)
    run("git -c user.email=t@t -c user.name=t commit -qm notes && git push -q origin main", clone)
    other = _clone(project, tmp_path / "other")
    run(["dvc", "pull", "data/notes.bin.dvc"], other)
    assert (other / "data/notes.bin").read_bytes() == local
