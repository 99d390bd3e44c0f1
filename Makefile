# make run  : create .venv (if absent), install ferbench, run the benchmark (snakemake)
# make test : same setup, then the test suite (what .ci/run calls)
VENV    := .venv
PYTHON  := $(VENV)/bin/python
# Reinstalls only when pyproject.toml changes.
STAMP   := $(VENV)/.installed
PROFILE := workflow/profiles/default

# Workflow rules call `ferbench`, DVC calls `snakemake`: both live in the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test repro browser

run: $(STAMP)
	snakemake --cores all --workflow-profile $(PROFILE)

test: $(STAMP) browser
	$(VENV)/bin/pytest -q

# tests/test_report_html.py renders the HTML report in headless Chromium, from Debian's
# packages: installed here when missing (needs root; otherwise that one test is skipped).
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
