# Moments: `make run` installs everything and starts the app; `make test` installs the test extras and runs the suite.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-test run test test-fast bench

install:
	$(PIP) install -e .

install-test:
	$(PIP) install -e ".[dev]"
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

run: install
	moments serve

test: install-test
	$(PYTHON) -m pytest -q tests

# the fast lane: everything but the real-model and browser tests (about two minutes)
test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow and not browser" tests

bench:
	$(PYTHON) bench/retrieval_dstc9.py
	$(PYTHON) bench/attribution.py
