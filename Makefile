# neurodistill: the commands the README shows first.
#   make demo      create .venv if missing, install, run 'neurodistill demo'
#   make test      create .venv and .venv-lava if missing, run the test suite
#   make lava-env  build .venv-lava (Python 3.10, lava-nc 0.10.0, lava-dl 0.6.0) and smoke-check it
#   make bench     run the benchmark scripts (tables on stdout, JSON in benchmarks/results/)
#   make compare   the method comparison of docs/results.md (about 20 minutes on 2 CPU cores)
#   make lint      ruff

PYTHON ?= python3
VENV := .venv
LAVA_VENV := .venv-lava
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Peak disk use while pip installs each environment (downloaded wheels + installed files), measured
# on a fresh clone: .venv peaks at ~8.2 GiB and ends at 5.3; .venv-lava, its CUDA libraries installed
# one by one (requirements-lava-cuda.txt), peaks at 6.6 and ends at 5.6 (most of it NVIDIA's).
VENV_GIB := 8.5
LAVA_VENV_GIB := 7

.PHONY: demo test lava-env bench compare lint clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "neurodistill needs Python >= 3.11 (spikingjelly 2.x); '$(PYTHON)' is $$($(PYTHON) --version 2>&1). Use make PYTHON=python3.11" >&2; exit 1; }
	@test -x $(PY) || scripts/check-disk.sh . $(VENV_GIB) "the main environment (.venv, with PyPI's CUDA build of torch)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(LAVA_VENV)/.installed: requirements-lava.txt requirements-lava-cuda.txt neurodistill/sim/lava_scripts/smoke.py
	@LAVA_PY=$$(scripts/find-python310.sh) || exit 1; \
	echo "Lava environment with $$LAVA_PY"; \
	test -x $(LAVA_VENV)/bin/python || { scripts/check-disk.sh . $(LAVA_VENV_GIB) \
	  "the Lava environment (.venv-lava: lava-dl pins torch 2.3, a CUDA 12 build)" && "$$LAVA_PY" -m venv $(LAVA_VENV); }
	@grep -v -e '^#' -e '^$$' requirements-lava-cuda.txt | while read -r req; do \
	  echo "pip install '$$req'"; $(LAVA_VENV)/bin/python -m pip install --quiet "$$req" || exit 1; done
	$(LAVA_VENV)/bin/python -m pip install --quiet -r requirements-lava.txt
	$(LAVA_VENV)/bin/python neurodistill/sim/lava_scripts/smoke.py
	touch $@

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

compare: $(VENV)/.installed
	$(PY) benchmarks/compare_methods.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check neurodistill tests benchmarks

clean:
	rm -rf runs .pytest_cache
