"""Download content validation: a 200 that is not the file (HTML error page, truncated image,
unparsable JSON, JSON without the COCO keys) is detected, deleted and fetched again on the next
run; files the manifest calls complete are re-validated, so a corrupted cache heals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from http_fault_server import ANN_TRAIN, ANN_VAL, FakeOfficial, image_path, official_cfg

from fashionfail.data.content import coco_json_problem, image_problem
from fashionfail.data.download import download_official
from fashionfail.data.transfer import DownloadError

HTML = b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>"


def _no_leftovers(folder: Path) -> None:
    assert [p.name for p in folder.rglob("*") if p.name.endswith((".part", ".meta", ".tmp"))] == []


@pytest.mark.parametrize(
    "body, reason",
    [
        (HTML, "an HTML page, not JSON"),
        (b'{"images": [], "annotations": [', "not valid JSON (Input data was truncated)"),
        (b'{"images": []}', "JSON without the COCO key(s) 'annotations', 'categories'"),
        (b"[1, 2]", "JSON, but not an object at the top level"),
    ],
)
def test_bad_annotation_file_fails_then_heals(server: FakeOfficial, tmp_path: Path, body, reason):
    good = server.files[ANN_VAL]
    server.files[ANN_VAL] = body
    with pytest.raises(DownloadError) as err:
        download_official(official_cfg(server), tmp_path)
    assert str(err.value) == (
        f"{server.url}{ANN_VAL}: failed after 4 attempt(s); last error: content invalid: {reason}"
    )
    dest = tmp_path / "fashionpedia" / "instances_attributes_val2020.json"
    assert not dest.exists()
    _no_leftovers(tmp_path)

    server.files[ANN_VAL] = good
    download_official(official_cfg(server), tmp_path)
    assert dest.read_bytes() == good


def test_html_or_truncated_image_is_left_out_then_fetched(server: FakeOfficial, tmp_path: Path):
    html, cut = image_path("train_1.jpg"), image_path("test_2.jpg")
    good_html, good_cut = server.files[html], server.files[cut]
    server.files[html] = HTML
    server.files[cut] = good_cut[: len(good_cut) // 2]

    report = download_official(official_cfg(server), tmp_path)
    reasons = {m["file_name"]: m["reason"] for m in report["missing_images"]}
    assert reasons["train_1.jpg"] == (
        "failed after 4 attempt(s); last error: content invalid: an HTML page, not an image"
    )
    assert reasons["test_2.jpg"] == (
        "failed after 4 attempt(s); last error: content invalid: not a readable image "
        "(Truncated File Read)"
    )
    ff = tmp_path / "fashionfail"
    assert not (ff / "images/train/train_1.jpg").exists()
    assert not (ff / "images/test/test_2.jpg").exists()
    assert 1 not in [img["id"] for img in json.loads((ff / "ff_train.json").read_bytes())["images"]]
    _no_leftovers(tmp_path)

    server.files[html], server.files[cut] = good_html, good_cut
    before = len(server.log)
    again = download_official(official_cfg(server), tmp_path)
    assert sorted(e.path for e in server.log[before:]) == sorted(
        [html, cut, image_path("val_1.jpg")]  # val_1.jpg: the mirror's link rot, asked again
    )
    assert (ff / "images/train/train_1.jpg").read_bytes() == good_html
    assert (ff / "images/test/test_2.jpg").read_bytes() == good_cut
    assert again["images_missing"] == 1


def test_corrupted_cache_is_healed_by_the_next_run(server: FakeOfficial, tmp_path: Path):
    download_official(official_cfg(server), tmp_path)
    image = tmp_path / "fashionfail/images/train/train_2.jpg"
    ann = tmp_path / "fashionpedia/instances_attributes_train2020.json"
    # Same sizes as the good files, so the manifest's size check alone would not notice.
    image.write_bytes(b"\0" * image.stat().st_size)
    ann.write_bytes(HTML.ljust(ann.stat().st_size, b" "))

    before = len(server.log)
    download_official(official_cfg(server), tmp_path)
    assert sorted(e.path for e in server.log[before:]) == sorted(
        [ANN_TRAIN, image_path("train_2.jpg"), image_path("val_1.jpg")]
    )
    assert image.read_bytes() == server.files[image_path("train_2.jpg")]
    assert ann.read_bytes() == server.files[ANN_TRAIN]


def test_content_checks(tmp_path: Path):
    from PIL import Image

    good = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(good)
    assert image_problem(good) is None
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert image_problem(cut).startswith("not a readable image")
    trailing = tmp_path / "trailing.png"
    trailing.write_bytes(good.read_bytes() + b"\0" * 2000)  # junk after IEND: still decodable
    assert image_problem(trailing) is None
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert coco_json_problem(coco) is None
