# The two commands of the README: `make test` and `make demo`. Both start from a clean clone
# with nothing but Python 3.10+, make and a C compiler.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: venv test test-main test-py310 lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e ".[dev]"
	touch $@

# The whole suite runs inside a private network namespace where the machine allows it, so the
# ROS 2 tests cannot send DDS traffic anywhere but loopback (see tools/run_isolated.sh).
test: test-main test-py310

test-main: $(STAMP)
	$(PY) -m ruff check .
	tools/run_isolated.sh $(PY) -m pytest -q

# The vehicle's interpreter (JetPack 6 / ROS 2 Humble): Python 3.10, numpy 1.21, no torch. It runs
# the torch-free part of the suite on bundles that the main venv exports.
PY310 ?= $(firstword $(shell for p in python3.10 $(HOME)/.pyenv/versions/3.10*/bin/python3.10; \
	do "$$p" -c "" 2>/dev/null && echo "$$p"; done))
VENV310 ?= .venv310
NUMPY310 ?= numpy==1.21.*
TEST_BUNDLES ?= build/test_bundles

$(VENV310)/.installed: pyproject.toml
	$(PY310) -m venv $(VENV310)
	$(VENV310)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(VENV310)/bin/python -m pip install -q -e ".[replay,ros-wheels]" "$(NUMPY310)" "pytest>=7.4"
	touch $@

ifeq ($(strip $(PY310)),)
test-py310:
	@echo "test-py310: SKIPPED, no Python 3.10 found (set PY310=/path/to/python3.10)"
else
test-py310: $(STAMP) $(VENV310)/.installed
	rm -rf $(TEST_BUNDLES)
	$(PY) tools/prebuild_test_bundles.py $(TEST_BUNDLES)
	UWSTEGO_TEST_BUNDLES=$(TEST_BUNDLES) tools/run_isolated.sh $(VENV310)/bin/python -m pytest -q
endif

lint: $(STAMP)
	$(PY) -m ruff check .

demo: $(STAMP)
	$(PY) tools/demo.py --out $(DEMO_DIR)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out benchmarks/results

clean:
	rm -rf $(VENV) $(VENV310) $(DEMO_DIR) build *.egg-info
