# Two commands do all the set-up: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-all test-kernels bench venv clean

venv: $(STAMP)

# Re-install only when the project's dependencies change. torch is pinned here, not in
# pyproject.toml: 2.13.0 has a CPU wheel on these machines, an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The tests exercise the optional extras too (Ray: --impala.backend ray); the demo needs none of them.
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,ray]"
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(VENV)/bin/srwm-rl demo

test: $(TEST_STAMP)
	$(PY) -m pytest -q

# The Triton SRWM kernel's tests (marker triton) under Triton's CPU interpreter. Installs the gpu
# extra (triton, ~1 GB) into the venv on first use; kept out of `make test` (the interpreter is slow).
$(VENV)/.installed-gpu: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,gpu]"
	touch $@

test-kernels: $(VENV)/.installed-gpu
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m triton

test-all: $(TEST_STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) .cache build *.egg-info
