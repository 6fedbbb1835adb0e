"""The paper's training recipes (`facere`, `facere_plus`), computed directly at the model's size.

The literal recipes (fashionfail.data.presets) scale every sample by ScaleJitter towards 2400 px
(up to 4,800 px for Fashionpedia, 19,200 px canvases after FashionFail's zoom-out) and the model's
own transform then resizes the result to 800 (short side) / 1333 (long side). Flip, crop, zoom-out
(padding), ScaleJitter and the model's resize are all axis-aligned scalings and shifts, so their
composition is one such map per axis; `FastPaperRecipe` draws the very same random parameters as
the literal recipe (same transforms, same calls to torch's generator, in the same order: one seed
gives the same parameters in both) and computes the sample at the model's size in one step:

- boxes go through torchvision's own box kernels (flip, crop with clamping, pad, resize) and the
  recipe's SanitizeBoundingBoxes at the same stages, then the model's resize: the literal boxes;
- masks are sampled with the composed nearest-neighbour indices of each resize (torch's
  `floor(i * in / out)` rule): the literal masks, pixel for pixel;
- the image is sampled bilinearly from the source with the composed map. Where the literal recipe
  shrinks the source on the way (ScaleJitter below the source size, with antialiasing), the
  source is first shrunk the same way to that size, so the result keeps the literal's level of
  detail; big intermediate canvases are never built. Zoom-out padding is the fill value blended
  with the image's coverage of each output pixel.
- the photometric distortion uses the literal parameters and torchvision's formulas, with the
  contrast step's grey mean taken from the source image, as the literal recipe takes it (before
  crop and zoom-out). Without zoom-out it runs on the crop before the upscaling to the output
  (the literal's order), rounded to uint8 as the literal's is; with zoom-out, on the output
  (pointwise steps commute with resampling).

The output is what the literal recipe followed by the model's resize gives (checked by
tests/test_fast_recipes.py: size, boxes within 1 px, mask IoU, image PSNR); the model's resize is
then the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as nnf
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fashionfail.data.crop import WHITE_FILL, CropToObjects

FAST_RECIPES = ("facere", "facere_plus")
_FILL = 1.0  # facere_plus zoom-out fills the image with 255 (white), masks with 0


@dataclass(frozen=True)
class RecipeSpec:
    """The random parts of a paper recipe (the literal one in presets.py uses the same values)."""

    jitter_range: tuple[float, float]
    zoom_out: bool  # facere_plus: RandomZoomOut(side_range 1-8, p=.5) before ScaleJitter
    crop_to_objects: bool  # facere: with p=.5 crop to the objects' box + 50 px


SPECS = {
    "facere": RecipeSpec((0.1, 2.0), zoom_out=False, crop_to_objects=True),
    "facere_plus": RecipeSpec((0.2, 2.0), zoom_out=True, crop_to_objects=False),
}
JITTER_TARGET = (2400, 2400)
CROP_MARGIN = 50


def model_resize_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The size torchvision's GeneralizedRCNNTransform resizes an image of (height, width) to."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


def _nearest_index(out_size: int, in_size: int) -> torch.Tensor:
    """torch's 'nearest' source index per output index (float32 scale, floor, clamp)."""
    if out_size == in_size:
        return torch.arange(out_size)
    if out_size == 2 * in_size:
        return torch.arange(out_size) >> 1
    scale = torch.tensor(in_size, dtype=torch.float32) / out_size
    idx = (torch.arange(out_size, dtype=torch.float32) * scale).floor().long()
    return idx.clamp_(max=in_size - 1)


def _centre_map(out_size: int, in_size: int) -> tuple[float, float]:
    """(a, b) with in = a * out + b for pixel centres of a resize (align_corners=False)."""
    a = in_size / out_size
    return a, 0.5 * a - 0.5


@dataclass
class _Axis:
    """One axis of the composed map: source coordinate = a * output coordinate + b (pixel
    centres), with the literal's chain of nearest indices for masks."""

    a: float
    b: float
    lo: float  # the canvas' first and last pixel centre in source coordinates: positions are
    hi: float  # clamped to them (torch clamps at the edges of what it resizes)
    mask_index: torch.Tensor  # source index per output pixel, -1 where the canvas is padding


