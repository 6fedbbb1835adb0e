"""The original code's behaviours behind named params (issue #8, item 1a/1b): Facere+
initialisation, train-mode validation, val batch size and val loss weighting."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection import mask_rcnn
from train_helpers import ff_paths, make_data, tiny_cfg

from fashionfail.core.categories import LabelSpace
from fashionfail.core.config import ConfigError
from fashionfail.data.detection import DetectionDataset, collate
from fashionfail.data.presets import val_transforms
from fashionfail.models.factory import (
    _replace_predictors,
    build_model,
    load_initial_weights,
    load_trained,
    load_whole_model,
    weights_layout,
)
from fashionfail.models.module import MaskRCNNModule
from fashionfail.models.train import train

PREDICTORS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")
FROZEN = ("backbone.body.conv1.", "backbone.body.bn1.", "backbone.body.layer1.")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("synthetic"))


def _batch(root, ann, images, n, classes="fashionpedia"):
    ds = DetectionDataset(
        root / "images" / images, root / ann, LabelSpace(classes), val_transforms("cpu")
    )
    return collate([ds[i] for i in range(n)])


def _save_tiny(model, path):
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"train": tiny_cfg().model_dump()}}, path)


def _types(model: nn.Module, skip=PREDICTORS) -> dict[str, type]:
    return {n: type(m) for n, m in model.named_modules() if not f"{n}.".startswith(skip)}


def _grads(model: nn.Module, skip=PREDICTORS) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in model.named_parameters() if not n.startswith(skip)}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn"])
def test_pretrained_layout_is_torchvisions_coco_structure(arch, monkeypatch):
    """build_model(layout="pretrained") == what torchvision builds with COCO weights (module
    types, frozen parameters), without downloading: the weights file is faked."""
    fn = getattr(mask_rcnn, arch)
    random_coco = fn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    weights = (
        mask_rcnn.MaskRCNN_ResNet50_FPN_V2_Weights
        if arch.endswith("v2")
        else (mask_rcnn.MaskRCNN_ResNet50_FPN_Weights)
    )
    monkeypatch.setattr(type(weights.COCO_V1), "get_state_dict", lambda self, *a, **k: random_coco)
    reference = fn(weights=weights.COCO_V1)
    _replace_predictors(reference, 23)
    ours = build_model(arch, 23, layout="pretrained")
    assert _types(ours, ()) == _types(reference, ())
    assert _grads(ours, ()) == _grads(reference, ())
    assert not any(_grads(ours, ()).get(f"{p}weight", True) for p in FROZEN[:1])
    # The default layout is fully trainable: the two really differ.
    assert all(_grads(build_model(arch, 23), ()).values())


def _fake_facere(path, arch="maskrcnn_resnet50_fpn_v2"):
    """A Facere checkpoint as train() writes it after COCO initialisation (random weights)."""
    torch.manual_seed(1)
    model = build_model(arch, 47, min_size=64, max_size=64, layout="pretrained")
    cfg = tiny_cfg(arch=arch, weights="coco").model_dump()
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"train": cfg, "layout": "pretrained"},
        },
        path,
    )
    return model


@pytest.mark.slow
def test_original_finetune_init_keeps_facere_whole_but_its_predictors(data, tmp_path):
    """finetune_init: original (the paper) on the paper's arch: Facere+ has Facere's module
    types, frozen parameters and state-dict keys outside the two predictors; conv5_mask is fresh;
    the frozen layers are bit-identical after a training step; load_trained rebuilds the same
    structure from the checkpoint (train()'s wiring is checked on the tiny arch below)."""
    facere = _fake_facere(tmp_path / "facere.ckpt")
    layout = weights_layout(tmp_path / "facere.ckpt")
    assert layout == "pretrained"
    cfg = tiny_cfg(
        "finetune_facere_plus",
        arch="maskrcnn_resnet50_fpn_v2",
        lr=0.01,
        weights=str(tmp_path / "facere.ckpt"),
        finetune_init="original",
    )
    module = MaskRCNNModule(cfg.model_dump(), layout=layout)
    load_whole_model(module.model, tmp_path / "facere.ckpt")
    optimizer = module.configure_optimizers()
    module.train()
    images, targets = _batch(data / "fashionfail", "ff_train.json", "train", 1, "fashionfail")
    module.training_step((images, targets), 0).backward()
    optimizer.step()
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)},
        tmp_path / "plus.ckpt",
    )
    plus, space = load_trained(tmp_path / "plus.ckpt")
    assert space.num_classes == 23
    assert _types(plus) == _types(facere)
    assert _grads(plus) == _grads(facere)
    ours, theirs = plus.state_dict(), facere.state_dict()
    assert [k for k in ours if not k.startswith(PREDICTORS)] == [
        k for k in theirs if not k.startswith(PREDICTORS)
    ]
    conv5 = "roi_heads.mask_predictor.conv5_mask.weight"
    assert ours[conv5].shape == theirs[conv5].shape and not torch.equal(ours[conv5], theirs[conv5])
    frozen = [n for n, p in facere.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(FROZEN) for n in frozen)
    for name in frozen:
        assert torch.equal(ours[name], theirs[name]), f"frozen {name} changed"
    trained = "backbone.body.layer4.0.conv1.weight"
    assert not torch.equal(ours[trained], theirs[trained]), "the training step changed nothing"


