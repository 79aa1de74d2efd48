# The two README commands. Each creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench install clean sandbox browser labextension labextension-test

# $(call ensure_apt,COMMAND,PACKAGE,WHAT HAPPENS WITHOUT IT): as root with apt, install
# PACKAGE when COMMAND is missing; otherwise say how, and go on without it.
define ensure_apt
@command -v $(1) >/dev/null 2>&1 || { \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
    (apt-get install -y -q $(2) >/dev/null 2>&1 || \
     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(2) >/dev/null 2>&1)) \
    && echo "installed $(2)"; \
  else \
    echo "note: $(2) ($(1)) is missing: $(3);"; \
    echo "      install the '$(2)' package (e.g. sudo apt-get install $(2))"; \
  fi; }
endef

# Kernels run sandboxed under bubblewrap when it works here (README: Sandbox).
sandbox:
	$(call ensure_apt,bwrap,bubblewrap,kernels will run without a sandbox)

# The browser tests drive Debian's chromium through Playwright (Playwright's own browser
# download does not work everywhere); without it they are skipped, saying why.
browser:
	$(call ensure_apt,chromium,chromium,the browser tests will be skipped)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e ".[jupyter,local,dev,eval]"
	touch $(STAMP)

install: $(STAMP)

# The JupyterLab extension (labextension/, TypeScript), built into lmrepl_jupyter/labextension
# (a build output: shipped in the wheel, never committed) and linked into the venv's
# share/jupyter/labextensions so the venv's JupyterLab loads it.
LABEXT_OUT := lmrepl_jupyter/labextension
LABEXT_LINK := $(VENV)/share/jupyter/labextensions/lmrepl-jupyter
NODE_STAMP := labextension/node_modules/.package-lock.json
LABEXT_SRC := labextension/package.json labextension/tsconfig.json \
  $(wildcard labextension/src/*.ts labextension/style/*.css labextension/test/*.ts)

HAVE_NPM := $(shell command -v npm 2>/dev/null)
NO_NPM_NOTE := note: node and npm are missing: the JupyterLab extension is not built and \
  its unit and browser tests are skipped; install Node.js 20+ and npm

$(NODE_STAMP): labextension/package.json labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund
	touch $@

$(LABEXT_OUT)/package.json: $(STAMP) $(NODE_STAMP) $(LABEXT_SRC)
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" npm run build

ifdef HAVE_NPM
labextension: $(LABEXT_OUT)/package.json
	@rm -rf $(LABEXT_LINK) && mkdir -p $(dir $(LABEXT_LINK)) && \
	  ln -s $(CURDIR)/$(LABEXT_OUT) $(LABEXT_LINK)

labextension-test: labextension
	cd labextension && npm test
else
labextension labextension-test:
	@echo "$(NO_NPM_NOTE)"
endif

demo: $(STAMP) sandbox
	$(BIN)/python -m lmrepl.demo

test: $(STAMP) sandbox browser labextension-test
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
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache test-artifacts \
	  $(LABEXT_OUT) labextension/lib labextension/node_modules
