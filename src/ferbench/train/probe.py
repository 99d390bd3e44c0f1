"""Encoder probes (what solo-learn reports online): a k-nearest-neighbour classifier or
regressor on the frozen encoder's features, bank = the target fold's training samples, queries
= its test samples. The train job of every method with a pretraining stage computes it twice,
on the pretrained encoder and on a randomly initialised encoder of the same architecture and
input size (the method as built, before ``load_pretrained``), so a pretraining that does not
beat its random encoder shows in ``metrics.json`` ``probe`` and in the tables.

Classification: accuracy of a majority vote of the ``k`` = 20 nearest training samples by
cosine similarity (ties: the nearer neighbours' class, scikit-learn's rule). Valence/arousal:
the neighbours' mean label, scored by CCC per dimension. Significance of "pretrained beats
random" on the same queries: :func:`paired_probe_test` (McNemar's exact test on the
discordant hits; Wilcoxon signed-rank on absolute errors for valence/arousal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from ferbench.train import metrics as M

K = 20
#: a larger bank is subsampled (seeded): a kNN vote over 20,000 samples is stable, and the
#: probe of an AffectNet-sized fold stays seconds, not minutes
MAX_BANK = 20_000


def bank_positions(train_positions: np.ndarray, seed: int, max_bank: int = MAX_BANK) -> np.ndarray:
    """The training positions the probe uses as its bank (all, or a seeded sorted subsample)."""
    positions = np.asarray(train_positions)
    if len(positions) <= max_bank:
        return positions
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(positions, size=max_bank, replace=False))


def knn_predict(bank: np.ndarray, bank_targets: np.ndarray, queries: np.ndarray, task: str,
                k: int = K) -> np.ndarray:
    """Predicted class indices [N] (classification) or valence/arousal [N, 2] (``va``)."""
    bank = np.asarray(bank, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    if len(bank) == 0 or len(queries) == 0:
        raise ValueError("knn probe: empty bank or query set")
    k = min(k, len(bank))
    model = (KNeighborsRegressor if task == "va" else KNeighborsClassifier)(
        n_neighbors=k, metric="cosine", algorithm="brute")
    model.fit(bank, bank_targets)
    return model.predict(queries)


def knn_probe(bank: np.ndarray, bank_targets: np.ndarray, queries: np.ndarray,
              query_targets: np.ndarray, task: str, k: int = K) -> dict[str, Any]:
    """Scores of the kNN probe, plus its per-query predictions (``pred``, not for JSON)."""
    pred = knn_predict(bank, bank_targets, queries, task, k)
    spread = {"feature_std": feature_std(queries)}
    if task == "va":
        truth = np.asarray(query_targets, dtype=np.float64)
        return {"knn_ccc_valence": M.ccc(truth[:, 0], pred[:, 0]),
                "knn_ccc_arousal": M.ccc(truth[:, 1], pred[:, 1]), **spread, "pred": pred}
    truth = np.asarray(query_targets)
    return {"knn_accuracy": float(np.mean(pred == truth)), **spread, "pred": pred}


def feature_std(features: np.ndarray) -> float:
    """Mean over dimensions of the std of the L2-normalised features (solo-learn's collapse
    monitor): 0 for a collapsed encoder (one point for every input); about 1/sqrt(D) for
    features spread over the sphere."""
    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(x.std(axis=0).mean()) if len(x) > 1 else 0.0


def paired_probe_test(pred_a: np.ndarray, pred_b: np.ndarray, truth: np.ndarray, task: str) -> float:
    """One-sided p-value that probe A is better than probe B on the same queries."""
    truth = np.asarray(truth)
    if task == "va":
        err_a = np.abs(np.asarray(pred_a, float) - truth).sum(axis=1)
        err_b = np.abs(np.asarray(pred_b, float) - truth).sum(axis=1)
        diff = err_b - err_a                      # > 0 where A is nearer the truth
        if not np.any(diff):
            return 1.0
        return float(stats.wilcoxon(diff, alternative="greater").pvalue)
    hit_a, hit_b = np.asarray(pred_a) == truth, np.asarray(pred_b) == truth
    only_a, only_b = int(np.sum(hit_a & ~hit_b)), int(np.sum(hit_b & ~hit_a))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue)


def public(scores: dict[str, Any]) -> dict[str, float]:
    """The JSON part of :func:`knn_probe`'s result."""
    return {key: float(value) for key, value in scores.items() if key != "pred"}
