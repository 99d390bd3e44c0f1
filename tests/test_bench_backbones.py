"""benchmarks/bench_backbones.py: which backbone sizes the budgets use, and the cpu budget's
wall-time estimate from given rates (CK+: 327 labelled sequences x 3 peak frames over the
documented fold sizes; FER-2013: 28,709 training images, PublicTest every epoch)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_backbones", ROOT / "benchmarks" / "bench_backbones.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(ROOT / "benchmarks"))


def test_budget_uses_names_each_budgets_backbone_sizes(bench):
    uses = bench.budget_uses(PARAMS)
    cpu = PARAMS["budgets"]["cpu"]
    assert "cpu:supervised" in uses[cpu["backbone"], cpu["image_size"], 3]
    assert "paper:gcnet_s1r1/pretrain" in uses["cnn3", 64, 1]          # GCNet: 64 px grey, both stages
    assert "paper:avce" in uses["resnet18", 224, 3]
    assert "demo:cnn_baseline" in uses["cnn3", 32, 1]


def test_cpu_budget_estimate_from_given_rates(bench):
    config = copy.deepcopy(PARAMS)
    config["budgets"]["cpu"].update(epochs=10, folds=None, tta="flip")
    config["methods"]["supervised"] = {"finetune": "full"}
    cpu = config["budgets"]["cpu"]
    key = (cpu["backbone"], cpu["image_size"], 3)
    train, evals = {key: 100.0}, {key: 1000.0}
    lines = {line.split(":")[0].split()[1] + "/" + line.split()[0]: line
             for line in bench.estimates(config, train, evals, ratio=0.5, jobs=2)}
    # CK+: 8,829 training images per epoch over the 10 folds at 100 x 0.5 img/s, the 981 test
    # images flipped at 1000 img/s, two folds at a time
    ck = (8829 * 10 / 50 + 981 * 2 / 1000) / 2
    assert f": {bench.fmt_time(ck)} " in lines["supervised/ckplus"], lines["supervised/ckplus"]
    # FER-2013: one job; PublicTest (flipped) after each of the 10 epochs, PrivateTest once
    fer = 28709 * 10 / 50 + 3589 * 10 * 2 / 1000 + 3589 * 2 / 1000
    assert f": {bench.fmt_time(fer)} " in lines["supervised/fer2013"], lines["supervised/fer2013"]
    assert "not estimated" in lines["gcnet_s1r1/ckplus"]
    assert bench.fmt_time(3725) == "1h02m" and bench.fmt_time(61) == "1m01s"


def test_estimate_says_when_a_datasets_jobs_run_with_other_threads(bench):
    config = copy.deepcopy(PARAMS)
    config["datasets"]["fer2013"]["budgets"] = {"cpu": {"resources": {"train": {"threads": 2}}}}
    config["resources"]["train"]["threads"] = 1
    assert (bench.job_threads(config, "fer2013"), bench.job_threads(config, "ckplus")) == (2, 1)
    cpu = config["budgets"]["cpu"]
    key = (cpu["backbone"], cpu["image_size"], 3)
    lines = bench.estimates(config, {key: 100.0}, {key: 1000.0}, ratio=1.0, jobs=2, threads=1)
    fer = [line for line in lines if line.split()[:2] == ["fer2013", "supervised"]]
    ck = [line for line in lines if line.split()[:2] == ["ckplus", "supervised"]]
    assert "measure with --threads 2" in fer[0] and "measure with" not in ck[0]
