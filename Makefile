# Set-up and entry points. Every target builds its own virtual environment from this repo's files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data/cifar-10-subset
PYTEST_ARGS ?=

.PHONY: venv test demo clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[examples,test]"
	touch $@

venv: $(BIN)/.installed

## make test: install everything into .venv and run the whole suite (torch cross-checks included).
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
