"""Read the prediction files of the paper's baselines (and COCO results) as COCO result records.

Formats (chosen by the file's suffix):
- `.npy`: a NumPy array of records (dicts), as the original writes them; `.npz`: the same array
  under the key `data`. A record is one image: `image_file` (a `dir/name` value keeps `name`),
  `classes`, `scores`, `boxes` (arrays, one row per detection) and `masks` (compressed RLE dicts,
  `counts` bytes or str). Records without detections may be missing.
- `.json`: a COCO results list (`image_id` or `file_name`, `category_id`, `bbox`, `score`,
  `segmentation`).

Two conventions differ between the baselines and are named options:
- box order: `yxyx` (Attribute Mask R-CNN, Facere/Facere+ files), `xyxy` (FashionFormer),
  `xywh` (COCO results);
- class ids: `fashionpedia` (Fashionpedia ids 0..45, FashionFormer and COCO results),
  `fashionpedia_label` (1..46, Attribute Mask R-CNN and Facere), `fashionfail_label` (1..22 through
  the FashionFail remap, Facere+).
`PRESETS` names them per baseline. The `.npy` / `.npz` records are pickled objects, and loading
a pickle runs code: read only files from a source you trust (as the original does). Bad input
raises DataError naming the file (and the image or record); nothing is skipped silently.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from pycocotools.coco import COCO

from fashionfail.core.categories import LabelSpace
from fashionfail.core.jsonio import DataError, load_json

BOX_ORDERS = ("yxyx", "xyxy", "xywh")
CLASS_IDS = ("fashionpedia", "fashionpedia_label", "fashionfail_label")


@dataclass(frozen=True)
class PredictionFormat:
    box_order: str
    class_ids: str

    def __post_init__(self) -> None:
        if self.box_order not in BOX_ORDERS:
            raise DataError(f"unknown box order {self.box_order!r}; use one of {BOX_ORDERS}")
        if self.class_ids not in CLASS_IDS:
            raise DataError(f"unknown class ids {self.class_ids!r}; use one of {CLASS_IDS}")


PRESETS = {
    "amrcnn": PredictionFormat("yxyx", "fashionpedia_label"),  # Attribute Mask R-CNN
    "fformer": PredictionFormat("xyxy", "fashionpedia"),  # FashionFormer
    "facere": PredictionFormat("yxyx", "fashionpedia_label"),
    "facere_plus": PredictionFormat("yxyx", "fashionfail_label"),
    "coco": PredictionFormat("xywh", "fashionpedia"),  # COCO results JSON (e.g. our predict)
}


def _to_category(class_ids: str) -> tuple[dict[int, int], str]:
    """{id in the file: Fashionpedia id} and the valid range, for a class-id convention."""
    if class_ids == "fashionpedia":
        return {c: c for c in LabelSpace("fashionpedia").dataset_ids}, "0..45"
    space = LabelSpace("fashionpedia" if class_ids == "fashionpedia_label" else "fashionfail")
    n = space.num_classes - 1
    return {k: space.to_category(k) for k in range(1, n + 1)}, f"1..{n}"


def _xywh(boxes: np.ndarray, order: str) -> np.ndarray:
    if order == "xyxy":
        return np.stack(
            [boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1
        )
    if order == "yxyx":
        return np.stack(
            [boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], axis=1
        )
    return boxes


def _read_records(path: Path) -> list:
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = load_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a COCO results list")
        return data
    if suffix not in (".npy", ".npz"):
        raise DataError(f"{path}: unknown prediction file type (use .npy, .npz or .json)")
    try:
        loaded = np.load(path, allow_pickle=True)
        if suffix == ".npz":
            with loaded:
                if "data" not in loaded.files:
                    raise DataError(f"{path}: no 'data' array in the .npz (has {loaded.files})")
                loaded = loaded["data"]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise DataError(f"{path}: not a readable NumPy file ({e})") from None
    return list(np.atleast_1d(loaded))


def _rle(mask: object, where: str, size: tuple[int, int]) -> dict:
    if not isinstance(mask, dict) or "counts" not in mask or "size" not in mask:
        raise DataError(f"{where}: masks must be compressed RLE dicts with size and counts")
    counts = mask["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise DataError(f"{where}: mask counts must be a compressed RLE string (bytes or str)")
    if tuple(int(v) for v in mask["size"]) != size:
        raise DataError(
            f"{where}: mask size {list(mask['size'])} differs from the image's "
            f"{list(size)} (height, width)"
        )
    return {"size": list(size), "counts": counts}


def load_prediction_file(path: str | os.PathLike, gt: COCO, fmt: PredictionFormat) -> list[dict]:
    """COCO result records (Fashionpedia category ids, xywh boxes, str RLE) from `path`.

    Images are matched to the GT by file name. DataError if the file is empty, names images the
    GT does not have (all of them counted, the first listed), has a class id outside the
    convention's range, or has arrays of different lengths or masks of another size.
    """
    path = Path(path)
    records = _read_records(path)
    if not records:
        raise DataError(f"{path}: no predictions in the file")
    by_name = {PurePosixPath(img["file_name"]).name: img for img in gt.dataset["images"]}
    by_id = {img["id"]: img for img in gt.dataset["images"]}
    to_category, valid = _to_category(fmt.class_ids)
    out: list[dict] = []
    unknown: list[str] = []
    for k, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: record {k} is a {type(rec).__name__}, expected a dict")
        if path.suffix.lower() == ".json":
            lacking = [
                key for key in ("category_id", "bbox", "score", "segmentation") if key not in rec
            ]
            if lacking:
                raise DataError(f"{path}: result {k} lacks {', '.join(lacking)}")
            detections = [rec]
            image = (
                by_id.get(rec.get("image_id"))
                if "image_id" in rec
                else by_name.get(PurePosixPath(str(rec.get("file_name", ""))).name)
            )
            name = str(rec.get("image_id", rec.get("file_name")))
        else:
            name = PurePosixPath(str(rec.get("image_file", ""))).name
            image = by_name.get(name)
            detections = None
        if image is None:
            unknown.append(name)
            continue
        where = f"{path}: record {k} ({name})"
        size = (int(image["height"]), int(image["width"]))
        if detections is None:
            detections = _split_record(rec, where)
        for det in detections:
            cls = det.get("category_id")
            if not isinstance(cls, (int, np.integer)) or int(cls) not in to_category:
                raise DataError(f"{where}: class id {cls!r} outside {valid} ({fmt.class_ids})")
            box = np.asarray(det["bbox"], dtype=np.float64).reshape(1, 4)
            out.append(
                {
                    "image_id": image["id"],
                    "category_id": to_category[int(cls)],
                    "bbox": [float(v) for v in _xywh(box, fmt.box_order)[0]],
                    "score": float(det["score"]),
                    "segmentation": _rle(det["segmentation"], where, size),
                }
            )
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DataError(
            f"{path}: {len(unknown)} of {len(records)} records name images not in "
            f"the GT file: {shown}"
        )
    return out


def _split_record(rec: dict, where: str) -> list[dict]:
    """One `.npy` record (one image) -> per-detection dicts in the COCO results' key names."""
    missing = [k for k in ("classes", "scores", "boxes", "masks") if k not in rec]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}")
    classes = np.asarray(rec["classes"]).reshape(-1)
    scores = np.asarray(rec["scores"], dtype=np.float64).reshape(-1)
    boxes = np.asarray(rec["boxes"], dtype=np.float64).reshape(-1, 4)
    masks: Sequence = list(rec["masks"])
    if not len(classes) == len(scores) == len(boxes) == len(masks):
        raise DataError(
            f"{where}: {len(classes)} classes, {len(scores)} scores, "
            f"{len(boxes)} boxes and {len(masks)} masks; expected one of each "
            "per detection"
        )
    if classes.size and not np.all(np.equal(np.mod(classes, 1), 0)):
        raise DataError(f"{where}: class ids must be integers")
    return [
        {"category_id": int(c), "score": s, "bbox": b, "segmentation": m}
        for c, s, b, m in zip(classes, scores, boxes, masks, strict=True)
    ]
