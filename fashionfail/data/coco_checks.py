"""Checks of COCO-style annotation files: structure, categories and boxes (from the first stage
that reads a file: split, rle-encode), then segmentations and image files (training datasets,
evaluation ground truth), one validator for all.

Everything is indexed once with dicts/sets (one pass over images, one over annotations), so the
checks stay linear on Fashionpedia's 333k annotations. Each failure is a one-line DataError naming
the file and the offending id.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from pathlib import Path

import msgspec

from fashionfail.core.jsonio import DataError

TOP_LEVEL_KEYS = ("images", "annotations", "categories")
IMAGE_KEYS = ("id", "width", "height", "file_name")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "bbox")


def _check_list(coco: dict, key: str, source: str) -> list:
    value = coco[key]
    if not isinstance(value, list):
        raise DataError(f"{source}: top-level {key!r} must be a list, got {type(value).__name__}")
    return value


def _is_id(value: object) -> bool:
    # bool is an int subclass; True as an id is a bug upstream, not an id.
    return isinstance(value, int) and not isinstance(value, bool)


def _record_id(record: object, i: int, table: str, keys: tuple[str, ...], source: str) -> int:
    """The integer id of `table[i]` after checking it is an object holding `keys`."""
    if not isinstance(record, dict):
        raise DataError(f"{source}: {table}[{i}] is not an object")
    rid = record.get("id")
    if not _is_id(rid):
        raise DataError(f"{source}: {table}[{i}] has no integer 'id' (got {rid!r})")
    kind = "image" if table == "images" else "annotation"
    for key in keys:
        if key not in record:
            raise DataError(f"{source}: {kind} id {rid} is missing key {key!r}")
    return rid


def index_images(coco: object, source: str | os.PathLike) -> dict[int, dict]:
    """Validate `coco` and return its images indexed by id.

    Checks the top-level keys, the required keys of every image and annotation, duplicate image
    ids and duplicate annotation ids. Annotations pointing at unknown image ids are NOT an error
    here: the rle-encode step treats them under its `invalid` policy; use `validate_coco` for the
    strict check.
    """
    if not isinstance(coco, dict):
        raise DataError(f"{source}: expected a JSON object at the top level")
    missing = [k for k in TOP_LEVEL_KEYS if k not in coco]
    if missing:
        raise DataError(f"{source}: missing top-level key {missing[0]!r}")
    images = _check_list(coco, "images", source)
    annotations = _check_list(coco, "annotations", source)

    by_id: dict[int, dict] = {}
    for i, img in enumerate(images):
        img_id = _record_id(img, i, "images", IMAGE_KEYS, source)
        if not (
            _is_id(img["width"])
            and _is_id(img["height"])
            and img["width"] > 0
            and img["height"] > 0
        ):
            raise DataError(f"{source}: image id {img_id} has a non-positive or non-integer size")
        if img_id in by_id:
            raise DataError(f"{source}: duplicate image id {img_id}")
        by_id[img_id] = img

    seen: set[int] = set()
    for i, ann in enumerate(annotations):
        ann_id = _record_id(ann, i, "annotations", ANNOTATION_KEYS, source)
        if ann_id in seen:
            raise DataError(f"{source}: duplicate annotation id {ann_id}")
        seen.add(ann_id)
    return by_id


def validate_coco(coco: object, source: str | os.PathLike) -> dict[int, dict]:
    """`index_images` plus: every annotation must reference a known image id."""
    by_id = index_images(coco, source)
    for ann in coco["annotations"]:
        if ann["image_id"] not in by_id:
            raise DataError(
                f"{source}: annotation id {ann['id']} references unknown image id "
                f"{ann['image_id']!r}"
            )
    return by_id


# --- Geometry and categories: one validator for training sets and evaluation ground truth ------
#
# Rules (the name appears in the message and in the reports). ERROR: the file is broken and a
# result computed from it would be wrong (masks misaligned with pixels, pycocotools misreading or
# crashing), so the run stops with one line naming the file, the id and the rule. DROP: the
# original pipeline tolerates it (its SanitizeBoundingBoxes drops degenerate boxes, rle-encode
# drops empty geometry); in a training set the annotation is dropped and counted, in evaluation
# ground truth it is an ERROR (dropping GT would silently change mAP). COUNT: kept as is (the
# original scores it as is) and counted in the report.
ERROR_RULES = {
    "unknown_category": "category_id not in the label space / the file's categories",
    "malformed_bbox": "bbox is not [x, y, w, h] of 4 numbers",
    "non_finite_bbox": "bbox holds NaN or infinity",
    "malformed_segmentation": "neither a polygon list nor an RLE dict with counts and size",
    "malformed_polygon": "polygon part not a list of >= 6 numbers of even length",
    "rle_size_mismatch": "RLE size differs from the image's [height, width]",
}
DROP_RULES = {
    "degenerate_bbox": "bbox width or height <= 0",
    "bbox_outside_image": "bbox does not overlap its image",
    "empty_segmentation": "empty polygon list",
}
COUNT_RULES = {
    "bbox_beyond_image": "bbox more than 1 px beyond its image (kept, as the original does)",
}
# Image files against their entry in the annotation file (check_image_files): all ERRORS.
IMAGE_RULES = {
    "image_file_missing": "no file for an image of the annotation file",
    "image_undecodable": "not an image Pillow can decode (HTML page, truncated download, ...)",
    "image_too_large": "over Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS)",
    "image_size_mismatch": "the file's width/height differ from the annotation file's",
}
BEYOND_TOLERANCE_PX = 1.0
EXAMPLES = 5  # annotation ids kept per rule in a report


def _is_number(v: object) -> bool:
    return type(v) is float or type(v) is int  # not bool (an int subclass), not a str


def _bbox_problem(bbox: object, w: int, h: int) -> tuple[str, str] | None:
    if not (isinstance(bbox, list) and len(bbox) == 4):
        return "malformed_bbox", f"bbox {bbox!r} is not [x, y, w, h]"
    x, y, bw, bh = bbox
    if not (_is_number(x) and _is_number(y) and _is_number(bw) and _is_number(bh)):
        return "malformed_bbox", f"bbox {bbox!r} is not [x, y, w, h]"
    if not (math.isfinite(x + y + bw + bh)):
        return "non_finite_bbox", f"bbox {bbox!r} is not finite"
    if bw <= 0 or bh <= 0:
        return "degenerate_bbox", f"bbox {bbox!r} has zero or negative size"
    if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
        return "bbox_outside_image", f"bbox {bbox!r} lies outside the {w}x{h} image"
    t = BEYOND_TOLERANCE_PX
    if x < -t or y < -t or x + bw > w + t or y + bh > h + t:
        return "bbox_beyond_image", f"bbox {bbox!r} extends beyond the {w}x{h} image"
    return None


def _segmentation_problem(seg: object, w: int, h: int) -> tuple[str, str] | None:
    if isinstance(seg, dict):
        counts, size = seg.get("counts"), seg.get("size")
        if not isinstance(counts, (str, list)) or not isinstance(size, list):
            return "malformed_segmentation", "RLE without str/list counts and a size"
        if size != [h, w]:
            return "rle_size_mismatch", f"RLE size {size!r} != image [height, width] {[h, w]}"
        if isinstance(counts, list) and not (
            all(_is_id(c) and c >= 0 for c in counts) and sum(counts) == h * w
        ):
            return "malformed_segmentation", f"uncompressed RLE counts do not sum to {h * w}"
        return None
    if not isinstance(seg, list):
        return "malformed_segmentation", f"segmentation is a {type(seg).__name__}"
    if not seg:
        return "empty_segmentation", "empty polygon list"
    for part in seg:
        if not (
            isinstance(part, list)
            and len(part) >= 6
            and len(part) % 2 == 0
            and all(_is_number(v) and math.isfinite(v) for v in part)
        ):
            return "malformed_polygon", "polygon part is not a list of >= 6 numbers (3 points)"
    return None


class CheckReport:
    """Counts per rule of what `check_annotations` dropped or flagged, with example ids."""

    def __init__(self) -> None:
        self.dropped: dict[str, int] = {}
        self.counted: dict[str, int] = {}
        self.examples: dict[str, list] = {}
        self.annotations_in = self.annotations_kept = 0

    def add(self, table: dict[str, int], rule: str, ann_id: object) -> None:
        table[rule] = table.get(rule, 0) + 1
        ids = self.examples.setdefault(rule, [])
        if len(ids) < EXAMPLES:
            ids.append(ann_id)

    def as_dict(self) -> dict:
        return {
            "annotations_in": self.annotations_in,
            "annotations_kept": self.annotations_kept,
            "dropped": dict(sorted(self.dropped.items())),
            "counted": dict(sorted(self.counted.items())),
            "example_annotation_ids": dict(sorted(self.examples.items())),
        }

    def summary(self) -> str:
        """'' when nothing was dropped or counted, else e.g. 'dropped 2 (degenerate_bbox 2)'."""
        parts = []
        for label, table in (("dropped", self.dropped), ("counted", self.counted)):
            if table:
                detail = ", ".join(f"{k} {v}" for k, v in sorted(table.items()))
                parts.append(f"{label} {sum(table.values())} ({detail})")
        return "; ".join(parts)


def file_category_ids(coco: dict, source: str | os.PathLike) -> set:
    """The ids of the file's 'categories' (also when coco_io left them undecoded)."""
    cats = coco["categories"]
    if isinstance(cats, msgspec.Raw):
        try:
            cats = msgspec.json.decode(cats)
        except msgspec.DecodeError as e:
            raise DataError(f"{source}: 'categories' cannot be read ({e})") from None
    if not isinstance(cats, list) or not all(isinstance(c, dict) and "id" in c for c in cats):
        raise DataError(f"{source}: every category needs an 'id'")
    return {c["id"] for c in cats}


