"""fashionfail.core.jsonio: atomic files and folders (nothing partial is ever left at the
target)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fashionfail.core.jsonio import DataError, atomic_dir, atomic_path, dump_json, load_json


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "out.json"
    dump_json({"a": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert load_json(target) == {"a": 1}
    assert _siblings(target) == ["out.json"]


def test_atomic_dir_creates_then_replaces_a_folder(tmp_path):
    target = tmp_path / "sub" / "result"
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        (tmp / "a.txt").write_text("one")
    assert sorted(os.listdir(target)) == ["a.txt"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o700)  # normal permissions, not mkdtemp's
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(os.listdir(target)) == ["b.txt"]  # replaced, not merged
    assert _siblings(target) == ["result"]


@pytest.mark.parametrize("error", [DataError("bad input"), KeyboardInterrupt()])
def test_atomic_dir_leaves_the_old_folder_on_error(tmp_path, error):
    target = tmp_path / "result"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(type(error)), atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("half")
        raise error
    assert sorted(os.listdir(target)) == ["old.txt"]
    assert _siblings(target) == ["result"]  # no temporary folder left behind