def _bilinear_taps(axis: _Axis, out_size: int, src_size: int):
    """Two source indices and weights per output pixel, weights zeroed outside the source;
    also the coverage (sum of the kept weights) per output pixel."""
    pos = axis.a * torch.arange(out_size, dtype=torch.float64) + axis.b
    pos = pos.clamp(axis.lo, axis.hi)
    lo = pos.floor()
    frac = pos - lo
    i0, i1 = lo.long(), lo.long() + 1
    w0, w1 = 1.0 - frac, frac
    inside0 = (i0 >= 0) & (i0 < src_size)
    inside1 = (i1 >= 0) & (i1 < src_size)
    return i0, i1, w0, w1, inside0, inside1


class FastPaperRecipe(torch.nn.Module):
    """`facere` / `facere_plus` at the model's size (min_size / max_size), in one step."""

    def __init__(self, name: str, min_size: int = 800, max_size: int = 1333):
        super().__init__()
        if name not in SPECS:
            raise ValueError(f"no fast implementation of {name!r}; one of {', '.join(SPECS)}")
        self.name, self.spec = name, SPECS[name]
        self.min_size, self.max_size = min_size, max_size
        # The literal recipe's own transforms: their parameter draws are reused as they are.
        self.photometric = v2.RandomPhotometricDistort(p=0.5)
        self.zoom = v2.RandomZoomOut(side_range=(1.0, 8.0), p=0.5)
        self.jitter = v2.ScaleJitter(target_size=JITTER_TARGET, scale_range=self.spec.jitter_range)

    # -- parameters ------------------------------------------------------------------------------

    def draw(self, image: torch.Tensor) -> dict[str, Any]:
        """Random parameters, drawn exactly as the literal recipe draws them (same order)."""
        height, width = image.shape[-2:]
        params: dict[str, Any] = {"photometric": self.photometric.make_params([image])}
        params["flip"] = bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip(0.5)
        if self.spec.crop_to_objects:
            params["crop"] = not bool(torch.rand(1) >= 0.5)  # RandomApply(p=0.5)
        if self.spec.zoom_out:
            params["padding"] = None
            if not bool(torch.rand(1) >= self.zoom.p):
                params["padding"] = self.zoom.make_params([_size_probe(height, width)])["padding"]
        lo, hi = self.spec.jitter_range
        params["jitter_scale"] = lo + torch.rand(1) * (hi - lo)  # ScaleJitter's draw
        return params

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        image = F.to_image(image)
        return self.apply(image, target, self.draw(image))

    # -- the composed transform -------------------------------------------------------------------

    def apply(
        self, image: torch.Tensor, target: dict[str, Any], params: dict[str, Any]
    ) -> tuple[tv_tensors.Image, dict[str, Any]]:
        """The sample transformed with `params` (from `draw`), at the model's size."""
        spec = self.spec
        image = tv_tensors.Image(image)
        if image.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 image, got {image.dtype}")
        _, src_h, src_w = image.shape
        photo = params["photometric"]

        boxes: tv_tensors.BoundingBoxes = target["boxes"]
        keep = torch.ones(len(boxes), dtype=torch.bool)
        flip = params["flip"]
        if flip:
            boxes = F.horizontal_flip(boxes)

        # Canvas after flip / crop / zoom-out, as (origin, size) in source coordinates per axis.
        y0, x0, can_h, can_w = 0, 0, src_h, src_w
        if not spec.zoom_out:  # facere: Sanitize(10) before the crop, crop from the kept boxes
            boxes, keep = _sanitize(boxes, keep, min_size=10)
            if params.get("crop") and len(boxes):
                crop = _crop_params(boxes, src_h, src_w)
                y0, x0, can_h, can_w = crop
                boxes = F.crop(boxes, top=y0, left=x0, height=can_h, width=can_w)
        pad = params.get("padding")
        if pad is not None:  # zoom-out: the canvas starts `left`/`top` pixels before the image
            left, top, right, bottom = pad
            y0, x0 = -top, -left
            can_h, can_w = src_h + top + bottom, src_w + left + right
            boxes = F.pad(boxes, padding=[left, top, right, bottom])

        # ScaleJitter: the literal's size, from the literal's formula.
        scale = params["jitter_scale"]
        r = min(JITTER_TARGET[1] / can_h, JITTER_TARGET[0] / can_w) * scale
        mid_h, mid_w = int(can_h * r), int(can_w * r)
        boxes = F.resize(boxes, size=[mid_h, mid_w])
        if spec.zoom_out:  # facere_plus: Sanitize(10) after ScaleJitter
            boxes, keep = _sanitize(boxes, keep, min_size=10)
        boxes, keep = _sanitize(boxes, keep, min_size=1)  # the recipes' closing guard

        # The model's resize.
        out_h, out_w = model_resize_size(mid_h, mid_w, self.min_size, self.max_size)
        ratio = torch.tensor([out_w, out_h] * 2, dtype=torch.float32) / torch.tensor(
            [mid_w, mid_h] * 2, dtype=torch.float32
        )
        boxes = tv_tensors.wrap(boxes * ratio, like=boxes, canvas_size=(out_h, out_w))
        # train_transforms' closing guard (SanitizeBoundingBoxes(1) at the model's size), here so
        # that the masks are indexed once.
        boxes, keep = _sanitize(boxes, keep, min_size=1)

        # Per-axis maps: output -> ScaleJitter canvas -> flip/crop/pad canvas -> source.
        rows = _compose(out_h, mid_h, can_h, y0, src_h, flip=False)
        cols = _compose(out_w, mid_w, can_w, x0, src_w, flip=flip)

        masks = _sample_masks(target["masks"], keep, rows.mask_index, cols.mask_index)

        if pad is None:  # the output lies inside the (flipped, cropped) image
            canvas = (y0, x0, can_h, can_w)
            pixels = _resize_canvas(image, canvas, (mid_h, mid_w), (out_h, out_w), flip, photo)
            coverage = None
        else:  # zoom-out: the image covers part of the output, the fill the rest
            src = image
            # The literal's level of detail: where ScaleJitter shrinks the image below its size,
            # shrink it the same way (antialiased) to its footprint first.
            foot_h, foot_w = src_h * mid_h / can_h, src_w * mid_w / can_w
            if foot_h < src_h or foot_w < src_w:
                src, rows, cols = _shrink_source(image, rows, cols, foot_h, foot_w)
            pixels, coverage, (rs, cs) = _sample_image(src, rows, cols, out_h, out_w)
            if _distorts(photo):  # on the output: pointwise steps commute with resampling
                pixels = _photometric(pixels, photo, _contrast_mean(image, photo))
        if coverage is not None:
            canvas = torch.full((3, out_h, out_w), _FILL)
            canvas[:, rs, cs] = pixels.sub_(_FILL).mul_(coverage).add_(_FILL)
            pixels = canvas
        out = dict(target)
        out.update(
            boxes=boxes,
            labels=target["labels"][keep],
            masks=tv_tensors.Mask(masks),
        )
        return tv_tensors.Image(pixels.clamp_(0.0, 1.0)), out


