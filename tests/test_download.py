"""The official downloader against a local faulty HTTP server: resume, retries, checks, reruns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from http_fault_server import (  # tests/ is on sys.path (pytest rootdir import)
    ANN_TRAIN,
    ANN_VAL,
    FF,
    FP,
    MISSING,
    ZIP_TRAIN,
    ZIP_VAL,
    FakeOfficial,
    Fault,
    assert_tree,
    expected_tree,
    image_path,
    make_zip,
    official_cfg,
    read_tree,
)

from fashionfail.core.config import ConfigError
from fashionfail.core.jsonio import DataError
from fashionfail.data.download import download_official, publish
from fashionfail.data.fashionfail_download import (
    FF_TRANSFORM,
    MissingImagesError,
    ff_image_url,
    read_ff_images,
)
from fashionfail.data.fashionpedia_download import extract_zip
from fashionfail.data.transfer import DownloadError, fetch_file

BOOKKEEPING = {
    "fashionpedia/.download_manifest.json",
    "fashionfail/.download_manifest.json",
    "fashionpedia/.train2020.zip.extracted",
    "fashionpedia/.val_test2020.zip.extracted",
}


def test_full_download_with_faults_then_rerun_is_free(server: FakeOfficial, tmp_path: Path) -> None:
    server.add_faults(ZIP_TRAIN, Fault("drop", 700), Fault("drop", 700), Fault("drop", 700))
    server.add_faults(ANN_TRAIN, Fault("status", 503))
    server.add_faults(ANN_VAL, Fault("lie", 50))
    server.add_faults(image_path("test_2.jpg"), Fault("drop", 100), Fault("status", 500))
    # Dropped on every attempt: missing now, fetched by the rerun.
    server.add_faults(image_path("test_3.jpg"), *[Fault("drop", 10)] * 4)

    report = download_official(official_cfg(server), tmp_path)

    # Byte-identical layout (ff_val/ff_test.json filtered); the only extra files are the hidden
    # bookkeeping ones: no .part, .meta or temp files.
    assert_tree(tmp_path, expected_tree(server, absent=("test_3.jpg",)), BOOKKEEPING)
    assert sorted(os.listdir(tmp_path / "fashionpedia" / "images")) == ["test", "train"]

    # The dropped zip was resumed from where each drop left it.
    ranges = [e.range for e in server.requests_for(ZIP_TRAIN)]
    assert ranges == [None, "bytes=700-", "bytes=1400-", "bytes=2100-"]
    files, this_run = report["files"], report["this_run"]
    assert this_run["files"]["fashionpedia/train2020.zip"]["status"] == "resumed"
    assert files["fashionpedia/train2020.zip"] == {
        "url": server.url + ZIP_TRAIN,
        "bytes": len(server.files[ZIP_TRAIN]),
    }
    assert this_run["files"]["fashionpedia/instances_attributes_train2020.json"]["attempts"] == 2
    # The lying Content-Length was a failed attempt; the retry got the file right.
    assert this_run["files"]["fashionpedia/instances_attributes_val2020.json"]["attempts"] == 2
    assert this_run["zips"]["train2020.zip"] == "extracted"
    assert report["zips"]["train2020.zip"]["files"] == 3
    assert not (tmp_path / "fashionpedia" / "train2020.zip").exists()  # deleted once extracted

    # Unreachable images are reported, not fatal, and left out of ff_<split>.json.
    assert this_run["images_fetched"] == 7 and report["images_missing"] == 2
    assert report["fashionfail_images"]["val"] == {
        "total": 3,
        "present": 2,
        "missing": 1,
        "bytes": sum(len(v) for k, v in server.files.items() if f"{FF_TRANSFORM}val_" in k),
    }
    left_out = {
        s: (j["images_left_out"], j["annotations_left_out"])
        for s, j in report["fashionfail_json"].items()
    }
    assert left_out == {"train": (0, 0), "val": (1, 1), "test": (1, 1)}
    miss, dropped = report["missing_images"]
    assert (dropped["split"], dropped["file_name"], dropped["annotation_ids"]) == (
        "test",
        "test_3.jpg",
        [103],
    )
    assert "failed after 4 attempt(s)" in dropped["reason"]
    assert "IncompleteRead" in dropped["reason"]
    assert miss["split"] == "val" and miss["image_id"] == 1 and miss["file_name"] == MISSING
    assert miss["url"] == f"{server.url}/images/{FF_TRANSFORM}{MISSING}"
    assert "404" in miss["reason"] and miss["annotation_ids"] == [101]
    assert len(server.requests_for(image_path(MISSING))) == 1  # 404 is final

    # A rerun sends nothing for complete files; only the missing images are tried again.
    before = len(server.log)
    again = download_official(official_cfg(server), tmp_path)
    assert sorted(e.path for e in server.log[before:]) == [
        image_path("test_3.jpg"),
        image_path(MISSING),
    ]
    assert {f["status"] for f in again["this_run"]["files"].values()} == {"skipped"}
    assert set(again["this_run"]["zips"].values()) == {"skipped"}
    assert again["zips"] == report["zips"]  # the extraction's marker, whoever extracted
    assert (
        again["this_run"]["images_skipped"],
        again["this_run"]["images_fetched"],
        again["images_missing"],
    ) == (7, 1, 1)
    assert again["fashionfail_json"]["test"]["images_left_out"] == 0
    assert_tree(tmp_path, expected_tree(server), BOOKKEEPING)  # ff_test.json complete again
    assert set(os.listdir(tmp_path)) == {"fashionpedia", "fashionfail"}


def test_publish_links_exactly_the_layout(server: FakeOfficial, tmp_path: Path) -> None:
    """Bookkeeping, leftovers and images no ff_<split>.json lists stay in the staging folder."""
    staging, out = tmp_path / "staging", tmp_path / "raw"
    download_official(official_cfg(server), staging)
    (staging / "fashionfail" / "images" / "val" / MISSING).write_bytes(b"stale")  # not listed
    (staging / "fashionfail" / "images" / "train" / "old.jpg.part").write_bytes(b"part")
    (out / "fashionfail" / "images").mkdir(parents=True)
    (out / "fashionfail" / "images" / "stray.jpg").write_bytes(b"stray")  # replaced

    assert publish(staging, out) == len(expected_tree(server))

    assert_tree(out, expected_tree(server), set())
    name = "fashionfail/images/train/train_1.jpg"
    assert (out / name).samefile(staging / name)  # a hard link: no second copy
    assert sorted(os.listdir(out)) == ["fashionfail", "fashionpedia"]  # no temporary folder


def test_fail_on_missing_images_names_the_image(server: FakeOfficial, tmp_path: Path) -> None:
    with pytest.raises(MissingImagesError, match=rf"1 of 9 .*val/{MISSING} \(HTTP 404") as err:
        download_official(official_cfg(server, fail_on_missing_images=True), tmp_path)
    assert isinstance(err.value, DataError)
    assert [m["file_name"] for m in err.value.report["missing_images"]] == [MISSING]
    assert sum(s["present"] for s in err.value.report["fashionfail_images"].values()) == 8
    assert "this_run" not in err.value.report


@pytest.mark.parametrize(
    ("key", "value"),
    [("retries", 0), ("image_workers", 0), ("timeout_s", 0.0), ("backoff_s", -1.0)],
)
def test_bad_settings_fail_before_any_request(
    server: FakeOfficial, tmp_path: Path, key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=f"download.official.{key}"):
        download_official(official_cfg(server, **{key: value}), tmp_path)
    assert server.log == []


def test_server_ignoring_range_restarts_from_zero(server: FakeOfficial, tmp_path: Path) -> None:
    server.add_faults(ANN_TRAIN, Fault("drop", 400), Fault("ignore_range"))
    result = fetch_file(server.url + ANN_TRAIN, tmp_path / "a.json", official_cfg(server))
    assert (tmp_path / "a.json").read_bytes() == server.files[ANN_TRAIN]
    assert [(e.range, e.status) for e in server.requests_for(ANN_TRAIN)] == [
        (None, 200),
        ("bytes=400-", 200),
    ]
    assert result["status"] == "downloaded" and result["attempts"] == 2
    assert os.listdir(tmp_path) == ["a.json"]


def test_complete_part_is_finished_by_a_416(server: FakeOfficial, tmp_path: Path) -> None:
    body = server.files[ANN_TRAIN]
    (tmp_path / "a.json.part").write_bytes(body)  # died after the last byte, before the rename
    result = fetch_file(server.url + ANN_TRAIN, tmp_path / "a.json", official_cfg(server))
    assert [e.status for e in server.requests_for(ANN_TRAIN)] == [416]
    assert result == {
        "url": server.url + ANN_TRAIN,
        "bytes": len(body),
        "status": "resumed",
        "attempts": 1,
    }
    assert os.listdir(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_bytes() == body


def test_oversized_part_restarts(server: FakeOfficial, tmp_path: Path) -> None:
    body = server.files[ANN_VAL]
    (tmp_path / "v.json.part").write_bytes(body + b"garbage")
    fetch_file(server.url + ANN_VAL, tmp_path / "v.json", official_cfg(server, retries=1))
    assert [e.status for e in server.requests_for(ANN_VAL)] == [416, 200]
    assert (tmp_path / "v.json").read_bytes() == body


def test_changed_file_is_not_spliced(server: FakeOfficial, tmp_path: Path) -> None:
    """If-Range: a part of the old version is discarded when the server's file changed."""
    old = server.files[ANN_TRAIN]
    server.add_faults(ANN_TRAIN, Fault("drop", 500))
    with pytest.raises(DownloadError, match="after 1 attempt"):
        fetch_file(server.url + ANN_TRAIN, tmp_path / "a.json", official_cfg(server, retries=1))
    assert (tmp_path / "a.json.part").stat().st_size == 500
    new = bytes(reversed(old))  # same size, other content
    server.files[ANN_TRAIN] = new
    result = fetch_file(
        server.url + ANN_TRAIN, tmp_path / "a.json", official_cfg(server, retries=1)
    )
    last = server.requests_for(ANN_TRAIN)[-1]
    assert (last.range, last.status) == ("bytes=500-", 200) and last.if_range is not None
    assert result["status"] == "downloaded"
    assert (tmp_path / "a.json").read_bytes() == new
    assert os.listdir(tmp_path) == ["a.json"]


