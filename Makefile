# The two commands of the README: `make run` and `make test`. Everything else is set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install models run test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/python scripts/fetch_models.py smollm2 gemma3

run: install
	$(BIN)/llamacli run -m "$$($(BIN)/python scripts/fetch_models.py smollm2)" -cnv -st --temp 0 -n 96 \
		-p "Name three primary colors and explain in one sentence why they are called primary."

test: install models
	$(BIN)/python -m pytest -q --durations=40 tests

clean:
	rm -rf $(VENV) build *.egg-info
