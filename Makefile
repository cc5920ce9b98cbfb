# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both run the set-up first (idempotent: scripts/setup.sh).
PY := .venv/bin/python
MODEL ?= trained_models/wiki
REC ?= recordings/wiki-val
PORT ?= 8050

.PHONY: setup demo record dashboard test test-fast analyses bench clean

setup:
	@bash scripts/setup.sh

## record the shipped wiki model on its validation text (kept while it matches the weights), then open the dashboard
demo: setup record dashboard

record: setup
	$(PY) -m probe record $(MODEL) --out $(REC) --reuse

dashboard: setup
	$(PY) -m probe dashboard $(REC) --checkpoint $(MODEL) --port $(PORT)

test: setup
	NUMBA_CACHE_DIR=$(CURDIR)/.numba_cache $(PY) -m pytest -q -p no:cacheprovider --headless tests

test-fast: setup
	$(PY) -m pytest -q -m "not browser and not slow" tests

## regenerate analyses/ from the shipped models (see analyses/README.md)
analyses: setup
	bash scripts/make_analyses.sh

bench: setup
	$(PY) benchmarks/bench_train.py --quality
	$(PY) benchmarks/bench_record.py
	$(PY) benchmarks/bench_find_neurons.py
	$(PY) benchmarks/baselines.py --order 5 7 --model trained_models/wiki --model trained_models/shakespeare

clean:
	rm -rf recordings .pytest_cache .numba_cache
