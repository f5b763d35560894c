# Two commands, each doing its own set-up on a fresh machine:
#   make book   create .venv, install, build the executed HTML book (book profile) into _build/html
#   make test   create .venv, install, run lint, tests, nbval on every chapter alone (as in Colab), the smoke book
#               build (every chapter again, inside the repository) and a browser check
#   make lab    create .venv, install with JupyterLab, register the kernel "vidpred (.venv)", open book/ in JupyterLab
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LAB_STAMP := $(VENV)/.lab-stamp
SMOKE_OUT := _build/smoke

.PHONY: book test lab install browser lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[book,app,ucf101,dev]"
	touch $(STAMP)

install: $(STAMP)

# JupyterLab on top of the same venv (make test does not need it); the kernel lives in the venv (--sys-prefix).
$(LAB_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e ".[lab]"
	$(PY) -m ipykernel install --sys-prefix --name vidpred --display-name "vidpred (.venv)"
	touch $(LAB_STAMP)

# Jupyter refuses to run as root unless told to (containers often run as root).
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) book/

# Debian's Chromium for the browser tests; skipped (and the browser test says why) where apt-get cannot run.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	      || echo "could not install chromium; the browser tests will be skipped"; \
	  else echo "no apt-get as root: the browser tests will be skipped unless chromium is installed"; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check vidpred tests

book: $(STAMP)
	VIDPRED_PROFILE=book $(VENV)/bin/jupyter-book build -W -n --keep-going .
	@echo "open _build/html/index.html"

# Tests and chapters two at a time (pytest-xdist; a test file's tests stay on one worker, so its fixtures are made
# once): much of the suite waits on processes, servers, kernels and files. 2 cores without AVX-512: 26 min serial, 18-22 min so.
TEST_WORKERS ?= 2

test: $(STAMP) browser lint
	VIDPRED_PROFILE=smoke $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 tests --ignore=tests/pages
	VIDPRED_PROFILE=smoke $(PY) tools/nbval_alone.py --workers $(TEST_WORKERS)
	VIDPRED_PROFILE=smoke $(VENV)/bin/jupyter-book build -W -n --keep-going --path-output $(SMOKE_OUT) .
	BOOK_HTML=$(SMOKE_OUT)/_build/html $(PY) -m pytest -q tests/pages

clean:
	rm -rf _build runs/smoke
