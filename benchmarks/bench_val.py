"""What validation costs at the paper's scale, projected from per-image measurements.

Measured here (CPU, one process):
- the model's share: seconds per image of a training step, of the val-loss forward (train mode,
  no grad) and of the prediction forward (eval mode) of `maskrcnn_resnet50_fpn_v2` at real image
  size (Fashionpedia-like 1024 x 683, resized by the model to 800/1333); their ratios to the
  training step carry over to a GPU;
- the val mAP bookkeeping, which runs on the CPU in the main process on any device: torchmetrics
  MeanAveragePrecision (bbox + segm) `update` per image with 100 detections at 1024 x 683 (mask
  RLE encoding) and `compute` per image, for both backends.

Projection: a training epoch of the paper is 34,217 images at `--train-img-s` (30 images/s on
the paper's GPU, FACTS.md: ~19 minutes). Per epoch, validation costs
  11,406 x val-loss ratio x train time per image                           (val loss, all images)
  + (K x (prediction ratio x train time per image + update) + compute) / N (val mAP on K images
                                                                            every N epochs)
and the overhead is that over the training epoch, for the old setting (mAP on all 11,406
images, pycocotools, every epoch) and the paper settings (eval_map_images, eval_map_backend and
eval_map_every_n_epochs from params.paper.yaml).

    python benchmarks/bench_val.py [--model-size 800] [--steps 2] [--map-images 20]

Last line: `val overhead: <p> % of a training epoch` for the paper settings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TRAIN_IMAGES, VAL_IMAGES = 34_217, 11_406


def _image_and_target(rng: torch.Generator, h: int = 683, w: int = 1024, n: int = 7):
    image = torch.rand(3, h, w, generator=rng)
    boxes, masks = [], torch.zeros(n, h, w, dtype=torch.uint8)
    for k in range(n):
        x0 = int(torch.randint(0, w - 200, (1,), generator=rng))
        y0 = int(torch.randint(0, h - 200, (1,), generator=rng))
        bw, bh = (int(v) for v in torch.randint(30, 200, (2,), generator=rng))
        boxes.append([x0, y0, x0 + bw, y0 + bh])
        masks[k, y0 : y0 + bh, x0 : x0 + bw] = 1
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.randint(1, 47, (n,), generator=rng),
        "masks": masks,
    }
    return image, target


def _model_costs(size: int, steps: int) -> dict[str, float]:
    """Seconds per image: training step (batch 2), val-loss forward, prediction forward."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    torch.manual_seed(0)
    max_size = round(size * 1333 / 800)
    model = maskrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=47, min_size=size, max_size=max_size
    )
    # As with COCO weights: conv1 and layer1 frozen (3 trainable backbone layers).
    for name, p in model.backbone.body.named_parameters():
        if name.startswith(("conv1", "bn1", "layer1")):
            p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = torch.Generator().manual_seed(0)
    batch = [_image_and_target(rng) for _ in range(2)]
    images, targets = [b[0] for b in batch], [b[1] for b in batch]
    times: dict[str, list[float]] = {"train": [], "val_loss": [], "predict": []}
    for step in range(steps + 1):  # the first round warms up
        model.train()
        t = time.perf_counter()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        train = time.perf_counter() - t
        with torch.no_grad():
            t = time.perf_counter()
            model(images, targets)
            val_loss = time.perf_counter() - t
            model.eval()
            t = time.perf_counter()
            model(images)
            predict = time.perf_counter() - t
        if step:
            times["train"].append(train / 2)
            times["val_loss"].append(val_loss / 2)
            times["predict"].append(predict / 2)
    return {k: statistics.median(v) for k, v in times.items()}


