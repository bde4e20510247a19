# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WARM   := $(VENV)/.kernels-compiled
TESTWARM := $(VENV)/.test-kernels-compiled
# the modules with Numba kernels: editing one invalidates its cached compilations
KERNELS := $(shell grep -rl --include='*.py' 'njit' seaice_dask)

.PHONY: demo test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# compile the Numba kernels once into their on-disk cache, in parallel, before the first test or
# benchmark run, so that no run (nor each of its workers) compiles them on first use; `install`
# stays pip alone
$(WARM): $(STAMP) $(KERNELS)
	$(BIN)/python -m seaice_dask.warmup
	touch $(WARM)

install: $(STAMP)

# the demo compiles the kernels while it simulates its scenes
demo: $(STAMP)
	$(BIN)/seaice-dask demo --out demo-output

# the signatures only the tests use, compiled side by side before the suite rather than one after
# the other inside it
$(TESTWARM): $(WARM) tests/warmup.py
	$(BIN)/python -m tests.warmup
	touch $(TESTWARM)

# whole modules spread over TEST_WORKERS processes (pytest-xdist; 0 runs them in this one)
TEST_WORKERS ?= 2
test: $(TESTWARM)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(WARM)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf demo-output .pytest_cache
