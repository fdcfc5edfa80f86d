# dnnpart — `make reproduce` regenerates every report, `make test` runs the test suite.
# Both build .venv first when it is missing or pyproject.toml / requirements.lock changed (the stamp file).
# .venv gets the exact versions pinned in requirements.lock, so two machines compute the same CSVs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
KERNEL := dnnpart
NB_TIMEOUT ?= 900

# Notebooks that make reproduce executes, in order; each renders reports/<name>.html.
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]-*.ipynb))
REPORTS   := $(patsubst notebooks/%.ipynb,reports/%.html,$(NOTEBOOKS))
# The sweep notebooks only compute (node-limited solves, identical CSVs however they are scheduled), so make
# reproduce runs JOBS of them at once, one per core by default. The others run afterwards one at a time and
# alone, because they time real executions (01: whole networks, 06: solve times, 08: the testbed) or solve
# with a time limit (07).
SWEEP_REPORTS := $(addprefix reports/,$(addsuffix .html,02-bandwidth 03-networks 04-server-load 05-devices))
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
LIB       := $(shell find dnnpart -name "*.py" -o -name "*.j2" -o -name "*.css") $(shell find data -type f 2>/dev/null)

.DEFAULT_GOAL := help
.PHONY: help venv lock lint test reproduce lab benchmark clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@# ipykernel writes the spec through a temporary folder it leaves behind: give it one we remove
	d=$$(mktemp -d) && TMPDIR=$$d $(PY) -m ipykernel install --sys-prefix --name $(KERNEL) \
		--display-name "dnnpart (.venv)" >/dev/null && rm -rf $$d
	@touch $@

venv: $(STAMP) ## build .venv from requirements.lock when missing or out of date

lock: ## re-pin requirements.lock: the newest versions pyproject.toml allows, resolved in a fresh venv
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[planner,study,scale,test,lint]'
	(echo "# Pinned by 'make lock' from pyproject.toml (dependencies + planner, study, scale, test, lint extras). Do not edit."; \
	 .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v -E '^(dnnpart|pip|setuptools|wheel)( @|==)') \
	 > requirements.lock
	rm -rf .lock-venv

lint: $(STAMP) ## ruff: lint and formatting check (configured in pyproject.toml)
	$(VENV)/bin/ruff check dnnpart tests benchmarks
	$(VENV)/bin/ruff format --check dnnpart tests benchmarks

test: $(STAMP) lint ## lint, then run the test suite (pytest; notebooks are executed with small parameters)
	$(PY) -m pytest

reproduce: $(STAMP) ## execute every notebook with papermill and render HTML reports into reports/ (JOBS=1: one at a time)
	$(MAKE) --no-print-directory --output-sync=target -j$(JOBS) $(SWEEP_REPORTS)
	$(MAKE) --no-print-directory -j1 $(REPORTS) reports/index.html
# Each notebook solves its sweep in its own process: a sweep of a few dozen points is too small to repay a
# LocalCluster's start-up, while running the notebooks side by side uses every core (benchmarks/bench_sweep.py).
# DNNPART_SCHEDULER=local (DNNPART_WORKERS=N) solves inside each notebook on a Dask LocalCluster,
# DNNPART_SCHEDULER=tcp://HOST:8786 on a cluster (docs/scaling.md); give JOBS=1 with either.
reproduce: export DNNPART_SCHEDULER ?= serial

reports/%.html: notebooks/%.ipynb $(LIB) $(STAMP)
	@mkdir -p reports/executed
	$(PY) -m papermill --kernel $(KERNEL) --execution-timeout $(NB_TIMEOUT) --cwd notebooks \
		$< reports/executed/$*.ipynb
	$(PY) -m jupyter nbconvert --to html --no-input --output-dir reports reports/executed/$*.ipynb

reports/index.html: $(REPORTS) $(STAMP)
	$(PY) -m dnnpart.study.report_index

lab: $(STAMP) ## open JupyterLab on the project's environment
	$(VENV)/bin/jupyter lab --notebook-dir=.

benchmark: $(STAMP) ## run the benchmarks (optimiser and its CP-SAT peer, time limits, proofs, edge runtime, testbed, Dask sweeps) into benchmarks/results/
	$(PY) -m pip install --quiet 'ortools>=9.10' 'protobuf>=7.35'  # the peer; protobuf kept for the runtime's gRPC
	$(PY) benchmarks/bench_milp.py
	$(PY) benchmarks/bench_deadline.py
	$(PY) benchmarks/bench_proofs.py
	$(PY) benchmarks/bench_runtime.py
	$(PY) benchmarks/bench_testbed.py  # needs root (tc, namespaces, cgroups)
	$(PY) benchmarks/bench_sweep.py

clean: ## remove generated outputs (reports/, caches); never data/
	find reports -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis .cache benchmarks/results
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
