"""`train(cfg, paths)`: the one training entry point behind both DVC training stages and the
original project's two training scripts.

Where a run writes (see docs/pipeline.md, "What reruns what"):
- while it trains, everything goes to its resume folder `<out_dir parent>/.<out_dir name>.resume/
  <fingerprint>/` (best.ckpt, last.ckpt, run.json, dvclive/): outside the stage's DVC outputs,
  which DVC deletes before it runs a stage, so a killed run resumes from its last epoch;
- at the end, the finished files are published into `out_dir` (best.ckpt, last.ckpt, run.json)
  and `live_dir` (dvclive's metrics.json, best.json, plots/), and the resume folder is deleted.
  Nothing in them depends on the process, the time or the host: two runs of the same inputs on
  one machine give the same bytes, which is what DVC's run-cache and `dvc.lock` see.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException

from fashionfail.core.categories import LabelSpace
from fashionfail.core.code_closure import module_code_digest
from fashionfail.core.config import ConfigError, TrainConfig
from fashionfail.core.guard import remove_stale_temp_files, training_lock, watch_parent
from fashionfail.core.jsonio import DataError, dump_json, load_json
from fashionfail.core.tracking import ensure_aim_repo, mark_interrupted, run_name
from fashionfail.data.detection import DetectionDataset, EpochSampler, make_loader
from fashionfail.data.presets import train_transforms, val_transforms
from fashionfail.models.factory import (
    check_head_init,
    load_initial_weights,
    load_whole_model,
    read_weights_file,
    weights_layout,
)
from fashionfail.models.module import MaskRCNNModule
from fashionfail.models.progress import progress_settings, quiet_known_noise
from fashionfail.models.reporting import AimTags, BestScore
from fashionfail.models.safety import AtomicModelCheckpoint

# Failures of a training run that are the user's to fix (reported in one line, no traceback):
# a bad weights file, a missing path, an accelerator or strategy Lightning cannot provide.
TRAIN_ERRORS = (ValueError, FileNotFoundError, MisconfigurationException)
RUN_FILE = "run.json"  # bookkeeping beside the checkpoints: fingerprint, status, Aim run hash
CHECKPOINTS = ("best.ckpt", "last.ckpt")
LIVE_FILES = ("metrics.json", "best.json", "plots")  # what dvc.yaml declares of a live folder


@dataclass(frozen=True)
class TrainPaths:
    """Where a training run reads and writes; dvc.yaml passes these on the command line."""

    train_ann: Path
    train_img_dir: Path
    val_ann: Path
    val_img_dir: Path
    out_dir: Path  # best.ckpt, last.ckpt, run.json (published when the run completes)
    live_dir: Path  # dvclive folder (metrics.json, plots/)
    aim_repo: Path  # folder holding the .aim repository
    name: str  # run name in Aim and the experiment name, e.g. the DVC stage name
    summary_key: str = ""  # e.g. "best_loss": live_dir/best.json gets {"best_loss": best score}

    @property
    def resume_root(self) -> Path:
        """Resume folders of this output folder's runs, one per fingerprint (beside out_dir)."""
        return self.out_dir.parent / f".{self.out_dir.name}.resume"

    def resume_dir(self, fp: str) -> Path:
        return self.resume_root / fp[:16]


def resolve_precision(precision: str, accelerator: str) -> str:
    """Normalise `precision`; fall back to 32-true where 16-bit needs a GPU we do not have.

    Lightning accepts "16" as "16-mixed" (the original scripts pass `--precision 16`), but 16-bit
    float mixed precision needs CUDA: on a CPU the run goes on in full precision, with a warning.
    """
    precision = {"16": "16-mixed", "32": "32-true", "bf16": "bf16-mixed", "64": "64-true"}.get(
        str(precision), str(precision)
    )
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and precision.startswith("16"):
        warnings.warn(
            f"precision {precision} needs a CUDA GPU; training in 32-true on CPU instead",
            stacklevel=2,
        )
        return "32-true"
    return precision


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(cfg: TrainConfig, paths: TrainPaths) -> str:
    """Identity of a run: config, input files and the training code (this module's import
    closure). A run may only be resumed by its own kind."""
    h = hashlib.sha256(orjson.dumps(cfg.model_dump(), option=orjson.OPT_SORT_KEYS))
    h.update(module_code_digest(Path(__file__)).encode())
    inputs = [paths.train_ann, paths.val_ann]
    if cfg.weights_file is not None:
        inputs.append(cfg.weights_file)
    for p in inputs:
        h.update(_file_digest(p).encode())
    return h.hexdigest()


