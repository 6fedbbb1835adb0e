"""A CPU rehearsal of the paper's settings: `dvc repro` of the whole pipeline with params.paper.yaml
changed only where a CPU-only, offline CI run needs it.

What runs is the paper's code path: real-size synthetic data (Fashionpedia-like up to 1024 px,
FashionFail-like 2400 px, decoded and augmented at that size), the paper's recipes (facere,
facere_plus; fast implementation as params.paper.yaml has it), `maskrcnn_resnet50_fpn_v2`,
`weights: coco` read from a COCO-shaped local file (torchvision's cache, made here: torchvision's
COCO state-dict keys and shapes, random values) so the COCO -> 46/22 head replacement runs, DDP
strategy, 2 DataLoader workers, Facere+ initialised from Facere's best checkpoint, the export of
both models and the four evaluations of the exported files (evaluate.model: onnx).

Changes from params.paper.yaml (asserted below, nothing else differs) are sizes and counts, the
values a CI run on 2 CPU cores can afford, not other code:
- download: source synthetic, profile real, a handful of images per split (Fashionpedia-train 4
  -> 3/1 by the split, Fashionpedia-val (the test set) 1; FashionFail train 4, val 1, test 1:
  each training stage's two DataLoader workers load a batch, and each validates one image);
- training: accelerator cpu, precision 32-true, num_workers 2, limit_train_batches 1,
  max_epochs 1 (one training batch and the single validation batch per stage), batch_size 2
  (2 still batches images of different sizes, as the paper's 8 do), trainer.num_sanity_val_steps
  0 (the same validation code runs at the end of the epoch), eval_map_every_n_epochs 1 (val mAP
  in the single epoch), log_every_n_steps 1 (a progress line per step: the seconds per step
  printed here). One training step per stage runs the same code as two: the BatchNorm counters
  below still tell which checkpoint each stage started from;
- training: min_size 400, max_size 667, half the paper's 800/1333 (the same ratio). The network's
  input size is a number like the batch size: the recipes resize the real-size images to it and
  torchvision's transform pads the batch, by the same code at any size. At 800/1333 a 2-image
  step costs 36-51 s here and the rehearsal ~335 CPU-s; at half the size ~200 (docs/benchmarks.md
  has the 800 px costs, bench_train_step.py and bench_val.py measure them);
- evaluate: device cpu;
- export_onnx: verify_images 0. The parity check of a model trained one step finds no detection
  on either side ("0/0 detections matched"): it compared nothing, for ~18 CPU-s per export.
  tests/test_onnx.py checks parity on models that detect; here the four evaluations run the
  exported files in onnxruntime, and each training's validation runs the PyTorch model in eval
  mode.

The commands run with glibc's malloc keeping freed memory (MALLOC_MMAP_MAX_=0,
MALLOC_TRIM_THRESHOLD_): R50-FPN v2 at real sizes allocates and frees tensors of tens to hundreds
of MB, which glibc otherwise maps and unmaps each time, so every step faults all of its pages in
again (measured at 800 px: a 2-image step 51 s -> 36-39 s, its system time ~4x smaller). An
environment setting, not a code path: the same code runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from dvc_helpers import copy_files

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAIN_SECTIONS = ("train_facere", "finetune_facere_plus")
CHANGES = {
    ("download", "source"): "synthetic",
    ("download", "synthetic", "profile"): "real",
    ("download", "synthetic", "fp_train_images"): 4,
    ("download", "synthetic", "fp_val_images"): 1,
    ("download", "synthetic", "ff_train_images"): 4,
    ("download", "synthetic", "ff_val_images"): 1,
    ("download", "synthetic", "ff_test_images"): 1,
    ("download", "synthetic", "max_objects"): 13,
    ("evaluate", "device"): "cpu",
    ("export_onnx", "verify_images"): 0,
    **{
        (section, key): value
        for section in TRAIN_SECTIONS
        for key, value in {
            "accelerator": "cpu",
            "precision": "32-true",
            "num_workers": 2,
            "limit_train_batches": 1,
            "max_epochs": 1,
            "batch_size": 2,
            "log_every_n_steps": 1,
            "eval_map_every_n_epochs": 1,
            "min_size": 400,
            "max_size": 667,
        }.items()
    },
    **{(section, "trainer", "num_sanity_val_steps"): 0 for section in TRAIN_SECTIONS},
}


def _flat(d: dict, prefix: tuple = ()) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def _fake_coco_weights(torch_home: Path) -> Path:
    """torchvision's COCO checkpoint for maskrcnn_resnet50_fpn_v2 as torchvision would cache it:
    same file name, keys and shapes (the 91-class COCO model), random values."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.mask_rcnn import MaskRCNN_ResNet50_FPN_V2_Weights

    url = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    torch.save(model.state_dict(), path)
    return path


def _state(ckpt: Path) -> tuple[dict, dict]:
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    return {k.removeprefix("model."): v for k, v in obj["state_dict"].items()}, obj[
        "hyper_parameters"
    ]["train"]


