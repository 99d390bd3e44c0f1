"""benchmarks/gpu_check.sh: without a CUDA device it exits 2 with one line (the project has no
GPU in CI; the check's figures come from a GPU machine), and its families cover every
registered method class, so a new method cannot go unchecked on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ferbench.method_blocks import method_block
from ferbench.methods import get_method, method_names

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_exits_2_with_one_line():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done
    assert done.stdout.splitlines() == [_gpu_check().NO_CUDA] and done.stderr == ""


def test_families_cover_every_method_class_with_runs_of_params_yaml():
    """Each shipped class declares its own check (methods/<name>.py: ``gpu_check``), naming a
    run of params.yaml of that class, or the class whose check covers it."""
    check = _gpu_check()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    classes = set()
    for family, (run, stage, dataset) in check.FAMILIES.items():
        block = method_block(params, run)
        cls = get_method(block.get("class") or run)
        classes.add(cls.name)
        assert cls.name == family, (family, run, cls.name)
        if stage == "train":    # a dataset the run trains on
            assert run in (params["datasets"][dataset].get("methods") or [run]), (family, dataset)
        else:                   # the dataset its pretraining reads
            assert cls.pretrain and block.get("pretrain_dataset") == dataset, (family, dataset)
    # the shipped classes (other tests register toy methods in the same registry)
    shipped = {n for n in method_names() if get_method(n).__module__.startswith("ferbench.methods.")}
    assert shipped == classes | set(check.COVERED_BY)
    assert set(check.COVERED_BY.values()) <= classes
