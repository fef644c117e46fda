# Two entry points, each doing its own set-up from a fresh clone:
#   make train   create .venv, install mnist-jax, train configs/default.toml
#   make test    create .venv, install mnist-jax[dev], run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# setuptools warns on every editable install that a folder named like the package may shadow
# it on imports; here that folder is the package itself, so the warning is silenced.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e

.PHONY: train test test-long lint docs clean gpu-check wheel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(EDITABLE) .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(EDITABLE) '.[dev]'
	touch $@ $(VENV)/.installed

train: $(VENV)/.installed
	$(BIN)/mnist-jax train --config configs/default.toml

# Two workers (pytest-xdist): the suite waits on subprocesses, servers and compilers as much as
# it computes, so two share this 2-core machine's time well. PYTEST_WORKERS=0 runs it serially.
# --durations=10 lists the ten slowest tests at the end, so a log shows where the time goes.
# loadgroup: tests go to whichever worker is free, one at a time, except that the tests marked
# with one xdist_group (those sharing a module fixture) go to the same worker.
PYTEST_WORKERS ?= 2
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=10 $(PYTEST_ARGS)

# The long group: the checks that need the full MNIST files (MNIST_JAX_DATA) and take minutes,
# left out of `make test` by pyproject.toml's addopts; CI runs them after the main suite.
test-long: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m long --durations=10 $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check mnist_jax tests scripts
	$(BIN)/ruff format --check mnist_jax tests scripts

# The documentation site from docs/ into site/; --strict turns every warning (a broken link, a
# missing include, a docstring that does not parse) into a failure.
$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(EDITABLE) '.[docs]'
	touch $@

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# A wheel of this checkout, dist/mnist_jax-VERSION-py3-none-any.whl, to install where the checkout
# is not: upload it next to examples/gpu_runtime.ipynb on a hosted runtime.
wheel: | $(BIN)/python
	rm -rf dist build
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	rm -rf build

clean:
	rm -rf $(VENV) runs site .pytest_cache .hypothesis dist build

# On a machine with an NVIDIA GPU: tests, gradcheck, default training and bench on the GPU,
# one JSON report. Uses the JAX already there when it sees the GPU, and installs the CUDA extra
# into .venv-gpu only when it does not. DATA is the folder of the MNIST IDX files.
#   make gpu-check DATA=/path/to/mnist [GPU_CHECK_ARGS=--cpu-dry-run]
gpu-check:
	$(PYTHON) scripts/gpu_check.py --data $(DATA) --out gpu-check.json $(GPU_CHECK_ARGS)
