"""The data scripts as DVC and users run them: bad input fails cleanly, the chain runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fashionfail.core.jsonio import dump_json, load_json

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "stages" / "split.py"
RLE = REPO / "stages" / "rle_encode.py"
DOWNLOAD = REPO / "stages" / "download.py"
MAKE_FP = REPO / "fashionfail" / "data" / "make_fashionpedia.py"


def _run(script: Path, *args: object, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _break(coco: dict, how: str) -> str:
    """Damage `coco` in place; return what the error message must name."""
    if how == "missing_top_key":
        del coco["images"]
        return "'images'"
    if how == "missing_ann_key":
        del coco["annotations"][3]["bbox"]
        return "annotation id 6 is missing key 'bbox'"
    if how == "duplicate_image":
        coco["images"][2]["id"] = 7
        return "duplicate image id 7"
    if how == "duplicate_annotation":
        coco["annotations"][4]["id"] = 2
        return "duplicate annotation id 2"
    if how == "unknown_image":
        coco["annotations"][4]["image_id"] = 404
        return "annotation id 9"
    raise ValueError(how)


CASES = [
    "missing_top_key",
    "missing_ann_key",
    "duplicate_image",
    "duplicate_annotation",
    "unknown_image",
]


def _bad_file(tmp_path: Path, tiny_coco: dict, how: str) -> tuple[Path, str]:
    if how in ("malformed", "not_an_object"):
        path = tmp_path / "bad.json"
        path.write_text('{"images": [}' if how == "malformed" else "[1, 2]")
        return path, "malformed JSON" if how == "malformed" else "expected a JSON object"
    expected = _break(tiny_coco, how)
    path = tmp_path / "bad.json"
    dump_json(tiny_coco, path)
    return path, expected


def _assert_clean_failure(proc: subprocess.CompletedProcess, path: Path, expected: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert expected in lines[0]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no output left


@pytest.mark.parametrize("how", ["malformed", "not_an_object", *CASES])
def test_split_rejects_bad_input(tmp_path: Path, tiny_coco: dict, how: str) -> None:
    path, expected = _bad_file(tmp_path, tiny_coco, how)
    proc = _run(
        SPLIT, "--ann", path, "--train-out", tmp_path / "a.json", "--val-out", tmp_path / "b.json"
    )
    _assert_clean_failure(proc, path, expected)


def _params_with(tmp_path: Path, section: str, **values: object) -> Path:
    """params.yaml with `values` set in `section`, written to a folder of its own."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params[section].update(values)
    path = tmp_path / "params" / "params.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("how", ["malformed", "not_an_object", *CASES])
def test_rle_encode_rejects_bad_input(tmp_path: Path, tiny_coco: dict, how: str) -> None:
    params = _params_with(tmp_path, "rle_encode", invalid="error")
    data = tmp_path / "data"
    data.mkdir()
    path, expected = _bad_file(data, tiny_coco, how)
    proc = _run(RLE, "--params", params, "--ann", path, "--out", data / "out.json")
    _assert_clean_failure(proc, path, expected)


def test_rle_encode_drops_unknown_image_by_default(tmp_path: Path, tiny_coco: dict) -> None:
    path, _ = _bad_file(tmp_path, tiny_coco, "unknown_image")
    proc = _run(RLE, "--ann", path, "--out", tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    report = load_json(tmp_path / "out.report.json")
    assert report["dropped"]["counts"] == {"unknown_image_id": 1}
    assert len(load_json(tmp_path / "out.json")["annotations"]) == 5


def test_split_rejects_bad_fraction(tiny_coco_path: Path, tmp_path: Path) -> None:
    params = _params_with(tmp_path, "split", val_fraction=1.5)
    proc = _run(
        SPLIT,
        "--params",
        params,
        "--ann",
        tiny_coco_path,
        "--train-out",
        tmp_path / "a.json",
        "--val-out",
        tmp_path / "b.json",
    )
    assert proc.returncode == 1 and f"{params}:split.val_fraction" in proc.stderr
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize(("script", "section"), [(SPLIT, "split"), (RLE, "rle_encode")])
def test_data_stages_read_their_params_section(
    tiny_coco_path: Path, tmp_path: Path, script: Path, section: str
) -> None:
    """Like every stage: the section through the typed config, unknown keys rejected."""
    params = _params_with(tmp_path, section, val_fractoin=0.3)
    outs = (
        ["--train-out", tmp_path / "a.json", "--val-out", tmp_path / "b.json"]
        if script == SPLIT
        else ["--out", tmp_path / "out.json"]
    )
    proc = _run(script, "--params", params, "--ann", tiny_coco_path, *outs)
    assert proc.returncode == 1, proc.stderr
    assert f"{params}:{section}.val_fractoin: Extra inputs are not permitted" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["params", tiny_coco_path.name])


