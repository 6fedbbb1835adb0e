"""The fast paper recipes give what the literal ones followed by the model's resize give.

Equivalence: same output size, boxes within 1 px, mask IoU >= 0.97, image PSNR >= 30 dB, for fixed
parameters (extremes included) and for the same seed (the fast recipe draws its parameters with
the literal transforms' own calls, in the same order). Distribution: over many draws, flips, crops,
zoom-outs and scales of the fast recipe match the literal transforms' within tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.transforms import v2

from fashionfail.data import synthetic
from fashionfail.data.fast_recipes import FastPaperRecipe, apply_literal
from fashionfail.data.presets import _train, train_transforms


def _sample(height: int, width: int, seed: int, product: bool) -> tuple[torch.Tensor, dict]:
    """A synthetic sample as DetectionDataset gives it: several objects (two of one class), one
    smaller than 10 px (dropped by the recipes' Sanitize(10)); or one large product on white."""
    rng = np.random.default_rng(seed)
    if product:
        pixels = synthetic._ff_background(rng, height)
        objs = [synthetic._make_object(rng, 23, height, height * 0.33, (height / 2, height / 2))]
    else:
        pixels = synthetic._fp_background(rng, (height, width))
        cats = np.array([31, 31, 10, 13, 23, 4])
        objs = synthetic._place_fp_objects(rng, cats, (height, width), (0.06, 0.16))
    for obj in objs:
        synthetic._paint(pixels, obj, rng)
    masks = [obj.mask for obj in objs]
    labels = [obj.category_id + 1 for obj in objs]
    if not product:  # a 6 x 6 px object
        tiny = np.zeros((height, width), np.uint8)
        tiny[5:11, 5:11] = 1
        pixels[5:11, 5:11] = (250, 20, 20)
        masks.append(tiny)
        labels.append(7)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    target = {
        "image_id": seed,
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=(height, width)
        ),
        "labels": torch.tensor(labels),
        "masks": tv_tensors.Mask(torch.from_numpy(np.stack(masks))),
    }
    return tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous()), target


def _model_resize(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    resize = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3).eval()
    plain = {k: target[k].as_subclass(torch.Tensor) for k in ("boxes", "masks")}
    image, plain = resize.resize(image.as_subclass(torch.Tensor), plain)
    return image, {**target, **plain}


def _assert_equivalent(fast: tuple, literal: tuple, where: str) -> None:
    (fi, ft), (li, lt) = fast, literal
    assert fi.shape == li.shape, where
    assert torch.equal(ft["labels"], lt["labels"]), where
    assert len(ft["boxes"]) == len(ft["masks"]) == len(ft["labels"]), where
    fb, lb = ft["boxes"].as_subclass(torch.Tensor), lt["boxes"].as_subclass(torch.Tensor)
    if len(fb):
        assert (fb - lb).abs().max() <= 1.0, where
    for a, b in zip(ft["masks"].bool(), lt["masks"].bool(), strict=True):
        union = (a | b).sum().item()
        assert union and (a & b).sum().item() / union >= 0.97, where
    mse = ((fi.as_subclass(torch.Tensor) - li) ** 2).mean().item()
    assert 10 * math.log10(1 / max(mse, 1e-12)) >= 30, where


PHOTO_ALL = {
    "brightness_factor": 1.2,
    "contrast_factor": 0.7,
    "saturation_factor": 1.4,
    "hue_factor": 0.04,
    "contrast_before": False,
    "channel_permutation": torch.tensor([2, 0, 1]),
}
PHOTO_NONE = {k: None for k in PHOTO_ALL} | {"contrast_before": True}


@pytest.mark.parametrize(
    "params",
    [
        {"photometric": PHOTO_ALL, "flip": True, "crop": True, "jitter_scale": 0.1},
        {"photometric": PHOTO_NONE, "flip": False, "crop": True, "jitter_scale": 2.0},
        {
            "photometric": dict(PHOTO_ALL, contrast_before=True),
            "flip": True,
            "crop": False,
            "jitter_scale": 0.45,
        },
    ],
)
def test_facere_fixed_params(params: dict) -> None:
    image, target = _sample(410, 272, seed=3, product=False)
    params = dict(params, jitter_scale=torch.tensor([params["jitter_scale"]]))
    fast = FastPaperRecipe("facere").apply(image, target, params)
    literal = apply_literal("facere", image, target, params)
    _assert_equivalent(fast, literal, str(params))
    assert len(fast[1]["boxes"]) == len(target["boxes"]) - 1  # the 6-px object is dropped
    assert fast[0].dtype == torch.float32 and 0.0 <= fast[0].min() <= fast[0].max() <= 1.0


@pytest.mark.parametrize(
    "padding, scale, flip",
    [
        (None, 0.2, False),
        (None, 2.0, True),
        ([2800, 700, 560, 2660], 0.2, True),  # 8x zoom-out, smallest scale
        ([30, 3000, 3330, 360], 2.0, False),  # 8x zoom-out, largest scale
        ([40, 0, 0, 40], 1.0, False),  # barely zoomed
    ],
)
def test_facere_plus_fixed_params(padding, scale: float, flip: bool) -> None:
    image, target = _sample(480, 480, seed=5, product=True)
    params = {
        "photometric": PHOTO_ALL,
        "flip": flip,
        "padding": padding,
        "jitter_scale": torch.tensor([scale]),
    }
    fast = FastPaperRecipe("facere_plus").apply(image, target, params)
    literal = apply_literal("facere_plus", image, target, params)
    _assert_equivalent(fast, literal, str(params))
    if padding is not None and padding[0] > 1000:  # white canvas around a small product
        assert fast[0][:, :5, :5].min() == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["facere", "facere_plus"])