def _size_probe(height: int, width: int) -> tv_tensors.Mask:
    """An empty mask that tells a transform's make_params the image size (no pixels)."""
    return tv_tensors.Mask(torch.empty((0, height, width), dtype=torch.uint8))


def _distorts(photo: dict[str, Any]) -> bool:
    return any(
        photo[k] is not None
        for k in (
            "brightness_factor",
            "contrast_factor",
            "saturation_factor",
            "hue_factor",
            "channel_permutation",
        )
    )


def _sanitize(
    boxes: tv_tensors.BoundingBoxes, keep: torch.Tensor, min_size: float
) -> tuple[tv_tensors.BoundingBoxes, torch.Tensor]:
    """SanitizeBoundingBoxes(min_size) on the kept boxes; `keep` indexes the original ones."""
    valid = F._misc._get_sanitize_bounding_boxes_mask(
        boxes, format=boxes.format, canvas_size=boxes.canvas_size, min_size=min_size
    )
    kept = keep.nonzero().flatten()
    new_keep = torch.zeros_like(keep)
    new_keep[kept[valid]] = True
    return tv_tensors.wrap(boxes[valid], like=boxes), new_keep


def _crop_params(boxes: tv_tensors.BoundingBoxes, height: int, width: int):
    """CropToObjects(margin=50): (top, left, height, width) of the objects' box + margin."""
    p = CropToObjects(margin=CROP_MARGIN).make_params([boxes])
    return p["top"], p["left"], p["height"], p["width"]


