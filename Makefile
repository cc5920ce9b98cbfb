# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both run the set-up first (idempotent: scripts/setup.sh).
PY := .venv/bin/python
MODEL ?= trained_models/wiki
REC ?= recordings/wiki-val
PORT ?= 8050
ATLAS_KINDS ?= h,c
UNIT ?=
SAE ?=

.PHONY: setup demo record atlas dashboard test test-fast analyses bench clean

setup:
	@bash scripts/setup.sh

## record the shipped wiki model on its validation text (kept while it matches the weights), compute its atlas
## once (kept while it matches the recording), then open the dashboard on the atlas's best unit for the wiki-link
## concept, the post's link cell (UNIT=L2.c.93, UNIT=best for the best-explained unit of all; SAE=... adds features)
demo: setup record atlas
	@$(MAKE) --no-print-directory dashboard UNIT='$(or $(UNIT),best:wiki-link)'

record: setup
	$(PY) -m probe record $(MODEL) --out $(REC) --reuse

atlas: setup
	@if $(PY) -c "import sys; from probe.record.recording import Recording; from probe.analysis.atlas import atlas_for; \
	sys.exit(atlas_for(Recording.open('$(REC)')) is None)" 2>/dev/null; then \
	echo "atlas: $(REC)/atlas is up to date (made from this recording)"; \
	else $(PY) -m probe atlas $(REC) --kinds $(ATLAS_KINDS); fi

dashboard: setup
	$(PY) -m probe dashboard $(REC) --checkpoint $(MODEL) --port $(PORT) $(if $(UNIT),--unit '$(UNIT)') \
	  $(if $(SAE),--sae '$(SAE)')

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
