"""train() end to end on tiny synthetic data: checkpoints, loggers, DDP, seed commands (a killed
training resumes: tests/test_dvc_resume.py)."""

import os
import socket
import subprocess
import sys

import orjson
import pytest
import torch
import yaml
from train_helpers import REPO, ff_paths, fp_paths, make_data, tiny_cfg
from train_helpers import aim_runs as _aim_metrics

from fashionfail.core.config import ConfigError
from fashionfail.models.factory import load_trained
from fashionfail.models.train import resolve_precision, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def facere(data, tmp_path_factory):
    """(paths, summary, folder) of one tiny Facere training (2 epochs) under its own folder, for
    the tests that only read its outputs."""
    folder = tmp_path_factory.mktemp("facere")
    paths = fp_paths(data, folder)
    return paths, train(tiny_cfg(max_epochs=2), paths), folder


@pytest.mark.slow  # trains
def test_train_writes_checkpoints_and_the_same_metrics_to_aim_and_dvclive(facere):
    paths, summary, folder = facere
    assert summary["epochs"] == 2
    assert (paths.out_dir / "best.ckpt").is_file() and (paths.out_dir / "last.ckpt").is_file()
    run_info = orjson.loads((paths.out_dir / "run.json").read_bytes())
    assert run_info["status"] == "complete"
    model, space = load_trained(paths.out_dir / "best.ckpt", expect_classes="fashionpedia")
    assert space.num_classes == 47

    live = orjson.loads((paths.live_dir / "metrics.json").read_bytes())
    assert {"loss", "bbox_mAP", "segm_AP50"} <= set(live["val"])
    assert not (folder / "dvc.yaml").exists()  # dvcyaml=False: dvclive leaves dvc.yaml alone
    assert not list(folder.rglob("*.dvc"))

    runs = _aim_metrics(paths.aim_repo)
    assert list(runs) == ["train-facere"]
    run_hash, series, hparams = runs["train-facere"]
    assert "aim_run_hash" not in run_info and "pid" not in run_info  # a DVC output: stable
    assert _aim_fingerprint(paths.aim_repo, run_hash) == run_info["fingerprint"]
    assert not paths.resume_root.exists()  # a finished run leaves no resume folder
    assert hparams["train"]["arch"] == "tiny" and "git_revision" in hparams
    aim_val_loss = series[("loss", "val")]
    assert len(aim_val_loss) == 2
    assert aim_val_loss[-1] == pytest.approx(live["val"]["loss"], rel=1e-6)
    assert series[("bbox_mAP", "val")][-1] == pytest.approx(live["val"]["bbox_mAP"], rel=1e-6)
    tsv = (paths.live_dir / "plots/metrics/val/loss.tsv").read_text().split()
    assert float(tsv[-1]) == pytest.approx(aim_val_loss[-1], rel=1e-6)


def _aim_fingerprint(repo_dir, run_hash) -> str:
    from aim import Repo

    return Repo.from_path(str(repo_dir)).get_run(run_hash)["fingerprint"]


