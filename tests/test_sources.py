"""run_download: every run rebuilds the raw layout (as after DVC removed the outputs), the
official source resumes from its staging folder beside it, the report is the same for the same
inputs, missing FashionFail images are left out of ff_<split>.json, failures leave a report."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from http_fault_server import (  # tests/ is on sys.path (pytest rootdir import)
    ANN_TRAIN,
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

import fashionfail.data.download
import fashionfail.data.synthetic
from fashionfail.core.config import DownloadConfig, SyntheticSource
from fashionfail.core.jsonio import DataError, load_json
from fashionfail.data.sources import REPORT_NAME, STAGING_NAME, run_download, staging_dir

REPO = Path(__file__).resolve().parents[1]
# The staging folder's bookkeeping: never published into the raw layout.
BOOKKEEPING = {
    "fashionpedia/.download_manifest.json",
    "fashionfail/.download_manifest.json",
    "fashionpedia/.train2020.zip.extracted",
    "fashionpedia/.val_test2020.zip.extracted",
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


def _dvc_removes_outputs(out: Path) -> None:
    """What `dvc repro` does before it runs the stage: its outputs are gone."""
    shutil.rmtree(out)


def test_staging_folder_is_beside_the_raw_layout(tmp_path: Path) -> None:
    assert staging_dir(tmp_path / "raw") == tmp_path / STAGING_NAME
    assert staging_dir(Path("data/raw")) == Path.cwd() / "data" / STAGING_NAME


def test_synthetic_run_replaces_an_official_layout(server: FakeOfficial, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    run_download(_cfg("official", server), out)
    (out / "fashionfail" / "images" / "train" / "stray.jpg").write_bytes(b"stray")
    staging = read_tree(tmp_path / STAGING_NAME)

    report = run_download(_cfg("synthetic", server), out)

    assert report["status"] == "complete"
    fresh = tmp_path / "fresh" / "raw"
    run_download(_cfg("synthetic", server), fresh)
    # Exactly a fresh synthetic layout (report included): no stray or official file survives.
    assert read_tree(out) == read_tree(fresh)
    # The synthetic source never touches the official download's staging folder.
    assert read_tree(tmp_path / STAGING_NAME) == staging
    assert not (tmp_path / "fresh" / STAGING_NAME).exists()


def test_official_run_replaces_a_synthetic_layout(server: FakeOfficial, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    run_download(_cfg("synthetic", server), out)
    assert load_json(out / REPORT_NAME)["source"] == "synthetic"

    report = run_download(_cfg("official", server), out)

    assert report["status"] == "complete"
    # Exactly the served files (byte for byte) and the report: no synthetic file left, no
    # bookkeeping published.
    assert_tree(out, expected_tree(server), {REPORT_NAME})
    assert load_json(out / REPORT_NAME) == report
    assert_tree(tmp_path / STAGING_NAME, expected_tree(server), BOOKKEEPING)


def test_official_run_after_a_failed_synthetic_one(
    server: FakeOfficial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crashed synthetic run leaves a report that says so, and its files do not survive."""
    out = tmp_path / "raw"
    run_download(_cfg("official", server), out)

    def half_then_fail(cfg: SyntheticSource, out_root: Path) -> dict:
        (out_root / "fashionfail").mkdir()
        (out_root / "fashionfail" / "half.jpg").write_bytes(b"synthetic")
        raise DataError("boom")

    monkeypatch.setattr(fashionfail.data.synthetic, "generate", half_then_fail)
    with pytest.raises(DataError, match=rf"boom \(report: .*{REPORT_NAME}\)"):
        run_download(_cfg("synthetic", server), out)
    report = load_json(out / REPORT_NAME)
    assert (report["source"], report["status"], report["error"]) == ("synthetic", "failed", "boom")
    assert set(read_tree(out)) == {"fashionfail/half.jpg", REPORT_NAME}

    before = len(server.log)
    run_download(_cfg("official", server), out)
    assert_tree(out, expected_tree(server), {REPORT_NAME})
    # All of it from the staging folder: only the unserved image is asked for again.
    assert [e.path for e in server.log[before:]] == [image_path(MISSING)]


