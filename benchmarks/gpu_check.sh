#!/usr/bin/env bash
# GPU check: one short job of each method family on CUDA (bf16 autocast, channels_last, pinned
# non-blocking copies), printing engine and bare images/s and their ratio; see
# benchmarks/gpu_check.py. Exit status 0: every family ran; 1: a family failed (a CUDA error
# included); 2: no CUDA device (one line). Extra arguments go to gpu_check.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$here/../.venv/bin/python" ]]; then python="$here/../.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$here/gpu_check.py" "$@"
