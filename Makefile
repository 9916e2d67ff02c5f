# Set-up and entry points. Every target builds its own virtual environment from this repo's files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data/cifar-10-subset
PYTEST_ARGS ?= -n auto  # pytest-xdist, one worker per core (2 in CI: about 9.5 min)

.PHONY: venv test demo clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[examples,postgres,test]"
	touch $@

venv: $(BIN)/.installed

## make test: install everything into .venv and run the whole suite (torch cross-checks included) on every core.
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make demo: set up .venv, then compare Adam with PhaseShift on CIFAR-10 (DATA_DIR=... picks the data).
demo: venv
	$(BIN)/python -m examples.cifar10 compare --optimizers adam,phase_shift --epochs 10 --data-dir $(DATA_DIR) --workdir runs/demo --overwrite

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
