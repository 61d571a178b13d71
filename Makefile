# Two entry points for a fresh machine: `make demo` (set up, then generate a video) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFORMANCE := ../shared/conformance
export OMP_NUM_THREADS ?= 2

.PHONY: setup test test-fast lint demo clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first: with torch==2.13.0 present, nothing later pulls a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,ui]"
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(BIN)/ruff check src tests benchmarks

# The browser test (tests/ui) drives Debian's chromium through playwright (no browser download): apt installs it.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; \
	else \
		echo "make test: cannot install $(CHROMIUM) (needs root and apt-get); the browser test will fail:" \
			"run 'sudo apt-get install -y chromium'" >&2; \
	fi

test: setup lint $(CHROMIUM)
	$(BIN)/python -m pytest -q tests $(if $(wildcard $(CONFORMANCE)),$(CONFORMANCE))

# The quick loop: everything but the tests marked slow (full generations, conversions, CLI reproduction).
test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not slow" tests $(if $(wildcard $(CONFORMANCE)),$(CONFORMANCE))

# The embedded toy model (trained by vstar on procedural clips) with the synopsis of the offline rules backend.
demo: setup
	$(BIN)/vstar generate "a red circle on a black background turning into a blue square" \
		--model toy-shapes --frames 16 --seed 0 --upscale 4 --out outputs/demo.gif --overwrite

clean:
	rm -rf $(VENV) outputs
