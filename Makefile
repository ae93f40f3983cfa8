# One command per gate. CI (.ci/run) calls the same targets the README shows.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system lint format typecheck test bench demo check clean

# System parts the tests run for real: PostgreSQL (the shared session store), bubblewrap and the
# Debian python3 with numpy/pandas/matplotlib/seccomp that the code-interpreter sandbox runs.
# Installed when this is a Debian machine and we are root; elsewhere install them yourself.
SYSTEM_PACKAGES := postgresql bubblewrap python3-seccomp python3-numpy python3-pandas python3-matplotlib

system:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) system
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: any other torch requirement pulls GBs of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[local,memory,dev,postgres]'
	# CodeShield and its pinned semgrep without semgrep's Python pins (see the codeshield extra)
	$(BIN)/pip install -q --no-deps codeshield==1.0.1 semgrep==1.90.0
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check agentic tests bench examples
	$(BIN)/ruff format --check agentic tests bench examples

format: setup
	$(BIN)/ruff format agentic tests bench examples
	$(BIN)/ruff check --fix agentic tests bench examples

typecheck: setup
	$(BIN)/mypy

test: setup
	$(BIN)/pytest -q -p no:cacheprovider --cov=agentic --cov-branch --cov-report=term --cov-fail-under=90

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/llama_format.py
	$(BIN)/python bench/turn_overhead.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/shields.py
	$(BIN)/python bench/memory.py

demo: setup
	$(BIN)/python examples/quickstart.py

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
