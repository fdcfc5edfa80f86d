# dnnpart — `make reproduce` regenerates every report, `make test` runs the test suite.
# Both build .venv first when it is missing or pyproject.toml changed (the stamp file).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
KERNEL := dnnpart
NB_TIMEOUT ?= 900

# Notebooks that make reproduce executes, in order; each renders reports/<name>.html.
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]-*.ipynb))
REPORTS   := $(patsubst notebooks/%.ipynb,reports/%.html,$(NOTEBOOKS))
LIB       := $(shell find dnnpart -name "*.py" -o -name "*.j2" -o -name "*.css") $(shell find data -type f 2>/dev/null)

.DEFAULT_GOAL := help
.PHONY: help venv test reproduce lab benchmark clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "dnnpart (.venv)" >/dev/null
	@touch $@

venv: $(STAMP) ## build .venv (pip install -e '.[test]') when missing or pyproject.toml changed

test: $(STAMP) ## run the test suite (pytest; notebooks are executed with small parameters)
	$(PY) -m pytest

reproduce: $(REPORTS) reports/index.html ## execute every notebook with papermill and render HTML reports into reports/

reports/%.html: notebooks/%.ipynb $(LIB) $(STAMP)
	@mkdir -p reports/executed
	$(PY) -m papermill --kernel $(KERNEL) --execution-timeout $(NB_TIMEOUT) --cwd notebooks \
		$< reports/executed/$*.ipynb
	$(PY) -m jupyter nbconvert --to html --no-input --output-dir reports reports/executed/$*.ipynb

reports/index.html: $(REPORTS) $(STAMP)
	$(PY) -m dnnpart.study.report_index

lab: $(STAMP) ## open JupyterLab on the project's environment
	$(VENV)/bin/jupyter lab --notebook-dir=.

benchmark: $(STAMP) ## run the optimiser benchmark (exact vs paper formulation) into benchmarks/results/
	$(PY) benchmarks/bench_milp.py

clean: ## remove generated outputs (reports/, caches); never data/
	find reports -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis .cache benchmarks/results
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
