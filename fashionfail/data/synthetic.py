"""Embedded synthetic data: Fashionpedia- and FashionFail-shaped files and images, offline.

The data is built so that a small Mask R-CNN trained from random init for a few CPU minutes can
learn it: every Fashionpedia class has one fixed look (`class_appearance`), used in both data
sets, so a model trained on synthetic Fashionpedia transfers to synthetic FashionFail exactly as
Facere is meant to transfer to FashionFail. Only size, aspect, rotation and brightness vary.

Masks are rasterised once with pycocotools from the stored polygons and the pixels are painted
from that very mask, so annotations and pixels agree exactly (up to JPEG).

Everything is drawn from numpy Generators seeded by (cfg.seed, file), so the same config gives the
same JSON bytes and JPEG bytes on every run, and resizing one file does not reshuffle another.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from fashionfail.core.categories import (
    FASHIONFAIL_FP_IDS,
    NUM_FASHIONPEDIA,
    fashionpedia_categories,
)
from fashionfail.core.config import SyntheticSource
from fashionfail.core.jsonio import dump_json
from fashionfail.data.layout import replace_layout

JPEG_QUALITY = 92
NUM_ATTRIBUTES = 294
RLE_FRACTION = 0.05  # share of Fashionpedia annotations stored as compressed RLE (real: ~3.4 %)
FF_URL_PREFIX = "https://assetmanagerpim-res.cloudinary.com/images/"
# Profile `real` (download.synthetic.profile): the real data's image sizes.
REAL_FP_LONG_SIDE = 1024  # Fashionpedia: at most 1024 px on the long side
REAL_FP_HALF_RANGE = (0.04, 0.13)  # object half-sizes / short side: ~7 objects fit, some small
REAL_FF_SIZE = 2400  # FashionFail product shots: 2400 x 2400

# Shapes in the unit frame (x right, y down, half-size ~1). Each is a list of polygons; the
# two-part ones exercise multi-polygon segmentations: "pair" has two disjoint parts (glasses'
# lenses, a pair of shoes), "cross" two overlapping bars whose union is the mask.
SHAPES = (
    "ellipse",
    "rectangle",
    "triangle",
    "pair",
    "diamond",
    "c_ring",
    "cross",
    "star",
    "trapezoid",
    "chevron",
)
# Saturated, well separated hues; backgrounds are kept desaturated so these stand out.
COLOURS = (
    (220, 30, 30),  # red
    (30, 170, 50),  # green
    (35, 70, 230),  # blue
    (240, 205, 20),  # yellow
    (200, 35, 200),  # magenta
    (20, 200, 215),  # cyan
    (250, 125, 15),  # orange
)

TEXTURES = ("plain", "stripes", "dots")


@dataclass(frozen=True)
class Appearance:
    """The fixed look of one class: shape, RGB colour and texture."""

    shape: str
    colour: tuple[int, int, int]
    texture: str


def class_appearance(fp_id: int) -> Appearance:
    """The look of Fashionpedia class `fp_id`, the same in both synthetic data sets.

    len(SHAPES)=10 and len(COLOURS)=7 are coprime, so (shape, colour) is unique for all 46 ids
    (Chinese remainder theorem, 46 < 70): two classes never share both. Neighbouring ids differ in
    shape, colour and texture at once.
    """
    if not 0 <= fp_id < NUM_FASHIONPEDIA:
        raise ValueError(f"not a Fashionpedia category id: {fp_id}")
    return Appearance(
        shape=SHAPES[fp_id % len(SHAPES)],
        colour=COLOURS[fp_id % len(COLOURS)],
        texture=TEXTURES[fp_id % len(TEXTURES)],
    )


def _circle(cx: float, cy: float, r: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _c_ring(n: int = 14) -> np.ndarray:
    # An annulus with a 70-degree gap on the right: ring-like but expressible as one polygon.
    t = np.linspace(np.radians(35), np.radians(325), n)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    inner = 0.5 * outer[::-1]
    return np.concatenate([outer, inner])


def _unit_shape(shape: str) -> list[np.ndarray]:
    a = np.array
    if shape == "ellipse":
        return [_circle(0, 0, 1, 24)]
    if shape == "rectangle":
        return [a([(-1, -0.7), (1, -0.7), (1, 0.7), (-1, 0.7)])]
    if shape == "triangle":
        return [a([(0, -1), (1, 0.8), (-1, 0.8)])]
    if shape == "pair":
        return [_circle(-0.6, 0, 0.4, 16), _circle(0.6, 0, 0.4, 16)]
    if shape == "diamond":
        return [a([(0, -1), (0.75, 0), (0, 1), (-0.75, 0)])]
    if shape == "c_ring":
        return [_c_ring()]
    if shape == "cross":
        return [
            a([(-1, -0.3), (1, -0.3), (1, 0.3), (-1, 0.3)]),
            a([(-0.3, -1), (0.3, -1), (0.3, 1), (-0.3, 1)]),
        ]
    if shape == "star":
        t = np.radians(-90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return [np.stack([r * np.cos(t), r * np.sin(t)], axis=1)]
    if shape == "trapezoid":
        return [a([(-0.5, -0.8), (0.5, -0.8), (1, 0.8), (-1, 0.8)])]
    if shape == "chevron":
        return [a([(-1, 0.2), (0, -0.8), (1, 0.2), (1, 0.85), (0, -0.15), (-1, 0.85)])]
    raise ValueError(f"unknown shape {shape!r}")


@dataclass
class _Object:
    category_id: int
    polygons: list[list[float]]  # flat [x0, y0, x1, y1, ...] per part, as stored in the JSON
    rle: dict  # pycocotools RLE of the true mask (bytes counts)
    mask: np.ndarray  # HxW uint8
    angle: float


def _make_object(
    rng: np.random.Generator,
    fp_id: int,
    size: int | tuple[int, int],
    half: float,
    centre: tuple[float, float],
) -> _Object:
    """Place class `fp_id` with half-size `half` px around `centre` (x, y) in an image of `size`
    (a side, or (height, width)), rasterise its true mask."""
    height, width = (size, size) if isinstance(size, int) else size
    angle = rng.uniform(-15, 15)
    aspect = rng.uniform(0.8, 1.25)
    rad = np.radians(angle)
    rot = np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]])
    scale = np.array([half * aspect, half / aspect])
    polygons = []
    for part in _unit_shape(class_appearance(fp_id).shape):
        xy = (part * scale) @ rot.T + np.asarray(centre)
        xy = np.clip(xy, 0.5, np.array([width, height]) - 0.5)
        polygons.append([round(float(v), 2) for v in xy.ravel()])
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return _Object(fp_id, polygons, rle, mask_utils.decode(rle), angle)


def _paint(img: np.ndarray, obj: _Object, rng: np.random.Generator) -> None:
    """Paint `obj` into `img` exactly on its mask pixels, with its class colour and texture."""
    look = class_appearance(obj.category_id)
    colour = np.asarray(look.colour, float) * rng.uniform(0.85, 1.1) + rng.uniform(-10, 10, 3)
    # Search the mask only inside its box (same pixels, same order as over the whole image).
    x0, y0, w, h = (int(v) for v in mask_utils.toBbox(obj.rle))
    ys, xs = np.nonzero(obj.mask[y0 : y0 + h + 1, x0 : x0 + w + 1])
    ys, xs = ys + y0, xs + x0
    shade = np.ones(len(ys))
    if look.texture == "stripes":
        # Stripes follow the object's rotation so the texture is part of the object's look.
        rad = np.radians(obj.angle)
        shade[((xs * np.cos(rad) + ys * np.sin(rad)) // 3) % 2 == 1] = 0.55
    elif look.texture == "dots":
        shade[(xs % 5 < 2) & (ys % 5 < 2)] = 0.45
    img[ys, xs] = np.clip(colour[None, :] * shade[:, None], 0, 255).astype(np.uint8)


def _noise(rng: np.random.Generator, sigma: float, shape: tuple, fast: bool) -> np.ndarray:
    # float64 keeps the small profile's bytes; float32 halves the cost at real sizes.
    if fast:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    return rng.normal(0, sigma, shape)


def _fp_background(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """A varied but desaturated background: a gradient between two greyish tints plus noise."""
    height, width = (size, size) if isinstance(size, int) else size
    grey = rng.uniform(50, 200, 2)
    tints = grey[:, None] + rng.uniform(-25, 25, (2, 3))
    vertical = rng.random() < 0.5
    ramp = np.linspace(0, 1, height)[:, None] if vertical else np.linspace(0, 1, width)[None, :]
    ramp = np.broadcast_to(ramp, (height, width))[..., None]
    fast = not isinstance(size, int)
    if fast:
        tints, ramp = tints.astype(np.float32), ramp.astype(np.float32)
    img = tints[0] * (1 - ramp) + tints[1] * ramp + _noise(rng, 8, (height, width, 3), fast)
    return np.clip(img, 0, 255).astype(np.uint8)


def _ff_background(rng: np.random.Generator, size: int, fast: bool = False) -> np.ndarray:
    """A near-white product-shot background."""
    base = rng.uniform(238, 252)
    img = (np.float32(base) if fast else base) + _noise(rng, 2, (size, size, 3), fast)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma keeps colour edges on the mask boundary instead of smearing them by a pixel.
    Image.fromarray(img).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def _bbox_area(rle: dict) -> tuple[list[float], int]:
    return [float(v) for v in mask_utils.toBbox(rle)], int(mask_utils.area(rle))


def _rle_json(rle: dict) -> dict:
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _fp_categories(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` category ids with a frequency skew (garments ~3x as common as decorations), each of
    the 46 classes at least once when n allows it."""
    weights = 1.0 / (1.0 + 0.05 * np.arange(NUM_FASHIONPEDIA))
    weights /= weights.sum()
    forced = np.arange(NUM_FASHIONPEDIA) if n >= NUM_FASHIONPEDIA else np.array([], int)
    cats = np.concatenate([forced, rng.choice(NUM_FASHIONPEDIA, n - len(forced), p=weights)])
    rng.shuffle(cats)
    return cats