def annotation_problem(
    ann: dict,
    img: dict,
    allowed: Collection[int],
    category_label: str = "in 'categories'",
    segmentation: bool = True,
) -> tuple[str, str] | None:
    """(rule, detail) of the first rule `ann` breaks, or None; `segmentation=False` checks only
    its category and bbox (split and rle-encode, which leave or check the geometry themselves)."""
    if ann["category_id"] not in allowed:
        return "unknown_category", f"category_id {ann['category_id']!r}, not {category_label}"
    w, h = img["width"], img["height"]
    problem = _bbox_problem(ann["bbox"], w, h)
    if problem is None and segmentation:
        problem = _segmentation_problem(ann["segmentation"], w, h)
    return problem


def annotation_error(source: str | os.PathLike, ann: dict, detail: str, rule: str) -> DataError:
    """The one-line error `<file>: annotation id N (image M): <detail> (<rule>)`."""
    return DataError(
        f"{source}: annotation id {ann['id']} (image {ann['image_id']!r}): {detail} ({rule})"
    )


TOLERATED = ("drop", "count", "error")


def check_annotations(
    coco: dict,
    source: str | os.PathLike,
    *,
    category_ids: Collection[int] | None = None,
    category_label: str = "in 'categories'",
    tolerated: str = "drop",
    segmentation: bool = True,
) -> CheckReport:
    """Validate every annotation of a COCO dict; drop the tolerated ones in place.

    Structure first (`validate_coco`: keys, duplicate ids, unknown image ids), then per annotation
    the rules above. `category_ids`: the allowed category ids (default: those of 'categories').
    `tolerated`: what becomes of an annotation breaking a DROP rule: "drop" (training sets),
    "count" (kept and counted: split, which copies its input as is) or "error" (evaluation ground
    truth, which must be scored as given). `segmentation=False` skips the segmentation rules
    (split: coco_io leaves segmentations undecoded). Raises DataError
    `<file>: annotation id N (image M): <detail> (<rule>)` on the first error.
    """
    if tolerated not in TOLERATED:
        raise ValueError(f"tolerated must be one of {TOLERATED}, got {tolerated!r}")
    images = validate_coco(coco, source)
    allowed = set(category_ids) if category_ids is not None else file_category_ids(coco, source)
    report = CheckReport()
    kept = []
    for ann in coco["annotations"]:
        problem = annotation_problem(
            ann, images[ann["image_id"]], allowed, category_label, segmentation
        )
        if problem is not None:
            rule, detail = problem
            if rule in COUNT_RULES or (rule in DROP_RULES and tolerated == "count"):
                report.add(report.counted, rule, ann["id"])
            elif rule in DROP_RULES and tolerated == "drop":
                report.add(report.dropped, rule, ann["id"])
                continue
            else:
                raise annotation_error(source, ann, detail, rule)
        kept.append(ann)
    report.annotations_in, report.annotations_kept = len(coco["annotations"]), len(kept)
    coco["annotations"] = kept
    return report