def _is_main_process() -> bool:
    """Global rank 0, known before torch.distributed starts: the only process that cleans out_dir.

    Asks the cluster environment Lightning itself picks (same order): torchrun / torchelastic set
    RANK (and GROUP_RANK, not NODE_RANK, for the node), `srun` sets SLURM_PROCID, LSF and MPI their
    own. Otherwise Lightning's own DDP launcher re-runs this script for the other ranks with
    LOCAL_RANK and NODE_RANK set.
    """
    from lightning_fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        if env.detect():
            return env().global_rank() == 0
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0))
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(node) == 0


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _prepare_run(
    cfg: TrainConfig, paths: TrainPaths, data_checks: dict | None = None
) -> tuple[Path, Path | None, dict[str, Any]]:
    """Decide between resuming an interrupted run and starting afresh.

    Returns (resume folder, checkpoint to resume from or None, run info). A run is resumed only
    from its own resume folder (same fingerprint) while its run.json says it did not finish;
    otherwise that folder is emptied and the run starts over. Old outputs in out_dir / live_dir
    (a hand-started run; DVC deletes them itself) are removed either way.
    """
    fp = fingerprint(cfg, paths)
    work = paths.resume_dir(fp)
    run_file, last = work / RUN_FILE, work / "last.ckpt"
    if _is_main_process() and work.is_dir():
        remove_stale_temp_files(work)
    info = load_json(run_file) if run_file.is_file() else {}
    resume = info.get("fingerprint") == fp and info.get("status") != "complete" and last.is_file()
    if _is_main_process():
        _tag_abandoned_runs(paths, keep=work)
        for stale in (*CHECKPOINTS, RUN_FILE):
            (paths.out_dir / stale).unlink(missing_ok=True)
        if paths.live_dir.exists():
            shutil.rmtree(paths.live_dir)
    if resume:
        return work, last, info
    info = {"fingerprint": fp, "status": "running", "name": paths.name, "pid": os.getpid()}
    if data_checks:
        info["data_checks"] = data_checks
    if _is_main_process():
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        dump_json(info, run_file, indent=True)
    return work, None, info


def _tag_abandoned_runs(paths: TrainPaths, keep: Path) -> None:
    """Runs of this output folder killed with other params, data or code: their Aim runs are
    tagged interrupted (once). Their resume folders stay, so going back to those inputs resumes
    them; deleting `.<out_dir>.resume/` only costs that."""
    if not paths.resume_root.is_dir():
        return
    for run_file in sorted(paths.resume_root.glob(f"*/{RUN_FILE}")):
        if run_file.parent == keep:
            continue
        try:
            info = load_json(run_file)
        except DataError:
            continue
        if info.get("status") == "running":
            if info.get("aim_run_hash"):
                mark_interrupted(paths.aim_repo, info["aim_run_hash"])
            dump_json({**info, "status": "interrupted"}, run_file, indent=True)


