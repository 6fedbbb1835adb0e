"""Model factory: one function builds every Mask R-CNN variant the pipeline trains.

Facere and Facere+ use the same factory; they differ only in the number of classes and in the
initial weights (none, torchvision's COCO weights, or a local file such as Facere's checkpoint).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _resnet_fpn_extractor,
    mobilenet_backbone,
    resnet_fpn_backbone,
)
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import (
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    MaskRCNNHeads,
    MaskRCNNPredictor,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from fashionfail.core.categories import LabelSpace

ARCHS = (
    "maskrcnn_resnet50_fpn_v2",
    "maskrcnn_resnet50_fpn",
    "resnet18_fpn",
    "mobilenet_v3_fpn",
    "tiny",
)
_COCO_WEIGHTS = {
    "maskrcnn_resnet50_fpn_v2": MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    "maskrcnn_resnet50_fpn": MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
}
# Layers whose shape depends on the number of classes; everything else transfers between models.
_CLASS_LAYERS = (
    "roi_heads.box_predictor.cls_score",
    "roi_heads.box_predictor.bbox_pred",
    "roi_heads.mask_predictor.mask_fcn_logits",
)


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _tiny_backbone() -> BackboneWithFPN:
    """A small CNN (strides 4/8/16) with an FPN: trains from scratch in minutes on a CPU."""
    body = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(_conv_bn(3, 24, 2), _conv_bn(24, 32, 2)),
            layer1=nn.Sequential(_conv_bn(32, 48, 1), _conv_bn(48, 48, 1)),
            layer2=nn.Sequential(_conv_bn(48, 64, 2), _conv_bn(64, 64, 1)),
            layer3=nn.Sequential(_conv_bn(64, 96, 2), _conv_bn(96, 96, 1)),
        )
    )
    return BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2"},
        in_channels_list=[48, 64, 96],
        out_channels=64,
        extra_blocks=LastLevelMaxPool(),
    )


def _light_maskrcnn(backbone: nn.Module, num_classes: int, anchor_sizes, **kwargs) -> MaskRCNN:
    """Mask R-CNN with heads sized to a light backbone (fewer channels than the R50 defaults)."""
    ch = backbone.out_channels
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    return MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(ch * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        mask_head=MaskRCNNHeads(ch, [ch, ch, ch, ch], 1, norm_layer=nn.BatchNorm2d),
        mask_predictor=MaskRCNNPredictor(ch, ch, num_classes),
        **kwargs,
    )


LAYOUTS = ("scratch", "pretrained")


def build_model(
    arch: str,
    num_classes: int,
    *,
    min_size: int = 800,
    max_size: int = 1333,
    coco: bool = False,
    layout: str = "scratch",
) -> MaskRCNN:
    """Build `arch` with `num_classes` outputs (background included).

    With `coco=True` the COCO-pretrained weights are loaded through torchvision (which downloads
    them; only the two ResNet-50 variants have them) and the class-specific predictors replaced.
    Without it, every layer is randomly initialised and nothing is downloaded. Backbones trained
    from scratch use real BatchNorm (frozen BatchNorm only makes sense with pretrained statistics).

    `layout="pretrained"` builds, without downloading anything, the module structure torchvision
    gives a COCO-initialised ResNet-50 model (`coco=True` implies it): 3 trainable backbone layers
    (conv1, bn1 and layer1 frozen) and, for `maskrcnn_resnet50_fpn`, FrozenBatchNorm2d in the
    ResNet (torchvision's v2 keeps BatchNorm2d there). A model fine-tuned from such a checkpoint
    the original way (`finetune_init: original`) is rebuilt with it. Other archs have one layout.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if coco and arch not in _COCO_WEIGHTS:
        raise ValueError(
            f"arch {arch!r} has no COCO weights; use one of {', '.join(_COCO_WEIGHTS)}"
        )
    size = {"min_size": min_size, "max_size": max_size}
    if arch in _COCO_WEIGHTS:
        fn = maskrcnn_resnet50_fpn_v2 if arch.endswith("_v2") else maskrcnn_resnet50_fpn
        if coco:
            model = fn(weights=_COCO_WEIGHTS[arch], **size)
            _replace_predictors(model, num_classes)
            return model
        if layout == "pretrained":
            return _pretrained_layout(arch, num_classes, size)
        kwargs = {} if arch.endswith("_v2") else {"norm_layer": nn.BatchNorm2d}
        return fn(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes,
            trainable_backbone_layers=5,
            **size,
            **kwargs,
        )
    if arch == "resnet18_fpn":
        backbone = resnet_fpn_backbone(
            backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5
        )
        return MaskRCNN(backbone, num_classes=num_classes, **size)
    if arch == "mobilenet_v3_fpn":
        backbone = mobilenet_backbone(
            backbone_name="mobilenet_v3_large",
            weights=None,
            fpn=True,
            norm_layer=nn.BatchNorm2d,
            trainable_layers=6,
        )
        sizes = ((32, 64, 128, 256, 512),) * 3
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 3)
        return MaskRCNN(backbone, num_classes=num_classes, rpn_anchor_generator=anchors, **size)
    # tiny: anchors for objects of ~10-150 px at the CPU default image size.
    return _light_maskrcnn(
        _tiny_backbone(),
        num_classes,
        ((16,), (32,), (64,), (128,)),
        # Few objects per small image: fewer proposals and RoI samples (NMS and RoIAlign dominate
        # the CPU step time) lose nothing here.
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=150,
        box_batch_size_per_image=64,
        rpn_batch_size_per_image=128,
        **size,
    )


