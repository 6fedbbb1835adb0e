"""Dependencies: the lock is pyproject.toml's (tools/lock.py); deptry finds each import declared."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lock", REPO / "tools" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = lock.PYPROJECT.read_text()
    assert old in text, old
    path = tmp_path / "pyproject.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_lock_is_current():
    assert lock.problems() == []


def test_the_lock_pins_what_the_code_needs():
    pins = lock.pins(lock.LOCK.read_text())
    assert pins["torchmetrics"] == "1.9.0"  # fashionfail/models/val_map.py follows its state
    for name in ("onnx", "onnxruntime", "filelock", "faster-coco-eval", "dvc-s3", "moto", "uv"):
        assert name in pins, name


def test_a_new_dependency_without_make_lock_is_stale(tmp_path):
    pyproject = _edited(
        tmp_path, '    "pydantic>=2.6",\n', '    "pydantic>=2.6",\n    "polars>=1",\n'
    )
    found = lock.problems(pyproject, lock.LOCK)
    assert any("not generated from this pyproject.toml: run `make lock`" in p for p in found)
    assert any("polars" in p and "is not pinned" in p for p in found), found


def test_a_bound_the_pin_breaks_is_stale(tmp_path):
    pyproject = _edited(tmp_path, '"torchmetrics==1.9.0"', '"torchmetrics>=1.10"')
    found = lock.problems(pyproject, lock.LOCK)
    assert any("torchmetrics==1.9.0 does not satisfy torchmetrics>=1.10" in p for p in found)


def test_an_extra_counts_too(tmp_path):
    pyproject = _edited(tmp_path, '"dvc-s3>=3.3,<4"', '"dvc-s3>=3.3,<4", "dvc-ssh>=4"')
    assert len(lock.problems(pyproject, lock.LOCK)) == 2  # the stamp, and dvc-ssh unpinned


def test_comments_and_tool_settings_do_not_make_the_lock_stale(tmp_path):
    pyproject = _edited(tmp_path, "[tool.ruff]\nline-length = 100", "[tool.ruff]\nline-length = 99")
    pyproject.write_text(pyproject.read_text().replace('"numpy>=1.26",', '"numpy>=1.26",  # x'))
    assert lock.problems(pyproject, lock.LOCK) == []


def test_a_hand_edited_pin_is_caught(tmp_path):
    stale = tmp_path / "requirements-lock.txt"
    stale.write_text(
        lock.LOCK.read_text().replace("\ntorchmetrics==1.9.0 ", "\ntorchmetrics==1.8.2 ")
    )
    assert lock.problems(lock.PYPROJECT, stale) == [
        "requirements-lock.txt: torchmetrics==1.8.2 does not satisfy torchmetrics==1.9.0"
    ]


def test_the_check_command_fails_with_one_line_per_problem(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "lock.py").write_text((REPO / "tools" / "lock.py").read_text())
    (tmp_path / "requirements-lock.txt").write_text(lock.LOCK.read_text())
    (tmp_path / "pyproject.toml").write_text(lock.PYPROJECT.read_text())
    check = [sys.executable, str(tmp_path / "tools" / "lock.py"), "--check"]
    proc = subprocess.run(check, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    _edited(tmp_path, '    "pydantic>=2.6",\n', '    "pydantic>=2.6",\n    "polars>=1",\n')
    proc = subprocess.run(check, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "error: requirements-lock.txt was not generated from this pyproject.toml: run `make lock`",
        "error: requirements-lock.txt: polars (declared in pyproject.toml) is not pinned",
    ]


def test_setup_refuses_a_stale_lock(tmp_path, monkeypatch):
    """`make setup` (`tools/lock.py --install`) stops before installing anything."""
    pyproject = _edited(
        tmp_path, '    "pydantic>=2.6",\n', '    "pydantic>=2.6",\n    "polars>=1",\n'
    )

    def no_run(*args, **kwargs):
        raise AssertionError(f"would run {args}")

    monkeypatch.setattr(lock.subprocess, "run", no_run)
    with pytest.raises(SystemExit, match=r"^error: requirements-lock.txt was not generated from"):
        lock.install(pyproject, lock.LOCK)


def _deptry(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "deptry", ".", "--no-ansi", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_deptry_finds_nothing_to_report():
    proc = _deptry()
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("declared", "import_", "rule"),
    [
        ('    "onnx>=1.23",  # export-onnx stage\n', "onnx", "DEP003"),  # transitive only
        ('    "vl-convert-python>=1.6",', "vl_convert", "DEP003"),  # installed, not declared
    ],
)
def test_deptry_reports_an_undeclared_import(tmp_path, declared, import_, rule):
    config = _edited(tmp_path, declared, "")
    proc = _deptry("--config", str(config))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and f"{rule} '{import_}' imported but" in out, out


def test_deptry_reports_an_unused_declaration(tmp_path):
    config = _edited(tmp_path, '    "pydantic>=2.6",\n', '    "pydantic>=2.6",\n    "polars>=1",\n')
    proc = _deptry("--config", str(config))
    assert proc.returncode == 1 and "DEP002 'polars' defined as a dependency" in proc.stderr