def _place_fp_objects(
    rng: np.random.Generator,
    cats: np.ndarray,
    size: int | tuple[int, int],
    half_range: tuple[float, float] = (0.08, 0.2),
) -> list[_Object]:
    """Place objects without overlapping masks (bounding boxes may overlap a little), so every
    mask is exactly the visible pixels of its object. An object that finds no room is skipped.
    Half-sizes are drawn from `half_range` times the short side."""
    height, width = (size, size) if isinstance(size, int) else size
    side = min(height, width)
    occupied = np.zeros((height, width), bool)
    placed = []
    for cat in cats:
        for _ in range(20):
            half = side * rng.uniform(*half_range)
            margin = half * 1.3  # rotated, stretched shapes reach ~1.25 half-sizes
            dims = np.array([width, height], float)
            lo, hi = np.full(2, margin), dims - margin
            lo, hi = np.where(hi > lo, lo, dims / 2), np.where(hi > lo, hi, dims / 2)
            centre = tuple(rng.uniform(lo, hi))
            obj = _make_object(rng, int(cat), size, half, centre)
            if obj.mask.any() and not (occupied & obj.mask.astype(bool)).any():
                occupied |= obj.mask.astype(bool)
                placed.append(obj)
                break
    return placed


def _attributes() -> list[dict]:
    supers = ("length", "nickname", "opening type", "silhouette", "textile pattern", "waistline")
    return [
        {
            "id": i,
            "name": f"attribute {i}",
            "supercategory": supers[i % len(supers)],
            "level": 1 + i % 2,
        }
        for i in range(NUM_ATTRIBUTES)
    ]


_LICENSES = [{"id": 1, "name": "synthetic (generated, no rights attached)", "url": ""}]


def _info(description: str) -> dict:
    # No timestamps: the files must be byte-identical across runs.
    return {
        "description": description,
        "version": "1.0",
        "year": 2020,
        "contributor": "fashionfail synthetic generator",
        "url": "",
        "date_created": "",
    }


def _write_fashionpedia(
    rng: np.random.Generator,
    cfg: SyntheticSource,
    n_images: int,
    id_base: int,
    ann_path: Path,
    img_dir: Path,
) -> dict:
    """One Fashionpedia-shaped file: several small objects per image on a varied background.

    Profile `small`: squares of `image_size`. Profile `real`: longest side 1024 px, portrait or
    landscape, short side 55-100 % of it, smaller objects (more per image), as in Fashionpedia.
    """
    real = cfg.profile == "real"
    img_dir.mkdir(parents=True, exist_ok=True)
    n_objects = rng.integers(1, cfg.max_objects + 1, n_images)
    cats = _fp_categories(rng, int(n_objects.sum()))
    # Unique, non-contiguous ids in shuffled file order, as a split must not rely on either.
    image_ids = id_base + rng.choice(np.arange(1, 4 * n_images + 1), n_images, replace=False)
    images, annotations = [], []
    ann_id, start = 0, 0
    for k in range(n_images):
        image_id = int(image_ids[k])
        stem = rng.bytes(16).hex()
        size: int | tuple[int, int] = cfg.image_size
        if real:
            short = int(round(REAL_FP_LONG_SIDE * rng.uniform(0.55, 1.0)))
            portrait = rng.random() < 0.6  # Fashionpedia is mostly portrait photos
            size = (REAL_FP_LONG_SIDE, short) if portrait else (short, REAL_FP_LONG_SIDE)
        height, width = (size, size) if isinstance(size, int) else size
        img = _fp_background(rng, size)
        half_range = REAL_FP_HALF_RANGE if real else (0.08, 0.2)
        objs = _place_fp_objects(rng, cats[start : start + n_objects[k]], size, half_range)
        start += n_objects[k]
        for obj in objs:
            _paint(img, obj, rng)
            bbox, area = _bbox_area(obj.rle)
            ann_id += int(rng.integers(1, 4))
            rle_form = rng.random() < RLE_FRACTION
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": obj.category_id,
                    "attribute_ids": sorted(
                        int(a)
                        for a in rng.choice(NUM_ATTRIBUTES, int(rng.integers(0, 4)), replace=False)
                    ),
                    "segmentation": _rle_json(obj.rle) if rle_form else obj.polygons,
                    "bbox": bbox,
                    "area": area,
                    "iscrowd": 0,
                }
            )
        (img_dir / f"{stem}.jpg").write_bytes(_jpeg_bytes(img))
        images.append(
            {
                "id": image_id,
                "width": width,
                "height": height,
                "file_name": f"{stem}.jpg",
                "license": 1,
                "time_captured": "March-August, 2018",
                "original_url": f"https://synthetic.invalid/fashionpedia/{stem}.jpg",
                "isstatic": 1,
                "kaggle_id": stem,
            }
        )
    coco = {
        "info": _info("Synthetic Fashionpedia-shaped data (fashionfail)"),
        "categories": fashionpedia_categories(),
        "attributes": _attributes(),
        "images": images,
        "annotations": annotations,
        "licenses": _LICENSES,
    }
    dump_json(coco, ann_path)
    return {"images": len(images), "annotations": len(annotations)}


def _write_fashionfail(
    rng: np.random.Generator,
    cfg: SyntheticSource,
    n_images: int,
    split: str,
    ann_path: Path,
    img_dir: Path,
) -> dict:
    """One FashionFail-shaped file: one large, centred object per image on near-white
    (`image_size` squares; 2400 x 2400 with profile `real`, as the published product shots)."""
    size = REAL_FF_SIZE if cfg.profile == "real" else cfg.image_size
    img_dir.mkdir(parents=True, exist_ok=True)
    # Balanced classes: cycle through the 22, then shuffle the order.
    cats = np.array([FASHIONFAIL_FP_IDS[k % len(FASHIONFAIL_FP_IDS)] for k in range(n_images)])
    rng.shuffle(cats)
    images, annotations = [], []
    for k in range(n_images):
        file_name = f"adi_{int(rng.integers(1000, 100000))}_{split}{k + 1}.jpg"
        img = _ff_background(rng, size, fast=cfg.profile == "real")
        half = size * rng.uniform(0.28, 0.38)
        centre = size / 2 + rng.uniform(-0.06, 0.06, 2) * size
        obj = _make_object(rng, int(cats[k]), size, half, tuple(centre))
        _paint(img, obj, rng)
        (img_dir / file_name).write_bytes(_jpeg_bytes(img))
        bbox, area = _bbox_area(obj.rle)
        images.append(
            {
                "id": k + 1,
                "file_name": file_name,
                "width": size,
                "height": size,
                "license": 1,
                "original_url": FF_URL_PREFIX + file_name,
            }
        )
        annotations.append(
            {
                "id": k + 1,
                "image_id": k + 1,
                "category_id": obj.category_id,
                "area": area,
                "iscrowd": 0,
                "bbox": bbox,
                "segmentation": _rle_json(obj.rle),
            }
        )
    coco = {
        "info": _info(f"Synthetic FashionFail-shaped data, {split} (fashionfail)"),
        "licenses": _LICENSES,
        "categories": fashionpedia_categories(),
        "images": images,
        "annotations": annotations,
    }
    dump_json(coco, ann_path)
    return {"images": len(images), "annotations": len(annotations)}


