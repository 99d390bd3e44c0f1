"""Is a row's score above chance, and did its pretraining beat a random encoder?

Classification: a one-sided exact binomial test of the pooled correct count (every run's
confusion matrix summed: folds x seeds) against the majority-class rate of the same pooled test
sets, i.e. against always answering the most frequent test class. A row whose every run
predicts a single class says so whatever the test gives.

Valence/arousal, per dimension: CCC's one-sided test against 0 by Fisher's z transform over the
pooled test samples, z = atanh(CCC) sqrt(N - 3) with CCC the mean over runs and N the total
test size (Lin's CCC has approximately the variance of a correlation's z when its bias term is
small; a rough but conservative screen at these sample sizes).

A score is *at chance* when p >= ALPHA. Probes: the kNN scores that ``train --pretrained``
records in metrics.json ``probe`` (:mod:`ferbench.train.probe`), averaged over runs.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
from scipy import stats

ALPHA = 0.05
CHANCE_HEADER = "Above chance?"
PROBE_HEADER = "kNN probe: pretrained / random"
CHANCE_NOTE = (f"{CHANCE_HEADER}: classification, a one-sided exact binomial test of the pooled "
               "correct count against the majority-class rate of the pooled test sets; "
               "valence/arousal, CCC > 0 by Fisher's z over the pooled test samples. "
               f"\"at chance\" means p >= {ALPHA}.")
PROBE_NOTE = (f"{PROBE_HEADER}: the frozen encoder's k-nearest-neighbour score (k = 20, cosine; "
              "accuracy, or CCC valence/arousal) on the target fold right after pretraining, "
              "and the same for a randomly initialised encoder of the same architecture; mean "
              "over runs. A pretraining that does not beat its random encoder shows here.")


def _p_text(p: float) -> str:
    return "p < 1e-6" if p < 1e-6 else f"p = {p:.2g}"


def classification_chance(confusions: Iterable[np.ndarray]) -> dict[str, Any]:
    """p-value of "better than the majority class" for the pooled confusion matrices."""
    mats = [np.asarray(c, dtype=np.int64) for c in confusions if c is not None]
    if not mats:
        return {}
    total = sum(int(m.sum()) for m in mats)
    correct = sum(int(np.trace(m)) for m in mats)
    truth = sum(m.sum(axis=1) for m in mats)
    if total == 0:
        return {}
    majority = float(truth.max() / total)
    single = all(int(np.count_nonzero(m.sum(axis=0))) <= 1 for m in mats)
    p = 1.0 if majority >= 1.0 else float(stats.binomtest(correct, total, majority, alternative="greater").pvalue)
    return {"p": p, "accuracy": correct / total, "majority_rate": majority, "single_class": single,
            "at_chance": p >= ALPHA}


def ccc_chance(ccc: float, n: int) -> dict[str, Any]:
    """p-value of CCC > 0 (Fisher z) for a CCC over ``n`` samples."""
    if not math.isfinite(ccc) or n < 4:
        return {}
    z = math.atanh(max(min(ccc, 1 - 1e-12), -1 + 1e-12)) * math.sqrt(n - 3)
    p = float(stats.norm.sf(z))
    return {"p": p, "at_chance": p >= ALPHA}


def chance_text(runs: list[Any]) -> str:
    """The "Above chance?" cell of a row of runs (report.runs.Run)."""
    if not runs:
        return "—"
    if runs[0].task == "classification":
        v = classification_chance(r.confusion for r in runs)
        if not v:
            return "—"
        text = (f"at chance ({_p_text(v['p'])}; majority {v['majority_rate']:.3f})" if v["at_chance"]
                else f"yes ({_p_text(v['p'])})")
        return text + ("; predicts one class" if v["single_class"] else "")
    n = sum(r.n_test for r in runs)
    parts = []
    for dim in ("valence", "arousal"):
        values = [r.metrics.get(f"{dim}_ccc", math.nan) for r in runs]
        finite = [x for x in values if math.isfinite(x)]
        v = ccc_chance(float(np.mean(finite)), n) if finite else {}
        if not v:
            parts.append(f"{dim}: —")
        else:
            parts.append(f"{dim}: " + (f"at chance ({_p_text(v['p'])})" if v["at_chance"] else
                                       f"yes ({_p_text(v['p'])})"))
    return "; ".join(parts)


def row_at_chance(runs: list[Any]) -> bool:
    """True when the row's headline score is not significantly above chance (any VA dimension)."""
    return "at chance" in chance_text(runs)


def probe_text(runs: list[Any]) -> str:
    """The probe cell: "0.612 / 0.305" (accuracy) or "V 0.41 / 0.05, A ..." over runs with a probe."""
    probed = [r.probe for r in runs if r.probe]
    if not probed:
        return "—"

    def mean(which: str, key: str) -> float:
        values = [float(p[which].get(key, math.nan)) for p in probed]
        return float(np.nanmean(values)) if any(math.isfinite(x) for x in values) else math.nan

    if "knn_accuracy" in probed[0]["pretrained"]:
        return f"{mean('pretrained', 'knn_accuracy'):.3f} / {mean('random', 'knn_accuracy'):.3f}"
    return ", ".join(f"{dim[0].upper()} {mean('pretrained', f'knn_ccc_{dim}'):.3f} / "
                     f"{mean('random', f'knn_ccc_{dim}'):.3f}" for dim in ("valence", "arousal"))
