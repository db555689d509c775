# Two commands do all the set-up:  `make lab` opens the chapters, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install lab test lint benchmark clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -e .
	touch $@

install: $(VENV)/.installed

lab: install
	$(BIN)/jupyter lab chapters/

test: install
	$(BIN)/python -m pytest --nbval chapters solutions tests

lint: install
	$(BIN)/ruff check .

benchmark: install
	$(BIN)/python benchmarks/bench_tokenizers.py

clean:
	rm -rf $(VENV) *.egg-info
