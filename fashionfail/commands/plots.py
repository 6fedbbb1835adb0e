"""`dvc plots` as one self-contained HTML page that renders offline.

`dvc plots show` writes a page that loads Vega from a CDN. This command asks DVC for the same plots
as JSON (`dvc plots show --json`, or `dvc plots diff --json REV...`; the `dvc` installed beside
this Python, so an unactivated `.venv/bin/fashionfail plots` works too), renders every
Vega-Lite spec to SVG with vl-convert (which bundles Vega) and embeds the overlay images as data
URIs:

    fashionfail plots                     # workspace -> dvc_plots/offline.html
    fashionfail plots HEAD lower-lr       # compare revisions / experiments
"""

from __future__ import annotations

import base64
import html
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from fashionfail.core.cli import USER_ERRORS, error_exit, parser, tool
from fashionfail.core.jsonio import DataError, atomic_path

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1em}} section{{display:inline-block;margin:.5em;
vertical-align:top}} h2{{font-size:1em}} img{{max-width:520px;display:block}}</style></head>
<body><h1>{title}</h1>
{sections}
</body></html>
"""


def dvc_plots_json(revisions: list[str], images_dir: Path) -> dict:
    """The plots of the workspace (or of `revisions`) as DVC's JSON; DataError if DVC fails.

    DVC copies the image plots into `images_dir` (by default it would leave them in dvc_plots/).
    """
    args = (
        ["plots", "diff", *revisions, "--json", "-o", str(images_dir)]
        if revisions
        else ["plots", "show", "--json", "-o", str(images_dir)]
    )
    proc = subprocess.run([tool("dvc"), *args], capture_output=True, text=True)
    shown = " ".join(["dvc", *args])
    if proc.returncode != 0:
        raise DataError(f"{shown} failed: {proc.stderr.strip()[-500:]}")
    try:
        return orjson.loads(proc.stdout)
    except orjson.JSONDecodeError as e:
        raise DataError(f"{shown}: unexpected output ({e})") from None


def _image(url: str) -> str:
    path = Path(url)
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as e:
        raise DataError(f"{path}: cannot read plot image ({e})") from None
    mime = "image/png" if path.suffix.lower() == ".png" else f"image/{path.suffix.lower()[1:]}"
    return f'<img src="data:{mime};base64,{data}">'


def render_page(plots: dict, title: str = "fashionfail plots") -> str:
    """HTML with each Vega-Lite plot as inline SVG and each image inline; no external resource."""
    import vl_convert

    sections = []
    for name, entries in plots.get("data", plots).items():
        parts, heading = [], False
        for entry in entries:
            if entry["type"] == "vega":  # titled by DVC from the plot's name: no heading
                parts.append(vl_convert.vegalite_to_svg(entry["content"]))
            elif entry["type"] == "image":
                revs = ", ".join(entry.get("revisions", []))
                parts.append(f"<small>{html.escape(revs)}</small>{_image(entry['url'])}")
                heading = True
        h2 = f"<h2>{html.escape(name)}</h2>" if heading else ""
        sections.append(f"<section>{h2}{''.join(parts)}</section>")
    return _PAGE.format(title=html.escape(title), sections="\n".join(sections))


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("revisions", nargs="*", help="git revisions or experiment names to compare")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("dvc_plots/offline.html"),
        help="output page (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as images:  # DVC's image copies; embedded, then gone
            page = render_page(dvc_plots_json(args.revisions, Path(images)))
        with atomic_path(args.out) as tmp:
            tmp.write_text(page, encoding="utf-8")
    except USER_ERRORS as e:
        return error_exit(e)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
