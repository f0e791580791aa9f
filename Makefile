# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP_SERVER := $(VENV)/.installed-server
STAMP_TEST   := $(VENV)/.installed-test

.PHONY: demo test install lint typecheck browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: the CPU build on this machine; a bare requirement would pull the CUDA build (GBs).
TORCH := torch==2.13.0

$(STAMP_SERVER): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[server,embeddings]"
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(STAMP_SERVER)

install: $(STAMP_SERVER)

## Start everything on the embedded store with demo traffic: collector :4318, dashboard :8501.
demo: $(STAMP_SERVER)
	HF_HUB_OFFLINE=1 $(BIN)/llm-monitor up --demo

## The whole test suite (installs test extras and, as root, Debian's chromium for the browser test),
## after lint and type checks.
test: $(STAMP_TEST) browser
	$(BIN)/ruff check monitor collectors dashboards tests
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

browser:
	@{ command -v chromium >/dev/null 2>&1 && [ -d /usr/share/fonts/truetype/noto ]; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "note: chromium is not installed; the browser test will be skipped"; fi; }

lint: $(STAMP_TEST)
	$(BIN)/ruff check monitor collectors dashboards tests benchmarks
	$(BIN)/ruff format --check monitor collectors dashboards tests benchmarks

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
