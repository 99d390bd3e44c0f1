"""CONTRIBUTING.md's promise, kept: a new method is its file, its params.yaml block and its
tests. A copy of the project gets a toy method (methods/toy.py declaring its GPU check and its
paper-recipe rows, a params.yaml block, a test file) and nothing else; in that copy
validate-config accepts it, the dry run trains it, aggregate reports it, and the project's own
checks that read every method (the GPU check's families, the paper recipes) take it from the
registry."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("src", "workflow", "tests", "benchmarks", "Snakefile", "params.yaml", "README.md", "docs", "pyproject.toml")

TOY = '''"""A toy method: the supervised baseline with its head's logits scaled by ``temperature``."""

from __future__ import annotations

import torch

from ferbench.methods.base import GpuCheck, RecipeRow
from ferbench.methods.supervised import Supervised


class Toy(Supervised):
    name = "toy"
    gpu_check = GpuCheck("toy", "train", "ckplus")
    paper_recipe = (
        RecipeRow("train", "backbone", "resnet18", source="the paper budget's default"),
        RecipeRow("train", "temperature", 2.0, source="toy paper, sec. 1"),
    )
    defaults = {"temperature": 2.0}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return super().predict(x) / float(self.hp["temperature"])
'''

TOY_TEST = '''from ferbench.methods import get_method


def test_toy_scales_by_its_temperature():
    assert get_method("toy").all_defaults()["temperature"] == 2.0
'''


def _copy_project(dest: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, dest / name)


def _changed(a: Path, b: Path, where: str = "") -> set[str]:
    """Files that differ or exist on one side only, relative paths."""
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__", ".pytest_cache", ".snakemake", "results", "cache", "out"])
    changed = {f"{where}{name}" for name in cmp.diff_files + cmp.left_only + cmp.right_only}
    for sub in cmp.common_dirs:
        changed |= _changed(a / sub, b / sub, f"{where}{sub}/")
    return changed


def _run(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy / "src"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(list(args), cwd=copy, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_a_toy_method_needs_its_file_its_params_block_and_its_tests(tmp_path):
    pristine, copy = tmp_path / "pristine", tmp_path / "copy"
    _copy_project(pristine)
    _copy_project(copy)
    # the three things a new method touches
    (copy / "src" / "ferbench" / "methods" / "toy.py").write_text(TOY)
    (copy / "tests" / "test_toy.py").write_text(TOY_TEST)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["methods"]["toy"] = {"temperature": 1.5, "budgets": {"demo": {"epochs": 1}, "paper": {"temperature": 2.0}}}
    params["run"]["methods"].append("toy")
    params["datasets"]["ckplus"]["methods"].append("toy")
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _changed(pristine, copy) == {"params.yaml", "src/ferbench/methods/toy.py", "tests/test_toy.py"}

    python = sys.executable
    valid = _run(copy, python, "-m", "ferbench.cli", "validate-config", "params.yaml")
    assert valid.returncode == 0 and valid.stdout.strip().splitlines()[-1] == "params.yaml: valid", valid.stderr

    dry = _run(copy, python, "-m", "snakemake", "--nolock", "--dry-run", "--forceall", "--printshellcmds")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "results/runs/ckplus/toy/fold0/seed0/metrics.json" in dry.stdout
    config = next(json.loads(m.group(1)) for m in re.finditer(r"printf '%s\\n' '(\{.*?\})' >", dry.stdout)
                  if '"methods": {"toy"' in m.group(1))
    assert config["methods"]["toy"]["temperature"] == 1.5

    # aggregate reports the toy's (fake) runs beside the baseline's
    sys.path.insert(0, str(copy / "tests"))
    try:
        from fake_tables import write_run
    finally:
        sys.path.pop(0)
    runs = tmp_path / "runs"
    for method, acc in (("supervised", 0.5), ("toy", 0.75)):
        write_run(runs, "ckplus", method, 0, metrics={"accuracy": acc, "macro_f1": acc})
    (tmp_path / "agg.yaml").write_text(json.dumps({"budget": "demo"}))
    out = tmp_path / "out"
    agg = _run(copy, python, "-m", "ferbench.cli", "aggregate", "--runs", str(runs), "--config",
               str(tmp_path / "agg.yaml"), "--tables", str(out / "tables"), "--figures", str(out / "figures"),
               "--summary", str(out / "summary.json"), "--plots", str(out / "plots.csv"),
               "--report", str(out / "report" / "index.html"))
    assert agg.returncode == 0, agg.stderr[-3000:]
    table = (out / "tables" / "ckplus.md").read_text()
    toy = next(line for line in table.splitlines() if line.startswith("| toy | smallcnn |"))
    assert "| 1 | synthetic | 0.7500 |" in toy, toy   # runs, data, accuracy (after input, epochs)

    # the checks that read every method class find the toy's own declarations
    checks = _run(copy, python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  "tests/test_gpu_check.py::test_families_cover_every_method_class_with_runs_of_params_yaml",
                  "tests/test_paper_recipes.py", "-k", "toy or every_run or families", "tests/test_toy.py")
    assert checks.returncode == 0, checks.stdout[-3000:]
    assert "5 passed" in checks.stdout, checks.stdout[-1000:]
