# curlora-bench. `make run` = the default experiment, `make test` = the test suite.
PYTHON ?= python3
# A pinned torch first: here it is the CPU wheel already on disk; on a Linux GPU machine the
# same pin pulls the CUDA build. Use TORCH_SPEC="" to keep the torch you already have.
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/seq.yaml
BENCH_ARGS ?=

.PHONY: install run test test-fast lint bench clean

install:
	@if [ -n "$(TORCH_SPEC)" ]; then $(PYTHON) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PYTHON) -m pip install -q -e ".[dev,trackers]"

run: install
	curlora-bench run $(CONFIG)

test: install
	$(PYTHON) -m pytest -q

test-fast: install
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	ruff check curlora_bench tests scripts

bench: install
	curlora-bench bench $(BENCH_ARGS)

clean:
	rm -rf build *.egg-info .pytest_cache
