# Two entry points for a fresh clone (see README): `make repro` and `make test`.
# Both create .venv with the pinned requirements on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test lint bench exps metrics
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

repro: setup
	dvc repro

test: setup
	ruff check .
	ruff format --check .
	pytest

bench: setup
	python benchmarks/bench_data.py

# The experiments table that fits 160 columns: mAP_w per evaluation, best val losses, changed params.
exps: setup
	dvc exp show --only-changed --drop 'Created|.*/|fp_raw_' --keep '(plus_)?(fp|ff)_(box|mask)|(plus_)?best_'

metrics: setup
	dvc metrics show eval/*/summary.json dvclive/*/best.json