def test_paper_settings_run_on_cpu(tmp_path: Path) -> None:
    root = tmp_path / "project"
    copy_files(root)
    paper = yaml.safe_load((REPO / "params.paper.yaml").read_text())
    params = yaml.safe_load((REPO / "params.paper.yaml").read_text())
    for path, value in CHANGES.items():
        node = params
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    before, after = _flat(paper), _flat(params)
    assert set(after) - set(before) <= set(CHANGES)
    assert {k for k in after if after.get(k) != before.get(k)} <= set(CHANGES)  # nothing else
    assert params["train_facere"]["arch"] == "maskrcnn_resnet50_fpn_v2"
    assert params["train_facere"]["weights"] == "coco"
    for section in TRAIN_SECTIONS:  # the paper's input size, halved here (module docstring)
        assert (paper[section]["min_size"], paper[section]["max_size"]) == (800, 1333)
    assert params["finetune_facere_plus"]["weights"] == "models/facere/best.ckpt"
    assert params["train_facere"]["strategy"] == "ddp"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    torch_home = tmp_path / "torch"
    coco_file = _fake_coco_weights(torch_home)
    env = {
        **os.environ,
        "TORCH_HOME": str(torch_home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("DVC_EXP_NAME", None)
    # R50-FPN uses every core well: not the one thread per xdist worker that conftest.py
    # sets for the tiny models (whose steps are too short for several threads).
    env.pop("OMP_NUM_THREADS", None)
    # Its two threads share the cores with the other xdist worker: waiting threads sleep instead
    # of spinning on a core the other worker needs (a step beside a busy process: 10 % less wall,
    # 15 % less CPU; docs/benchmarks.md).
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    # Freed memory stays in the process for the next step instead of going back to the kernel
    # (module docstring; docs/benchmarks.md).
    env["MALLOC_MMAP_MAX_"] = "0"
    env["MALLOC_TRIM_THRESHOLD_"] = str(64 << 30)
    subprocess.run(
        "git init -q -b main && git add -A && git -c user.email=t@t -c user.name=t commit -qm init",
        shell=True,
        cwd=root,
        check=True,
        env=env,
    )
    start = time.monotonic()
    proc = subprocess.run(
        ["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=3600
    )
    took = time.monotonic() - start
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]

    # Seconds per training step, from the per-step progress lines (images/s of that step).
    steps = [
        (int(m[1]), float(m[2]))
        for m in re.finditer(r"epoch 1/1 step (\d)/1 loss \S+ ([\d.e+-]+) img/s", log)
    ]
    per_step = [f"{2 / rate:.1f}" for _, rate in steps if rate > 0]
    epochs = re.findall(r"epoch 1/1 done in (\S+),", log)
    print(
        f"\npaper-path rehearsal: dvc repro {took:.0f} s; seconds per training step (2 images, "
        f"Facere then Facere+): {', '.join(per_step) or '?'}; epochs (1 step + validation) "
        f"{', '.join(epochs)}; load average {os.getloadavg()[0]:.1f}"
    )
    assert len(steps) == 2, log[-4000:]

    # The COCO-shaped file was read: its frozen layers are in Facere, its heads replaced.
    coco = torch.load(coco_file, map_location="cpu", weights_only=True)
    facere, facere_cfg = _state(root / "models" / "facere" / "best.ckpt")
    assert facere_cfg["arch"] == "maskrcnn_resnet50_fpn_v2" and facere_cfg["min_size"] == 400
    assert torch.equal(facere["backbone.body.conv1.weight"], coco["backbone.body.conv1.weight"])
    assert not torch.equal(
        facere["backbone.body.layer4.0.conv1.weight"], coco["backbone.body.layer4.0.conv1.weight"]
    )  # trained
    assert coco["roi_heads.box_predictor.cls_score.weight"].shape[0] == 91
    assert facere["roi_heads.box_predictor.cls_score.weight"].shape[0] == 47
    assert facere["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 47

    # Facere+ started from Facere's checkpoint (the log says so) with a 22-class head.
    plus, plus_cfg = _state(root / "models" / "facere_plus" / "best.ckpt")
    assert re.search(r"initial weights from models/facere/best\.ckpt", log), log[-4000:]
    assert plus_cfg["augment"] == "facere_plus" and plus_cfg["num_workers"] == 2
    assert plus["roi_heads.box_predictor.cls_score.weight"].shape[0] == 23
    # BatchNorm batch counters carry over: 0 in the COCO file, 2 after Facere's training step and
    # its one validation batch (val_mode: train, the original's, counts it too), 4 after Facere+'s
    # (2 if Facere+ had started from the COCO file or from scratch).
    counter = "backbone.body.layer4.0.bn1.num_batches_tracked"
    assert (int(coco[counter]), int(facere[counter]), int(plus[counter])) == (0, 2, 4)
    # finetune_init: original: Facere's frozen layers unchanged, conv5_mask re-initialised.
    assert torch.equal(plus["backbone.body.conv1.weight"], facere["backbone.body.conv1.weight"])
    conv5 = "roi_heads.mask_predictor.conv5_mask.weight"
    assert not torch.equal(plus[conv5], facere[conv5])

    assert (root / "models/onnx/facere.onnx").is_file()  # evaluate.model: onnx scored these
    assert (root / "models/onnx/facere_plus.onnx").is_file()
    for name in ("facere_fp", "facere_fp_raw", "facere_ff", "facere_plus_ff"):
        metrics = yaml.safe_load((root / "eval" / name / "metrics.json").read_text())
        assert metrics, name
