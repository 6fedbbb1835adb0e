"""The DVC pipeline itself, in a temporary git repository holding a copy of this project:
`dvc repro` runs, `dvc status` is clean afterwards, a params or code change reruns exactly the
stages that read it and their descendants, a combination already run is restored from the
run-cache instead of rerun (a killed training resumes: test_dvc_resume.py). The pipeline runs
once (conftest.py `reproduced`); each test changes its own copy of the finished project."""

import hashlib
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dvc_helpers import commit_run, copy_project, copy_reproduced
from dvc_helpers import run as _run

pytestmark = pytest.mark.slow


@pytest.fixture
def project(finished_project):
    """This test's copy of the project after `dvc repro`, the run committed (as
    test_full_pipeline_then_a_finetune_param_reruns_only_its_descendants commits it)."""
    return commit_run(finished_project)


LOWER_LR = 0.0005  # finetune_facere_plus.lr of the experiment `lower-lr` (params.yaml: 0.001)
PLUS_OUTPUTS = ("models/facere_plus", "eval/facere_plus_ff", "dvclive/finetune-facere-plus")


@pytest.fixture(scope="module")
def lower_lr(reproduced, tmp_path_factory) -> tuple[Path, str]:
    """(root, output): a copy of the finished project, committed, after `dvc exp run -S
    finetune_facere_plus.lr=0.0005 -n lower-lr` (run once for this file's tests). Read only:
    copy it (dvc_helpers.copy_reproduced)."""
    root = commit_run(copy_reproduced(reproduced[0], tmp_path_factory.mktemp("exp") / "project"))
    out = _run(
        ["dvc", "exp", "run", "-S", f"finetune_facere_plus.lr={LOWER_LR}", "-n", "lower-lr"], root
    )
    return root, out


def _set_param(root: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def _restored(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if " is cached - skipping" in line}


def _stage_names(root: Path) -> set[str]:
    """Every stage of the project, foreach items expanded (e.g. evaluate@facere_ff)."""
    out = _run(["dvc", "stage", "list", "--name-only"], root)
    return {line.strip() for line in out.splitlines() if line.strip()}


def _run_cache_entries(root: Path) -> int:
    """Runs saved in DVC's run-cache: .dvc/cache/runs/<xx>/<stage key>/<run>."""
    return len(list((root / ".dvc/cache/runs").glob("*/*/*")))


def _digest(root: Path, *folders: str) -> dict[str, str]:
    """{file: sha256} of every file under the folders."""
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for folder in folders
        for f in sorted((root / folder).rglob("*"))
        if f.is_file()
    }


