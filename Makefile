# The two README commands. Each creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench install clean sandbox

# Kernels run sandboxed under bubblewrap when it works here (README: Sandbox). As root
# with apt, install it; otherwise say how, and kernels run unsandboxed with a warning.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1)) \
	    && echo "installed bubblewrap"; \
	  else \
	    echo "note: bubblewrap (bwrap) is missing: kernels will run without a sandbox;"; \
	    echo "      install the 'bubblewrap' package (e.g. sudo apt-get install bubblewrap)"; \
	  fi; }

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e ".[jupyter,local,dev,eval]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) sandbox
	$(BIN)/python -m lmrepl.demo

test: $(STAMP) sandbox
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
