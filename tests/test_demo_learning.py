"""The default demo learns: on synthetic CK+ (the embedded data, written as the demo writes it)
the supervised baseline is well above chance on every fold it checks, and GCNet's generator
estimates the neutral face far better than the expressive input itself does.

Slow (a minute or two on 2 CPU cores): synthesize, prepare, fold and train for real through the
CLI, with the repository's params.yaml (its `demo` budget and method blocks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from scipy.stats import binomtest

from ferbench import cli
from ferbench.synthetic import SyntheticConfig, write_layout

REPO = Path(__file__).resolve().parents[1]
FOLDS = (0, 1, 2)
CHANCE = 1 / 7
#: the GCNet runs' demo image size (params.yaml methods.gcnet_*.budgets.demo)
GCNET_SIZE = yaml.safe_load((REPO / "params.yaml").read_text())[
    "methods"]["gcnet_s0r0"]["budgets"]["demo"]["image_size"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def ckplus(tmp_path_factory):
    """Synthetic CK+ as the demo writes it, prepared and folded; the demo's params.yaml."""
    root = tmp_path_factory.mktemp("demo")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    syn = params["synthetic"]
    write_layout("ckplus", root / "data", SyntheticConfig(
        subjects=syn["subjects"], frames=syn["frames"], size=syn["size"], seed=syn["seed"],
        layouts=("ckplus",)))
    cache = root / "cache" / "ckplus"
    assert cli.main(["prepare", "ckplus", str(root / "data" / "ckplus"), "--out", str(cache),
                     "--size", str(params["budgets"]["demo"]["image_size"]), str(GCNET_SIZE),
                     "--threads", "1"]) == 0
    folds = cache / "folds.parquet"
    assert cli.main(["folds", "ckplus", "--cache", str(cache), "--out", str(folds)]) == 0
    params["datasets"]["ckplus"]["root"] = str(root / "data" / "ckplus")
    config = root / "params.yaml"
    config.write_text(yaml.safe_dump(params))
    return root, config, cache, folds


def train(setup, method: str, fold: int, stage: str = "train", *extra: str, tag: str = "") -> dict:
    root, config, cache, folds = setup
    out = root / stage / f"{method}{tag}" / f"fold{fold}"
    assert cli.main([stage, "--config", str(config), "--dataset", "ckplus", "--method", method,
                     "--fold", str(fold), "--seed", "0", "--cache", str(cache),
                     "--folds", str(folds), "--out", str(out), "--threads", "1",
                     "--device", "cpu", "--no-progress", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def _far_above_chance(result: dict) -> float:
    """p-value of the test accuracy under guessing (one-sided binomial test against 1/7)."""
    n = result["n_test"]
    correct = round(result["metrics"]["accuracy"] * n)
    return binomtest(correct, n, CHANCE, alternative="greater").pvalue


def test_supervised_baseline_is_well_above_chance_on_every_demo_fold(ckplus):
    results = {fold: train(ckplus, "supervised", fold) for fold in FOLDS}
    accuracies = {fold: r["metrics"]["accuracy"] for fold, r in results.items()}
    # every fold far beyond what guessing gives on its ~45 test samples, the mean 2.5x chance
    assert all(_far_above_chance(r) < 1e-3 for r in results.values()), accuracies
    assert sum(accuracies.values()) / len(accuracies) >= 2.5 * CHANCE, accuracies
    # identity stays a real nuisance: the demo is not solved outright
    assert sum(accuracies.values()) / len(accuracies) < 0.95, accuracies


def test_cpu_budget_reaches_the_demo_bar(ckplus, tmp_path):
    """The `cpu` budget's recipe (params.yaml) on synthetic CK+ fold 0 clears the same bar."""
    root, config, cache, folds = ckplus
    params = yaml.safe_load(config.read_text())
    params["budget"] = "cpu"
    cpu_config = tmp_path / "cpu.yaml"
    cpu_config.write_text(yaml.safe_dump(params))
    result = train((root, cpu_config, cache, folds), "supervised", 0, tag="_cpu")
    assert result["budget"] == "cpu" and _far_above_chance(result) < 1e-3, result["metrics"]
    assert result["metrics"]["accuracy"] >= 2.5 * CHANCE, result["metrics"]


def test_gcnet_generator_estimates_the_neutral_face_far_better_than_identity(ckplus):
    """Fold 0, the demo's schedule: after the pretraining stage the generated reference is much
    closer to the sequence's first frame than the input is, and stays closer after S0R0
    training."""
    root = ckplus[0]
    pre = train(ckplus, "gcnet_s0r0", 0, "pretrain")["extra"]
    assert pre["ref_test_samples"] > 0
    assert pre["gen_ref_mse_test"] < 0.7 * pre["identity_ref_mse_test"], pre
    encoder = root / "pretrain" / "gcnet_s0r0" / "fold0" / "encoder.pt"
    after = train(ckplus, "gcnet_s0r0", 0, "train", "--pretrained", str(encoder))["extra"]
    assert after["identity_ref_mse_test"] == pytest.approx(pre["identity_ref_mse_test"])
    # joint training pulls the generator towards what helps the classifier: still below identity
    assert after["gen_ref_mse_test"] < 0.9 * after["identity_ref_mse_test"], after
