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
        if not isinstance(img, dict):
            raise DataError(f"{source}: images[{i}] is not an object")
        img_id = img.get("id")
        if not _is_id(img_id):
            raise DataError(f"{source}: images[{i}] has no integer 'id' (got {img_id!r})")
        for key in IMAGE_KEYS:
            if key not in img:
                raise DataError(f"{source}: image id {img_id} is missing key {key!r}")
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
        if not isinstance(ann, dict):
            raise DataError(f"{source}: annotations[{i}] is not an object")
        ann_id = ann.get("id")
        if not _is_id(ann_id):
            raise DataError(f"{source}: annotations[{i}] has no integer 'id' (got {ann_id!r})")
        for key in ANNOTATION_KEYS:
            if key not in ann:
                raise DataError(f"{source}: annotation id {ann_id} is missing key {key!r}")
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
