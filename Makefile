# `make demo`: set up a virtual environment and run the default workflow.
# `make test`: set up and run the linters and the test suite (what CI runs).
# `make mutation`: mutation testing of the evaluator, post-processing, stores, snippet grid,
# annotations and losses (mutmut, configured in setup.cfg; not part of `make test`).
PYTHON ?= python3
VENV ?= .venv
CORES ?= $(shell nproc 2>/dev/null || echo 2)
BIN := $(abspath $(VENV))/bin
RUN := PATH="$(BIN):$$PATH"
SETUP := $(VENV)/.setup-done

.PHONY: setup demo test lint clean mutation browser

setup: $(SETUP)

$(SETUP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else "Python 3.11 or later is needed (Snakemake 9, zarr 3); $(PYTHON) is %d.%d. Run: make PYTHON=python3.11 ..." % v[:2])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

demo: $(SETUP)
	$(RUN) snakemake --cores $(CORES) --configfile workflow_config.yaml

lint: $(SETUP)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) snakefmt --check Snakefile pipeline/rules
	$(RUN) snakemake --lint --configfile workflow_config.yaml

test: lint browser
	$(RUN) python -m pytest

# The results viewer's browser test (tests/test_viewer.py) drives Debian's Chromium headless:
# installed here where it is missing and apt-get can install it (as root); never fails the
# run: without Chromium the test is skipped, saying why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the viewer's browser test"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver >/dev/null; } \
		|| echo "could not install Chromium: the viewer's browser test will be skipped"; \
	else echo "no Chromium and no root apt-get: the viewer's browser test will be skipped"; fi

clean:
	rm -rf results .snakemake

# The mutants mutmut runs: all by default (11 min on 2 cores), or one module's, e.g.
# make mutation MUTANTS='pipeline.detection.metrics.*'. Of decode.py, the snippet grid only.
MUTANTS ?= pipeline.detection.metrics.* models.postprocessing.* pipeline.store.* \
	pipeline.decode.x_snippet_grid* pipeline.decode.x_frame_indices* pipeline.annotations.* \
	models.losses.*
MUTATION_SETUP := $(VENV)/.mutation-setup-done

$(MUTATION_SETUP): $(SETUP)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev,mutation]"
	touch $@

# mutmut keeps its copy and results in mutants/ (it reruns the mutants named), then each
# module's score: mutants killed (a test failed, timed out or crashed) over mutants run.
mutation: $(MUTATION_SETUP)
	mkdir -p mutants
	$(RUN) OMP_NUM_THREADS=1 mutmut run $(foreach m,$(MUTANTS),'$(m)') > mutants/run.log \
		|| { tail -n 40 mutants/run.log; exit 1; }
	$(RUN) mutmut results --all true | awk -F': ' '{ m = $$1; sub(/^ +/, "", m); \
		sub(/\.[^.]*$$/, "", m); n[m, $$2]++; seen[m] = 1 } END { for (m in seen) { \
		k = n[m, "killed"] + n[m, "timeout"] + n[m, "segfault"]; \
		t = k + n[m, "survived"] + n[m, "suspicious"] + n[m, "no tests"]; \
		if (t) printf "%-28s %4d of %4d killed (%.1f %%)\n", m, k, t, 100 * k / t } }' | sort
