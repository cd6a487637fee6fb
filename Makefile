# Two entry points: `make repro` runs the pipeline, `make test` runs lint and the test suite.
# Both create .venv from requirements.lock first, and only when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
INSTALLED := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

CHROMIUM := /usr/bin/chromium
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: repro test docs lock

repro: $(INSTALLED)
	dvc repro

test: $(INSTALLED) $(CHROMIUM)
	ruff check .
	python -m pytest

# The README's pictures, rendered from the current results.
docs: $(INSTALLED)
	python -m docs.render

# The browser test opens `dvc plots show` pages in Debian's Chromium.
$(CHROMIUM):
	$(APT) install -y chromium || ($(APT) update && $(APT) install -y chromium)

# A changed lock rebuilds the venv from scratch, so that nothing outside the lock lingers.
$(INSTALLED): requirements.lock
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

# Re-resolve the dependencies of pyproject.toml and pin every version into requirements.lock.
lock:
	rm -rf .lock-venv build *.egg-info
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check ".[dev]"
	.lock-venv/bin/python -m pip freeze | grep -v '^mnist-dvc' > requirements.lock
	rm -rf .lock-venv build *.egg-info