def _epoch_values(live_dir, metric="val/loss"):
    """Per-epoch values of `metric` as dvclive wrote them (one row per validation)."""
    header, *rows = (live_dir / f"plots/metrics/{metric}.tsv").read_text().splitlines()
    column = header.split("\t").index(metric.rsplit("/", 1)[-1])
    return [float(row.split("\t")[column]) for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_checkpoint_is_the_best_epoch_for_the_monitor_mode(data, tmp_path, mode):
    """best.ckpt holds the epoch whose monitored value is lowest (min) or highest (max)."""
    paths = fp_paths(data, tmp_path)
    cfg = tiny_cfg(
        max_epochs=3,
        monitor="val/loss",
        monitor_mode=mode,
        limit_train_batches=1,
        eval_map_every_n_epochs=100,
    )  # val loss only: seconds per epoch
    summary = train(cfg, paths)
    losses = _epoch_values(paths.live_dir)
    assert len(losses) == 3 and len(set(losses)) == 3, losses  # no tie: the choice shows
    pick = min if mode == "min" else max
    best_epoch = losses.index(pick(losses))
    best = torch.load(paths.out_dir / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["epoch"] == best_epoch, (mode, losses)
    assert summary["best_score"] == pytest.approx(pick(losses), rel=1e-5)
    last = torch.load(paths.out_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2


@pytest.mark.slow  # trains
def test_finetune_starts_from_the_facere_checkpoint(data, facere, tmp_path, capsys):
    plus = ff_paths(data, tmp_path)
    cfg = tiny_cfg("finetune_facere_plus", weights=str(facere[0].out_dir / "best.ckpt"))
    train(cfg, plus)
    assert "initial weights from" in capsys.readouterr().out
    _, space = load_trained(plus.out_dir / "best.ckpt")
    assert space.name == "fashionfail" and space.num_classes == 23


def test_bad_config_fails_before_training(data, tmp_path):
    with pytest.raises(ConfigError, match="eval_map_every_n_epochs"):
        train(tiny_cfg(monitor="val/bbox_mAP", eval_map_every_n_epochs=2), fp_paths(data, tmp_path))
    with pytest.raises(ConfigError, match="nope.ckpt: file not found"):
        train(tiny_cfg(weights=str(tmp_path / "nope.ckpt")), fp_paths(data, tmp_path))


def test_precision_fallback_on_cpu():
    with pytest.warns(UserWarning, match="needs a CUDA GPU"):
        assert resolve_precision("16", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning):
            assert resolve_precision("16-mixed", "auto") == "32-true"


def _params_file(tmp_path, section, **overrides):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params[section] = tiny_cfg(section, **overrides).model_dump(mode="json")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _stage_cmd(data, tmp_path, params):
    p = fp_paths(data, tmp_path)
    return [
        sys.executable,
        str(REPO / "stages/train.py"),
        "--params",
        str(params),
        "--section",
        "train_facere",
        "--train-ann",
        str(p.train_ann),
        "--train-img-dir",
        str(p.train_img_dir),
        "--val-ann",
        str(p.val_ann),
        "--val-img-dir",
        str(p.val_img_dir),
        "--out-dir",
        str(p.out_dir),
        "--live-dir",
        str(p.live_dir),
        "--aim-repo",
        str(tmp_path),
        "--name",
        "train-facere",
    ]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(data, tmp_path):
    params = _params_file(tmp_path, "train_facere", strategy="ddp", devices=2, max_epochs=1)
    cmd = _stage_cmd(data, tmp_path, params)
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed_backend=gloo" in done.stdout + done.stderr
    out = fp_paths(data, tmp_path).out_dir
    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "last.ckpt", "run.json"]
    assert len(_aim_metrics(tmp_path)) == 1
    live = fp_paths(data, tmp_path).live_dir
    assert len((live / "plots/metrics/val/loss.tsv").read_text().splitlines()) == 2  # header + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher_env(launcher: str, node: int, port: int) -> dict[str, str]:
    """What each launcher sets for the one process of node `node` (2 nodes x 1 process)."""
    if launcher == "torchrun":  # torch.distributed.run: GROUP_RANK names the node, no NODE_RANK
        return {
            "RANK": str(node),
            "LOCAL_RANK": "0",
            "GROUP_RANK": str(node),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "1",
            "TORCHELASTIC_RUN_ID": "test",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    if launcher == "slurm":  # srun; Lightning's SLURMEnvironment finds the main node in the list
        return {
            "SLURM_NTASKS": "2",
            "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_NNODES": "2",
            "SLURM_PROCID": str(node),
            "SLURM_LOCALID": "0",
            "SLURM_NODEID": str(node),
            "SLURM_JOB_NAME": "train-facere",
            "SLURM_JOB_ID": "4242",
            "SLURM_NODELIST": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    # Lightning's own launcher, started by hand on each node with NODE_RANK
    return {
        "NODE_RANK": str(node),
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


_LAUNCHER_VARS = (
    "RANK",
    "LOCAL_RANK",
    "GROUP_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "TORCHELASTIC_RUN_ID",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_JOB_NAME",
    "LSB_JOBID",
    "JSM_NAMESPACE_RANK",
)


@pytest.mark.parametrize("launcher", ["torchrun", "slurm", "lightning"])
def test_multinode_only_global_rank_zero_is_the_main_process(monkeypatch, launcher):
    """The process of node 1 must not clean out_dir or log run info: under torchrun its
    LOCAL_RANK is 0 and NODE_RANK unset, under srun neither is set."""
    from fashionfail.models.train import _is_main_process

    for node, main in ((0, True), (1, False)):
        for var in _LAUNCHER_VARS:
            monkeypatch.delenv(var, raising=False)
        for var, value in _launcher_env(launcher, node, 29500).items():
            monkeypatch.setenv(var, value)
        assert _is_main_process() is main, (launcher, node)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_multinode_two_nodes_train_one_model(data, tmp_path, launcher):
    """2 nodes x 1 process on localhost (gloo), started as torchrun or srun starts them: one
    checkpoint, one Aim run, one dvclive record, and both ranks report the same best model."""
    params = _params_file(
        tmp_path,
        "train_facere",
        strategy="ddp",
        accelerator="cpu",
        devices=1,
        num_nodes=2,
        max_epochs=1,
    )
    cmd = _stage_cmd(data, tmp_path, params)
    port = _free_port()
    procs, logs = [], []
    for node in (0, 1):
        env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
        if launcher == "torchrun":  # the real launcher, once per node (static rendezvous)
            node_cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={node}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                *cmd[1:],
            ]
        else:
            node_cmd = cmd
            env.update(_launcher_env(launcher, node, port))
        logs.append(tmp_path / f"node{node}.log")
        with logs[-1].open("w") as log:
            procs.append(
                subprocess.Popen(
                    node_cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
    for proc in procs:
        proc.wait(timeout=300)
    outs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    for node, out in enumerate(outs):
        assert f"GLOBAL_RANK: {node}, MEMBER: {node + 1}/2" in out
    assert "distributed_backend=gloo" in outs[0]
    best = [
        [line for line in out.splitlines() if line.startswith("best checkpoint:")] for out in outs
    ]
    assert len(best[0]) == 1 and best[0] == best[1]  # the ranks agree on the best model
    out = fp_paths(data, tmp_path).out_dir
    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "last.ckpt", "run.json"]
    run_info = orjson.loads((out / "run.json").read_bytes())
    assert run_info["status"] == "complete" and run_info["epochs"] == 1
    runs = _aim_metrics(tmp_path)
    assert len(runs) == 1
    assert _aim_fingerprint(tmp_path, runs["train-facere"][0]) == run_info["fingerprint"]
    assert runs["train-facere"][2]["train"]["num_nodes"] == 2
    live = fp_paths(data, tmp_path).live_dir
    assert len((live / "plots/metrics/val/loss.tsv").read_text().splitlines()) == 2  # header + 1


@pytest.mark.slow
def test_seed_training_commands(data, tmp_path):
    params = _params_file(tmp_path, "train_facere")
    params_dict = yaml.safe_load(params.read_text())
    params_dict["finetune_facere_plus"] = tiny_cfg("finetune_facere_plus").model_dump(mode="json")
    params.write_text(yaml.safe_dump(params_dict))
    fp, ff = data / "fashionpedia", data / "fashionfail"
    base = subprocess.run(
        [
            sys.executable,
            str(REPO / "fashionfail/models/train_facere_base.py"),
            "--train_img_dir",
            str(fp / "images/train"),
            "--val_img_dir",
            str(fp / "images/test"),
            "--train_ann",
            str(fp / "instances_attributes_train2020.json"),
            "--val_ann",
            str(fp / "instances_attributes_val2020.json"),
            "--batch_size",
            "2",
            "--shuffle",
            "False",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
            "--precision",
            "16",
            "--max_epochs",
            "1",
            "--strategy",
            "auto",
            "--optimizer",
            "adam",
            "--experiment-name",
            "facere_base",
            "--params",
            str(params),
            "--gradient_clip_val",
            "0.5",
            "--log_every_n_steps=2",
        ],  # any pl.Trainer argument
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert base.returncode == 0, base.stderr[-3000:]
    assert "training in 32-true on CPU" in base.stderr
    ckpt = tmp_path / "saved_models/facere_base.ckpt"
    hp = torch.load(ckpt, weights_only=False)["hyper_parameters"]["train"]
    assert hp["shuffle"] is False and hp["batch_size"] == 2  # --shuffle False means False
    assert hp["trainer"]["gradient_clip_val"] == 0.5 and hp["log_every_n_steps"] == 2
    plus = subprocess.run(
        [
            sys.executable,
            str(REPO / "fashionfail/models/train_facere_plus.py"),
            "--train_img_dir",
            str(ff / "images/train"),
            "--val_img_dir",
            str(ff / "images/val"),
            "--train_ann",
            str(ff / "ff_train.json"),
            "--val_ann",
            str(ff / "ff_val.json"),
            "--batch_size",
            "2",
            "--shuffle",
            "True",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
            "--max_epochs",
            "1",
            "--optimizer",
            "adam",
            "--experiment-name",
            "facere_plus",
            "--pretrained_model_path",
            "./saved_models/facere_base.ckpt",
            "--params",
            str(params),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plus.returncode == 0, plus.stderr[-3000:]
    assert "initial weights from saved_models/facere_base.ckpt" in plus.stdout
    hp = torch.load(tmp_path / "saved_models/facere_plus.ckpt", weights_only=False)
    assert hp["hyper_parameters"]["train"]["weights"] == "saved_models/facere_base.ckpt"
    # The flag is honoured: a missing file fails instead of silently using another path.
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "fashionfail/models/train_facere_plus.py"),
            "--train_img_dir",
            "x",
            "--val_img_dir",
            "x",
            "--train_ann",
            "x",
            "--val_ann",
            "x",
            "--pretrained_model_path",
            "nowhere.ckpt",
            "--params",
            str(params),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "nowhere.ckpt: file not found" in bad.stderr
