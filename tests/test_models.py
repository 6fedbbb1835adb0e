"""Model factory, augmentation presets and the LightningModule's training/validation steps."""

import pytest
import torch
from torch import nn
from torchvision import tv_tensors
from train_helpers import make_data, tiny_cfg

from fashionfail.core.categories import LabelSpace
from fashionfail.core.jsonio import dump_json, load_json
from fashionfail.data.detection import DetectionDataset, collate, make_loader
from fashionfail.data.presets import CropToObjects, train_transforms, val_transforms
from fashionfail.models.factory import build_model, load_initial_weights, load_trained
from fashionfail.models.module import MaskRCNNModule, losses_without_stat_updates


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("synthetic"))


def _fp_dataset(data, transforms):
    fp = data / "fashionpedia"
    return DetectionDataset(
        fp / "images/train",
        fp / "instances_attributes_train2020.json",
        LabelSpace("fashionpedia"),
        transforms,
    )


def _batch(data, n=2, transforms=None):
    ds = _fp_dataset(data, transforms or val_transforms("cpu"))
    return collate([ds[i] for i in range(n)])


def test_unknown_names_fail_at_once():
    with pytest.raises(ValueError, match="unknown augmentation preset 'fancy'"):
        train_transforms("fancy")
    with pytest.raises(ValueError, match="unknown arch 'resnet9000'"):
        build_model("resnet9000", 5)
    with pytest.raises(ValueError, match="has no COCO weights"):
        build_model("tiny", 5, coco=True)


@pytest.mark.parametrize("preset", ["facere", "facere_plus", "cpu", "none"])
def test_presets_produce_valid_targets(data, preset):
    torch.manual_seed(0)
    ds = _fp_dataset(data, train_transforms(preset))
    for i in range(3):
        image, target = ds[i]
        assert image.dtype == torch.float32 and image.max() <= 1.0
        boxes = target["boxes"]
        assert len(boxes) == len(target["labels"]) == len(target["masks"])
        assert boxes.dtype == torch.float32
        if len(boxes):
            assert (boxes[:, 2:] > boxes[:, :2]).all()  # no degenerate boxes reach the model
            assert target["labels"].min() >= 1


def test_crowd_annotations_never_reach_training_targets(data, tmp_path):
    """`iscrowd: 1` regions are left out of the training targets (as torchvision's detection
    references do: a crowd region is no object to learn), also when an image has nothing else."""
    fp = data / "fashionpedia"
    coco = load_json(fp / "instances_attributes_train2020.json")
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    several = [i for i, anns in by_image.items() if len(anns) >= 2]
    assert len(several) >= 2, "the fixture needs images with several objects"
    mixed, all_crowd = several[0], several[1]
    for a in by_image[mixed][:1] + by_image[all_crowd]:
        a["iscrowd"] = 1
    dump_json(coco, tmp_path / "crowd.json")
    space = LabelSpace("fashionpedia")
    ds = DetectionDataset(fp / "images/train", tmp_path / "crowd.json", space)
    loader = make_loader(ds, batch_size=len(ds), shuffle=False, num_workers=0)
    _, targets = next(iter(loader))  # what training_step receives
    assert {t["image_id"] for t in targets} == set(by_image) | {img["id"] for img in coco["images"]}
    for target in targets:
        expected = [a for a in by_image.get(target["image_id"], []) if not a["iscrowd"]]
        assert target["labels"].tolist() == [space.to_label(a["category_id"]) for a in expected]
        assert len(target["boxes"]) == len(target["masks"]) == len(expected)
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in expected)]
        assert torch.allclose(target["boxes"], torch.tensor(xyxy).reshape(-1, 4), atol=1e-3)
        if target["image_id"] == all_crowd:
            assert len(target["boxes"]) == 0
        if target["image_id"] == mixed:
            assert 0 < len(target["boxes"]) == len(by_image[mixed]) - 1