def _interned(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _interned(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interned(v) for v in obj]
    return obj


def _relative_to(obj: Any, root: str) -> Any:
    """`obj` with every string that is a path under `root` (keys too) made relative to it."""
    if isinstance(obj, str) and (obj == root or obj.startswith(root + os.sep)):
        return os.path.relpath(obj, root)
    if isinstance(obj, dict):
        return {_relative_to(k, root): _relative_to(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_to(v, root) for v in obj]
    return obj


def canonical_checkpoint(path: Path, folder: Path | None = None) -> None:
    """Rewrite a checkpoint so that equal contents give equal bytes.

    pickle shares a string it has seen by identity, not by value: the optimizer state of a run
    resumed from a checkpoint holds other string objects than an uninterrupted run's, so the same
    state would be written differently. Interning every dict key makes the bytes a function of
    the contents alone (so a resumed run's outputs, and its dvc.lock entry, equal an
    uninterrupted run's). The checkpoint callback's state names files by absolute path
    (`best_model_path`, `best_k_models`, `dirpath`...): those under `folder` (the run's folder)
    become relative to it, so a clone in another folder writes the same bytes too."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if folder is not None and "callbacks" in state:
        for root in {str(folder), str(Path(folder).resolve())}:
            state["callbacks"] = _relative_to(state["callbacks"], root)
    state = _interned(state)
    tmp = path.with_name(f".{path.name}.canonical.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _publish(work: Path, paths: TrainPaths, info: dict[str, Any]) -> None:
    """Move a finished run's files from its resume folder into out_dir and live_dir, then delete
    the resume folder. out_dir/run.json keeps only what the inputs determine (no pid, no Aim run
    hash: the fingerprint finds the Aim run, whose params hold it)."""
    paths.out_dir.mkdir(parents=True, exist_ok=True)
    for name in CHECKPOINTS:
        canonical_checkpoint(work / name, work)
        os.replace(work / name, paths.out_dir / name)
    stable = {k: v for k, v in info.items() if k not in ("pid", "aim_run_hash")}
    dump_json(stable, paths.out_dir / RUN_FILE, indent=True)
    live = work / "dvclive"
    tmp = paths.live_dir.with_name(f".{paths.live_dir.name}.publish.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name in LIVE_FILES:  # not dvclive's params.yaml: params.yaml and dvc.lock hold them
        if (live / name).is_dir():
            shutil.copytree(live / name, tmp / name)
        elif (live / name).is_file():
            shutil.copy2(live / name, tmp / name)
    if paths.live_dir.exists():
        shutil.rmtree(paths.live_dir)
    tmp.rename(paths.live_dir)
    shutil.rmtree(work)
    with contextlib.suppress(OSError):
        paths.resume_root.rmdir()  # only when no other run's folder is left


class _RunFile(pl.Callback):
    """Records the Aim run hash in run.json once training starts, so a resume continues it."""

    def __init__(self, run_file: Path, info: dict[str, Any], aim_logger: Any):
        self.run_file, self.info, self.aim_logger = run_file, info, aim_logger

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.aim_logger is not None:
            self.info["aim_run_hash"] = self.aim_logger.experiment.hash
            self.aim_logger.experiment["fingerprint"] = self.info["fingerprint"]
            dump_json(self.info, self.run_file, indent=True)


class EpochSeed(pl.Callback):
    """Every training epoch starts from random states that depend only on (seed, epoch): the
    model's own sampling (RPN / RoI samplers) through the global generators, the order and the
    augmentations through the EpochSampler. A run resumed from last.ckpt thus trains its
    remaining epochs exactly as an uninterrupted run does (Lightning's checkpoints hold no
    random state)."""

    def __init__(self, seed: int, sampler: EpochSampler):
        self.seed, self.sampler = seed, sampler

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning_fabric.utilities.seed import seed_everything

        epoch = trainer.current_epoch
        seed_everything(self.seed + 1000 * epoch, workers=True, verbose=False)
        self.sampler.set_epoch(epoch)

    # Also before the first epoch of a run: Lightning skips the epoch-start hooks when it
    # resumes from a checkpoint written in the middle of an epoch.
    on_train_start = on_train_epoch_start


LIVE_SUMMARY_KEY = "fashionfail_dvclive_metrics_json"  # in a checkpoint: see LiveSummary


class LiveSummary(pl.Callback):
    """Keeps dvclive's metrics.json, as it is when a checkpoint is written, in the checkpoint.

    dvclive rewrites metrics.json in place at every logging step; a run killed during that write
    leaves it empty or cut, and dvclive cannot resume from it (a JSON error). A resume writes the
    checkpoint's copy back (trim_live_dir): the live folder is then the checkpoint's state."""

    def __init__(self, live_dir: Path):
        self.path = Path(live_dir) / "metrics.json"

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.is_global_zero and self.path.is_file():
            checkpoint[LIVE_SUMMARY_KEY] = self.path.read_text(encoding="utf-8")


def trim_live_dir(live_dir: Path, ckpt: Path) -> int:
    """Before a resume from `ckpt`: drop dvclive's rows logged after that checkpoint (a run killed
    between dvclive's epoch-end write and the checkpoint's, or a live folder restored from
    another run), so the resumed run appends no duplicate or foreign steps, and put back the
    metrics.json the checkpoint holds (LiveSummary; the file may have been cut by the kill).
    Returns the rows dropped."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    summary = state.get(LIVE_SUMMARY_KEY)
    if summary is not None:
        tmp = live_dir / ".metrics.json.tmp"
        tmp.write_text(summary, encoding="utf-8")
        tmp.replace(live_dir / "metrics.json")
    step = int(state.get("global_step", 0))
    dropped = 0
    for tsv in sorted((live_dir / "plots" / "metrics").rglob("*.tsv")):
        lines = tsv.read_text().splitlines(keepends=True)
        if not lines:
            continue
        col = lines[0].rstrip("\n").split("\t").index("step")
        # A row without its newline was being written when the run was killed: not logged.
        keep = [lines[0]] + [
            r for r in lines[1:] if r.endswith("\n") and int(r.split("\t")[col]) < step
        ]
        if len(keep) < len(lines):
            dropped += len(lines) - len(keep)
            tmp = tsv.with_name(tsv.name + ".tmp")
            tmp.write_text("".join(keep))
            tmp.replace(tsv)
    return dropped


def _loggers(paths: TrainPaths, live_dir: Path, info: dict, resume: bool) -> list:
    from aim.pytorch_lightning import AimLogger
    from dvclive.lightning import DVCLiveLogger

    if _is_main_process():  # the only rank that writes to Aim
        ensure_aim_repo(paths.aim_repo)  # parallel experiments may start together
    aim = AimLogger(
        repo=str(paths.aim_repo),
        experiment=paths.name,
        run_name=run_name(paths.name),
        run_hash=info.get("aim_run_hash") if resume else None,
        train_metric_prefix="train/",
        val_metric_prefix="val/",
        capture_terminal_logs=False,
    )
    # dvcyaml=False: dvclive would otherwise rewrite the root dvc.yaml during `dvc repro`;
    # its folder is declared by hand in dvc.yaml's top-level metrics/plots.
    live = DVCLiveLogger(
        dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=resume, report=None
    )
    return [aim, live]


def check_config(cfg: TrainConfig) -> None:
    """Reject combinations that would only fail later (after data loading or an epoch)."""
    train_transforms(cfg.augment, cfg.augment_impl)  # unknown preset -> ValueError now
    if cfg.monitor.startswith(("val/bbox_", "val/segm_")) and cfg.eval_map_every_n_epochs != 1:
        raise ConfigError(
            f"monitor {cfg.monitor!r} is computed only when eval_map_every_n_epochs is 1 "
            f"(it is {cfg.eval_map_every_n_epochs}); monitor val/loss or evaluate every epoch"
        )
    if cfg.weights_file is not None:
        if not cfg.weights_file.is_file():
            raise ConfigError(f"weights: {cfg.weights}: file not found (use none, coco or a path)")
        _, classes = read_weights_file(cfg.weights_file)
        try:
            check_head_init(classes, LabelSpace(cfg.classes), cfg.head_init, cfg.weights)
        except ValueError as e:
            raise ConfigError(f"weights: {e}") from None
    if cfg.finetune_init == "original" and cfg.head_init == "remap":
        raise ConfigError(
            "finetune_init: original re-initialises both predictors, so head_init must be random"
        )


def _holder(paths: TrainPaths) -> str:
    """' (pid N)' from the run.json of the run holding `out_dir`, for the lock message."""
    pids = []
    for run_file in sorted(paths.resume_root.glob(f"*/{RUN_FILE}")):
        try:
            info = load_json(run_file)
        except DataError:
            continue
        if isinstance(info, dict) and info.get("status") == "running" and info.get("pid"):
            pids.append(str(info["pid"]))
    return f" (pid {', '.join(pids)})" if pids else ""


def _all_batches(limit: float | int) -> bool:
    return isinstance(limit, float) and limit == 1.0


def train(cfg: TrainConfig, paths: TrainPaths) -> dict[str, Any]:
    """Train (or resume) one model; returns a summary with the best checkpoint and score.

    Everything is validated first (params, weights file, annotation files, image files, the
    initial weights against the architecture); only then is the output folder locked and written.
    """
    check_config(cfg)
    quiet_known_noise()
    pl.seed_everything(cfg.seed, workers=True)
    space = LabelSpace(cfg.classes)
    train_ds = DetectionDataset(
        paths.train_img_dir,
        paths.train_ann,
        space,
        train_transforms(cfg.augment, cfg.augment_impl, cfg.min_size, cfg.max_size),
    )
    val_ds = DetectionDataset(paths.val_img_dir, paths.val_ann, space, val_transforms(cfg.augment))
    data_checks = {}
    for part, ds in (("train", train_ds), ("val", val_ds)):
        data_checks[part] = ds.report.as_dict()
        if ds.report.summary():
            print(
                f"{ds.ann_file}: {ds.report.summary()} (see {paths.out_dir / RUN_FILE})",
                file=sys.stderr,
            )
    # finetune_init original: the weights file's own structure (see build_model's layouts).
    original = cfg.weights_file is not None and cfg.finetune_init == "original"
    layout = weights_layout(cfg.weights) if original else "scratch"
    module = MaskRCNNModule(cfg.model_dump(), layout=layout)
    init_counts = None
    if cfg.weights_file is not None:
        # Before anything is written: a file of another architecture fails here.
        if original:
            init_counts = load_whole_model(module.model, cfg.weights)
        else:
            init_counts = load_initial_weights(module.model, cfg.weights, space, cfg.head_init)
        init_counts = {"finetune_init": cfg.finetune_init, "layout": layout, **init_counts}

    if not _is_main_process():  # DDP ranks > 0: rank 0 holds the lock and watches the parent
        return _fit(cfg, paths, module, train_ds, val_ds, data_checks, init_counts)
    watch_parent()
    with training_lock(paths.out_dir, _holder(paths)):
        return _fit(cfg, paths, module, train_ds, val_ds, data_checks, init_counts)


def _fit(
    cfg: TrainConfig,
    paths: TrainPaths,
    module: MaskRCNNModule,
    train_ds: DetectionDataset,
    val_ds: DetectionDataset,
    data_checks: dict,
    init_counts: dict | None,
) -> dict[str, Any]:
    train_loader = make_loader(
        train_ds, cfg.batch_size, shuffle=cfg.shuffle, num_workers=cfg.num_workers, seed=cfg.seed
    )
    val_loader = make_loader(val_ds, cfg.val_batch_size, shuffle=False, num_workers=cfg.num_workers)

    work, resume_from, info = _prepare_run(cfg, paths, data_checks)
    live_dir = work / "dvclive"
    if resume_from is not None and _is_main_process() and live_dir.is_dir():
        dropped = trim_live_dir(live_dir, resume_from)
        if dropped:
            print(
                f"resume: dropped {dropped} dvclive rows logged after {resume_from}",
                file=sys.stderr,
            )
    if resume_from is not None:
        print(f"resuming from {resume_from} (delete {paths.resume_root} to start afresh)")
        # Lightning makes the first epoch's data iterator (and its workers start loading)
        # before any epoch hook: the sampler must know that epoch already.
        done = torch.load(resume_from, map_location="cpu", weights_only=False, mmap=True)
        train_loader.sampler.set_epoch(int(done["epoch"]) + 1)
    elif init_counts is not None:
        print(f"initial weights from {cfg.weights}: {init_counts}")

    loggers = _loggers(paths, live_dir, info, resume=resume_from is not None)
    checkpoint = AtomicModelCheckpoint(
        dirpath=work,
        filename="best",
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    # last.ckpt after every epoch, for resuming. Not `save_last=True` above: Lightning (2.6)
    # writes that one only when the best checkpoint is written too, so after an epoch that did
    # not improve, last.ckpt would still be the best epoch's and a resume would repeat epochs.
    last = AtomicModelCheckpoint(
        dirpath=work,
        filename="last",
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    progress_bar, progress = progress_settings(cfg.log_every_n_steps)
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        max_epochs=cfg.max_epochs,
        deterministic=cfg.deterministic,
        # None is Lightning's "all batches" without its note that 1.0 means 100 %.
        limit_train_batches=(
            None if _all_batches(cfg.limit_train_batches) else cfg.limit_train_batches
        ),
        log_every_n_steps=cfg.log_every_n_steps,
        logger=loggers,
        callbacks=[
            checkpoint,
            last,
            _RunFile(work / RUN_FILE, info, loggers[0]),
            LiveSummary(live_dir),
            EpochSeed(cfg.seed, train_loader.sampler),
            AimTags(paths.name, resumed=resume_from is not None),
            *([BestScore(live_dir / "best.json", paths.summary_key)] if paths.summary_key else []),
            *progress,
        ],
        default_root_dir=str(work),
        enable_model_summary=False,
        **{"enable_progress_bar": progress_bar, **cfg.trainer},
    )
    # Lightning logs the module's hyper-parameters (the whole TrainConfig) to both loggers.
    run_info = {
        "git_revision": _git_revision(),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", ""),
    }
    # Aim only: dvclive's params.yaml is git-tracked, and a revision there changes on every commit
    # (DVC knows the revision and experiment of its files anyway).
    if _is_main_process():  # before fit, Lightning's rank-zero guard may not know the node yet
        loggers[0].log_hyperparams(run_info)
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from)

    if trainer.interrupted:
        raise DataError(f"{paths.name}: training interrupted; the next run resumes from {work}")
    summary = {
        "best": str(paths.out_dir / "best.ckpt"),
        "best_score": (
            float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
        ),
        "monitor": cfg.monitor,
        "epochs": trainer.current_epoch,
    }
    if trainer.is_global_zero:
        _publish(work, paths, {**load_json(work / RUN_FILE), **summary, "status": "complete"})
    return summary