def _pretrained_layout(arch: str, num_classes: int, size: dict) -> MaskRCNN:
    """torchvision's structure of a COCO-initialised model, randomly initialised (see build_model).

    Mirrors torchvision's builders: `_resnet_fpn_extractor(backbone, trainable_layers=3)` freezes
    every ResNet parameter outside layer2..layer4; v1 puts FrozenBatchNorm2d in the ResNet.
    """
    if arch.endswith("_v2"):
        model = maskrcnn_resnet50_fpn_v2(
            weights=None, weights_backbone=None, num_classes=num_classes, **size
        )
        for name, param in model.backbone.body.named_parameters():
            if not name.startswith(("layer2", "layer3", "layer4")):
                param.requires_grad_(False)
        return model
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3)
    return MaskRCNN(backbone, num_classes=num_classes, **size)


def _replace_predictors(model: MaskRCNN, num_classes: int) -> None:
    """Swap the class-specific layers for fresh ones with `num_classes` outputs."""
    box = model.roi_heads.box_predictor
    model.roi_heads.box_predictor = FastRCNNPredictor(box.cls_score.in_features, num_classes)
    mask = model.roi_heads.mask_predictor
    model.roi_heads.mask_predictor = MaskRCNNPredictor(
        mask.conv5_mask.in_channels, mask.conv5_mask.out_channels, num_classes
    )


def read_weights_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Load a state dict from a plain torch file or a Lightning checkpoint of this project.

    Returns (state_dict, classes) where `classes` is the checkpoint's label space name if it is one
    of ours, else None.
    """
    path = Path(path).expanduser()
    obj = _torch_load(path, "weights file", "torch weights file")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict or a Lightning checkpoint")
    if "state_dict" in obj:
        classes = obj.get("hyper_parameters", {}).get("train", {}).get("classes")
        return _model_state(obj), classes
    return obj, None


def _torch_load(path: Path, name: str, readable_name: str) -> object:
    """`torch.load` of a weights file or checkpoint (tensors only), with one-line errors."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {name} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        error = e.__class__.__name__
        raise ValueError(f"{path}: not a readable {readable_name} ({error})") from None


def _model_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The model's state dict in a Lightning checkpoint (keys prefixed by the module attribute)."""
    return {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}


def check_head_init(classes: str | None, target: LabelSpace, head_init: str, path: object) -> None:
    """ValueError if `head_init` cannot be served by a weights file whose label space is `classes`
    (None: a plain state dict). "remap" needs one of our checkpoints whose classes cover the
    target's; "random" works with any file."""
    if head_init != "remap":
        return
    if classes is None:
        raise ValueError(
            f"{path}: head_init remap needs a checkpoint of this project (it names its classes); "
            "this file has no label space: use head_init random"
        )
    source = LabelSpace(classes)
    if not all(source.contains(c) for c in target.dataset_ids):
        raise ValueError(
            f"{path}: head_init remap: its {source.name} classes do not cover the {target.name} "
            "classes; use head_init random"
        )


_PREDICTORS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")


def weights_layout(path: str | Path) -> str:
    """The layout (see build_model) of the model saved in one of our checkpoints.

    Our checkpoints record it (hyper-parameter `layout`); older ones are "pretrained" exactly when
    they were trained from COCO weights. Plain state dicts are "scratch".
    """
    return _layout_of(_torch_load(Path(path).expanduser(), "weights file", "torch weights file"))


def _layout_of(ckpt: object) -> str:
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if hparams.get("layout") in LAYOUTS:
        return hparams["layout"]
    weights = (hparams.get("train") or {}).get("weights")
    return "pretrained" if weights == "coco" else "scratch"