def test_size_change_without_validator_restarts(server: FakeOfficial, tmp_path: Path) -> None:
    """No ETag/Last-Modified, so no If-Range: a changed total in the 206 still forces a restart."""
    server.send_etag = False
    server.add_faults(ANN_TRAIN, Fault("drop", 500))
    url = server.url + ANN_TRAIN
    with pytest.raises(DownloadError):
        fetch_file(url, tmp_path / "a.json", official_cfg(server, retries=1))
    new = server.files[ANN_TRAIN] + b" "
    server.files[ANN_TRAIN] = new
    fetch_file(url, tmp_path / "a.json", official_cfg(server, retries=1))
    assert [e.status for e in server.requests_for(ANN_TRAIN)] == [200, 206, 200]
    assert (tmp_path / "a.json").read_bytes() == new


def test_timeout_is_retried_and_resumed(server: FakeOfficial, tmp_path: Path) -> None:
    server.add_faults(ANN_TRAIN, Fault("stall", 1500))
    fetch_file(server.url + ANN_TRAIN, tmp_path / "a.json", official_cfg(server, timeout_s=0.3))
    body = server.files[ANN_TRAIN]
    assert (tmp_path / "a.json").read_bytes() == body
    assert [e.range for e in server.requests_for(ANN_TRAIN)] == [None, f"bytes={len(body) // 2}-"]


