"""run_download over persisted outputs: source switches wipe, interrupted official runs resume,
missing FashionFail images are left out of ff_<split>.json, failures still leave a report."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from http_fault_server import (  # tests/ is on sys.path (pytest rootdir import)
    FF,
    MISSING,
    ZIP_TRAIN,
    FakeOfficial,
    Fault,
    assert_tree,
    expected_tree,
    image_path,
    official_cfg,
    read_tree,
    real_jpeg,
)

import fashionfail.data.synthetic
from fashionfail.config import DownloadConfig, SyntheticSource
from fashionfail.data.sources import REPORT_NAME, run_download
from fashionfail.jsonio import DataError, load_json

REPO = Path(__file__).resolve().parents[1]
BOOKKEEPING = {
    "fashionpedia/.download_manifest.json",
    "fashionfail/.download_manifest.json",
    "fashionpedia/.train2020.zip.extracted",
    "fashionpedia/.val_test2020.zip.extracted",
    REPORT_NAME,
}
TINY = SyntheticSource(
    seed=0,
    image_size=32,
    fp_train_images=4,
    fp_val_images=2,
    ff_train_images=2,
    ff_val_images=1,
    ff_test_images=1,
    max_objects=2,
)


def _cfg(source: str, srv: FakeOfficial, **official: object) -> DownloadConfig:
    return DownloadConfig(source=source, official=official_cfg(srv, **official), synthetic=TINY)


def _ff(root: Path, split: str) -> tuple[list[int], list[int]]:
    """Image ids and annotation ids of root/fashionfail/ff_<split>.json."""
    data = load_json(root / "fashionfail" / f"ff_{split}.json")
    return [i["id"] for i in data["images"]], [a["id"] for a in data["annotations"]]


def test_synthetic_run_replaces_an_official_layout(
    server: FakeOfficial, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "raw"
    run_download(_cfg("official", server), out)
    (out / "fashionfail" / "images" / "train" / "stray.jpg").write_bytes(b"stray")
    (out / "fashionpedia" / "train2020.zip.part").write_bytes(b"part")

    caplog.set_level("INFO", logger="fashionfail.data.sources")
    report = run_download(_cfg("synthetic", server), out)

    assert report["status"] == "complete"
    assert "removed fashionpedia, fashionfail before the synthetic run" in caplog.text
    fresh = tmp_path / "fresh"
    run_download(_cfg("synthetic", server), fresh)
    # Exactly a fresh synthetic layout: no stray, official or bookkeeping file survives.
    tree, fresh_tree = read_tree(out), read_tree(fresh)
    # The report too: what a run wiped is not in it (a fresh clone's run wipes nothing).
    assert tree == fresh_tree


def test_failed_synthetic_run_still_wipes_before_official(
    server: FakeOfficial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wipe is run_download's, and a crashed synthetic run leaves a report that says so."""
    run_download(_cfg("official", server), tmp_path)

    def half_then_fail(cfg: SyntheticSource, out_root: Path) -> dict:
        (out_root / "fashionfail").mkdir()
        (out_root / "fashionfail" / "half.jpg").write_bytes(b"synthetic")
        raise DataError("boom")

    monkeypatch.setattr(fashionfail.data.synthetic, "generate", half_then_fail)
    with pytest.raises(DataError, match=rf"boom \(report: .*{REPORT_NAME}\)"):
        run_download(_cfg("synthetic", server), tmp_path)
    report = load_json(tmp_path / REPORT_NAME)
    assert (report["source"], report["status"], report["error"]) == ("synthetic", "failed", "boom")
    assert set(read_tree(tmp_path)) == {"fashionfail/half.jpg", REPORT_NAME}

    run_download(_cfg("official", server), tmp_path)
    assert_tree(tmp_path, expected_tree(server), BOOKKEEPING)


