"""rle-encode: turn every segmentation of a COCO file into compressed RLE with str counts.

A polygon list becomes exactly `mask.merge(mask.frPyObjects(polygons, h, w))` (the union of its
parts, as pycocotools/torchvision read it); uncompressed RLE (list counts) is compressed; existing
compressed RLE is kept. Training then decodes one RLE per object instead of rasterising polygons
every epoch, and no polygon edge case can reach the data loader.

Each annotation's category and box go through the validator training uses (coco_checks, with the
file's categories as the label space): its ERROR rules (unknown_category, malformed_bbox,
non_finite_bbox) stop the stage with the one-line error training would give, whatever the policy;
its COUNT rule (bbox_beyond_image) keeps the annotation and counts it under "counted".
Invalid geometry follows the `invalid` policy ("drop": the annotation is dropped and counted per
reason in the report, with its id among the first few examples; "error": DataError
`<file>: annotation id N (image M): <detail> (<reason>)`). Reasons:
  unknown_image_id, degenerate_bbox (width or height <= 0), bbox_outside_image,
  empty_segmentation, polygon_too_short (< 6 numbers: pycocotools reads 4 numbers as a box and
  rejects fewer), polygon_odd_length, malformed_segmentation, rle_size_mismatch (RLE size !=
  image height/width), empty_mask.
A polygon list where only SOME parts are invalid keeps its valid parts: the bad parts are dropped
and counted under `dropped_polygon_parts` (the object is still there, one bad part of a multi-part
outline should not cost the whole object). Under "error" any invalid part is an error.

Speed and memory: the file is loaded lazily (coco_io: segmentations stay undecoded bytes in this
process), and the segmentations are decoded and encoded by a process pool over all cores, fed with
compact per-chunk JSON payloads [[segmentation, height, width], ...] rather than the whole dict.
The pool is forked before the file is loaded so the workers stay small. Order is preserved.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from multiprocessing.pool import Pool
from pathlib import Path
from typing import NamedTuple

import msgspec
from pycocotools import mask as mask_utils

from fashionfail.core.config import RLE_POLICIES as POLICIES
from fashionfail.core.jsonio import dump_json
from fashionfail.data.coco_checks import (
    COUNT_RULES,
    ERROR_RULES,
    annotation_error,
    annotation_problem,
    file_category_ids,
    index_images,
)
from fashionfail.data.coco_io import dump_coco, gc_paused, load_coco

CHUNK = 4000  # annotations per worker task: ~2 MB payload, ~0.1 s of work
EXAMPLES = 5  # offending annotation ids kept per reason in the report
POOL_MIN_BYTES = 16 << 20  # below this a pool costs more than it saves

# One result per annotation: (counts, None, dropped-part reasons) or (None, reason, detail).
Result = tuple


def _part_problem(part: object) -> tuple[str, str] | None:
    """(reason, detail) if one polygon part cannot be a polygon, else None."""
    if not isinstance(part, list):
        return "malformed_segmentation", f"polygon part is a {type(part).__name__}, not a list"
    if len(part) < 6:
        return "polygon_too_short", f"polygon part has {len(part)} numbers (< 6)"
    if len(part) % 2:
        return "polygon_odd_length", f"polygon part has an odd number of values ({len(part)})"
    return None


def _encode_polygons(seg: list, h: int, w: int) -> Result:
    if not seg:
        return None, "empty_segmentation", "empty polygon list"
    good, bad = [], []
    for part in seg:
        problem = _part_problem(part)
        if problem is None:
            good.append(part)
        else:
            bad.append(problem)
    if not good:
        return None, *bad[0]
    try:
        rles = mask_utils.frPyObjects(good, h, w)
        # merge of one RLE is that RLE: skipping it saves ~10 % on Fashionpedia-scale files.
        rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles)
    except (TypeError, ValueError) as e:
        return None, "malformed_segmentation", f"polygon not readable by pycocotools ({e})"
    if mask_utils.area(rle) == 0:
        return None, "empty_mask", "polygon covers no pixel"
    return rle["counts"].decode("ascii"), None, bad


def _encode_rle(seg: dict, h: int, w: int) -> Result:
    size, counts = seg.get("size"), seg.get("counts")
    if size != [h, w]:
        return None, "rle_size_mismatch", f"RLE size {size!r} != image [height, width] {[h, w]}"
    if isinstance(counts, str):
        rle = {"size": size, "counts": counts.encode("ascii")}
    elif isinstance(counts, list):
        if sum(counts) != h * w:
            return None, "malformed_segmentation", f"RLE counts sum to {sum(counts)} != {h * w}"
        try:
            rle = mask_utils.frPyObjects(seg, h, w)
        except (TypeError, ValueError, OverflowError) as e:
            return None, "malformed_segmentation", f"RLE not readable by pycocotools ({e})"
    else:
        return None, "malformed_segmentation", "RLE counts is neither a str nor a list"
    if mask_utils.area(rle) == 0:
        return None, "empty_mask", "RLE covers no pixel"
    return rle["counts"].decode("ascii") if isinstance(counts, list) else counts, None, []


def encode_segmentation(seg: object, h: int, w: int) -> Result:
    """Encode one segmentation for an h x w image.

    Returns (counts, None, dropped_parts) on success, dropped_parts being (reason, detail) of
    the polygon parts left out, or (None, reason, detail) if the annotation is invalid.
    """
    if isinstance(seg, list):
        return _encode_polygons(seg, h, w)
    if isinstance(seg, dict):
        return _encode_rle(seg, h, w)
    return None, "malformed_segmentation", f"segmentation is a {type(seg).__name__}"


def _seg_kind(seg: object) -> str:
    if isinstance(seg, dict):
        return "compressed_rle" if isinstance(seg.get("counts"), str) else "uncompressed_rle"
    return "polygon" if isinstance(seg, list) else "other"


def _encode_payload(payload: bytes) -> list[tuple[str, Result]]:
    """Worker entry point: one chunk as JSON bytes [[seg, h, w], ...] -> (kind, result) each."""
    return [(_seg_kind(seg), encode_segmentation(seg, h, w)) for seg, h, w in _decode(payload)]


_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _precheck(
    ann: dict, images: dict[int, dict], categories: set, source: str | os.PathLike
) -> tuple[str, str] | None:
    """Problems visible without touching the geometry: the image id, then the validator's
    category and box rules (coco_checks), whose ERROR rules stop the stage whatever the policy."""
    img = images.get(ann["image_id"])
    if img is None:
        return "unknown_image_id", f"unknown image id {ann['image_id']!r}"
    problem = annotation_problem(ann, img, categories, segmentation=False)
    if problem is not None and problem[0] in ERROR_RULES:
        raise annotation_error(source, ann, problem[1], problem[0])
    return problem


class _Tally:
    """Counts per reason plus the first few offending annotation ids."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list] = {}

    def add(self, reason: str, ann_id: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        ids = self.examples.setdefault(reason, [])
        if len(ids) < EXAMPLES and ann_id not in ids:
            ids.append(ann_id)

    def as_dict(self) -> dict:
        return {
            "counts": dict(sorted(self.counts.items())),
            "example_annotation_ids": dict(sorted(self.examples.items())),
        }


class _Planned(NamedTuple):
    """One annotation of a chunk: the image size its geometry is encoded for, or its problem."""

    ann: dict
    size: list[int] | None  # [height, width] when the geometry goes to the encoder
    problem: tuple[str, str] | None  # (reason, detail) found before encoding (image id, bbox)
    counted: str | None = None  # a COUNT rule it breaks (kept, counted in the report)


def _plan_chunks(
    annotations: list[dict], images: dict[int, dict], categories: set, source: str | os.PathLike
) -> Iterator[tuple[list[_Planned], bytes]]:
    """CHUNK annotations at a time: their plan and the payload [[seg, h, w], ...] to encode."""
    for start in range(0, len(annotations), CHUNK):
        plan, items = [], []
        for ann in annotations[start : start + CHUNK]:
            problem = _precheck(ann, images, categories, source)
            counted = None
            if problem is not None and problem[0] in COUNT_RULES:
                counted, problem = problem[0], None
            size = None
            if problem is None:
                img = images[ann["image_id"]]
                size = [img["height"], img["width"]]
                # The segmentation may still be raw JSON bytes (coco_io): encoded verbatim.
                items.append([ann["segmentation"], *size])
            plan.append(_Planned(ann, size, problem, counted))
        yield plan, _encode(items)


def _encoded_chunks(
    chunks: Iterator[tuple[list[_Planned], bytes]], pool: Pool | None, max_in_flight: int
) -> Iterator[tuple[list[_Planned], list[tuple[str, Result]]]]:
    """(plan, results of its payload) per chunk, in order: in this process, or on `pool`."""
    if pool is None:
        for plan, payload in chunks:
            yield plan, _encode_payload(payload)
        return
    # Bounded in-flight window: workers stay busy while at most a few payloads sit in memory
    # (Pool.imap would serialise every chunk up front).
    window: deque = deque()
    for plan, payload in chunks:
        window.append((plan, pool.apply_async(_encode_payload, (payload,))))
        if len(window) >= max_in_flight:
            first, result = window.popleft()
            yield first, result.get()
    while window:
        first, result = window.popleft()
        yield first, result.get()


def _outcomes(
    plan: list[_Planned], results: list[tuple[str, Result]]
) -> Iterator[tuple[_Planned, str | None, Result]]:
    """Each planned annotation with its segmentation kind and Result, in order.

    Annotations rejected before encoding have no kind and the Result (None, reason, detail).
    """
    encoded = iter(results)
    for planned in plan:
        if planned.problem is not None:
            yield planned, None, (None, *planned.problem)
        else:
            kind, result = next(encoded)
            yield planned, kind, result


def _check_policy(invalid: str) -> None:
    if invalid not in POLICIES:
        raise ValueError(f"invalid must be one of {POLICIES}, got {invalid!r}")


def encode_coco(
    coco: dict,
    source: str | os.PathLike,
    invalid: str = "drop",
    pool: Pool | None = None,
    max_in_flight: int = 5,
) -> dict:
    """Encode all segmentations of `coco` in place; return the report (without file names).

    `pool`: a multiprocessing pool to spread the work over, or None to work in this process;
    `max_in_flight`: chunks submitted to it at a time (bounds the payloads held in memory).
    """
    _check_policy(invalid)
    images = index_images(coco, source)
    categories = file_category_ids(coco, source)
    annotations = coco["annotations"]
    kinds: dict[str, int] = {}
    dropped, dropped_parts, counted = _Tally(), _Tally(), _Tally()
    kept: list[dict] = []
    chunks = _plan_chunks(annotations, images, categories, source)
    for plan, results in _encoded_chunks(chunks, pool, max_in_flight):
        for (ann, size, _, rule), kind, (counts, reason, extra) in _outcomes(plan, results):
            if kind is not None:
                kinds[kind] = kinds.get(kind, 0) + 1
            # A rejected annotation's problem, or the polygon parts dropped from a kept one.
            problems = [(reason, extra)] if counts is None else extra
            if problems and invalid == "error":
                first_reason, detail = problems[0]
                raise annotation_error(source, ann, detail, first_reason)
            if counts is None:
                dropped.add(reason, ann["id"])
                continue
            for part_reason, _detail in extra:
                dropped_parts.add(part_reason, ann["id"])
            if rule is not None:
                counted.add(rule, ann["id"])
            ann["segmentation"] = {"size": size, "counts": counts}
            if extra:  # parts were dropped: `area` (COCOeval's size ranges) must match the mask
                ann["area"] = float(mask_utils.area({"size": size, "counts": counts.encode()}))
            kept.append(ann)

    coco["annotations"] = kept
    return {
        "invalid_policy": invalid,
        "annotations_in": len(annotations),
        "annotations_out": len(kept),
        # Input kinds of the annotations that reached the geometry check (not the image-id and
        # bbox rejects).
        "segmentation_in": dict(sorted(kinds.items())),
        "dropped": dropped.as_dict(),
        "dropped_polygon_parts": dropped_parts.as_dict(),
        # Kept as the original keeps them, counted (the validator's COUNT rules).
        "counted": counted.as_dict(),
    }


def _resolve_workers(workers: int | None, path: Path) -> int:
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return workers
    try:
        big = path.stat().st_size >= POOL_MIN_BYTES
    except OSError:
        big = False  # load_coco reports the missing file with its name
    return min(len(os.sched_getaffinity(0)), 8) if big else 1


@contextlib.contextmanager
def _maybe_pool(workers: int) -> Iterator[Pool | None]:
    if workers <= 1:
        yield None
        return
    # fork, and before the annotation file is loaded: workers start instantly and do not carry
    # (or copy-on-write-touch) the parent's gigabyte of parsed JSON.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with multiprocessing.get_context(method).Pool(workers) as pool:
        yield pool


def default_report_path(ann_out: str | os.PathLike) -> Path:
    """`<OUT stem>.report.json` next to the output file."""
    ann_out = Path(ann_out)
    return ann_out.with_name(f"{ann_out.stem}.report.json")


def encode_file(
    ann_in: str | os.PathLike,
    ann_out: str | os.PathLike,
    report_out: str | os.PathLike | None = None,
    invalid: str = "drop",
    workers: int | None = None,
) -> dict:
    """rle-encode `ann_in` into `ann_out` and write the JSON report; return the report.

    `report_out` defaults to `default_report_path(ann_out)`; `workers` None means all available
    cores for large files and a single process for small ones. Both outputs are written
    atomically; nothing is written if the input is rejected.
    """
    _check_policy(invalid)  # before the (possibly gigabyte) file is read
    ann_in, ann_out = Path(ann_in), Path(ann_out)
    report_out = Path(report_out) if report_out is not None else default_report_path(ann_out)
    n_workers = _resolve_workers(workers, ann_in)
    with _maybe_pool(n_workers) as pool, gc_paused():
        coco = load_coco(ann_in)
        report = {"input": str(ann_in), "output": str(ann_out)}
        report.update(encode_coco(coco, ann_in, invalid, pool, max_in_flight=2 * n_workers + 1))
        dump_coco(coco, ann_out)
    try:
        dump_json(report, report_out, indent=True)
    except BaseException:
        ann_out.unlink(missing_ok=True)  # never an output without its report
        raise
    return report
