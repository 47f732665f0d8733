# The two commands of the README. Each creates .venv and installs the pinned set on first use.
#   make demo   runs the main job on its built-in demo
#   make test   runs the test suite (what CI runs)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "aya_t5x needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

DEMO_DIR ?= demo_output

demo: $(STAMP)
	$(BIN)/aya-t5x demo --output_dir $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q tests

clean:
	rm -rf $(VENV) build *.egg-info
