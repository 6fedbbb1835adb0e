"""Structural checks of a COCO-style annotation dict, shared by the split and rle-encode steps.

Everything is indexed once with dicts/sets (one pass over images, one over annotations), so the
checks stay linear on Fashionpedia's 333k annotations. Each failure is a one-line DataError naming
the file and the offending id.
"""

from __future__ import annotations

import os

from fashionfail.jsonio import DataError

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
