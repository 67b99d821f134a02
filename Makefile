# The two commands of the README: `make test` and `make demo`. Both start from a clean clone
# with nothing but Python 3.10+, make and a C compiler.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: venv test lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e ".[dev]"
	touch $@

# The whole suite runs inside a private network namespace where the machine allows it, so the
# ROS 2 tests cannot send DDS traffic anywhere but loopback (see tools/run_isolated.sh).
test: $(STAMP)
	$(PY) -m ruff check .
	tools/run_isolated.sh $(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

demo: $(STAMP)
	$(PY) tools/demo.py --out $(DEMO_DIR)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out benchmarks/results

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
