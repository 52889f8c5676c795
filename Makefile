# Two commands for users: `make book` and `make test`. `make bench` measures (see benchmarks/README.md).
# Everything runs from the repository's own .venv; set-up is redone only when the lock file changes.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No MPLBACKEND here: in a kernel it would replace the inline backend and plt.show() would
# display nothing. Headless matplotlib falls back to Agg by itself.
# Pinned thread count: the notebooks' printed numbers were produced with it.
export OMP_NUM_THREADS ?= 2
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning made the
# batched trainer ~6x slower. It changes speed only, never results.
export OMP_WAIT_POLICY ?= PASSIVE
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test lint unit notebooks notebook pairs grader-tests book-strict browser chromium bubblewrap bench exercises clean

# Set-up (README, "Set-up"): the lock, then the package in editable mode. uv (pinned in the lock,
# bootstrapped with the venv's pip) installs it several times faster than pip (`make bench`,
# "setup"); `make INSTALLER=pip` uses pip alone.
INSTALLER ?= uv
# The lock's torch for Linux x86-64 (+cpu) is on PyTorch's CPU index, not on PyPI: the index is
# added there only (macOS and Windows take PyPI's wheel). It is probed first (5 s at most): an
# unreachable extra index costs pip 7.5 s of retries per package (~20 min for the lock) and makes
# uv fail. Unreachable, torch must come from a local wheel (--find-links) or uv's cache.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# uv reads neither pip's configuration nor $$PIP_FIND_LINKS: pip's find-links are passed on, so a
# local torch wheel that pip would take (as on this project's CI machines) is taken by uv too.
FIND_LINKS = $(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@index=''; if [ "$$(uname -sm)" != 'Linux x86_64' ]; then :; \
	elif $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
	    '$(TORCH_INDEX)/torch/' 2>/dev/null; then index='--extra-index-url $(TORCH_INDEX)'; \
	else echo "make: $(TORCH_INDEX) is unreachable: torch only from --find-links or uv's cache"; fi; \
	links='$(foreach link,$(FIND_LINKS),--find-links $(link))'; \
	if [ '$(INSTALLER)' = uv ]; then \
	  set -x; $(BIN)/python -m pip install --quiet "$$(grep '^uv==' requirements.lock)"; \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python $$index $${index:+--index-strategy unsafe-best-match} \
	    $$links --requirement requirements.lock; \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation --editable .; \
	else \
	  set -x; $(BIN)/python -m pip install --quiet $$index --requirement requirements.lock; \
	  $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .; \
	fi
	@touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . --path-output .
	@echo "Book built: file://$(CURDIR)/_build/html/index.html"

# Everything that must hold. Each part runs even when an earlier one fails; the target fails if any did.
test: $(STAMP)
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(MAKE) --no-print-directory unit || status=1; \
	$(MAKE) --no-print-directory notebooks || status=1; \
	$(MAKE) --no-print-directory book-strict || status=1; \
	$(MAKE) --no-print-directory browser || status=1; \
	exit $$status

# Two pytest-xdist workers, one test module each at a time (--dist loadscope keeps a module's
# fixtures in one process); coverage is combined across them.
# One style for the tree (pyproject.toml's [tool.ruff]); check-only, never rewrites a file.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP) bubblewrap
	$(BIN)/python -m pytest tests -m "not browser" -p no:cacheprovider -n 2 --dist loadscope --durations=10 --cov=rectifiers --cov-report=term --cov-fail-under=95

# Needs the built book (book-strict runs first in `make test`).
# Screenshots of every chapter page go to _build/screenshots/.
browser: $(STAMP) chromium
	$(BIN)/python -m pytest tests -m browser -p no:cacheprovider

# The browser tests drive Debian's Chromium (never a downloaded browser). Install it where it is
# missing and we can (root with apt-get, as on CI); elsewhere the tests find another Chromium or
# Chrome, or skip loudly (fail under RECTIFIERS_REQUIRE_BROWSER=1).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium; \
	else echo "make: no /usr/bin/chromium and not root with apt-get: not installing it"; fi

# The grader confines submissions with Debian's bubblewrap (and refuses to grade without it unless
# told to accept weaker isolation); the grader tests need it. Installed like chromium above.
bubblewrap:
	@if command -v bwrap >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's bubblewrap for the grader tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends bubblewrap; \
	else echo "make: no bwrap and not root with apt-get: not installing it"; fi

# nbval re-executes every .ipynb and compares with its committed outputs; the pair check first
# proves each .ipynb is what its MyST source (.md) says. Two workers, one notebook each at a time
# (--dist loadfile: a notebook's cells share one kernel, so they must stay in one worker; the
# default distribution split them and failed). Each kernel is fresh and keeps OMP_NUM_THREADS,
# so outputs do not depend on the worker; the kernels' Python start-up and small operations
# overlap, which on 2 cores took the solutions from 38.6 s to 24.8 s.
notebooks: $(STAMP) pairs
	$(BIN)/python -m pytest --nbval chapters solutions --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -n 2 --dist loadfile

# Every chapter and solution notebook is a jupytext pair: NN_topic.md (MyST, the one you edit)
# and NN_topic.ipynb (executed; nbval and the book read it). After editing the .md:
#   make notebook NB=chapters/01_motivation.md
# syncs the .ipynb from the .md, executes it in a fresh kernel with the pinned thread count, strips
# volatile metadata, and for a solution regenerates exercises/ (CONTRIBUTING.md).
notebook: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make notebook NB=chapters/01_motivation.md"; exit 2; }
	$(BIN)/python tools/notebooks.py run $(NB)
	@case "$(NB)" in solutions/*) $(BIN)/make-exercises ;; esac

# Fails when a .md source and its .ipynb twin differ (fast; no kernel).
pairs: $(STAMP)
	$(BIN)/python tools/notebooks.py check

# The strict build renders the committed outputs instead of executing again: `notebooks` (nbval)
# has just re-executed every notebook and proved those outputs are what the code prints.
# Only execute_notebooks differs from _config.yml (the extension path is made absolute because
# jupyter-book resolves it against the config file's folder). --all: a fresh environment, so
# every page is read and warned about again; incrementally, a page that failed the last build
# but has not changed since would be skipped and the build would pass.
STRICT_CONFIG := _build/_config.strict.yml
book-strict: $(STAMP)
	@mkdir -p _build
	sed -e 's/^\(  execute_notebooks:\).*/\1 "off"/' -e 's#^\(    [a-z_]*\): _ext/$$#\1: $(CURDIR)/_ext/#' _config.yml > $(STRICT_CONFIG)
	@grep -q 'execute_notebooks: "off"' $(STRICT_CONFIG)
	$(BIN)/jupyter-book build . --path-output . --config $(STRICT_CONFIG) --all -W -n --keep-going

exercises: $(STAMP)
	$(BIN)/make-exercises

# Measures the budgets and writes _build/bench.json (benchmarks/README.md); exits 0 even when a
# budget is missed. Options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--only kernels --quick".
# A benchmark needs a quiet machine, and there OpenMP's own wait policy (spin briefly, then
# sleep) is what a learner's laptop gets and lets two threads help large products; PASSIVE
# above is for shared, busy machines. BENCH_OMP_WAIT_POLICY=PASSIVE measures with it instead.
BENCH_OMP_WAIT_POLICY ?=
bench: $(STAMP)
	$(if $(BENCH_OMP_WAIT_POLICY),OMP_WAIT_POLICY=$(BENCH_OMP_WAIT_POLICY),env -u OMP_WAIT_POLICY) \
		$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf _build .jupyter_cache
