"""The paper's train/val split of Fashionpedia-train, image-wise.

The image ids are exactly those of `sklearn.model_selection.train_test_split(ids, test_size=
val_fraction, random_state=seed)` over the ids in the order of the file's `images` list
(FACTS.md: 34,217 / 11,406 on the real file with 0.25 / 42). Results are only comparable with the
paper on this exact split, so sklearn itself does the draw.

Output order: images and annotations keep their order in the input file (a stable, diff-friendly
order that does not depend on sklearn's permutation); an annotation goes wherever its image goes.
"""

from __future__ import annotations

import os

from fashionfail.core.jsonio import DataError
from fashionfail.data.coco_checks import check_annotations
from fashionfail.data.coco_io import dump_coco, gc_paused, load_coco


def split_ids(image_ids: list[int], val_fraction: float, seed: int) -> tuple[list, list]:
    """(train ids, val ids) exactly as the paper drew them."""
    # Imported here: sklearn pulls in scipy (~0.8 s), which only the split itself needs.
    from sklearn.model_selection import train_test_split

    train_ids, val_ids = train_test_split(image_ids, test_size=val_fraction, random_state=seed)
    return list(train_ids), list(val_ids)


def split_coco(coco: dict, val_fraction: float, seed: int) -> tuple[dict, dict]:
    """Split a validated COCO dict into (train, val) dicts by image.

    All other top-level keys (info, categories, attributes, licenses, ...) are kept in both;
    images and annotations stay in file order. The input dict is not modified.
    """
    ids = [img["id"] for img in coco["images"]]
    try:
        _, val_ids = split_ids(ids, val_fraction, seed)
    except ValueError as e:  # sklearn: too few images for this fraction (0 or 1 image, ...)
        raise DataError(
            f"cannot split {len(ids)} images with val_fraction {val_fraction}: {e}"
        ) from None
    val_set = set(val_ids)
    parts = []
    for in_val in (False, True):
        rows = {
            "images": [img for img in coco["images"] if (img["id"] in val_set) is in_val],
            "annotations": [
                ann for ann in coco["annotations"] if (ann["image_id"] in val_set) is in_val
            ],
        }
        # Same keys in the same order as the input.
        parts.append({k: rows.get(k, v) for k, v in coco.items()})
    return parts[0], parts[1]


def split_file(
    ann: str | os.PathLike,
    train_out: str | os.PathLike,
    val_out: str | os.PathLike,
    val_fraction: float,
    seed: int,
) -> dict:
    """Load and validate `ann`, split it, write both halves atomically; return counts.

    The validator (coco_checks) runs its structure, category and box rules: an ERROR rule
    (unknown category id, malformed box, ...) stops the split naming the file and annotation id,
    as training would; annotations breaking a DROP or COUNT rule (e.g. a box outside its image)
    are kept (rle-encode and training drop them) and counted under "checks".
    Values split does not read (polygons, attributes, info, ...) are copied byte for byte.
    """
    with gc_paused():
        coco = load_coco(ann)
        checks = check_annotations(coco, ann, tolerated="count", segmentation=False)
        try:
            train, val = split_coco(coco, val_fraction, seed)
        except DataError as e:
            raise DataError(f"{ann}: {e}") from None
        # Both writes are atomic; if the second fails the first is removed so that the pair is
        # never half updated.
        dump_coco(train, train_out)
        try:
            dump_coco(val, val_out)
        except BaseException:
            os.unlink(train_out)
            raise
    return {
        "input": str(ann),
        "val_fraction": val_fraction,
        "seed": seed,
        "train": {"images": len(train["images"]), "annotations": len(train["annotations"])},
        "val": {"images": len(val["images"]), "annotations": len(val["annotations"])},
        "checks": checks.as_dict(),
    }