def _map_costs(backend: str, n_images: int, stock: bool = False) -> tuple[float, float]:
    """(update, compute) seconds per image: 100 detections of 1024 x 683, 7 ground truths; with
    the training's metric (ValMeanAveragePrecision) or torchmetrics' stock one."""
    from torchmetrics.detection import MeanAveragePrecision

    from fashionfail.models.val_map import ValMeanAveragePrecision

    rng = torch.Generator().manual_seed(1)
    if stock:
        metric = MeanAveragePrecision(iou_type=("bbox", "segm"), backend=backend)
    else:
        metric = ValMeanAveragePrecision(backend=backend)
    update = 0.0
    for _ in range(n_images):
        _, target = _image_and_target(rng)
        h, w = target["masks"].shape[-2:]
        xy = torch.rand(100, 2, generator=rng) * torch.tensor([w - 150, h - 150])
        wh = 20 + torch.rand(100, 2, generator=rng) * 130
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(100, h, w, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[k, y0:y1, x0:x1] = True
        pred = {
            "boxes": boxes,
            "scores": torch.rand(100, generator=rng),
            "labels": torch.randint(1, 47, (100,), generator=rng),
            "masks": masks,
        }
        tgt = {
            "boxes": target["boxes"],
            "labels": target["labels"],
            "masks": target["masks"].bool(),
        }
        t = time.perf_counter()
        metric.update([pred], [tgt])
        update += time.perf_counter() - t
    t = time.perf_counter()
    metric.compute()
    return update / n_images, (time.perf_counter() - t) / n_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model-size",
        type=int,
        default=800,
        help="model min_size (max_size scaled alike); 800 is the paper's",
    )
    ap.add_argument("--steps", type=int, default=2, help="timed model rounds (after 1 warm-up)")
    ap.add_argument("--map-images", type=int, default=20, help="images for the mAP costs")
    ap.add_argument(
        "--model-ratios",
        nargs=2,
        type=float,
        metavar=("LOSS", "PREDICT"),
        help="skip the model timing: val-loss and prediction forward per image as "
        "fractions of a training step per image (earlier run)",
    )
    ap.add_argument(
        "--map-costs",
        nargs=2,
        type=float,
        metavar=("UPDATE", "COMPUTE"),
        help="skip the mAP timing: s/image of update and compute (both backends)",
    )
    ap.add_argument(
        "--train-img-s",
        type=float,
        default=30.0,
        help="training images/s on the paper's GPU (FACTS.md)",
    )
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    paper = yaml.safe_load((REPO / "params.paper.yaml").read_text())["train_facere"]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if args.model_ratios:
        r_loss, r_pred = args.model_ratios
        print(
            f"model: given ratios, val-loss forward {r_loss:.2f} and prediction forward "
            f"{r_pred:.2f} of a training step per image"
        )
    else:
        model = _model_costs(args.model_size, args.steps)
        r_loss, r_pred = model["val_loss"] / model["train"], model["predict"] / model["train"]
        print(
            f"model at min_size {args.model_size} (CPU, s/image): train step "
            f"{model['train']:.2f}, val-loss forward {model['val_loss']:.2f} ({r_loss:.2f} of "
            f"a step), prediction forward {model['predict']:.2f} ({r_pred:.2f})"
        )
    # (metric, backend): torchmetrics' stock metric (the old setting) and the training's one
    kinds = [("stock", "pycocotools"), ("ours", "pycocotools"), ("ours", "faster_coco_eval")]
    if args.map_costs:
        maps = {k: tuple(args.map_costs) for k in kinds}
    else:
        maps = {k: _map_costs(k[1], args.map_images, stock=k[0] == "stock") for k in kinds}
    for (kind, backend), (upd, comp) in maps.items():
        name = "torchmetrics " if kind == "stock" else "training's   "
        print(f"val mAP {name}{backend:<17} update {upd:.3f} s/image, compute {comp:.4f} s/image")

    t_train = 1.0 / args.train_img_s
    epoch = TRAIN_IMAGES * t_train

    trainer = paper.get("trainer") or {}
    val_every = int(trainer.get("check_val_every_n_epoch") or 1)
    val_frac = trainer.get("limit_val_batches")
    val_frac = 1.0 if val_frac is None else float(val_frac)
    if val_frac > 1:  # an int: that many val batches
        val_frac = min(1.0, val_frac * paper.get("val_batch_size", 4) / VAL_IMAGES)

    def overhead(
        images: int, kind: tuple[str, str], every: int, frac: float = 1.0, val_n: int = 1
    ) -> tuple[float, float]:
        """Minutes per training epoch: val loss on `frac` of the images every `val_n` epochs,
        val mAP on `images` every `every` validations."""
        loss = VAL_IMAGES * frac * r_loss * t_train / val_n
        upd, comp = maps[kind]
        m = 0.0 if every <= 0 else (images * (r_pred * t_train + upd + comp)) / (every * val_n)
        return loss, m

    backend = paper.get("eval_map_backend", "pycocotools")
    k = paper.get("eval_map_images", 0) or VAL_IMAGES
    rows = [
        (
            "old: all images, torchmetrics + pycocotools, every epoch",
            (VAL_IMAGES, ("stock", "pycocotools"), 1),
        ),
        (
            f"paper settings: mAP on {k} images, {backend}, "
            f"every {paper['eval_map_every_n_epochs']} epoch(s)",
            (k, ("ours", backend), paper["eval_map_every_n_epochs"], val_frac, val_every),
        ),
    ]
    print(
        f"training epoch: {TRAIN_IMAGES} images at {args.train_img_s:g} img/s = {epoch / 60:.1f} "
        "min; validation per epoch (11,406 images):"
    )
    print(f"  {'setting':<72} {'val loss':>9} {'val mAP':>9} {'overhead':>9}")
    last = 0.0
    for name, row in rows:
        loss, m = overhead(*row)
        last = 100 * (loss + m) / epoch
        print(f"  {name:<72} {loss / 60:>7.1f} m {m / 60:>7.1f} m {last:>8.1f}%")
    print(
        f"  (val loss on {val_frac:.0%} of the val images every {val_every} epoch(s): "
        "trainer.limit_val_batches / check_val_every_n_epoch of params.paper.yaml)"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"val overhead: {last:.1f} % of a training epoch")


if __name__ == "__main__":
    main()