def test_retries_exhausted_names_url_and_keeps_part(server: FakeOfficial, tmp_path: Path) -> None:
    server.add_faults(ANN_TRAIN, Fault("drop", 300), *[Fault("status", 503)] * 3)
    url = server.url + ANN_TRAIN
    with pytest.raises(DownloadError, match=rf"{url}: failed after 4 attempt\(s\).*HTTP 503"):
        fetch_file(url, tmp_path / "a.json", official_cfg(server))
    assert len(server.requests_for(ANN_TRAIN)) == 4
    assert (tmp_path / "a.json.part").stat().st_size == 300  # kept for the next run to resume
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize("status", [404, 403])
def test_client_errors_are_final(server: FakeOfficial, tmp_path: Path, status: int) -> None:
    server.add_faults(ZIP_VAL, Fault("status", status))
    with pytest.raises(DataError, match=rf"val_test2020\.zip: HTTP {status}"):
        fetch_file(server.url + ZIP_VAL, tmp_path / "z.zip", official_cfg(server))
    assert len(server.requests_for(ZIP_VAL)) == 1
    assert os.listdir(tmp_path) == []


def test_corrupt_zip_leaves_no_images(server: FakeOfficial, tmp_path: Path) -> None:
    data = bytearray(server.files[ZIP_TRAIN])
    data[data.index(server.train_members["train/b.jpg"]) + 10] ^= 0xFF  # breaks b.jpg's CRC
    zip_path = tmp_path / "train2020.zip"
    zip_path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt zip.*CRC"):
        extract_zip(zip_path, "train", tmp_path / "images")
    assert not zip_path.exists()  # so the next run downloads it again
    assert os.listdir(tmp_path) == []  # no half-filled images/, no temp folder