def test_train_wires_the_original_init_and_records_the_layout(data, tmp_path):
    """train() with finetune_init: original re-initialises conv5_mask and stores the layout."""
    torch.manual_seed(2)
    facere = build_model("tiny", 47, min_size=64, max_size=64)
    _save_tiny(facere, tmp_path / "f.ckpt")
    cfg = tiny_cfg(
        "finetune_facere_plus",
        weights=str(tmp_path / "f.ckpt"),
        lr=1e-9,
        finetune_init="original",
        limit_train_batches=1,
        eval_map_every_n_epochs=0,
    )
    paths = ff_paths(data, tmp_path)
    train(cfg, paths)
    ckpt = torch.load(paths.out_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["layout"] == "scratch"
    assert ckpt["hyper_parameters"]["train"]["finetune_init"] == "original"
    conv5 = "model.roi_heads.mask_predictor.conv5_mask.weight"
    assert not torch.equal(ckpt["state_dict"][conv5], facere.state_dict()[conv5[6:]])
    body = "model.backbone.body.layer1.0.0.weight"
    assert torch.allclose(ckpt["state_dict"][body], facere.state_dict()[body[6:]], atol=1e-6)


def test_transfer_init_keeps_conv5_mask_and_original_rejects_other_architectures(tmp_path):
    """Our default copies conv5_mask from Facere; `original` refuses a mismatching file."""
    facere = build_model("tiny", 47, min_size=64, max_size=64)
    _save_tiny(facere, tmp_path / "f.ckpt")
    conv5 = "roi_heads.mask_predictor.conv5_mask.weight"
    plus = build_model("tiny", 23, min_size=64, max_size=64)
    load_initial_weights(plus, tmp_path / "f.ckpt", LabelSpace("fashionfail"))
    assert torch.equal(plus.state_dict()[conv5], facere.state_dict()[conv5])
    plus = build_model("tiny", 23, min_size=64, max_size=64)
    counts = load_whole_model(plus, tmp_path / "f.ckpt")
    assert not torch.equal(plus.state_dict()[conv5], facere.state_dict()[conv5])
    assert counts["reinitialised"] == 8  # weight + bias of cls_score, bbox_pred, conv5, logits
    other = build_model("resnet18_fpn", 23, min_size=64, max_size=64)
    with pytest.raises(ValueError, match=r"f\.ckpt: not the same architecture .* first: "):
        load_whole_model(other, tmp_path / "f.ckpt")


def test_original_init_with_head_remap_is_rejected(data, tmp_path):
    facere = tmp_path / "f.ckpt"
    _fake_facere(facere, arch="maskrcnn_resnet50_fpn")
    cfg = tiny_cfg(
        "finetune_facere_plus", weights=str(facere), finetune_init="original", head_init="remap"
    )
    with pytest.raises(ConfigError, match="head_init must be random"):
        train(cfg, ff_paths(data, tmp_path))


def _norm_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def _val_batch(data, n):
    return _batch(data / "fashionpedia", "instances_attributes_train2020.json", "train", n)


@pytest.mark.parametrize("mode", ["eval_bn", "train"])
def test_val_mode_decides_whether_validation_updates_batchnorm(data, mode, monkeypatch):
    module = MaskRCNNModule(tiny_cfg(val_mode=mode, eval_map_every_n_epochs=0).model_dump())
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    monkeypatch.setattr(module, "log_dict", lambda *a, **k: None)
    module.eval()
    before = _norm_buffers(module.model)
    with torch.no_grad():
        module.validation_step(_val_batch(data, 2), 0)
    changed = [k for k, v in _norm_buffers(module.model).items() if not torch.equal(v, before[k])]
    assert bool(changed) == (mode == "train")
    assert not module.model.training  # modes restored either way


@pytest.mark.parametrize(("mean", "expected"), [("per_image", 3), ("per_batch", 1)])
def test_val_loss_weighting(data, mean, expected, monkeypatch):
    module = MaskRCNNModule(tiny_cfg(val_loss_mean=mean, eval_map_every_n_epochs=0).model_dump())
    seen = []
    monkeypatch.setattr(module, "log", lambda name, value, **kw: seen.append(kw["batch_size"]))
    monkeypatch.setattr(module, "log_dict", lambda d, **kw: seen.append(kw["batch_size"]))
    with torch.no_grad():
        module.validation_step(_val_batch(data, 3), 0)
        module.training_step(_val_batch(data, 3), 0)  # training is always weighted per image
    assert seen == [expected, expected, 3, 3]


def test_val_batch_size_is_its_own_param():
    with pytest.raises(ConfigError, match="val_batch_size"):
        tiny_cfg(val_batch_size=0)


def test_params_paper_yaml_switches_on_every_original_behaviour():
    import yaml
    from train_helpers import REPO

    paper = yaml.safe_load((REPO / "params.paper.yaml").read_text())
    ours = yaml.safe_load((REPO / "params.yaml").read_text())
    plus = paper["finetune_facere_plus"]
    assert plus["finetune_init"] == "original" and plus["head_init"] == "random"
    for section in ("train_facere", "finetune_facere_plus"):
        assert paper[section]["val_mode"] == "train" and paper[section]["val_batch_size"] == 4
        assert paper[section]["val_loss_mean"] == "per_batch"
    assert paper["evaluate"]["batch_size"] == 1 and paper["evaluate"]["box_decimals"] == 1
    assert paper["evaluate"]["model"] == "onnx"
    # Our defaults differ (docs/paper.md, "Reproducing the original code exactly").
    assert ours["finetune_facere_plus"]["finetune_init"] == "transfer"
    assert ours["evaluate"]["model"] == "checkpoint"
