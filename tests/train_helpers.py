"""Shared helpers for the training tests: tiny synthetic data and a tiny training config."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from fashionfail.core.config import SyntheticSource, TrainConfig, load_section, parse_section
from fashionfail.data.synthetic import generate
from fashionfail.models.train import TrainPaths

REPO = Path(__file__).resolve().parents[1]

# The training values every tiny test run uses: 64 px, 1 epoch, batch 2, no workers, CPU.
TINY_TRAIN = dict(
    min_size=64,
    max_size=64,
    max_epochs=1,
    batch_size=2,
    num_workers=0,
    accelerator="cpu",
    devices=1,
    log_every_n_steps=1,
)
TINY_DATA = SyntheticSource(
    seed=0,
    image_size=64,
    fp_train_images=6,
    fp_val_images=4,
    ff_train_images=6,
    ff_val_images=4,
    ff_test_images=4,
    max_objects=3,
)


def build_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, made by build(folder) once per test run: under pytest-xdist the workers
    share it (a file lock: the first one builds, the others wait for it). Read only: a test that
    changes it works on a copy (shutil.copytree)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, above the workers' own
    folder, done = base / name, base / f"{name}.done"
    with FileLock(f"{folder}.lock"):
        if not done.exists():
            if folder.exists():  # a build that failed
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def make_data(root: Path) -> Path:
    """Synthetic Fashionpedia + FashionFail files under root (the download stage's layout)."""
    generate(TINY_DATA, root)
    return root


def tiny_cfg(section: str = "train_facere", **overrides) -> TrainConfig:
    """The params.yaml section shrunk to seconds: 64 px, 1 epoch, batch 2, no workers, CPU."""
    values = load_section(section, REPO / "params.yaml", TrainConfig).model_dump()
    values.update(TINY_TRAIN)
    values.update(overrides)
    return parse_section(TrainConfig, values, "test")


def fp_paths(data: Path, out: Path, name: str = "train-facere") -> TrainPaths:
    """Facere-style paths: Fashionpedia train2020 for training, val2020 for validation."""
    fp = data / "fashionpedia"
    return TrainPaths(
        train_ann=fp / "instances_attributes_train2020.json",
        train_img_dir=fp / "images/train",
        val_ann=fp / "instances_attributes_val2020.json",
        val_img_dir=fp / "images/test",
        out_dir=out / "models",
        live_dir=out / "dvclive",
        aim_repo=out,
        name=name,
    )


def ff_paths(data: Path, out: Path, name: str = "finetune-facere-plus") -> TrainPaths:
    ff = data / "fashionfail"
    return TrainPaths(
        train_ann=ff / "ff_train.json",
        train_img_dir=ff / "images/train",
        val_ann=ff / "ff_val.json",
        val_img_dir=ff / "images/val",
        out_dir=out / "models_plus",
        live_dir=out / "dvclive_plus",
        aim_repo=out,
        name=name,
    )


def aim_runs(repo_dir: Path) -> dict:
    """{run name: (hash, {(metric, subset): [values]}, hparams)} read back from an Aim repo."""
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    # Aim writes each run to its own chunk; `aim up` indexes chunks before showing them.
    repo = Repo.from_path(str(repo_dir))
    indexer = RepoIndexManager.get_index_manager(repo)
    for run_hash in repo.list_all_runs():
        indexer.index(run_hash)
    out = {}
    for run in Repo.from_path(str(repo_dir)).iter_runs():
        series = {}
        for m in run.metrics():
            steps, (values,) = m.data.view("val").items_list()
            series[(m.name, m.context.to_dict().get("subset"))] = [
                v for _, v in sorted(zip(steps, values, strict=True))
            ]
        out[run.name] = (run.hash, series, run["hparams"])
    return out