def load_whole_model(model: MaskRCNN, path: str | Path) -> dict[str, int]:
    """The original's Facere+ initialisation: every weight of `path` except the two predictors.

    The box predictor and the *whole* mask predictor (`conv5_mask` included) keep their fresh
    initialisation for the new label space; every other tensor must exist in the file with the
    same shape (`model` must have been built with the file's arch and layout), else ValueError
    naming the file and the first offending key.
    """
    state, _ = read_weights_file(path)
    own = model.state_dict()
    wanted = [k for k in own if not k.startswith(_PREDICTORS)]
    missing = [k for k in wanted if k not in state]
    wrong = [k for k in wanted if k in state and state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own and not k.startswith(_PREDICTORS)]
    if missing or wrong or extra:
        key, what = next(
            (k, w)
            for keys, w in (
                (missing, "missing"),
                (wrong, "has another shape"),
                (extra, "is not in the model"),
            )
            for k in keys
        )
        raise ValueError(
            f"{path}: not the same architecture as the model being fine-tuned "
            f"({len(missing) + len(wrong) + len(extra)} keys differ; first: {key} {what})"
        )
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return {"loaded": len(wanted), "reinitialised": len(own) - len(wanted), "ignored": 0}


def _remap_rows(src: torch.Tensor, rows: list[int], per_class: int) -> torch.Tensor:
    """Select the output rows of `rows` (class indices) from a class-major layer tensor."""
    index = torch.tensor([r * per_class + j for r in rows for j in range(per_class)])
    return src.index_select(0, index)


def load_initial_weights(
    model: MaskRCNN, path: str | Path, target: LabelSpace, head_init: str = "random"
) -> dict[str, int]:
    """Initialise `model` from a weights file; returns counts of loaded / reinitialised tensors.

    All tensors whose name and shape match are copied. The class-specific predictor layers are
    kept random (`head_init="random"`, the paper's choice) unless the file is one of our
    checkpoints with another label space and `head_init="remap"`: then each target class starts
    from the same Fashionpedia class's row (FashionFail classes are Fashionpedia classes).
    Raises ValueError if the file matches none of the model's backbone (wrong architecture).
    """
    state, classes = read_weights_file(path)
    check_head_init(classes, target, head_init, path)
    own = model.state_dict()
    source = LabelSpace(classes) if classes is not None else None
    if (
        head_init == "remap"
        and source is not None
        and source.name != target.name
        and all(source.contains(c) for c in target.dataset_ids)
    ):
        rows = [0] + [source.to_label(c) for c in target.dataset_ids]
        for layer in _CLASS_LAYERS:
            per_class = 4 if layer.endswith("bbox_pred") else 1
            for kind in ("weight", "bias"):
                key = f"{layer}.{kind}"
                if key in state:
                    state[key] = _remap_rows(state[key], rows, per_class)
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in loaded)
    backbone = [k for k in own if k.startswith("backbone.")]
    if not any(k in loaded for k in backbone):
        raise ValueError(f"{path}: no backbone weights match this architecture")
    model.load_state_dict(loaded, strict=False)
    return {
        "loaded": len(loaded),
        "reinitialised": len(skipped),
        "ignored": len(state) - len(loaded),
    }


def load_trained(
    path: str | Path, expect_classes: str | None = None
) -> tuple[MaskRCNN, LabelSpace]:
    """Rebuild a model trained by this project from its Lightning checkpoint, in eval mode, on CPU.

    The architecture, label space and image size come from the checkpoint's hyper-parameters.
    ValueError (naming the file) if it is not such a checkpoint, if its label space differs from
    `expect_classes`, or if its weights do not fit the architecture it claims (wrong class count).
    """
    path = Path(path).expanduser()
    ckpt = _torch_load(path, "checkpoint", "checkpoint")
    cfg = ckpt.get("hyper_parameters", {}).get("train") if isinstance(ckpt, dict) else None
    if not cfg or "state_dict" not in ckpt:
        raise ValueError(
            f"{path}: not a fashionfail training checkpoint (no hyper_parameters.train)"
        )
    space = LabelSpace(cfg["classes"])
    if expect_classes is not None and space.name != expect_classes:
        raise ValueError(
            f"{path}: checkpoint predicts {space.name} classes ({space.num_classes - 1}), "
            f"expected {expect_classes}"
        )
    model = build_model(
        cfg["arch"],
        space.num_classes,
        min_size=cfg["min_size"],
        max_size=cfg["max_size"],
        layout=_layout_of(ckpt),
    )
    try:
        model.load_state_dict(_model_state(ckpt))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise ValueError(
            f"{path}: weights do not fit {cfg['arch']} with {space.num_classes} outputs: {first}"
        ) from None
    return model.eval(), space
