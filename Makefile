# Two commands on a fresh machine (see README): `make book` and `make test`. Each sets up .venv first.
PROFILE ?= quick
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help setup book dry-run test unit nbval notebooks clean bench bench-gpu publish

## List the targets and what each does.
help:
	@awk '/^## /{doc=(doc ? doc " " : "") substr($$0,4); next} /^[a-z-]+:/{if(doc){split($$0,t,":"); printf "  make %-10s %s\n", t[1], doc}; doc=""}' $(MAKEFILE_LIST)


$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## Create .venv and install lesionlib with its test tools (done by every other target).
setup: $(STAMP)

## Execute the notebook grid of PROFILE (default quick) with papermill and build the HTML book into _build/html.
book: $(STAMP)
	$(BIN)/lesionlib grid --profile $(PROFILE)

## What `make book` would do, training and executing nothing: pages stale and why, runs cached or to train, an estimate.
dry-run: $(STAMP)
	$(BIN)/lesionlib grid --profile $(PROFILE) --dry-run

## All tests: unit tests, then nbval over the book's notebooks (smoke outputs).
test: $(STAMP)
	$(BIN)/python -m pytest tests book/*.ipynb --nbval-lax -p no:cacheprovider --durations=15

## Unit tests only.
unit: $(STAMP)
	$(BIN)/python -m pytest tests -p no:cacheprovider

## nbval over the book's notebooks only.
nbval: $(STAMP)
	$(BIN)/python -m pytest book/*.ipynb --nbval-lax -p no:cacheprovider

## Re-execute book/*.ipynb in place with their smoke defaults (the outputs nbval compares).
notebooks: $(STAMP)
	$(BIN)/lesionlib notebooks

## Remove the built book (_build); run caches stay.
clean:
	rm -rf _build

## Throughput, compute limit, data preparation, paper-on-H100 and per-run cost benchmarks (about 4 min; see benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python -m benchmarks

## GPU benchmark (about 8 min on one H100/H200): images/s against a plain and a CUDA-graphed loop, per-run costs,
## a paper-size Fig 1 grid and the whole paper grid projected from it (see benchmarks/README.md).
bench-gpu: $(STAMP)
	$(BIN)/python -m benchmarks.gpu

## Push the built book (_build/html) to the gh-pages branch by hand (.github/workflows/book.yml publishes on a push to main).
publish:
	@test -f _build/html/index.html || { echo "publish: _build/html/index.html is missing: run make book first" >&2; exit 1; }
	@$(MAKE) --no-print-directory setup
	$(BIN)/ghp-import -n -p -f _build/html
