# neurodistill: the commands the README shows first.
#   make demo      create .venv if missing, install, run 'neurodistill demo'
#   make test      create .venv and .venv-lava if missing, run the test suite
#   make lava-env  build .venv-lava (Python 3.10, lava-nc 0.10.0, lava-dl 0.6.0) and smoke-check it
#   make lock      re-resolve requirements/main.lock and requirements/lava.lock (docs/install.md)
#   make lock-check resolve again into a scratch folder: equal to the committed locks?
#   make bench     run the benchmark scripts (tables on stdout, JSON in benchmarks/results/)
#   make compare   the method comparison of docs/results.md (about 20 minutes on 2 CPU cores)
#   make lint      ruff, and lint-imports (the layers contract in pyproject.toml)
#   make fuzz      every input kind mutated (>= 500 cases) through the real CLI (docs/design.md)

PYTHON ?= python3
VENV := .venv
LAVA_VENV := .venv-lava
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
MAIN_LOCK := requirements/main.lock
LAVA_LOCK := requirements/lava.lock
LOCK_DIR ?= requirements
# Peak disk use while each environment installs from its lock (downloaded wheels + installed files),
# measured on a fresh clone with PIP_NO_CACHE_DIR=1: .venv peaks at 5.3 GiB and ends at 5.2,
# .venv-lava peaks at 5.7 and ends at 5.5 (most of both is NVIDIA's CUDA libraries, which
# scripts/envlock.py installs one pip call each). The checks ask for that plus a margin.
VENV_GIB := 6
LAVA_VENV_GIB := 6.5
# 'make lock': the resolver, its version, and the day the index is read as of. Resolving as of a
# fixed day is what makes 'make lock' give the committed locks again on any later day; moving a
# pin means moving LOCK_DATE (or a range in pyproject.toml), then 'make lock' and 'make test'.
UV_VERSION := 0.13.9
LOCK_DATE := 2026-12-03
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
UV_COMPILE = $(UV) pip compile --quiet --no-cache --exclude-newer $(LOCK_DATE) --generate-hashes \
	--custom-compile-command 'make lock'

.PHONY: demo test lava-env lock lock-check bench compare lint gpu-check fuzz clean

$(VENV)/.installed: $(MAIN_LOCK) pyproject.toml scripts/envlock.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "neurodistill needs Python >= 3.11 (spikingjelly 2.x); '$(PYTHON)' is $$($(PYTHON) --version 2>&1). Use make PYTHON=python3.11" >&2; exit 1; }
	@test -x $(PY) || scripts/check-disk.sh . $(VENV_GIB) "the main environment (.venv, with PyPI's CUDA build of torch)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) scripts/envlock.py install $(MAIN_LOCK)
	@# the build backend (setuptools, wheel) comes from the lock too: no isolated build env from the index
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) scripts/envlock.py check $(MAIN_LOCK)
	touch $@

$(LAVA_VENV)/.installed: $(LAVA_LOCK) scripts/envlock.py neurodistill/sim/lava_scripts/smoke.py
	@LAVA_PY=$$(scripts/find-python310.sh) || exit 1; \
	echo "Lava environment with $$LAVA_PY"; \
	test -x $(LAVA_VENV)/bin/python || { scripts/check-disk.sh . $(LAVA_VENV_GIB) \
	  "the Lava environment (.venv-lava: lava-dl pins torch 2.3, a CUDA 12 build)" && "$$LAVA_PY" -m venv $(LAVA_VENV); }
	$(LAVA_VENV)/bin/python scripts/envlock.py install $(LAVA_LOCK)
	$(LAVA_VENV)/bin/python scripts/envlock.py check $(LAVA_LOCK)
	$(LAVA_VENV)/bin/python neurodistill/sim/lava_scripts/smoke.py
	touch $@

$(UV):
	test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'

# samna is left out of the main lock: its PyPI package is a stub that, when imported, pip-installs
# another build from a GitLab index into the environment (rockpool imports it when present).
# sinabs declares it but needs it only for DynapCNN hardware; scripts/envlock.py knows this.
# The main lock is universal (markers for Linux, macOS, Windows; Python >= 3.11), tested on Linux
# x86_64 with Python 3.11. The Lava lock is for Linux x86_64 and Python 3.10 only, where lava-nc
# 0.10.0 runs.
lock: $(UV)
	@mkdir -p $(LOCK_DIR)
	$(UV_COMPILE) --universal --python-version 3.11 pyproject.toml --extra dev --extra interop --no-emit-package samna \
	  --constraint requirements/constraints.txt --output-file $(LOCK_DIR)/main.lock
	$(UV_COMPILE) --python-version 3.10 --python-platform x86_64-manylinux_2_28 requirements/lava.in \
	  --output-file $(LOCK_DIR)/lava.lock
	@echo "wrote $(LOCK_DIR)/main.lock and $(LOCK_DIR)/lava.lock (index as of $(LOCK_DATE)); now run 'make test'"

# Resolve again into a scratch folder and compare with the committed locks: they must be equal.
lock-check: $(UV)
	@tmp=$$(mktemp -d) && $(MAKE) --no-print-directory lock LOCK_DIR=$$tmp >/dev/null && \
	  diff -u $(MAIN_LOCK) $$tmp/main.lock && diff -u $(LAVA_LOCK) $$tmp/lava.lock && \
	  echo "make lock reproduces $(MAIN_LOCK) and $(LAVA_LOCK)"; rc=$$?; rm -rf $$tmp; exit $$rc

lava-env: $(LAVA_VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/neurodistill demo

test: $(VENV)/.installed $(LAVA_VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/export_time.py
	$(PY) benchmarks/sim_speed.py
	$(PY) benchmarks/memory_vs_T.py
	$(PY) benchmarks/loader.py

compare: $(VENV)/.installed
	$(PY) benchmarks/compare_methods.py

gpu-check: $(VENV)/.installed
	$(PY) scripts/gpu_check.py

fuzz: $(VENV)/.installed
	$(PY) scripts/fuzz.py --json benchmarks/results/fuzz.json

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check neurodistill tests benchmarks scripts
	$(VENV)/bin/lint-imports

clean:
	rm -rf runs .pytest_cache
