"""`fashionfail report --rev A --rev B ...`: the report's numbers for several revisions/experiments.

Each revision (a git revision, a DVC experiment name, or `workspace`) is read through DVC's
Python API (`dvc.api.read`: git-tracked metrics, per-class tables and params.yaml at that
revision). Runs whose params differ only in a seed (`train_facere.seed`,
`finetune_facere_plus.seed`) form a group: its mean and sample standard deviation (n - 1); a
difference between two groups' means smaller than the larger of their standard deviations is
marked "within spread", i.e. not a difference the seeds alone could not make.

    fashionfail report --rev HEAD --rev lower-lr            # two runs side by side
    dvc exp run --queue -S finetune_facere_plus.seed=1,2,3 && dvc queue start
    fashionfail report --rev HEAD --rev <exp1> --rev <exp2> --rev <exp3>
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import yaml

from fashionfail.core.cli import USER_ERRORS, error_exit, parser
from fashionfail.core.jsonio import DataError, atomic_path
from fashionfail.report.analysis import (
    Spread,
    flatten,
    group_key,
    is_number,
    spread,
    within_spread,
)
from fashionfail.report.render import Section, Table, bar_chart, markdown, page

WORKSPACE = "workspace"
# (column, file, path into the JSON) of the numbers compared
METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Facere+ FF box mAP_w", "eval/facere_plus_ff/metrics.json", ("bbox", "mAP_w")),
    ("Facere+ FF mask mAP_w", "eval/facere_plus_ff/metrics.json", ("segm", "mAP_w")),
    ("Facere FF box mAP_w", "eval/facere_ff/metrics.json", ("bbox", "mAP_w")),
    ("Facere FF mask mAP_w", "eval/facere_ff/metrics.json", ("segm", "mAP_w")),
    ("Facere FP box mAP_w", "eval/facere_fp_raw/metrics.json", ("bbox", "mAP_w")),
    ("Facere FP mask mAP_w", "eval/facere_fp_raw/metrics.json", ("segm", "mAP_w")),
    ("Facere+ FF mask ECE", "reports/metrics.json", ("ece", "facere_plus_ff", "segm")),
)
PER_CLASS = "eval/facere_plus_ff/per_class.csv"
Reader = Callable[[str, str], str | None]  # (path, rev) -> text, None if absent


def dvc_reader(root: str = ".") -> Reader:
    """Files at a revision through dvc.api.read (the workspace read directly)."""

    def read(path: str, rev: str) -> str | None:
        if rev == WORKSPACE:
            p = Path(root) / path
            return p.read_text() if p.is_file() else None
        import dvc.api
        from dvc.exceptions import DvcException, PathMissingError
        from dvc.scm import RevError

        try:
            return dvc.api.read(path, repo=root, rev=rev)
        except (FileNotFoundError, PathMissingError):  # e.g. reports/ before the report stage
            return None
        except (DvcException, RevError) as e:
            raise DataError(f"revision {rev!r}: cannot read {path} ({e})") from None

    return read


def _dig(data: object, keys: Sequence[str]) -> float | None:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return float(data) if is_number(data) else None


def load_run(read: Reader, rev: str) -> dict:
    """{"rev", "params" (flat), "metrics" {column: value|None}, "per_class" {class: AP_segm}}."""
    text = read("params.yaml", rev)
    if text is None:
        raise DataError(f"revision {rev!r}: no params.yaml")
    params = flatten(yaml.safe_load(text) or {})
    files: dict[str, object] = {}
    metrics = {}
    for column, path, keys in METRICS:
        if path not in files:
            raw = read(path, rev)
            try:
                files[path] = None if raw is None else orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise DataError(f"revision {rev!r}: {path}: malformed JSON ({e})") from None
        metrics[column] = _dig(files[path], keys)
    per_class = {}
    raw = read(PER_CLASS, rev)
    if raw is not None:
        for row in csv.DictReader(io.StringIO(raw)):
            per_class[row["class"]] = float(row["AP_segm"]) if row.get("AP_segm") else None
    return {"rev": rev, "params": params, "metrics": metrics, "per_class": per_class}


def groups(runs: Sequence[dict]) -> list[list[dict]]:
    """Runs grouped by their params without the seeds, in the order first seen."""
    out: dict[tuple, list[dict]] = {}
    for run in runs:
        out.setdefault(group_key(run["params"]), []).append(run)
    return list(out.values())


def differing_params(runs: Sequence[dict]) -> list[str]:
    """Param names whose value is not the same in every run (seeds included)."""
    keys = sorted({k for r in runs for k in r["params"]})
    return [k for k in keys if len({repr(r["params"].get(k)) for r in runs}) > 1]


def group_spreads(group: Sequence[dict]) -> dict[str, Spread | None]:
    out = {}
    for column, _, _ in METRICS:
        values = [r["metrics"][column] for r in group if r["metrics"][column] is not None]
        out[column] = spread(values) if values else None
    return out


def _cell(value: float | None, decimals: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def compare_sections(runs: Sequence[dict]) -> list[Section]:
    """Runs, groups over seeds (mean, sd, difference to the first group), per class."""
    changed = differing_params(runs)
    columns = [c for c, _, _ in METRICS]
    run_table = Table(["revision", *changed, *columns], right=set(range(1 + len(changed), 99)))
    for r in runs:
        run_table.rows.append(
            [r["rev"], *[str(r["params"].get(k, "")) for k in changed]]
            + [_cell(r["metrics"][c]) for c in columns]
        )
    sections = [
        Section(
            "Runs",
            ["Fractions in [0, 1]; columns: params that differ between the runs, then metrics."],
            [run_table],
        )
    ]
    grouped = groups(runs)
    spreads = [group_spreads(g) for g in grouped]
    group_table = Table(["group", "runs", *columns], right=set(range(1, 99)))
    for i, (g, s) in enumerate(zip(grouped, spreads, strict=True)):
        cells = []
        for c in columns:
            if s[c] is None:
                cells.append("n/a")
                continue
            cell = s[c].text(decimals=3)
            if i and spreads[0][c] is not None:
                diff = s[c].mean - spreads[0][c].mean
                flag = within_spread(spreads[0][c], s[c])
                cell += f"; {diff:+.3f} vs group 1" + (" (within spread)" if flag else "")
            cells.append(cell)
        group_table.rows.append([str(i + 1), ", ".join(r["rev"] for r in g), *cells])
    sections.append(
        Section(
            "Groups over seeds",
            [
                "Runs whose params differ only in train_facere.seed / finetune_facere_plus.seed "
                "form a group. Cells: mean ± sample standard deviation (n - 1 in the "
                "denominator; none for one run); for groups after the first, the difference of "
                "the means to group 1, marked (within spread) when it is smaller than the larger "
                "of the two groups' standard deviations."
            ],
            [group_table],
        )
    )
    classes = sorted({c for r in runs for c in r["per_class"]})
    if classes:
        table = Table(["class", *[r["rev"] for r in runs]], right=set(range(1, 99)))
        for c in classes:
            table.rows.append([c, *[_cell(r["per_class"].get(c)) for r in runs]])
        chart = bar_chart(
            "Facere+ mask AP per class",
            classes,
            {r["rev"]: [r["per_class"].get(c) for c in classes] for r in runs[:6]},
        )
        sections.append(
            Section(
                "Per class: Facere+ mask AP on FashionFail-test",
                tables=[table],
                figures=[("mask AP per class, per revision (first six)", chart)],
            )
        )
    return sections


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument(
        "--rev",
        action="append",
        required=True,
        help="git revision, DVC experiment name, or 'workspace' (repeat; the first is the base)",
    )
    ap.add_argument("--repo", default=".", help="the project's root (default: .)")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("reports/compare"),
        help="output folder for report.md and index.html (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    try:
        read = dvc_reader(args.repo)
        runs = [load_run(read, rev) for rev in args.rev]
        sections = compare_sections(runs)
        title = "FashionFail report: " + ", ".join(args.rev)
        with atomic_path(args.out / "report.md") as tmp:
            tmp.write_text(markdown(title, [], sections), encoding="utf-8")
        with atomic_path(args.out / "index.html") as tmp:
            tmp.write_text(page(title, [], sections), encoding="utf-8")
    except USER_ERRORS as e:
        return error_exit(e)
    print(f"wrote {args.out / 'report.md'} and {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
