# The two README commands. Each creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e ".[jupyter,local,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lmrepl.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax notebooks

lint: $(STAMP)
	$(BIN)/ruff check lmrepl lmrepl_jupyter tests benchmarks
	$(BIN)/ruff format --check lmrepl lmrepl_jupyter tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/kernel.py
	$(BIN)/python benchmarks/srlm.py
	$(BIN)/python benchmarks/stopping.py
	$(BIN)/python benchmarks/scripted_server.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
