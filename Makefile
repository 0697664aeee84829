# curlora-bench. `make run` = the default experiment, `make test` = the test suite (the
# documentation's strict build included: tests/test_docs.py).
PYTHON ?= python3
# A pinned torch first: here it is the CPU wheel already on disk; on a Linux GPU machine the
# same pin pulls the CUDA build. Use TORCH_SPEC="" to keep the torch you already have.
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/seq.yaml
BENCH_ARGS ?=
# The suite runs in TEST_WORKERS processes (pytest-xdist; each file's tests stay in one, one torch
# thread each): 6 min 48 s (1,330 tests), 7 min 56 s and 8 min 23 s (1,313) on 2 idle cores, fresh clones, empty asset caches. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.PHONY: install browser run test test-fast lint bench docs docs-gen docs-serve clean

install:
	@if [ -n "$(TORCH_SPEC)" ]; then $(PYTHON) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PYTHON) -m pip install -q -e ".[dev,trackers,general,docs]"
	@$(MAKE) --no-print-directory browser

# Debian's chromium and chromedriver for the site's browser test (tests/test_site_browser.py):
# nothing to do when both are there; installed with apt-get where it runs as root; elsewhere a
# note, and that test is skipped saying why.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (apt-get) for the site's browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
			>/dev/null) || echo "apt-get could not install chromium: the browser test will be skipped"; \
	else echo "no chromium/chromedriver and no apt-get as root: the site's browser test will be skipped"; fi

run: install
	curlora-bench run $(CONFIG)

test: install
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q $(PYTEST_PARALLEL)

test-fast: install
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -m "not slow" $(PYTEST_PARALLEL)

lint:
	ruff check curlora_bench tests scripts

bench: install
	curlora-bench bench $(BENCH_ARGS)

# The documentation site (mkdocs.yml, docs/): regenerate the CLI and config references from the
# code, build the site into site/ (--strict: a broken link or a page missing from the nav fails),
# or serve it locally with live reload.
docs-gen:
	$(PYTHON) scripts/gen_docs.py --write

docs: docs-gen
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

docs-serve: docs-gen
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs serve

clean:
	rm -rf build site *.egg-info .pytest_cache
