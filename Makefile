# `make test` builds .venv from nothing (only Python 3.11+ needed) and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint imports typecheck pytest clean

INSTALL_LOG := $(VENV)/install.log

# pip's and setuptools' chatter (the editable-install banner) goes to a log, shown only when
# the install fails: a first `make demo` or `make test` starts with one line, not a screenful.
$(STAMP): pyproject.toml
	@echo "installing usercom-pipeline[dev,cli] into $(VENV) (log: $(INSTALL_LOG))"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --quiet --upgrade pip \
	  && $(BIN)/python -m pip install --quiet -e '.[dev,cli]'; } > $(INSTALL_LOG) 2>&1 \
	  || { cat $(INSTALL_LOG); echo "install failed: see $(INSTALL_LOG)"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/usercom demo

# The live service in front of a local sandbox (Ctrl+C stops it); see README "Running the service".
serve: $(STAMP)
	$(BIN)/usercom serve --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The import contracts of pyproject.toml's [tool.importlinter]: the pure core imports no
# effect layer, the sandbox none of the pipeline, delivery neither the command nor the service.
imports: $(STAMP)
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy

# Compiled modules are kept (__pycache__, git-ignored) even where PYTHONDONTWRITEBYTECODE is set:
# without them each of the 4 workers compiles every module and rewrites every test's asserts
# again. worksteal: each worker starts on its share, the waiting tests first (tests/conftest.py),
# and one that runs dry takes tests over from another (README "Development").
pytest: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-dev} \
	  $(BIN)/pytest -n 4 --dist worksteal

test: lint imports typecheck pytest

clean:
	rm -rf $(VENV)