def test_crop_to_objects_keeps_every_object():
    image = tv_tensors.Image(torch.zeros(3, 200, 300, dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(
        [[100, 80, 120, 90], [150, 60, 160, 70]], format="XYXY", canvas_size=(200, 300)
    )
    out_image, out_boxes = CropToObjects(margin=50)(image, boxes)
    # enclosing box x 100..160, y 60..90 grown by 50 -> x 50..210, y 10..140
    assert tuple(out_image.shape[-2:]) == (130, 160)
    assert out_boxes.tolist() == [[50, 70, 70, 80], [100, 50, 110, 60]]


def test_training_survives_images_whose_boxes_are_all_sanitised(data):
    model = build_model("tiny", 47, min_size=64, max_size=64)
    images, targets = _batch(data, 2)
    h, w = images[1].shape[-2:]
    targets[1] = {  # what SanitizeBoundingBoxes leaves when it removes every object
        "image_id": 0,
        "boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(h, w)),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": tv_tensors.Mask(torch.zeros(0, h, w, dtype=torch.uint8)),
    }
    model.train()
    losses = model(images, targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()


def _norm_buffers(model):
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if "running_" in k or "num_batches_tracked" in k
    }


def test_validation_losses_leave_batchnorm_statistics_alone(data):
    module = MaskRCNNModule(tiny_cfg().model_dump())
    assert any(isinstance(m, nn.BatchNorm2d) for m in module.model.modules())
    images, targets = _batch(data, 2)
    module.eval()
    before = _norm_buffers(module.model)
    with torch.no_grad(), losses_without_stat_updates(module.model):
        losses = module.model(images, targets)  # train-mode forward: losses, not detections
    assert "loss_mask" in losses
    after = _norm_buffers(module.model)
    assert before.keys() == after.keys() and before
    for k in before:
        assert torch.equal(before[k], after[k]), f"{k} changed during validation"
    assert not module.model.training  # modes restored
    # The reference's way (whole model in train mode) does change them: the test can fail.
    module.model.train()
    with torch.no_grad():
        module.model(images, targets)
    assert any(not torch.equal(before[k], v) for k, v in _norm_buffers(module.model).items())


def test_non_finite_loss_stops_loudly(data):
    module = MaskRCNNModule(tiny_cfg().model_dump())
    images, targets = _batch(data, 2)
    images[0] = images[0] * float("nan")
    with pytest.raises(FloatingPointError, match="non-finite train loss"):
        module.training_step((images, targets), 0)


def test_logged_batch_size_is_the_number_of_images(data, monkeypatch):
    module = MaskRCNNModule(tiny_cfg().model_dump())
    seen = []
    monkeypatch.setattr(module, "log", lambda name, value, **kw: seen.append(kw["batch_size"]))
    monkeypatch.setattr(module, "log_dict", lambda d, **kw: seen.append(kw["batch_size"]))
    images, targets = _batch(data, 3)
    module.training_step((images, targets), 0)
    assert seen and set(seen) == {3}


def _fake_checkpoint(model, classes, path, arch="tiny"):
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "train": {"classes": classes, "arch": arch, "min_size": 64, "max_size": 64}
            },
        },
        path,
    )


def test_head_remap_copies_each_fashionfail_class_from_its_fashionpedia_row(tmp_path):
    torch.manual_seed(0)
    facere = build_model("tiny", 47, min_size=64, max_size=64)
    _fake_checkpoint(facere, "fashionpedia", tmp_path / "f.ckpt")
    plus_space = LabelSpace("fashionfail")
    plus = build_model("tiny", plus_space.num_classes, min_size=64, max_size=64)
    counts = load_initial_weights(plus, tmp_path / "f.ckpt", plus_space, head_init="remap")
    assert counts["reinitialised"] == 0
    src = facere.roi_heads.box_predictor.cls_score.weight
    dst = plus.roi_heads.box_predictor.cls_score.weight
    assert torch.equal(dst[0], src[0])  # background
    # FashionFail label 3 is Fashionpedia id 3 (cardigan) = Facere label 4
    assert torch.equal(dst[3], src[4])
    box_src = facere.roi_heads.box_predictor.bbox_pred.weight
    box_dst = plus.roi_heads.box_predictor.bbox_pred.weight
    assert torch.equal(box_dst[3 * 4 : 4 * 4], box_src[4 * 4 : 5 * 4])
    # backbone copied as-is
    assert torch.equal(plus.backbone.body.stem[0][0].weight, facere.backbone.body.stem[0][0].weight)


def test_random_head_init_keeps_fresh_predictors(tmp_path):
    facere = build_model("tiny", 47, min_size=64, max_size=64)
    _fake_checkpoint(facere, "fashionpedia", tmp_path / "f.ckpt")
    plus = build_model("tiny", 23, min_size=64, max_size=64)
    counts = load_initial_weights(plus, tmp_path / "f.ckpt", LabelSpace("fashionfail"))
    assert counts["reinitialised"] == 6  # weight+bias of the three class-specific layers


def test_weights_of_another_architecture_are_rejected(tmp_path):
    other = build_model("resnet18_fpn", 47, min_size=64, max_size=64)
    torch.save(other.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="no backbone weights match"):
        load_initial_weights(
            build_model("tiny", 47), tmp_path / "r18.pth", LabelSpace("fashionpedia")
        )


def test_load_trained_rejects_wrong_class_count(tmp_path):
    model = build_model("tiny", 47, min_size=64, max_size=64)
    _fake_checkpoint(model, "fashionfail", tmp_path / "lying.ckpt")  # claims 22 classes
    with pytest.raises(ValueError, match="weights do not fit tiny with 23 outputs"):
        load_trained(tmp_path / "lying.ckpt")
    _fake_checkpoint(model, "fashionpedia", tmp_path / "ok.ckpt")
    with pytest.raises(ValueError, match="expected fashionfail"):
        load_trained(tmp_path / "ok.ckpt", expect_classes="fashionfail")
    loaded, space = load_trained(tmp_path / "ok.ckpt")
    assert space.name == "fashionpedia" and not loaded.training
