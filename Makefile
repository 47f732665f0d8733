# The two commands of the README. Each creates .venv and installs the pinned set on first use.
#   make demo   runs the main job on its built-in demo
#   make test   runs the test suite (what CI runs)
#   make test-fast   the suite without the tests marked slow (over a minute each), to iterate
#   make install-beam / make test-beam: the 'beam' extra (`aya-t5x cache`) in its own venv,
#     .venv-beam, from requirements/constraints-beam.txt (apache-beam needs protobuf < 7,
#     the base set pins 7.x; see that file), and the Beam tests in it (CI runs both).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BEAM_VENV ?= .venv-beam
BEAM_STAMP := $(BEAM_VENV)/.installed
BEAM_TESTS ?= tests/data/test_cache_pipeline.py

.PHONY: demo test test-fast lint install clean install-beam test-beam

install: $(STAMP)

$(STAMP): setup.py pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "aya_t5x needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

install-beam: $(BEAM_STAMP)

$(BEAM_STAMP): setup.py pyproject.toml requirements/constraints-beam.txt
	$(PYTHON) -m venv $(BEAM_VENV)
	$(BEAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BEAM_VENV)/bin/python -m pip install --quiet -c requirements/constraints-beam.txt \
	  -e '.[beam]' pytest pytest-timeout
	touch $(BEAM_STAMP)

test-beam: $(BEAM_STAMP)
	$(BEAM_VENV)/bin/python -m pytest -q -p no:cacheprovider $(BEAM_TESTS)

DEMO_DIR ?= demo_output

demo: $(STAMP)
	$(BIN)/aya-t5x demo --output_dir $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q tests

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow" tests

clean:
	rm -rf $(VENV) $(BEAM_VENV) build *.egg-info
