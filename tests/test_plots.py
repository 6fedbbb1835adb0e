"""The offline plots page: Vega-Lite rendered to inline SVG, images inlined, nothing external."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fashionfail.commands.plots import render_page
from fashionfail.core.cli import tool
from fashionfail.core.jsonio import DataError

SPEC = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}]},
    "title": {"text": "Facere loss", "anchor": "middle"},  # DVC titles each plot by its name
    "mark": "line",
    "encoding": {
        "x": {"field": "step", "type": "quantitative"},
        "y": {"field": "loss", "type": "quantitative"},
    },
}


def test_page_is_self_contained(tmp_path):
    Image.new("RGB", (4, 3), (255, 0, 0)).save(tmp_path / "overlay.png")
    plots = {
        "data": {
            "Facere loss": [{"type": "vega", "revisions": ["workspace"], "content": SPEC}],
            "eval/x/overlays/1.png": [
                {"type": "image", "revisions": ["workspace"], "url": str(tmp_path / "overlay.png")}
            ],
        }
    }
    page = render_page(plots)
    assert page.count("<svg") == 1 and "data:image/png;base64," in page
    assert "<script" not in page
    assert not re.search(r'(src|href)="https?://', page)  # no CDN, no remote image
    assert "Facere loss" in page and "<h2>Facere loss</h2>" not in page  # the title once
    assert "<h2>eval/x/overlays/1.png</h2>" in page


def test_page_title_is_its_own_after_an_image_section(tmp_path):
    """The last section's heading once leaked into <title> and <h1>, escaped."""
    Image.new("RGB", (4, 3), (255, 0, 0)).save(tmp_path / "6.png")
    image = {"type": "image", "revisions": ["workspace"], "url": str(tmp_path / "6.png")}
    page = render_page({"data": {"eval/x/overlays/6.png": [image]}}, title="My <plots>")
    assert "<title>My &lt;plots&gt;</title>" in page
    assert "<h1>My &lt;plots&gt;</h1>" in page
    assert page.count("<h2>") == 1 and "&lt;h2&gt;" not in page


def test_missing_image_is_named(tmp_path):
    plots = {"data": {"o": [{"type": "image", "url": str(tmp_path / "gone.png")}]}}
    with pytest.raises(DataError, match="gone.png: cannot read plot image"):
        render_page(plots)


def test_tool_is_the_one_beside_the_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # the venv's bin folder not on PATH
    assert tool("dvc") == str(Path(sys.executable).parent / "dvc")
    (tmp_path / "only-on-path").write_text("#!/bin/sh\n")
    (tmp_path / "only-on-path").chmod(0o755)
    assert tool("only-on-path") == str(tmp_path / "only-on-path")


def test_plots_runs_without_an_activated_venv(tmp_path):
    """`.venv/bin/python -m fashionfail plots` with a PATH lacking .venv/bin finds its dvc."""
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)}
    proc = subprocess.run(
        [sys.executable, "-m", "fashionfail", "plots", "--out", "page.html"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "<title>fashionfail plots</title>" in (tmp_path / "page.html").read_text()
