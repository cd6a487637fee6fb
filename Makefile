# `make install` sets up .venv and the offline plots page; `make repro` runs the pipeline;
# `make test` runs lint, the format check and the test suite. Each installs only what is stale.

# The CPython versions that pyproject.toml admits, newest first, each with its requirements/ lock.
PYTHONS := 3.13 3.12 3.11
# The newest of them that runs here (a pyenv shim for an inactive version does not), or PYTHON=...
ifndef PYTHON
PYTHON := $(firstword $(foreach v,$(PYTHONS),$(shell python$(v) -c 'print("python$(v)")' 2>/dev/null)))
endif
PYTHON_VERSION := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
LOCK := requirements/$(PYTHON_VERSION).lock
VENV := .venv
INSTALLED := $(VENV)/.installed-$(PYTHON_VERSION)
TEMPLATE := reports/plots_template.html
export PATH := $(abspath $(VENV))/bin:$(PATH)

CHROMIUM := /usr/bin/chromium
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.DEFAULT_GOAL := help
.PHONY: help install repro test docs schema lock check-lock python

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: python $(INSTALLED) $(TEMPLATE) ## create .venv from the Python's lock, and the offline plots page

repro: install ## run the whole pipeline (`dvc repro`)
	dvc repro

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

# A changed lock, or another Python, rebuilds the venv from scratch: nothing outside the lock
# lingers. The lock is complete (`make lock`), so pip installs it as it is (--no-deps).
$(INSTALLED): $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r $(LOCK)
	touch $@

lock: python ## re-resolve pyproject.toml into requirements/, one lock per Python (each on PATH)
	$(PYTHON) -m tools.locks write
	rm -rf build *.egg-info

check-lock: python ## check that every lock resolves to binary wheels on Linux x86-64
	$(PYTHON) -m tools.locks check
	rm -rf build *.egg-info
