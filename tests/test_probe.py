"""kNN encoder probes and the at-chance verdicts of the tables, on hand-worked inputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from ferbench.train import probe
from ferbench.report import chance


def test_knn_vote_is_by_cosine_not_distance():
    # class 0 lies along x, class 1 along y; the query is far out on x but near y in Euclidean terms
    bank = np.array([[1.0, 0.0], [2.0, 0.1], [3.0, -0.1], [0.0, 1.0], [0.1, 2.0], [-0.1, 3.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    query = np.array([[40.0, 1.0], [0.2, 0.1 * 40]])
    pred = probe.knn_predict(bank, labels, query, "classification", k=3)
    assert pred.tolist() == [0, 1]
    # scaling every vector changes no cosine, so no vote
    assert probe.knn_predict(bank * 7.0, labels, query * 0.01, "classification", k=3).tolist() == [0, 1]


def test_knn_probe_accuracy_and_k_capped_at_bank_size():
    bank = np.eye(3)
    labels = np.array([0, 1, 1])
    # k = 20 > 3 samples: every query sees the whole bank, the majority class 1 wins
    out = probe.knn_probe(bank, labels, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.array([0, 1]),
                          "classification")
    assert out["pred"].tolist() == [1, 1]
    assert out["knn_accuracy"] == 0.5
    assert probe.public(out) == {"knn_accuracy": 0.5, "feature_std": pytest.approx(1 / 3)}


def test_knn_regression_is_the_neighbours_mean_scored_by_ccc():
    angles = np.linspace(0, np.pi / 2, 5)
    bank = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    va = np.stack([np.linspace(-1, 1, 5), np.linspace(1, -1, 5)], axis=1)
    # each query's 2 nearest bank vectors by angle: (0, 1) and (3, 4)
    queries = np.array([[np.cos(0.15), np.sin(0.15)], [np.cos(1.4), np.sin(1.4)]])
    pred = probe.knn_predict(bank, va, queries, "va", k=2)
    np.testing.assert_allclose(pred, [[-0.75, 0.75], [0.75, -0.75]])
    truth = np.array([[-1.0, 1.0], [1.0, -1.0]])
    out = probe.knn_probe(bank, va, queries, truth, "va", k=2)
    # CCC by hand: var y = 1, var p = 0.5625, cov = 0.75, equal means -> 1.5 / 1.5625
    assert out["knn_ccc_valence"] == pytest.approx(1.5 / 1.5625)
    assert out["knn_ccc_arousal"] == pytest.approx(1.5 / 1.5625)


def test_bank_subsample_is_seeded_sorted_and_only_when_large():
    pos = np.arange(100, 200)
    assert np.array_equal(probe.bank_positions(pos, 0, max_bank=1000), pos)
    a, b = probe.bank_positions(pos, 3, max_bank=10), probe.bank_positions(pos, 3, max_bank=10)
    assert np.array_equal(a, b) and len(a) == 10 and np.all(np.diff(a) > 0) and set(a) <= set(pos)


def test_paired_probe_test_mcnemar_exact():
    truth = np.zeros(30, dtype=int)
    a = truth.copy()
    b = truth.copy()
    b[:10] = 1            # A right, B wrong on 10 queries; never the other way
    assert probe.paired_probe_test(a, b, truth, "classification") == pytest.approx(0.5 ** 10)
    assert probe.paired_probe_test(b, a, truth, "classification") == pytest.approx(1.0)
    assert probe.paired_probe_test(a, a, truth, "classification") == 1.0


def test_paired_probe_test_va_wilcoxon_direction():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(40, 2))
    near = truth + rng.normal(scale=0.05, size=truth.shape)
    far = truth + rng.normal(scale=1.0, size=truth.shape)
    assert probe.paired_probe_test(near, far, truth, "va") < 1e-6
    assert probe.paired_probe_test(far, near, truth, "va") > 0.99


def test_classification_chance_binomial_against_majority_rate():
    # 10 test samples, 5 of class 0: always answering class 0 scores 0.5; all 10 right: p = 0.5^10
    perfect = np.diag([5, 3, 2])
    v = chance.classification_chance([perfect])
    assert v["majority_rate"] == 0.5 and v["p"] == pytest.approx(0.5 ** 10) and not v["at_chance"]
    # always class 0: 5 of 10 right = the majority rate, and a single predicted column
    one_class = np.array([[5, 0, 0], [3, 0, 0], [2, 0, 0]])
    v = chance.classification_chance([one_class, one_class])
    assert v["at_chance"] and v["single_class"] and v["accuracy"] == 0.5
    assert v["p"] == pytest.approx(1 - 0.5 ** 20 * sum(math.comb(20, j) for j in range(10)))


def test_ccc_chance_fisher_z():
    assert chance.ccc_chance(0.0, 103)["p"] == pytest.approx(0.5)
    # z = atanh(0.2) * sqrt(100) = 2.0273 -> one-sided p = 0.0213
    v = chance.ccc_chance(0.2, 103)
    assert v["p"] == pytest.approx(0.02132, abs=1e-4) and not v["at_chance"]
    assert chance.ccc_chance(0.05, 103)["at_chance"]
    assert chance.ccc_chance(float("nan"), 103) == {}


def _run(task, confusion=None, metrics=None, n_test=0, probe_scores=None):
    return SimpleNamespace(task=task, confusion=confusion, metrics=metrics or {}, n_test=n_test,
                           probe=probe_scores)


def test_chance_and_probe_cells():
    at = _run("classification", confusion=np.array([[5, 0], [5, 0]]))
    text = chance.chance_text([at])
    assert text.startswith("at chance (") and text.endswith("predicts one class")
    assert chance.chance_text([_run("classification", confusion=np.diag([50, 50]))]).startswith("yes (p < 1e-6")
    va = _run("va", metrics={"valence_ccc": 0.6, "arousal_ccc": 0.01}, n_test=200)
    assert chance.chance_text([va]).split("; ")[0].startswith("valence: yes")
    assert chance.chance_text([va]).split("; ")[1].startswith("arousal: at chance")
    runs = [_run("classification", probe_scores={"pretrained": {"knn_accuracy": a}, "random": {"knn_accuracy": b}})
            for a, b in ((0.6, 0.2), (0.8, 0.4))]
    assert chance.probe_text(runs) == "0.700 / 0.300"
    assert chance.probe_text([_run("classification")]) == "—"