def generate(cfg: SyntheticSource, out_root: Path) -> dict:
    """Write the synthetic raw layout under `out_root`; return a report with counts.

    out_root/fashionpedia/{instances_attributes_train2020,instances_attributes_val2020}.json,
    out_root/fashionpedia/images/{train,test}/ (val2020 images live in test/, as in the official
    zip), out_root/fashionfail/ff_{train,val,test}.json and out_root/fashionfail/images/<split>/.
    Each of the two trees is built in a temporary folder and renamed into place, so a failure
    never leaves a half-written tree.
    """

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, stream])

    with replace_layout(out_root, ".synthetic-") as tmp:
        fp, ff = tmp / "fashionpedia", tmp / "fashionfail"
        report = {"source": "synthetic", "seed": cfg.seed, "image_size": cfg.image_size}
        if cfg.profile != "small":
            report["profile"] = cfg.profile
        report["fashionpedia"] = {
            "train2020": _write_fashionpedia(
                rng(0),
                cfg,
                cfg.fp_train_images,
                0,
                fp / "instances_attributes_train2020.json",
                fp / "images" / "train",
            ),
            # Val ids from their own range: the two official files do not share image ids.
            "val2020": _write_fashionpedia(
                rng(1),
                cfg,
                cfg.fp_val_images,
                10 * cfg.fp_train_images + 1000,
                fp / "instances_attributes_val2020.json",
                fp / "images" / "test",
            ),
        }
        sizes = {"train": cfg.ff_train_images, "val": cfg.ff_val_images, "test": cfg.ff_test_images}
        report["fashionfail"] = {
            split: _write_fashionfail(
                rng(2 + k), cfg, n, split, ff / f"ff_{split}.json", ff / "images" / split
            )
            for k, (split, n) in enumerate(sizes.items())
        }
    return report
