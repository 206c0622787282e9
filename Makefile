# `make demo`: create .venv, install, train + evaluate the joint CIFAR-10 + IMDb model on the real data.
# `make test`: create .venv, install with test tools, run the offline test suite.
# `make docs`: regenerate docs/config.md from the config dataclasses.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Use the shared mirror of the real data sets when it sits beside the checkout (otherwise OMNIFUSE_DATA or the cache).
SHARED_DATA := $(abspath ../shared/data)
export OMNIFUSE_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: install demo test lint docs clean

$(BIN)/omnifuse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/omnifuse

demo: install
	$(BIN)/omnifuse demo

# Three workers on two cores, one test file each at a time (module fixtures train small models once per file): a
# worker waiting on a process it started leaves its core to the others (docs/testing.md: 448 s with 2, 355 s with 3).
# Python may cache compiled modules (__pycache__, git-ignored) even where the environment sets
# PYTHONDONTWRITEBYTECODE: otherwise each worker compiles omnifuse and rewrites every test file's asserts again,
# and each process a test starts compiles omnifuse again (a worker's collection: about 9.5 -> 6.5 CPU s).
test: install
	$(BIN)/omnifuse weights install
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -n 3 --dist loadfile

# The config reference, generated from the comments on the config dataclasses' fields (tests/test_configdoc.py
# fails when docs/config.md differs from it).
docs: install
	$(BIN)/python -m omnifuse.configdoc docs/config.md

lint: install
	$(BIN)/ruff format --check omnifuse tests benchmarks
	$(BIN)/ruff check omnifuse tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