def test_extract_skips_foreign_members(tmp_path: Path) -> None:
    zip_path = tmp_path / "z.zip"
    zip_path.write_bytes(make_zip({"train/x.jpg": b"x", "__MACOSX/._x.jpg": b"y"}))
    stats = extract_zip(zip_path, "train", tmp_path / "images")
    assert stats == {"files": 1, "bytes": 1, "ignored_members": 1}
    assert read_tree(tmp_path / "images") == {"train/x.jpg": b"x"}
    with pytest.raises(DataError, match="no top-level folder test/"):
        extract_zip(zip_path, "test", tmp_path / "images")


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ({"id": 7, "file_name": "../evil.jpg", "original_url": "u"}, "image 7: unsafe file_name"),
        ({"id": 7, "file_name": "a\\b.jpg", "original_url": "u"}, "image 7: unsafe file_name"),
        ({"id": 7, "file_name": "..", "original_url": "u"}, "image 7: unsafe file_name"),
        ({"id": 7, "file_name": "a.jpg"}, "image 7: missing or empty 'original_url'"),
        ({"id": 7, "original_url": "u"}, "image 7: missing or empty 'file_name'"),
        ({"file_name": "a.jpg", "original_url": "u"}, "without an id"),
        ({"id": 1, "file_name": "b.jpg", "original_url": "u"}, "image id 1 is not a unique"),
        ({"id": "7", "file_name": "b.jpg", "original_url": "u"}, "image id '7' is not a unique"),
    ],
)
def test_ff_json_validation(tmp_path: Path, image: dict, message: str) -> None:
    path = tmp_path / "ff_train.json"
    path.write_text(
        json.dumps({"images": [{"id": 1, "file_name": "ok.jpg", "original_url": "u"}, image]})
    )
    with pytest.raises(DataError, match=rf"ff_train\.json: .*{message}"):
        read_ff_images(path)


def test_ff_json_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "ff_val.json"
    img = {"file_name": "a.jpg", "original_url": "u"}
    path.write_text(json.dumps({"images": [{"id": 1, **img}, {"id": 2, **img}]}))
    with pytest.raises(DataError, match="images 1 and 2 share file_name 'a.jpg'"):
        read_ff_images(path)


def test_bad_ff_json_fails_before_fashionpedia(server: FakeOfficial, tmp_path: Path) -> None:
    bad = json.loads(server.files[f"{FF}/ff_val.json"])
    bad["images"][2]["file_name"] = "../../x.jpg"
    server.files[f"{FF}/ff_val.json"] = json.dumps(bad).encode()
    with pytest.raises(DataError, match=r"ff_val\.json: image 3: unsafe file_name"):
        download_official(official_cfg(server), tmp_path)
    assert server.count(FP) == 0 and server.count("/images") == 0


def test_ff_image_url() -> None:
    url = "https://assetmanagerpim-res.cloudinary.com/images/a1b2/HQ1234_01_standard.jpg"
    assert ff_image_url(url) == (
        "https://assetmanagerpim-res.cloudinary.com/images/"
        "f_jpg,q_auto,fl_lossy,c_fill,g_auto/a1b2/HQ1234_01_standard.jpg"
    )
    assert ff_image_url("https://x.test/images/a/images/b.jpg") == (
        f"https://x.test/images/{FF_TRANSFORM}a/images/b.jpg"
    )  # first occurrence only
    assert ff_image_url("https://x.test/upload/b.jpg") == "https://x.test/upload/b.jpg"
