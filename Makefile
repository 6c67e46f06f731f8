# `make demo` and `make test` each build .venv (reused while setup.py is unchanged).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 6006
# The CPU build of torch; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test test-fast chromium clean

$(VENV)/.installed: setup.py Makefile
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { apt-get update && apt-get install -y python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e ".[test,demo]"
	touch $@

# Debian's Chromium for the browser tests (Playwright cannot download one here).
chromium:
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

demo: $(VENV)/.installed
	$(PY) -m demo --logdir runs/demo --serve --port $(PORT) $(DEMO_ARGS)

test: $(VENV)/.installed chromium
	$(PY) -m pytest tests $(PYTEST_ARGS)

# The inner loop: no browser, no real TensorBoard, no pip, no command subprocesses (about 30 s).
test-fast: $(VENV)/.installed
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