def _kill_before_publishing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run dies after the whole download, before it publishes anything (kill -9, Ctrl-C)."""

    def killed(staging: Path, out_root: Path) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(fashionfail.data.download, "publish", killed)


@pytest.mark.parametrize("interruption", ["server drops the zip", "killed before publishing"])
def test_interrupted_official_run_resumes_after_dvc_removed_the_outputs(
    server: FakeOfficial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interruption: str
) -> None:
    out = tmp_path / "raw"
    staging = tmp_path / STAGING_NAME
    with monkeypatch.context() as patch:
        if interruption == "server drops the zip":
            server.add_faults(ZIP_TRAIN, Fault("drop", 700))
            with pytest.raises(DataError, match=r"train2020\.zip: failed after 1 .*\(report: "):
                run_download(_cfg("official", server, retries=1), out)
            assert load_json(out / REPORT_NAME)["status"] == "failed"
            assert (staging / "fashionpedia" / "train2020.zip.part").stat().st_size == 700
        else:
            _kill_before_publishing(patch)
            with pytest.raises(KeyboardInterrupt):
                run_download(_cfg("official", server), out)
            assert load_json(out / REPORT_NAME) == {"source": "official", "status": "running"}
    assert not (out / "fashionpedia").exists() and not (out / "fashionfail").exists()
    _dvc_removes_outputs(out)

    report = run_download(_cfg("official", server), out)

    assert report["status"] == "complete"
    assert_tree(out, expected_tree(server), {REPORT_NAME})
    # Nothing complete in the staging folder was fetched twice: every served file was asked for
    # once in both runs together; the dropped zip resumed from byte 700; the unserved image was
    # asked for once by each run that got as far as the images.
    requests = Counter(e.path for e in server.log)
    served = Counter(dict.fromkeys(server.files, 1))
    if interruption == "server drops the zip":
        assert [e.range for e in server.requests_for(ZIP_TRAIN)] == [None, "bytes=700-"]
        assert requests == served + Counter({ZIP_TRAIN: 1, image_path(MISSING): 1})
    else:
        assert requests == served + Counter({image_path(MISSING): 2})


def test_two_runs_give_the_same_report_and_tree(server: FakeOfficial, tmp_path: Path) -> None:
    """The report is a DVC metric in git: what a run fetched, resumed or retried is not in it."""
    out = tmp_path / "raw"
    server.add_faults(ANN_TRAIN, Fault("drop", 300))  # first run: resumed, 2 attempts
    run_download(_cfg("official", server), out)
    first = read_tree(out)
    _dvc_removes_outputs(out)

    run_download(_cfg("official", server), out)  # second run: everything found in staging

    assert read_tree(out) == first  # the report byte for byte, every file of the layout
    text = first[REPORT_NAME].decode()
    for volatile in ("this_run", "resumed", "skipped", "attempts", str(tmp_path), STAGING_NAME):
        assert volatile not in text
    # The layout is hard links to the staging folder: no second copy on disk.
    ann = "fashionpedia/instances_attributes_train2020.json"
    assert (out / ann).samefile(tmp_path / STAGING_NAME / ann)


def test_publish_copies_where_links_are_refused(
    server: FakeOfficial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    out = tmp_path / "raw"
    run_download(_cfg("official", server), out)
    assert_tree(out, expected_tree(server), {REPORT_NAME})
    ann = "fashionpedia/instances_attributes_train2020.json"
    assert not (out / ann).samefile(tmp_path / STAGING_NAME / ann)


def test_missing_image_is_left_out_until_it_is_served(server: FakeOfficial, tmp_path: Path) -> None:
    served = server.files[f"{FF}/ff_val.json"]
    out = tmp_path / "raw"
    report = run_download(_cfg("official", server), out)["official"]

    assert _ff(out, "val") == ([2, 3], [102, 103])  # MISSING is image 1, annotation 101
    assert (out / "fashionfail" / "published" / "ff_val.json").read_bytes() == served
    for split in ("train", "test"):  # complete splits: byte-identical copies
        assert (out / "fashionfail" / f"ff_{split}.json").read_bytes() == server.files[
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
    again = run_download(_cfg("official", server), out)["official"]

    assert [e.path for e in server.log[before:]] == [image_path(MISSING)]
    assert (out / "fashionfail" / "ff_val.json").read_bytes() == served
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
    assert set(read_tree(out)) == {REPORT_NAME}  # nothing published by a failed run
    assert _ff(tmp_path / STAGING_NAME, "val") == ([2, 3], [102, 103])  # staging stays coherent
