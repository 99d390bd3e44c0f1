# make run  : create .venv (if absent), install ferbench, run the benchmark (snakemake)
# make test : same setup, then the test suite (what .ci/run calls)
VENV    := .venv
PYTHON  := $(VENV)/bin/python
# Reinstalls only when pyproject.toml changes.
STAMP   := $(VENV)/.installed
PROFILE := workflow/profiles/default

# Workflow rules call `ferbench`, DVC calls `snakemake`: both live in the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test repro

run: $(STAMP)
	snakemake --cores all --workflow-profile $(PROFILE)

test: $(STAMP)
	$(VENV)/bin/pytest -q

repro: $(STAMP)
	dvc repro

$(PYTHON):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -e '.[test]'
	touch $@