def test_split_uses_the_params_section(tiny_coco_path: Path, tmp_path: Path) -> None:
    counts = {}
    for fraction in (0.25, 0.5):
        params = _params_with(tmp_path, "split", val_fraction=fraction)
        out = tmp_path / str(fraction)
        proc = _run(
            SPLIT,
            "--params",
            params,
            "--ann",
            tiny_coco_path,
            "--train-out",
            out / "a.json",
            "--val-out",
            out / "b.json",
        )
        assert proc.returncode == 0, proc.stderr
        counts[fraction] = len(load_json(out / "b.json")["images"])
    assert counts[0.5] > counts[0.25]


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["download"]["source"] = "synthetic"
    params["download"]["synthetic"].update(
        image_size=48,
        fp_train_images=12,
        fp_val_images=4,
        ff_train_images=3,
        ff_val_images=2,
        ff_test_images=2,
        max_objects=3,
    )
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_download_stage_writes_layout_and_report(tiny_params: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    proc = _run(DOWNLOAD, "--params", tiny_params, "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = load_json(out / "download_report.json")
    assert report["source"] == "synthetic"
    assert report["image_counts"]["fashionpedia"] == {"train": 12, "test": 4}
    assert report["synthetic"]["fashionfail"]["test"]["images"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "raw"]  # no staging


def test_download_stage_rejects_bad_params(tiny_params: Path, tmp_path: Path) -> None:
    tiny_params.write_text(tiny_params.read_text().replace("source: synthetic", "source: ftp"))
    proc = _run(DOWNLOAD, "--params", tiny_params, "--out", tmp_path / "raw")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "source" in proc.stderr
    assert not (tmp_path / "raw").exists()


def test_make_fashionpedia_end_to_end(tiny_params: Path, tmp_path: Path) -> None:
    save = tmp_path / "cache"
    # Run from elsewhere, as a script: sys.path[0] is fashionfail/data.
    proc = _run(
        MAKE_FP, "--source", "synthetic", "--save_dir", save, "--params", tiny_params, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    fp = save / "fashionpedia"
    raw = load_json(fp / "instances_attributes_train2020.json")
    train, val = load_json(fp / "fp_train.json"), load_json(fp / "fp_val.json")
    assert len(train["images"]) + len(val["images"]) == 12 and len(val["images"]) == 3
    for name, source in [
        ("fp_train", train),
        ("fp_val", val),
        ("fp_test", load_json(fp / "instances_attributes_val2020.json")),
    ]:
        encoded = load_json(fp / f"{name}_rle.json")
        assert [a["id"] for a in encoded["annotations"]] == [a["id"] for a in source["annotations"]]
        assert all(isinstance(a["segmentation"]["counts"], str) for a in encoded["annotations"])
        assert load_json(fp / f"{name}_rle.report.json")["annotations_out"] == len(
            source["annotations"]
        )
    assert sum(len(p["annotations"]) for p in (train, val)) == len(raw["annotations"])
    assert (save / "fashionfail" / "ff_train.json").exists()
    assert (save / "download_report.json").exists()


@pytest.mark.parametrize("script", [SPLIT, RLE, DOWNLOAD, MAKE_FP])
def test_help(script: Path) -> None:
    proc = _run(script, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout
