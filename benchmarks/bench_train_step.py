"""Seconds per training step: our LightningModule (via pl.Trainer) vs a plain torchvision loop.

Same model (same init), same pre-collated batches, same optimizer; the first steps of each run are
warm-up and not timed. Prints a table and the ratio Lightning / plain (target <= 1.05).

    python benchmarks/bench_train_step.py [--steps 30] [--warmup 5] [--repeats 2] [--arch tiny]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fashionfail.core.categories import LabelSpace
from fashionfail.core.config import SyntheticSource, TrainConfig, load_section, parse_section
from fashionfail.data.detection import DetectionDataset, collate
from fashionfail.data.presets import train_transforms
from fashionfail.data.synthetic import generate
from fashionfail.models.module import MaskRCNNModule

REPO = Path(__file__).resolve().parents[1]


def _batches(root: Path, n: int, batch_size: int, size: int) -> list:
    cfg = SyntheticSource(
        seed=0,
        image_size=size,
        fp_train_images=n * batch_size,
        fp_val_images=1,
        ff_train_images=1,
        ff_val_images=1,
        ff_test_images=1,
        max_objects=4,
    )
    generate(cfg, root)
    fp = root / "fashionpedia"
    ds = DetectionDataset(
        fp / "images/train",
        fp / "instances_attributes_train2020.json",
        LabelSpace("fashionpedia"),
        train_transforms("cpu"),
    )
    torch.manual_seed(0)
    return [collate([ds[i] for i in range(k * batch_size, (k + 1) * batch_size)]) for k in range(n)]


def _identity(batch):
    return batch


def _loader(batches: list) -> DataLoader:
    """Ready-made batches, served alike to both loops: no decoding or augmenting while timed."""
    return DataLoader(batches, batch_size=None, collate_fn=_identity)


def _plain(cfg: TrainConfig, batches: list, warmup: int) -> float:
    torch.manual_seed(cfg.seed)
    model = MaskRCNNModule(cfg.model_dump()).model  # the same network the LightningModule wraps
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    model.train()
    for i, (images, targets) in enumerate(_loader(batches)):
        if i == warmup:
            start = time.perf_counter()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / (len(batches) - warmup)


class _StepTimer(pl.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


def _lightning(cfg: TrainConfig, batches: list, warmup: int, loggers: list | bool) -> float:
    torch.manual_seed(cfg.seed)
    module = MaskRCNNModule(cfg.model_dump())
    timer = _StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=loggers,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every_n_steps,
    )
    trainer.fit(module, train_dataloaders=_loader(batches))
    return (timer.end - timer.start) / (len(batches) - warmup)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--arch", default="tiny")
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    values = load_section("train_facere", REPO / "params.yaml", TrainConfig).model_dump()
    values.update(arch=args.arch, min_size=args.size, max_size=args.size)
    cfg = parse_section(TrainConfig, values, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        batches = _batches(Path(tmp), args.steps + args.warmup, cfg.batch_size, args.size)
        from dvclive.lightning import DVCLiveLogger

        times: dict[str, list[float]] = {
            "plain loop": [],
            "Lightning": [],
            "Lightning + dvclive": [],
        }
        for r in range(args.repeats):  # interleaved, so drifting machine load hits all alike
            times["plain loop"].append(_plain(cfg, batches, args.warmup))
            times["Lightning"].append(_lightning(cfg, batches, args.warmup, False))
            live = DVCLiveLogger(dir=f"{tmp}/live{r}", dvcyaml=False, save_dvc_exp=False)
            times["Lightning + dvclive"].append(_lightning(cfg, batches, args.warmup, [live]))
    plain = statistics.median(times["plain loop"])
    print(
        f"\n{args.arch} at {args.size}px, batch {cfg.batch_size}, {args.steps} timed steps, "
        f"median of {args.repeats}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'loop':<22}{'s/step':>10}{'ratio':>8}   runs")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<22}{med:>10.3f}{med / plain:>8.3f}   {', '.join(f'{t:.3f}' for t in ts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
