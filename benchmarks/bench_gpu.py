"""Training throughput at the paper's settings on a GPU: our Lightning training vs a plain loop.

For each loader implementation (`--impls`, default fast and literal) it trains Facere's model
(`maskrcnn_resnet50_fpn_v2` at 800/1333, COCO-shaped initial weights so that the same layers are
frozen as with the real COCO weights; random values, nothing downloaded) on real-size synthetic
Fashionpedia-like data with the paper's settings (batch 8, 16-mixed, Adam, 8 DataLoader workers,
the `facere` recipe) through our LightningModule and pl.Trainer, then runs a plain torchvision
training loop (same model, same loader, torch.autocast + GradScaler) for comparison. It prints
images/s after warm-up and the GPU utilisation (nvidia-smi, sampled every 0.5 s) for each.

    python benchmarks/bench_gpu.py [--steps 60] [--warmup 10] [--workers 8] [--batch 8]
                                   [--images 256] [--impls fast literal]

Needs a CUDA GPU (`--device cpu` only smoke-tests the script with tiny settings). Last line:
`gpu: lightning fast <x> img/s (<u> % util), literal <y> img/s, plain loop <z> img/s`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class GpuSampler:
    """Mean GPU utilisation (%) from nvidia-smi while running; None without nvidia-smi."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(
                    [
                        "nvidia-smi",
                        "--query-gpu=utilization.gpu",
                        "--format=csv,noheader,nounits",
                        "-i",
                        os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0],
                    ],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                self.values.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")


def _coco_shaped_weights(torch_home: Path) -> None:
    """torchvision's cached COCO file for maskrcnn_resnet50_fpn_v2: its keys, shapes; random."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.mask_rcnn import MaskRCNN_ResNet50_FPN_V2_Weights

    url = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
        torch.save(model.state_dict(), path)


def _config(args: argparse.Namespace, impl: str):
    from fashionfail.core.config import TrainConfig, load_section, parse_section

    values = load_section("train_facere", REPO / "params.paper.yaml", TrainConfig).model_dump()
    values.update(
        augment_impl=impl,
        batch_size=args.batch,
        num_workers=args.workers,
        min_size=args.min_size,
        max_size=args.max_size,
        strategy="auto",
        devices=1,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        precision="16-mixed" if args.device == "cuda" else "32-true",
    )
    return parse_section(TrainConfig, values, "bench")


def _loader(args: argparse.Namespace, cfg, data: Path):
    from fashionfail.core.categories import LabelSpace
    from fashionfail.data.detection import DetectionDataset, make_loader
    from fashionfail.data.presets import train_transforms

    fp = data / "fashionpedia"
    ds = DetectionDataset(
        fp / "images/train",
        fp / "instances_attributes_train2020.json",
        LabelSpace("fashionpedia"),
        train_transforms("facere", cfg.augment_impl, cfg.min_size, cfg.max_size),
    )
    return make_loader(ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, seed=0)


class _Timer:
    """Images/s over the `steps` steps after step `warmup` (synchronised with the GPU)."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device = warmup, device
        self.start, self.images, self.elapsed = 0.0, 0, 0.0

    def step(self, i: int, n_images: int) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
        if i == self.warmup:
            self.start = time.perf_counter()
        elif i > self.warmup:
            self.images += n_images
            self.elapsed = time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        return self.images / self.elapsed if self.elapsed else float("nan")


def _lightning(args, cfg, loader) -> tuple[float, float]:
    import pytorch_lightning as pl

    from fashionfail.models.module import MaskRCNNModule

    timer = _Timer(args.warmup, args.device)

    class Hook(pl.Callback):
        calls = 0  # batch_idx restarts every epoch; this does not

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            timer.step(Hook.calls, len(batch[0]))
            Hook.calls += 1

    torch.manual_seed(0)
    module = MaskRCNNModule(cfg.model_dump())
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        precision=cfg.precision,
        max_epochs=1000,
        max_steps=args.warmup + args.steps + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Hook()],
    )
    with GpuSampler() as gpu:
        trainer.fit(module, loader)
    return timer.rate, gpu.mean


def _plain(args, cfg, loader) -> tuple[float, float]:
    from fashionfail.models.module import MaskRCNNModule

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = MaskRCNNModule(cfg.model_dump()).model.to(device).train()
    opt = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas
    )
    scaler = torch.amp.GradScaler(enabled=args.device == "cuda")
    timer, i = _Timer(args.warmup, args.device), 0
    with GpuSampler() as gpu:
        while i <= args.warmup + args.steps:
            for images, targets in loader:
                images = [im.to(device, non_blocking=True) for im in images]
                targets = [
                    {k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()}
                    for t in targets
                ]
                cuda = args.device == "cuda"
                with torch.autocast(args.device, dtype=torch.float16, enabled=cuda):
                    loss = sum(model(images, targets).values())
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                timer.step(i, len(images))
                i += 1
                if i > args.warmup + args.steps:
                    break
    return timer.rate, gpu.mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--images", type=int, default=256, help="synthetic training images")
    ap.add_argument("--impls", nargs="+", default=["fast", "literal"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--min-size", type=int, default=800)
    ap.add_argument("--max-size", type=int, default=1333)
    ap.add_argument("--data", default="/tmp/fashionfail-bench-gpu-data")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA GPU here (use --device cpu for a smoke test)")
    from fashionfail.core.config import SyntheticSource
    from fashionfail.data.synthetic import generate

    data = Path(args.data)
    stamp = data / f"done-{args.images}"
    if not stamp.exists():
        generate(
            SyntheticSource(
                seed=3,
                image_size=64,
                fp_train_images=args.images,
                fp_val_images=1,
                ff_train_images=1,
                ff_val_images=1,
                ff_test_images=1,
                max_objects=13,
                profile="real",
            ),
            data,
        )
        stamp.touch()
    os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="bench-gpu-torch-")
    _coco_shaped_weights(Path(os.environ["TORCH_HOME"]))
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"device: {name}; batch {args.batch}, {args.workers} workers, "
        f"{args.min_size}/{args.max_size}, {args.steps} timed steps after {args.warmup}"
    )
    results = {}
    for impl in args.impls:
        cfg = _config(args, impl)
        rate, util = _lightning(args, cfg, _loader(args, cfg, data))
        results[impl] = (rate, util)
        print(f"lightning, {impl:<7} loader: {rate:7.1f} img/s, GPU util {util:5.1f} %", flush=True)
    cfg = _config(args, args.impls[0])
    rate, util = _plain(args, cfg, _loader(args, cfg, data))
    print(f"plain loop, {args.impls[0]:<6} loader: {rate:7.1f} img/s, GPU util {util:5.1f} %")
    parts = [f"lightning {impl} {r:.1f} img/s ({u:.0f} % util)" for impl, (r, u) in results.items()]
    print(f"gpu: {', '.join(parts)}, plain loop {rate:.1f} img/s")


if __name__ == "__main__":
    main()