def test_same_seed_same_sample(name: str) -> None:
    """The real recipes, drawn from the same seed: the fast one draws the literal's parameters."""
    product = name == "facere_plus"
    image, target = _sample(480, 480, 1, True) if product else _sample(360, 512, 1, False)
    literal, fast = train_transforms(name, "literal"), train_transforms(name, "fast")
    sizes = set()
    for seed in range(4):
        torch.manual_seed(seed)
        lit = _model_resize(*literal(image, target))
        torch.manual_seed(seed)
        out = fast(image, target)
        _assert_equivalent(out, lit, f"{name} seed {seed}")
        sizes.add(tuple(out[0].shape) + tuple(out[1]["boxes"][0].tolist()))
    assert len(sizes) > 1  # the draws differ between seeds


def _literal_draws(name: str, n: int) -> dict[str, np.ndarray]:
    """What the literal recipe's random steps do, read from their effect on boxes only (the
    image-free steps; photometric distortion is the same make_params call in both)."""
    h, w = 300, 200
    skip = (v2.RandomPhotometricDistort, v2.SanitizeBoundingBoxes)  # no draws; need an image
    steps = [t for t in _train(name) if not isinstance(t, skip)]
    recipe = v2.Compose(steps)
    box = torch.tensor([[20.0, 30.0, 90.0, 120.0]])
    out = {"flip": [], "crop": [], "zoom": [], "side": [], "scale": []}
    torch.manual_seed(1234)
    for _ in range(n):
        sample = {"boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(h, w))}
        boxes = recipe(sample)["boxes"]
        mid_h, mid_w = boxes.canvas_size
        b = boxes[0]
        if name == "facere":
            crop = (mid_h / mid_w) != pytest.approx(h / w, rel=0.02)
            can_h, can_w = (170.0, 140.0) if crop else (h, w)  # box + 50 px, clipped
            out["crop"].append(crop)
            centre = (b[0] + b[2]).item() / 2 / mid_w * can_w
            flip = centre > (70 if crop else w / 2)
        else:
            side = (b[2] - b[0]).item() / mid_w * w / 70.0  # box width / canvas: 1 / side
            side = 1.0 / side
            out["zoom"].append(side > 1.01)
            if side > 1.01:
                out["side"].append(side)
            can_h, can_w = h * side, w * side
            flip = None
        base = min(2400 / can_h, 2400 / can_w)
        out["scale"].append(mid_h / can_h / base)
        if flip is not None:
            out["flip"].append(flip)
    return {k: np.asarray(v, float) for k, v in out.items()}


def _fast_draws(name: str, n: int) -> dict[str, np.ndarray]:
    recipe = FastPaperRecipe(name)
    probe = torch.zeros((3, 300, 200), dtype=torch.uint8)
    out = {"flip": [], "crop": [], "zoom": [], "side": [], "scale": []}
    torch.manual_seed(99)
    for _ in range(n):
        p = recipe.draw(probe)
        out["flip"].append(p["flip"])
        out["scale"].append(p["jitter_scale"].item())
        if name == "facere":
            out["crop"].append(p["crop"])
        else:
            out["zoom"].append(p["padding"] is not None)
            if p["padding"] is not None:
                left, _, right, _ = p["padding"]
                out["side"].append((200 + left + right) / 200)
    return {k: np.asarray(v, float) for k, v in out.items()}


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


@pytest.mark.parametrize("name", ["facere", "facere_plus"])
def test_parameter_distributions_match_literal(name: str) -> None:
    n = 1500
    lit, fast = _literal_draws(name, n), _fast_draws(name, n)
    lo, hi = (0.1, 2.0) if name == "facere" else (0.2, 2.0)
    for draws in (lit, fast):
        assert lo - 0.01 <= draws["scale"].min() and draws["scale"].max() <= hi + 0.01
    # two-sample KS at alpha ~0.001: 1.95 * sqrt(2 / n)
    assert _ks(lit["scale"], fast["scale"]) < 1.95 * math.sqrt(2 / n)
    assert abs(fast["flip"].mean() - 0.5) < 0.05
    if name == "facere":
        assert abs(lit["flip"].mean() - fast["flip"].mean()) < 0.06
        assert abs(lit["crop"].mean() - fast["crop"].mean()) < 0.06
        assert abs(fast["crop"].mean() - 0.5) < 0.05
    else:
        assert abs(lit["zoom"].mean() - fast["zoom"].mean()) < 0.06
        assert abs(fast["zoom"].mean() - 0.5) < 0.05
        m = min(len(lit["side"]), len(fast["side"]))
        assert _ks(lit["side"], fast["side"]) < 1.95 * math.sqrt(2 / m) + 0.02
        assert fast["side"].min() >= 1.0 and fast["side"].max() <= 8.0


def test_fast_impl_is_selected_and_checked() -> None:
    assert isinstance(train_transforms("facere", "fast").transforms[0], FastPaperRecipe)
    assert not isinstance(train_transforms("facere", "literal").transforms[0], FastPaperRecipe)
    assert not isinstance(train_transforms("cpu", "fast").transforms[0], FastPaperRecipe)
    with pytest.raises(ValueError, match="implementation"):
        train_transforms("facere", "quick")
