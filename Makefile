# The two commands a newcomer needs: `make demo` (the main job) and `make test` (the test suite).
# Each first runs the idempotent set-up (scripts/dev/setup.sh: .venv/ with torch, mmcv-full, mmdet, loce).
.PHONY: setup demo test test-fast bench completions docs-cli pictures clean-demo rehearsal

VENV := .venv
PY := $(VENV)/bin/python

setup:
	bash scripts/dev/setup.sh

demo: setup
	bash scripts/dev/demo.sh

# The suite in 2 pytest-xdist worker processes, one test file per unit (its module fixtures built once; the session
# fixtures once for both: tests/shared_fixtures.py). TEST_WORKERS=1 runs it in this process, as plain pytest does.
TEST_WORKERS ?= 2
ifeq ($(TEST_WORKERS),1)
XDIST :=
else
XDIST := -n $(TEST_WORKERS) --dist loadfile
endif

test: setup
	$(PY) -m pytest $(XDIST) --durations=30

test-fast: setup
	$(PY) -m pytest $(XDIST) -m "not slow" --durations=30

bench: setup
	$(PY) bench/run_all.py

completions: setup
	$(PY) scripts/dev/gen_completions.py

# docs/CLI.md, every command and option, from the Typer app (a test fails when it is stale)
docs-cli: setup
	$(PY) scripts/dev/gen_cli_reference.py

# The README's pictures (docs/img/quickstart_*.png) from the quickstart in work/quickstart (finished steps skipped).
pictures: setup
	$(PY) scripts/dev/make_pictures.py

clean-demo:
	rm -rf work/quickstart

# The v1 R50 recipe at full shape on this machine (issue 22): data prep, base, LOCE fp32/fp16/2 processes, eval;
# prints s/iteration, peak memory per process, memory-init and eval s/image (tens of minutes on 2 cores).
rehearsal: setup
	$(PY) scripts/experiments/rehearse.py
