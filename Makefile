# `make install` sets up .venv and the offline plots page; `make repro` runs the pipeline;
# `make test` runs lint, the format check and the test suite; `make bench` the speed benchmark
# with its PyTorch peer, from a venv of its own. Each installs only what is stale.

# The CPython versions that pyproject.toml admits, newest first; one lock serves them all.
PYTHONS := 3.13 3.12 3.11
# The newest of them that runs here (a pyenv shim for an inactive version does not), or PYTHON=...
ifndef PYTHON
PYTHON := $(firstword $(foreach v,$(PYTHONS),$(shell python$(v) -c 'print("python$(v)")' 2>/dev/null)))
endif
PYTHON_VERSION := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
LOCK := requirements/pipeline.txt
BENCH_LOCK := requirements/bench.txt
UV_LOCK := requirements/uv.txt
VENV := .venv
BENCH_VENV := .venv-bench
INSTALLED := $(VENV)/.installed-$(PYTHON_VERSION)
BENCH_INSTALLED := $(BENCH_VENV)/.installed-$(PYTHON_VERSION)
TEMPLATE := reports/plots_template.html
BENCH_ARGS ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)

CHROMIUM := /usr/bin/chromium
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.DEFAULT_GOAL := help
.PHONY: help install repro test bench docs schema lock python

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: python $(INSTALLED) $(TEMPLATE) ## create .venv from requirements/pipeline.txt, and the offline plots page

# The verdicts last, also when `dvc repro` had nothing to rerun and the report stage was skipped.
repro: install ## run the whole pipeline (`dvc repro`), then each variant's verdict
	dvc repro
	@python -m stages.report --verdicts

# The suite waits on subprocesses much of the time (DVC, Git, queue and cluster workers), so two
# pytest workers, each taking whole files, use the two cores that one leaves half idle (their
# options are pytest's addopts in pyproject.toml).
test: install $(CHROMIUM) ## ruff check, ruff format --check and the test suite
	ruff check .
	ruff format --check .
	python -m pytest

docs: install ## redraw the README's pictures from the current results
	python -m docs.render

schema: install ## regenerate params.schema.json from stages/params.py
	python -m stages.params

# The offline page template for `dvc plots show`: a cached DVC output, so a fresh clone makes it.
$(TEMPLATE): $(INSTALLED)
	dvc repro plots_template

# The browser test opens `dvc plots show` pages in Debian's Chromium.
$(CHROMIUM):
	$(APT) install -y chromium || ($(APT) update && $(APT) install -y chromium)

# One line, before anything is made, when no supported Python is there or PYTHON is another.
python:
	$(if $(PYTHON),,$(error no python3.13, python3.12 or python3.11 runs here; install one, or name one: make install PYTHON=/path/to/python3.12))
	$(if $(filter $(PYTHON_VERSION),$(PYTHONS)),,$(error $(PYTHON) is Python $(or $(PYTHON_VERSION),unknown), not 3.11, 3.12 or 3.13; name another: make install PYTHON=/path/to/python3.12))
	@:

# A changed lock, or another Python, rebuilds the venv from scratch: uv installs exactly the
# lock, every file checked against its hash, and a failure leaves no venv and one line.
$(INSTALLED): $(LOCK) $(UV_LOCK)
	$(PYTHON) -m tools.install $(VENV) $(LOCK)
	touch $@

# The PyTorch peer of the speed benchmark lives in a venv of its own: `make test` never sees it.
$(BENCH_INSTALLED): $(BENCH_LOCK) $(UV_LOCK)
	$(PYTHON) -m tools.install $(BENCH_VENV) $(BENCH_LOCK)
	touch $@

bench: install $(BENCH_INSTALLED) ## the PyTorch peer's tests, then the speed benchmark (BENCH_ARGS=...)
	dvc repro split
	$(BENCH_VENV)/bin/python -m pytest benchmarks/tests
	$(BENCH_VENV)/bin/python -m benchmarks.train_speed $(BENCH_ARGS)

# Resolution reads no pip or uv configuration and no PIP_*/UV_* variables: the public index alone.
lock: install ## re-resolve pyproject.toml into requirements/ (uv; keeps the pins that still fit)
	python -m tools.install --lock