def _compose(
    out_size: int, mid_size: int, can_size: int, origin: int, src_size: int, *, flip: bool
) -> _Axis:
    """Output pixel -> source pixel along one axis. `origin` is the canvas' first pixel in
    (flipped) source coordinates: the crop offset, or minus the zoom-out padding."""
    a2, b2 = _centre_map(out_size, mid_size)  # model resize: mid = a2 * out + b2
    a1, b1 = _centre_map(mid_size, can_size)  # ScaleJitter: canvas = a1 * mid + b1
    a, b = a1 * a2, a1 * b2 + b1 + origin  # flipped-source coordinate
    lo, hi = float(origin), float(origin + can_size - 1)
    idx = _nearest_index(mid_size, can_size)[_nearest_index(out_size, mid_size)] + origin
    if flip:  # flipped x = (W - 1) - x
        a, b = -a, (src_size - 1) - b
        lo, hi = (src_size - 1) - hi, (src_size - 1) - lo
        idx = (src_size - 1) - idx
    idx = torch.where((idx >= 0) & (idx < src_size), idx, -1)
    return _Axis(a, b, lo, hi, idx)


def _sample_masks(
    masks: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """The kept masks at the output size: out[k, v, u] = kept[k, rows[v], cols[u]] (0 where an
    index is -1). Each mask is sampled only over the output rows/columns that map into its own
    extent; the input masks are read in place, never copied."""
    masks = masks.as_subclass(torch.Tensor)
    kept = keep.nonzero().flatten().tolist()
    out = torch.zeros((len(kept), len(rows), len(cols)), dtype=masks.dtype)
    for k, i in enumerate(kept):
        m = masks[i]
        r_any = m.any(dim=1).nonzero().flatten()
        c_any = m.any(dim=0).nonzero().flatten()
        if not len(r_any):
            continue
        r_sel = ((rows >= r_any[0]) & (rows <= r_any[-1])).nonzero().flatten()
        c_sel = ((cols >= c_any[0]) & (cols <= c_any[-1])).nonzero().flatten()
        if not len(r_sel) or not len(c_sel):
            continue
        r0, r1 = int(r_sel[0]), int(r_sel[-1]) + 1  # index maps are monotone: a contiguous run
        c0, c1 = int(c_sel[0]), int(c_sel[-1]) + 1
        out[k, r0:r1, c0:c1] = m.index_select(0, rows[r0:r1]).index_select(1, cols[c0:c1])
    return out


def _shrink_source(image: torch.Tensor, rows: _Axis, cols: _Axis, foot_h: float, foot_w: float):
    """Antialiased resize of the source to its footprint (rounded); maps re-expressed on it."""
    _, src_h, src_w = image.shape
    new_h = max(1, min(src_h, round(foot_h)))
    new_w = max(1, min(src_w, round(foot_w)))
    small = F.resize_image(image.as_subclass(torch.Tensor), [new_h, new_w], antialias=True)

    def rebase(axis: _Axis, src: int, new: int) -> _Axis:
        # new-source coordinate = (src coordinate + 0.5) * new / src - 0.5
        k = new / src

        def move(x: float) -> float:
            return (x + 0.5) * k - 0.5

        return _Axis(axis.a * k, move(axis.b), move(axis.lo), move(axis.hi), axis.mask_index)

    return small, rebase(rows, src_h, new_h), rebase(cols, src_w, new_w)


def _resize_canvas(
    image: torch.Tensor,
    canvas: tuple[int, int, int, int],
    mid: tuple[int, int],
    out: tuple[int, int],
    flip: bool,
    photo: dict[str, Any],
) -> torch.Tensor:
    """The literal image path without padding: crop, ScaleJitter to `mid` only where it shrinks
    (antialiased; its upscaling is folded into the model's resize, one bilinear map from the
    crop to `out`), the model's bilinear resize to `out`, flip (a mirror commutes with them).

    The photometric distortion runs on whichever has fewer pixels: the crop (shrunk where
    ScaleJitter shrinks) before the final resize, rounded to uint8 as the literal's distortion of
    the uint8 image is (the literal's order), or the output (pointwise steps commute with
    resampling)."""
    y0, x0, h, w = canvas
    if flip:  # the crop was taken from the flipped image
        x0 = image.shape[-1] - x0 - w
    crop = image[:, y0 : y0 + h, x0 : x0 + w].as_subclass(torch.Tensor)
    if mid[0] < h:
        crop = F.resize_image(crop, list(mid), antialias=True)
    distort = _distorts(photo)
    before = distort and crop.shape[-2] * crop.shape[-1] <= out[0] * out[1]
    if before:
        pixels = _photometric(crop.float().div_(255.0), photo, _contrast_mean(image, photo))
        crop = pixels.mul_(255.0).round_().to(torch.uint8)
    x = crop[None].contiguous(memory_format=torch.channels_last)
    x = nnf.interpolate(x, size=out, mode="bilinear", align_corners=False)[0]
    if flip:
        x = x.flip(-1)
    x = x.float().div_(255.0).contiguous()
    if distort and not before:
        x = _photometric(x, photo, _contrast_mean(image, photo))
    return x


def _sample_image(src: torch.Tensor, rows: _Axis, cols: _Axis, out_h: int, out_w: int):
    """Separable bilinear sampling (align_corners=False) of a uint8 CHW source placed on a fill
    canvas. Returns the float pixels in [0, 1] of the output rectangle the source reaches, its
    coverage by the source per pixel (the rest of that pixel is fill) and the rectangle
    (row slice, column slice); outside it the output is all fill."""
    _, src_h, src_w = src.shape
    taps = []
    for axis, out_size, size in ((rows, out_h, src_h), (cols, out_w, src_w)):
        i0, i1, w0, w1, in0, in1 = _bilinear_taps(axis, out_size, size)
        w0, w1 = w0 * in0, w1 * in1  # padding contributes fill, not image
        cov = w0 + w1
        run = (cov > 0).nonzero().flatten()
        sl = slice(int(run[0]), int(run[-1]) + 1) if len(run) else slice(0, 0)
        i0, i1, w0, w1, cov = (t[sl] for t in (i0, i1, w0, w1, cov))
        w0, w1 = w0 / cov, w1 / cov  # normalised: the image's own values, blended later
        taps.append(
            (sl, i0.clamp(0, size - 1), i1.clamp(0, size - 1), w0.float(), w1.float(), cov.float())
        )
    (rs, ry0, ry1, wy0, wy1, cy), (cs, cx0, cx1, wx0, wx1, cx) = taps
    # Rows first (gathered as uint8, then float), then columns.
    tmp = src.index_select(1, ry0).float().mul_(wy0[None, :, None])
    tmp.add_(src.index_select(1, ry1).float().mul_(wy1[None, :, None]))
    pixels = tmp[:, :, cx0].mul_(wx0).add_(tmp[:, :, cx1].mul_(wx1)).div_(255.0)
    return pixels, (cy[:, None] * cx[None, :])[None], (rs, cs)


def _photometric(img: torch.Tensor, p: dict[str, Any], contrast_mean: float) -> torch.Tensor:
    """RandomPhotometricDistort with the literal parameters on a float image, in the literal order
    (torchvision's float formulas); the contrast mean is given (taken on the source image)."""
    if p["brightness_factor"] is not None:
        img = img.mul(p["brightness_factor"]).clamp_(0.0, 1.0)
    if p["contrast_factor"] is not None and p["contrast_before"]:
        img = _blend(img, contrast_mean, p["contrast_factor"])
    if p["saturation_factor"] is not None:
        img = _blend(img, F.rgb_to_grayscale(img), p["saturation_factor"])
    if p["hue_factor"] is not None:
        img = _adjust_hue(img, p["hue_factor"])
    if p["contrast_factor"] is not None and not p["contrast_before"]:
        img = _blend(img, contrast_mean, p["contrast_factor"])
    if p["channel_permutation"] is not None:
        img = img[p["channel_permutation"]]
    return img


def _blend(img: torch.Tensor, other: Any, factor: float) -> torch.Tensor:
    return (
        img.mul(factor)
        .add_(other * (1.0 - factor) if not isinstance(other, float) else (1.0 - factor) * other)
        .clamp_(0.0, 1.0)
    )


def _adjust_hue(img: torch.Tensor, factor: float) -> torch.Tensor:
    """HSV hue rotation by `factor` turns (torchvision's adjust_hue, in fewer passes)."""
    r, g, b = img.unbind(0)
    minc, maxc = torch.aminmax(img, dim=0)
    chroma = maxc - minc
    inv = torch.where(chroma > 0, chroma, 1.0).reciprocal_()
    # hue in sextants [0, 6): max r: (g - b) / c; max g: (b - r) / c + 2; max b: (r - g) / c + 4
    hue = torch.where(maxc == g, (b - r).mul_(inv).add_(2.0), (r - g).mul_(inv).add_(4.0))
    hue = torch.where(maxc == r, (g - b).mul_(inv), hue)
    hue.add_(6.0 * (1.0 + factor)).remainder_(6.0)
    out = torch.empty_like(img)
    for ch, n in enumerate((5.0, 3.0, 1.0)):  # hsv -> rgb: v - c * clamp(2 - |k - 2|, 0, 1)
        k = torch.add(hue, n).remainder_(6.0).sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
        torch.sub(maxc, k.mul_(chroma), out=out[ch])
    return out


def _contrast_mean(image: torch.Tensor, p: dict[str, Any]) -> float:
    """The grey mean RandomPhotometricDistort's contrast step sees: of the whole source image
    after the steps before it (on a 4x subsample: the mean barely depends on the sampling)."""
    if p["contrast_factor"] is None:
        return 0.0
    sub = image[:, ::4, ::4].float().div_(255.0)
    if p["brightness_factor"] is not None:
        sub = sub.mul_(p["brightness_factor"]).clamp_(0.0, 1.0)
    if not p["contrast_before"]:
        if p["saturation_factor"] is not None:
            sub = _blend(sub, F.rgb_to_grayscale(sub), p["saturation_factor"])
        if p["hue_factor"] is not None:
            sub = _adjust_hue(sub, p["hue_factor"])
    return float(F.rgb_to_grayscale(sub).mean())


def apply_literal(
    name: str,
    image: torch.Tensor,
    target: dict[str, Any],
    params: dict[str, Any],
    min_size: int = 800,
    max_size: int = 1333,
):
    """The literal recipe `name` run with the given parameters (from FastPaperRecipe.draw),
    followed by the model's resize: the reference the fast recipe is checked against.

    Each step is the literal recipe's own transform (presets.py), called with these parameters
    instead of fresh draws; the resize is torchvision's GeneralizedRCNNTransform.resize.
    """
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    spec = SPECS[name]
    sample = (tv_tensors.Image(image), dict(target))

    def run(t: v2.Transform, p: dict[str, Any]):
        return _with_params(t, sample, p)

    sample = run(v2.RandomPhotometricDistort(p=0.5), params["photometric"])
    if params["flip"]:
        sample = run(v2.RandomHorizontalFlip(1.0), {})
    if name == "facere":
        sample = v2.SanitizeBoundingBoxes(min_size=10)(*sample)
        sample = v2.ToDtype(torch.float32, scale=True)(*sample)
        if params["crop"]:
            sample = CropToObjects(margin=CROP_MARGIN)(*sample)
    elif params["padding"] is not None:
        zoom = v2.RandomZoomOut(fill=WHITE_FILL, side_range=(1.0, 8.0), p=1.0)
        sample = run(zoom, {"padding": params["padding"]})
    h, w = sample[0].shape[-2:]
    r = min(JITTER_TARGET[1] / h, JITTER_TARGET[0] / w) * params["jitter_scale"]
    jitter = v2.ScaleJitter(JITTER_TARGET, spec.jitter_range)
    sample = run(jitter, {"size": (int(h * r), int(w * r))})
    if name == "facere_plus":
        sample = v2.SanitizeBoundingBoxes(min_size=10)(*sample)
        sample = v2.ToDtype(torch.float32, scale=True)(*sample)
    img, tgt = v2.SanitizeBoundingBoxes(min_size=1)(*sample)
    resize = GeneralizedRCNNTransform(min_size, max_size, [0.0] * 3, [1.0] * 3).eval()
    plain = {k: tgt[k].as_subclass(torch.Tensor) for k in ("boxes", "masks")}
    img2, plain = resize.resize(img.as_subclass(torch.Tensor), plain)
    tgt = dict(tgt, boxes=plain["boxes"], masks=plain["masks"])
    return img2, tgt


def _with_params(t: v2.Transform, sample: Any, params: dict[str, Any]) -> Any:
    """Transform.forward with given parameters instead of make_params' draws."""
    from torch.utils._pytree import tree_flatten, tree_unflatten

    flat, spec = tree_flatten(sample)
    needs = t._needs_transform_list(flat)
    out = [t.transform(x, params) if n else x for x, n in zip(flat, needs, strict=True)]
    return tree_unflatten(out, spec)
