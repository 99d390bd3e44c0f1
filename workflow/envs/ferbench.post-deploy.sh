#!/usr/bin/env bash
# Snakemake runs this once inside the new environment, from the workflow's working directory
# (the repository root): install ferbench with the pins of pyproject.toml.
set -euo pipefail
python -m pip install --quiet -e .
