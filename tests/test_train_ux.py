"""What a user of the training stage sees: pl.Trainer arguments from params, progress lines in a
log (stdout not a terminal), no noise, and a forced rerun that gives identical files."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from train_helpers import REPO, fp_paths, make_data, tiny_cfg

from fashionfail.core.config import ConfigError, TrainConfig, parse_section
from fashionfail.models.progress import LogProgress, progress_settings


def _section(**trainer) -> dict:
    values = tiny_cfg().model_dump()
    values["trainer"] = trainer
    return values


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        (
            {"gradient_clip": 1.0},
            "gradient_clip: not a pl.Trainer argument (did you mean gradient_clip_val?)",
        ),
        ({"max_epochs": 3}, "max_epochs: set it as the section's own `max_epochs`"),
        ({"logger": False}, "logger: set by the training stage itself"),
    ],
)
def test_trainer_mapping_rejects_what_pl_trainer_does_not_take(trainer, message):
    with pytest.raises(ConfigError, match="params.yaml:train_facere.trainer") as e:
        parse_section(TrainConfig, _section(**trainer), "params.yaml:train_facere")
    assert message in str(e.value)


def test_trainer_mapping_takes_any_pl_trainer_argument():
    cfg = parse_section(TrainConfig, _section(detect_anomaly=True, gradient_clip_val=0.5), "t")
    assert cfg.trainer == {"detect_anomaly": True, "gradient_clip_val": 0.5}
    # Older checkpoints have no `trainer` key: still valid.
    values = tiny_cfg().model_dump()
    del values["trainer"]
    assert parse_section(TrainConfig, values, "ckpt").trainer == {}
    # Both sections of params.yaml carry the mapping (so `-S section.trainer.x=...` works).
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section in ("train_facere", "finetune_facere_plus"):
        assert "gradient_clip_val" in params[section]["trainer"]


class _Linear(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_log_progress_prints_epoch_step_loss_rate_and_eta(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(12, 2), torch.randn(12, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=3)  # 4 steps per epoch
    out = io.StringIO()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[LogProgress(every_n_steps=2, stream=out)],
    )
    trainer.fit(_Linear(), loader, loader)
    lines = out.getvalue().splitlines()
    steps = [line for line in lines if " step " in line]
    assert [line.split(" loss ")[0] for line in steps] == [
        "epoch 1/2 step 2/4",
        "epoch 1/2 step 4/4",
        "epoch 2/2 step 2/4",
        "epoch 2/2 step 4/4",
    ]
    for line in steps:
        loss, rate = line.split(" loss ")[1].split()[:2]
        assert float(loss) >= 0 and float(rate) > 0
        assert line.split(" img/s ETA ")[1].count(":") == 2  # h:mm:ss
    assert steps[-1].endswith("ETA 0:00:00")
    ends = [line for line in lines if " done in " in line]
    assert len(ends) == 2 and ends[1].startswith("epoch 2/2 done in 0:00:")
    assert "train/loss " in ends[1] and "val/loss " in ends[1]


def test_progress_bar_only_on_a_terminal():
    assert progress_settings(5, interactive=True) == (True, [])
    bar, callbacks = progress_settings(5, interactive=False)
    assert bar is False and isinstance(callbacks[0], LogProgress) and callbacks[0].every == 5


NOISE = (
    "litlogger",
    "exists and is not empty",
    "pkg_resources",
    "limit_train_batches",
    "LeafSpec",
    "v_num",
)


@pytest.mark.slow
def test_stage_in_a_log_twice_prints_progress_without_noise_and_gives_identical_files(tmp_path):
    """dvc repro runs the stage with stdout to a log; a forced rerun (same machine) must give the
    same checkpoints and metrics, byte for byte. The trainer mapping reaches pl.Trainer."""
    data = make_data(tmp_path / "data")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    section = tiny_cfg(max_epochs=2, num_workers=1).model_dump(mode="json")
    section["trainer"] = {"check_val_every_n_epoch": 2, "gradient_clip_val": 1.0}
    params["train_facere"] = section
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    p = fp_paths(data, tmp_path)
    cmd = [
        sys.executable,
        str(REPO / "stages/train.py"),
        "--params",
        "params.yaml",
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
        "--summary-key",
        "best_loss",
    ]

    def run() -> tuple[str, dict[str, bytes]]:
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        files = {
            str(f.relative_to(tmp_path)): f.read_bytes()
            for folder in (p.out_dir, p.live_dir)
            for f in sorted(folder.rglob("*"))
            if f.is_file()
        }
        return done.stdout + done.stderr, files

    log, first = run()
    assert "epoch 1/2 step 3/3 loss " in log and " img/s ETA " in log
    assert "epoch 2/2 done in " in log and "val/loss " in log
    for noise in NOISE:
        assert noise not in log, noise
    # check_val_every_n_epoch=2: one validation in two epochs.
    assert len((p.live_dir / "plots/metrics/val/loss.tsv").read_text().splitlines()) == 2
    # Only the files dvc.yaml declares (dvclive's params.yaml would be stale after a run-cache
    # restore); params.yaml and dvc.lock hold the params.
    assert sorted(f.name for f in p.live_dir.iterdir()) == ["best.json", "metrics.json", "plots"]
    best = yaml.safe_load((p.live_dir / "best.json").read_text())
    run_info = yaml.safe_load((p.out_dir / "run.json").read_text())
    assert best == {"best_loss": pytest.approx(run_info["best_score"])}
    assert list(_tags(tmp_path).values()) == [{"stage:train-facere", "finished"}]

    _, second = run()
    assert first.keys() == second.keys() and "models/best.ckpt" in first
    for name in first:
        assert first[name] == second[name], f"{name} differs between two identical runs"


def _tags(repo_dir) -> dict[str, set[str]]:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    from fashionfail.core.tracking import tag_names

    repo = Repo.from_path(str(repo_dir))
    indexer = RepoIndexManager.get_index_manager(repo)  # what `aim up` does before listing
    for run_hash in repo.list_all_runs():
        indexer.index(run_hash)
    return {run.hash: tag_names(run) for run in Repo.from_path(str(repo_dir)).iter_runs()}


def test_killed_run_found_later_is_tagged_interrupted(tmp_path):
    from aim import Run

    from fashionfail.core.tracking import mark_interrupted, set_status

    run = Run(repo=str(tmp_path), system_tracking_interval=None, log_system_params=False)
    run.add_tag("stage:train-facere")
    set_status(run, "running")
    run_hash = run.hash
    run.close()
    mark_interrupted(tmp_path, run_hash)
    assert _tags(tmp_path)[run_hash] == {"stage:train-facere", "interrupted"}


def test_both_models_are_dvc_artifacts_produced_by_their_stages():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    artifacts = dvc["artifacts"]
    assert {name: a["path"] for name, a in artifacts.items()} == {
        "facere": "models/facere/best.ckpt",
        "facere-plus": "models/facere_plus/best.ckpt",
    }
    for name, a in artifacts.items():
        assert a["type"] == "model" and a["desc"] and a["labels"], name
        stage_outs = [
            next(iter(o)) if isinstance(o, dict) else o
            for s in dvc["stages"].values()
            for o in s.get("outs", [])
        ]
        assert str(Path(a["path"]).parent) in stage_outs, name