def _lock_entries(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def test_data_stages_rerun_only_what_a_param_change_touches(tmp_path):
    project = copy_project(tmp_path)  # a fresh one: nothing has run
    out = _run(["dvc", "repro", "rle-encode"], project)
    assert _ran(out) == {"download", "split", "rle-encode"}
    assert "up to date" in _run(["dvc", "status", "download", "split", "rle-encode"], project)
    _set_param(project, "split", "seed", 7)
    assert "split" in _run(["dvc", "status", "split"], project)
    out = _run(["dvc", "repro", "rle-encode"], project)
    assert _ran(out) == {"split", "rle-encode"}
    assert "Stage 'download' didn't change, skipping" in out
    _run(["git", "checkout", "params.yaml"], project)
    # rle-encode reads its section through the typed config: dvc.yaml's `params:` scopes it.
    _run(["dvc", "repro", "rle-encode"], project)
    _set_param(project, "rle_encode", "invalid", "error")
    assert "rle_encode" in _run(["dvc", "status", "rle-encode"], project)
    assert "up to date" in _run(["dvc", "status", "download", "split"], project)


def test_full_pipeline_then_a_finetune_param_reruns_only_its_descendants(
    finished_project, reproduced
):
    project = finished_project
    assert _ran(reproduced[1]) == _stage_names(project)  # `dvc repro` ran every stage once
    assert "up to date" in _run(["dvc", "status"], project)
    assert (project / "models/facere/best.ckpt").is_file()
    assert (project / "models/facere_plus/best.ckpt").is_file()
    assert not (project / "dvclive/train-facere/dvc.yaml").exists()  # dvcyaml=False
    # Every stage left its run in the run-cache (no output turns it off): with dvc.lock and
    # every output gone, `dvc repro` restores the whole pipeline and runs nothing.
    assert _run_cache_entries(project) >= len(_stage_names(project))
    lock = (project / "dvc.lock").read_text()
    outs = [o["path"] for st in yaml.safe_load(lock)["stages"].values() for o in st["outs"]]
    before = _digest(project, *outs)
    (project / "dvc.lock").unlink()
    for path in outs:
        shutil.rmtree(project / path) if (project / path).is_dir() else (project / path).unlink()
    out = _run(["dvc", "repro"], project)
    assert not _ran(out) and _restored(out) == _stage_names(project), out
    assert _digest(project, *outs) == before
    assert _lock_entries(project) == yaml.safe_load(lock)["stages"]
    _run([sys.executable, "-m", "fashionfail.commands.plots", "--out", "offline.html"], project)
    page = (project / "offline.html").read_text()
    assert "<script" not in page  # curves + per-class bars, offline
    assert "data:image/png;base64," in page  # the overlays
    assert not (project / "dvc_plots").exists()  # no stray copies of the overlays
    # One chart per curve of the two trainings, per evaluation's per-class table, and per
    # data file of the report (per-class gain, calibration curves).
    charts = [
        *project.glob("dvclive/*/plots/**/*.tsv"),
        *project.glob("eval/*/per_class.csv"),
        *project.glob("reports/per_class.csv"),
        *project.glob("reports/calibration/*"),
    ]
    assert page.count("<svg") == len(charts) > 40
    assert not list(project.glob("models/**/*.dvc"))
    commit_run(project)

    _set_param(project, "finetune_facere_plus", "lr", 0.0005)
    dry = _run(["dvc", "repro", "--dry"], project)
    ran = _ran(dry)
    assert "finetune-facere-plus" in ran
    assert not ran & {"download", "split", "rle-encode", "train-facere"}
    # only finetune, its evaluation and the report
    assert all("plus" in stage or stage == "report" for stage in ran), ran
    status = _run(["dvc", "status"], project)
    assert "finetune-facere-plus" in status and "train-facere:" not in status
    _run(["git", "checkout", "params.yaml"], project)


def test_experiments_show_params_and_metrics(lower_lr, tmp_path):
    project, out = copy_reproduced(lower_lr[0], tmp_path / "project"), lower_lr[1]
    assert "Running stage 'finetune-facere-plus'" in out
    assert "Running stage 'train-facere'" not in out
    show = _run(["dvc", "exp", "show", "--no-pager", "--md"], project)
    assert "lower-lr" in show and "finetune_facere_plus.lr" in show
    assert "val.loss" in show  # dvclive metrics reach `dvc exp show` via top-level metrics:
    # docs/experiments.md's table (make exps) fits 160 columns, the numbers to compare first.
    table = _run(
        r"COLUMNS=160 dvc exp show --no-pager --only-changed --drop 'Created|.*/|fp_raw_|ece\.' "
        r"--keep '(plus_)?(fp|ff)_(box|mask)|(plus_)?best_'",
        project,
    )
    print(table)
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 160 and "…" not in table, table
    header = lines[1].split()
    assert header[0] == "Experiment", header
    assert header[1:9] == [  # in the pipeline's order: the trainings, then the evaluations
        "best_loss",
        "plus_best_loss",
        "fp_box",
        "fp_mask",
        "ff_box",
        "ff_mask",
        "plus_ff_box",
        "plus_ff_mask",
    ]
    assert "finetune_facere_plus.lr" in header and "lower-lr" in table
    assert not any(":" in h or "/" in h for h in header)  # no detail metric (file:name), no dep
    exp_diff = _run(["dvc", "exp", "diff", "HEAD", "lower-lr", "--md"], project)
    assert "finetune_facere_plus.lr" in exp_diff
    _run(["git", "checkout", "params.yaml"], project)  # exp run left lower-lr's value there
    _set_param(project, "finetune_facere_plus", "lr", LOWER_LR)
    assert "finetune_facere_plus.lr" in _run(["dvc", "params", "diff", "--md"], project)
    _run(["git", "checkout", "params.yaml"], project)


def test_a_code_edit_reruns_exactly_the_stages_that_run_that_code(project):
    """dvc.yaml's code deps are the stages' import closures (tests/test_dag.py): editing the
    paper's augmentation reruns the trainings and what follows, editing predict.py nothing."""
    _run(["dvc", "repro"], project)
    assert "up to date" in _run(["dvc", "status"], project)
    recipes = project / "fashionfail/data/fast_recipes.py"
    original = recipes.read_text()
    recipes.write_text(original + "# an edit\n")
    status = _run(["dvc", "status"], project)
    assert "train-facere:" in status and "finetune-facere-plus:" in status, status
    assert "modified:           fashionfail/data/fast_recipes.py" in status
    assert not {"download:", "split:", "rle-encode:"} & set(status.split()), status
    recipes.write_text(original)
    predict = project / "fashionfail/commands/predict.py"
    original = predict.read_text()
    predict.write_text(original + "# an edit\n")
    assert "up to date" in _run(["dvc", "status"], project)
    predict.write_text(original)


def test_params_already_run_are_restored_from_the_run_cache(reproduced, lower_lr, tmp_path):
    """lr=A (the shared `dvc repro`), lr=B (`dvc exp run`, fixture lower_lr), then A and B again:
    the third and fourth runs train nothing; every stage is restored or skipped, and the outputs
    are the first and the second run's, byte for byte."""
    original = yaml.safe_load((reproduced[0] / "params.yaml").read_text())
    first_lr = original["finetune_facere_plus"]["lr"]
    assert first_lr != LOWER_LR
    project = copy_reproduced(lower_lr[0], tmp_path / "project")
    first_files = _digest(reproduced[0], *PLUS_OUTPUTS)
    second_files = _digest(project, *PLUS_OUTPUTS)  # the workspace holds lower-lr's outputs
    assert "finetune-facere-plus" in _ran(lower_lr[1]) and "finetune-facere-plus" in _ran(
        reproduced[1]
    )
    assert first_files.keys() == second_files.keys() and first_files != second_files
    for lr, files in ((first_lr, first_files), (LOWER_LR, second_files)):
        out = _run(["dvc", "exp", "run", "-S", f"finetune_facere_plus.lr={lr}"], project)
        assert _ran(out) == set(), out  # nothing ran ...
        assert "epoch 1/" not in out and "Epoch 0" not in out  # ... no training progress ...
        assert {"finetune-facere-plus", "evaluate@facere_plus_ff"} <= _restored(out), out
        for stage in _stage_names(project):  # ... each stage restored or skipped
            assert stage in _restored(out) or f"Stage '{stage}' didn't change, skipping" in out, (
                stage,
                out,
            )
        assert _digest(project, *PLUS_OUTPUTS) == files, lr
    _run(["git", "checkout", "params.yaml"], project)
