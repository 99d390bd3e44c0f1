# make run       : create .venv (if absent), install ferbench, run the benchmark (snakemake)
# make test      : same setup, then every test tier (what .ci/run calls): fast, slow (trains),
#                  e2e (Snakemake/DVC runs), slurm and browser (each skipped, with the reason,
#                  where its service cannot start), on three pytest-xdist workers
# make test-fast : same setup, then the fast tier only (no training, no workflow run): the edit loop
VENV    := .venv
PYTHON  := $(VENV)/bin/python
# Reinstalls only when pyproject.toml changes.
STAMP   := $(VENV)/.installed
PROFILE := workflow/profiles/default
# Test processes (pytest-xdist). --dist loadfile: each test file runs on one worker, so its
# module fixtures are made once (a DVC repository changed test by test, dry runs started
# together, the SLURM cluster); --no-loadscope-reorder hands the files out in the order
# tests/conftest.py sorts them, the longest work first. (Not loadgroup: with pytest 9.2 it
# silently stops grouping, pytest-xdist issue #1386.)
# Three workers on two cores: the SLURM, Snakemake and DVC tests spend much of their time
# waiting on other processes (slurmctld's scheduling, job start-up), so with two workers the
# cores were busy 73% of the time and with three 88% (torch takes one thread per worker:
# tests/conftest.py).
WORKERS := 3
PYTEST  := $(VENV)/bin/pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder

# Workflow rules call `ferbench`, DVC calls `snakemake`: both live in the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test test-fast repro browser

run: $(STAMP)
	snakemake --cores all --workflow-profile $(PROFILE)

test: $(STAMP) browser
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m fast

# tests/test_report_html.py renders the HTML report in headless Chromium, from Debian's
# packages: installed here when missing (needs root; otherwise the browser test is skipped).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "no chromium: the browser test will be skipped"

repro: $(STAMP)
	dvc repro

$(PYTHON):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -e '.[test]'
	touch $@