# --- Image files against their annotations ------------------------------------------------------


# What a complete file of these formats ends with (JPEG: the EOI marker; PNG: the IEND chunk),
# looked for in its last bytes: a truncated download lacks it.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_BYTES = 1024


def looks_truncated(path: Path, fmt: str | None) -> bool:
    """Whether a JPEG / PNG file lacks its end marker in its last KiB (other formats: False)."""
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return False
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        return marker not in f.read()


def _image_problem(path: Path, width: int, height: int) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            size = im.size
            if looks_truncated(path, im.format):
                im.load()  # only suspicious files are decoded in full: a real truncation raises
    except FileNotFoundError:
        return "image file not found (image_file_missing)"
    except Image.DecompressionBombError as e:
        return f"{e} (image_too_large)"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"cannot decode image ({e}) (image_undecodable)"
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        return (
            f"image has {size[0] * size[1]} pixels, over Pillow's decompression-bomb limit "
            f"MAX_IMAGE_PIXELS={limit} (image_too_large)"
        )
    if size != (width, height):
        return (
            f"image is {size[0]}x{size[1]} (WxH) but the annotation file says {width}x{height} "
            "(image_size_mismatch)"
        )
    return None


def check_image_files(
    images: Collection[dict],
    img_dir: str | os.PathLike,
    source: str | os.PathLike,
    workers: int = 8,
) -> None:
    """Every image of an annotation file exists, opens, is within Pillow's decompression-bomb
    limit, has the width/height the file says and (JPEG, PNG) ends as a complete file does
    (headers and the last KiB only: ~0.1 ms per image; a file without its end marker is decoded
    in full to tell a truncation from trailing bytes).

    DataError `<image path>: <problem> (<rule>) for image id N of <file>` on the first problem,
    with the number of other images that have one. Other corrupt pixel data past a valid header
    shows only when the image is decoded: the loaders report it in one line too.
    """
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    img_dir = Path(img_dir)
    images = list(images)
    if not img_dir.is_dir():
        raise DataError(f"{img_dir}: image folder not found (images of {source})")
    if not images:
        return
    paths = [img_dir / img["file_name"] for img in images]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max(1, min(workers, len(images)))) as pool:
            sizes = [(i["width"], i["height"]) for i in images]
            problems = list(pool.map(_image_problem, paths, *zip(*sizes, strict=True)))
    bad = [(p, i, what) for p, i, what in zip(paths, images, problems, strict=True) if what]
    if bad:
        path, img, problem = bad[0]
        more = f" (+{len(bad) - 1} more images with problems)" if len(bad) > 1 else ""
        raise DataError(f"{path}: {problem} for image id {img['id']} of {source}{more}")
