"""benchmarks/bench_cpu_path.py: it finds what the budgets train on, and times the engine in the
path the budget resolves to."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ferbench import precision

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_cpu_path", ROOT / "benchmarks" / "bench_cpu_path.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(ROOT / "benchmarks"))


def test_the_cpu_budget_configurations_and_their_supervised_runs(bench) -> None:
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    found = bench.budget_configs(config, ["cpu"])
    cpu = config["budgets"]["cpu"]
    small = found[("smallcnn", 48, 3)]
    assert small["batch"] == cpu["batch_size"] and "cpu:supervised" in small["uses"]
    assert small["engine"]["run"] == "supervised"
    # the engine is timed with the budget's own schedule, its compute keys included
    assert small["engine"]["train"]["precision"] == cpu["precision"]
    assert small["engine"]["train"]["optimizer"] == cpu["optimizer"]
    grey = found[("cnn3", 48, 1)]
    assert grey["engine"]["run"] == "cnn_baseline" and "cpu:gcnet_s1r1/pretrain" in grey["uses"]
    assert all(key[0] in ("smallcnn", "cnn3") for key in found)


def test_bare_and_engine_rates_on_a_tiny_configuration(bench, tmp_path, one_thread) -> None:
    key = ("smallcnn", 16, 3)
    for memory_format, bf16 in (("contiguous", False), ("channels_last", True)):
        assert bench.bare_rate(key, 4, memory_format, bf16, steps=2, warmup=1, max_seconds=0.1) > 0
    cache, folds = bench.bench_engine.write_fake_cache(tmp_path, 256, 16)
    entry = {"run": "supervised", "method": {"finetune": "full"},
             "train": {"backbone": "smallcnn", "image_size": 16, "epochs": 1, "batch_size": 4,
                       "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "eval_batch_size": 4,
                       "precision": "fp32", "memory_format": "channels_last"}}
    rate, path = bench.engine_rate(key, entry, cache, folds, steps=2, warmup=1)
    assert rate > 0 and path == "fp32/channels_last"
    entry["train"].update(precision="auto", memory_format="auto")
    expected = precision.resolve({}, torch.device("cpu"))
    assert bench.engine_rate(key, entry, cache, folds, steps=2, warmup=1)[1] == \
        f"{expected.precision}/{expected.memory_format}"
