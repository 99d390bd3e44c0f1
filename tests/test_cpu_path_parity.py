"""The fast CPU path learns what the plain fp32 path learns: the `cpu` budget's recipe on
synthetic CK+ folds, once in fp32 NCHW (``precision: fp32, memory_format: contiguous``, what
the engine did on every CPU before) and once as ``auto`` resolves on this machine (bf16
autocast and channels_last on a CPU with native bf16; fp32 channels_last elsewhere), the same
seed: each fold's accuracy within 3 points, and the fast path not worse on average.

Slow: trains 2 x 3 folds through the CLI (a few minutes on 2 CPU cores). Kept short: folds 0-2
of the 10 and 15 of the budget's 40 epochs (its one-cycle schedule then spans 15 epochs)."""

from __future__ import annotations

import json

import pytest
import yaml

from ferbench import cli, precision
from test_demo_learning import DEMO, GCNET_SIZE, demo_layout

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

FOLDS = (0, 1, 2)
EPOCHS = 15
PATHS = {"plain": {"precision": "fp32", "memory_format": "contiguous"},
         "fast": {"precision": "auto", "memory_format": "auto"}}


@pytest.fixture(scope="module")
def ckplus(tmp_path_factory):
    return demo_layout(tmp_path_factory.mktemp("parity"), "ckplus", DEMO["image_size"], GCNET_SIZE)


def test_fast_cpu_path_matches_fp32_accuracy_per_fold(ckplus, tmp_path) -> None:
    root, config, cache, folds = ckplus
    accuracy: dict[str, dict[int, float]] = {}
    for name, keys in PATHS.items():
        params = yaml.safe_load(config.read_text())
        params["budget"] = "cpu"
        params["budgets"]["cpu"].update(epochs=EPOCHS, **keys)
        path_config = tmp_path / f"{name}.yaml"
        path_config.write_text(yaml.safe_dump(params))
        accuracy[name] = {}
        for fold in FOLDS:
            out = tmp_path / name / f"fold{fold}"
            assert cli.main(["train", "--config", str(path_config), "--dataset", "ckplus",
                             "--method", "supervised", "--fold", str(fold), "--seed", "0",
                             "--cache", str(cache), "--folds", str(folds), "--out", str(out),
                             "--threads", "1", "--device", "cpu", "--no-progress"]) == 0
            result = json.loads((out / "metrics.json").read_text())
            expected = precision.resolve(keys, "cpu").record()
            assert {k: result[k] for k in expected} == expected
            accuracy[name][fold] = result["metrics"]["accuracy"]
    plain, fast = accuracy["plain"], accuracy["fast"]
    assert all(abs(fast[f] - plain[f]) <= 0.03 + 1e-9 for f in FOLDS), accuracy
    assert sum(fast.values()) >= sum(plain.values()) - 1e-9, accuracy
