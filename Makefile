# Two entry points for a fresh clone (see README.md): `make repro` and `make test`.
# Both create .venv with the locked requirements on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements-lock.txt
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup lock repro test lint bench exps metrics
setup: $(VENV)/.installed

# uv installs the lock (every package pinned, with hashes), then the project in editable mode.
$(VENV)/.installed: $(LOCK) pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) tools/lock.py --install
	touch $@

# Regenerate the lock after editing pyproject.toml's dependencies (~10 min: it hashes every file).
# Not after `setup`: that fails on purpose while the lock lacks a newly declared package.
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q pip-tools
	$(PY) tools/lock.py

repro: setup
	dvc repro

test: setup
	ruff check .
	ruff format --check .
	python tools/lock.py --check
	deptry .
	lint-imports
	pytest

bench: setup
	python benchmarks/bench_data.py

# The experiments table that fits 160 columns: mAP_w per evaluation, best val losses, changed params.
exps: setup
	dvc exp show --only-changed --drop 'Created|.*/|fp_raw_|ece\.' --keep '(plus_)?(fp|ff)_(box|mask)|(plus_)?best_'

metrics: setup
	dvc metrics show eval/*/summary.json dvclive/*/best.json
