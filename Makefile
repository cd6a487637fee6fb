# `make install` sets up .venv and the offline plots page; `make repro` runs the pipeline;
# `make test` runs lint, the format check and the test suite. Each installs only what is stale.
PYTHON ?= python3.11
VENV := .venv
INSTALLED := $(VENV)/.installed
TEMPLATE := reports/plots_template.html
export PATH := $(abspath $(VENV))/bin:$(PATH)

CHROMIUM := /usr/bin/chromium
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.DEFAULT_GOAL := help
.PHONY: help install repro test docs schema lock

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(INSTALLED) $(TEMPLATE) ## create .venv from requirements.lock and the offline plots page

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

# A changed lock rebuilds the venv from scratch, so that nothing outside the lock lingers.
$(INSTALLED): requirements.lock
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

lock: ## re-resolve pyproject.toml and pin every version into requirements.lock
	rm -rf .lock-venv build *.egg-info
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check ".[dev,bench]"
	.lock-venv/bin/python -m pip freeze --all --exclude pip | grep -v '^mnist-dvc' \
		| sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock
	rm -rf .lock-venv build *.egg-info