def test_official_run_replaces_a_synthetic_layout(
    server: FakeOfficial, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_download(_cfg("synthetic", server), tmp_path)
    assert load_json(tmp_path / REPORT_NAME)["source"] == "synthetic"

    caplog.set_level("INFO", logger="fashionfail.data.sources")
    report = run_download(_cfg("official", server), tmp_path)

    assert report["status"] == "complete"
    assert "removed fashionpedia, fashionfail before the official run" in caplog.text
    # Exactly the served files (byte for byte) and the bookkeeping: no synthetic file left.
    assert_tree(tmp_path, expected_tree(server), BOOKKEEPING)
    assert load_json(tmp_path / REPORT_NAME) == report


@pytest.mark.parametrize("left", ["no report", "failed", "running"])
def test_interrupted_official_run_resumes(
    server: FakeOfficial, tmp_path: Path, left: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.add_faults(ZIP_TRAIN, Fault("drop", 700))
    with pytest.raises(DataError, match=r"train2020\.zip: failed after 1 .*\(report: "):
        run_download(_cfg("official", server, retries=1), tmp_path)
    report_path = tmp_path / REPORT_NAME
    assert load_json(report_path)["status"] == "failed"
    assert (tmp_path / "fashionpedia" / "train2020.zip.part").stat().st_size == 700
    if left == "no report":  # killed before any report was written
        report_path.unlink()
    elif left == "running":  # killed mid-run: the stub written at the start
        report_path.write_text(json.dumps({"source": "official", "status": "running"}))

    caplog.set_level("INFO", logger="fashionfail.data.sources")
    report = run_download(_cfg("official", server), tmp_path)

    assert report["status"] == "complete" and "removed" not in caplog.text
    assert [e.range for e in server.requests_for(ZIP_TRAIN)] == [None, "bytes=700-"]
    assert report["official"]["files"]["fashionpedia/train2020.zip"]["status"] == "resumed"
    assert len(server.requests_for(f"{FF}/ff_train.json")) == 1  # kept, not fetched again
    assert_tree(tmp_path, expected_tree(server), BOOKKEEPING)


def test_missing_image_is_left_out_until_it_is_served(server: FakeOfficial, tmp_path: Path) -> None:
    served = server.files[f"{FF}/ff_val.json"]
    report = run_download(_cfg("official", server), tmp_path)["official"]

    assert _ff(tmp_path, "val") == ([2, 3], [102, 103])  # MISSING is image 1, annotation 101
    assert (tmp_path / "fashionfail" / "published" / "ff_val.json").read_bytes() == served
    for split in ("train", "test"):  # complete splits: byte-identical copies
        assert (tmp_path / "fashionfail" / f"ff_{split}.json").read_bytes() == server.files[
            f"{FF}/ff_{split}.json"
        ]
    assert report["fashionfail_json"]["val"] == {
        "images": 3,
        "annotations": 3,
        "images_left_out": 1,
        "annotations_left_out": 1,
    }
    assert [(m["file_name"], m["annotation_ids"]) for m in report["missing_images"]] == [
        (MISSING, [101])
    ]

    server.files[image_path(MISSING)] = real_jpeg(random.Random(1))  # content is checked
    before = len(server.log)
    again = run_download(_cfg("official", server), tmp_path)["official"]

    assert [e.path for e in server.log[before:]] == [image_path(MISSING)]
    assert (tmp_path / "fashionfail" / "ff_val.json").read_bytes() == served
    assert again["images_missing"] == 0 and again["fashionfail_json"]["val"]["images_left_out"] == 0


def test_stage_fails_on_missing_image_and_reports_it(server: FakeOfficial, tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    official = official_cfg(server, fail_on_missing_images=True).model_dump()
    params["download"].update(source="official", official=official)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "raw"

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "download.py"),
            "--params",
            str(tmp_path / "params.yaml"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 1
    # Progress bars go to stderr too; the error is its one last line.
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == proc.stderr.strip().splitlines()[-1:], proc.stderr
    assert errors[0].startswith("error: 1 of 9 FashionFail images could not be downloaded")
    assert f"val/{MISSING} (HTTP 404" in errors[0]
    assert errors[0].endswith(f"(report: {out / REPORT_NAME})")
    report = load_json(out / REPORT_NAME)
    assert (report["source"], report["status"]) == ("official", "failed")
    assert [m["file_name"] for m in report["official"]["missing_images"]] == [MISSING]
    assert _ff(out, "val") == ([2, 3], [102, 103])  # the folder stays coherent


def test_unreadable_report_stops_an_official_run(server: FakeOfficial, tmp_path: Path) -> None:
    (tmp_path / REPORT_NAME).write_text("[]")
    with pytest.raises(DataError, match=rf"{REPORT_NAME}: names no known source"):
        run_download(_cfg("official", server), tmp_path)
    assert server.log == []
