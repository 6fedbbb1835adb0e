"""The report's tables (markdown and HTML from one structure) and charts (inline SVG, written here).

No external resource: the page carries its charts as inline SVG and its pictures as data URIs,
so it opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")


@dataclass
class Table:
    """A table: header cells and rows of text cells; `right` marks right-aligned columns."""

    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    right: set[int] = field(default_factory=set)

    def markdown(self) -> str:
        def cells(row: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

        align = ["---:" if i in self.right else "---" for i in range(len(self.header))]
        return "\n".join([cells(self.header), "|" + "|".join(align) + "|", *map(cells, self.rows)])

    def html(self) -> str:
        def row(tag: str, cells: Sequence[str]) -> str:
            return (
                "<tr>"
                + "".join(
                    f"<{tag}{' class=r' if i in self.right else ''}>{html.escape(c)}</{tag}>"
                    for i, c in enumerate(cells)
                )
                + "</tr>"
            )

        body = "".join(row("td", r) for r in self.rows)
        return f"<table>{row('th', self.header)}{body}</table>"


@dataclass
class Section:
    """A heading, paragraphs, tables and (HTML only) figures: SVG strings or PNG data."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, html)
    after: list[str] = field(default_factory=list)  # paragraphs after the tables


def markdown(title: str, intro: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole report as markdown (figures are left to the HTML page)."""
    out = [f"# {title}", "", *[p + "\n" for p in intro]]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [p + "\n" for p in s.text]
        for t in s.tables:
            out += [t.markdown(), ""]
        out += [p + "\n" for p in s.after]
    return "\n".join(out).rstrip() + "\n"


_STYLE = """body{font-family:sans-serif;margin:1em 2em;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ccc;padding:2px 6px}.r{text-align:right}
figure{display:inline-block;margin:.4em;vertical-align:top}
figcaption{font-size:.8em;max-width:560px}.note{background:#fff3cd;padding:.5em}"""


def page(title: str, intro: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole report as one self-contained HTML page."""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        *[f"<p class=note>{html.escape(p)}</p>" for p in intro],
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in s.text]
        parts += [t.html() for t in s.tables]
        parts += [f"<p>{html.escape(p)}</p>" for p in s.after]
        parts += [
            f"<figure>{fig}<figcaption>{html.escape(caption)}</figcaption></figure>"
            for caption, fig in s.figures
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def png_img(image) -> str:
    """A PIL image as an <img> with a data URI."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _svg(width: int, height: int, body: Sequence[str]) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, s: str, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{html.escape(s)}</text>'


def bar_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]]) -> str:
    """Horizontal grouped bars in [0, 1], one group per label, one bar per series (None: n/a)."""
    left, bar, gap, plot_w, top = 190, 9, 6, 360, 36
    group = bar * len(series) + gap
    height = top + group * len(labels) + 24
    width = left + plot_w + 50
    body = [_text(left, 14, title, font_weight="bold")]
    for i, name in enumerate(series):  # legend
        x = left + 130 * i
        body.append(f'<rect x="{x}" y="20" width="10" height="10" fill="{PALETTE[i]}"/>')
        body.append(_text(x + 14, 29, name))
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * plot_w
        body.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{height - 20}" stroke="#ddd"/>')
        body.append(_text(x, height - 8, f"{tick:g}", "middle"))
    for g, label in enumerate(labels):
        y0 = top + g * group
        body.append(_text(left - 6, y0 + group / 2, label[:30], "end", dominant_baseline="middle"))
        for i, values in enumerate(series.values()):
            v = values[g]
            y = y0 + i * bar
            if v is None:
                body.append(_text(left + 2, y + bar - 1, "n/a", font_size="8"))
                continue
            w = max(0.0, min(1.0, v)) * plot_w
            body.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 1}" '
                f'fill="{PALETTE[i]}"><title>{html.escape(label)}: {v:.3f}</title></rect>'
            )
    return _svg(width, height, body)


def reliability_diagram(title: str, bins: Sequence[dict], ece: float | None) -> str:
    """Accuracy per score bin as bars against the diagonal (perfect calibration)."""
    size, left, top = 220, 40, 34
    body = [_text(left, 14, title, font_weight="bold")]
    body.append(_text(left, 27, "ECE " + ("n/a" if ece is None else f"{ece:.3f}")))
    body.append(
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#999"/>'
    )
    for b in bins:
        x = left + b["lower"] * size
        w = (b["upper"] - b["lower"]) * size
        if b["count"]:
            h = b["accuracy"] * size
            body.append(
                f'<rect x="{x:.1f}" y="{top + size - h:.1f}" width="{w - 1:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[0]}"><title>scores {b["lower"]:.2f}-{b["upper"]:.2f}: '
                f"{b['count']} detections, accuracy {b['accuracy']:.3f}, "
                f"confidence {b['confidence']:.3f}</title></rect>"
            )
            cy = top + size - b["confidence"] * size
            body.append(
                f'<line x1="{x:.1f}" y1="{cy:.1f}" x2="{x + w - 1:.1f}" y2="{cy:.1f}" '
                f'stroke="{PALETTE[3]}" stroke-width="2"/>'
            )
    body.append(
        f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" '
        'stroke="#666" stroke-dasharray="4 3"/>'
    )
    for tick in (0, 0.5, 1):
        body.append(_text(left + tick * size, top + size + 14, f"{tick:g}", "middle"))
        body.append(_text(left - 4, top + size - tick * size + 4, f"{tick:g}", "end"))
    body.append(_text(left + size / 2, top + size + 28, "detection score", "middle"))
    body.append(
        _text(
            12,
            top + size / 2,
            "matched at IoU .50",
            "middle",
            transform=f"rotate(-90 12 {top + size / 2})",
        )
    )
    return _svg(left + size + 20, top + size + 36, body)
