"""Statistics over folds x seeds: confidence intervals of means and paired tests between methods.

Decisions
* A method's 95% confidence interval is Student's t over its runs (folds x seeds):
  mean ± t(0.975, n-1) · s / sqrt(n), s the sample std (ddof=1). Runs of one cross-validation
  share training data, so this interval is optimistic; the paired tests below correct for that.
* Two methods are compared on the same dataset (table group) and task, per metric, over the
  (fold, seed) pairs both have run: d_j = ours_A - ours_B for j = 1..J (J = folds x seeds).
  - Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided; exact for small J without ties;
    zero differences are dropped, scipy's default zero_method="wilcox").
  - The corrected resampled t-test (Nadeau & Bengio 2003, "Inference for the generalization
    error", Machine Learning 52): t = mean(d) / sqrt((1/J + n_test/n_train) · var(d, ddof=1)),
    df = J - 1, two-sided p from Student's t. n_test/n_train is the mean ratio over the paired
    runs (their recorded n_test and n_train).
  - With fewer than two pairs (the demo: one fold, one seed) no test is possible: the p-values
    are NaN and ``note`` says why. Differences that are all equal give no t statistic (zero
    variance): NaN with a note.
* A *significant win* is p < ALPHA in the corrected t-test (the more conservative of the two for
  cross-validation) with the mean difference in the metric's better direction (lower for RMSE and
  MSE measures, higher for every other metric). p-values are not adjusted for the number of
  pairs; ``p_corrected_holm`` gives Holm's adjustment within each dataset, task and metric.
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
LOWER_IS_BETTER = ("rmse", "mse", "mae")

TEST_COLUMNS = [
    "group", "dataset", "task", "metric", "method_a", "method_b", "n_pairs", "folds", "seeds",
    "mean_a", "mean_b", "mean_diff", "wilcoxon_stat", "wilcoxon_p", "n_test_over_n_train",
    "t_corrected", "df", "p_corrected", "p_corrected_holm", "better", "significant", "note"]


def lower_is_better(metric: str) -> bool:
    return any(part in LOWER_IS_BETTER for part in metric.split("_"))


def confidence_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (NaN ignored); (nan, nan) below 2 values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def corrected_t_test(diffs, test_train_ratio: float) -> tuple[float, int, float]:
    """Nadeau & Bengio's corrected resampled t-test: (t, df, two-sided p)."""
    d = np.asarray(diffs, dtype=float)
    J = len(d)
    if J < 2 or not math.isfinite(test_train_ratio):
        return math.nan, max(J - 1, 0), math.nan
    var = d.var(ddof=1)
    if np.allclose(d, d.mean(), rtol=1e-9, atol=1e-12):   # all equal, up to float rounding
        return math.nan, J - 1, math.nan
    t = d.mean() / math.sqrt((1.0 / J + test_train_ratio) * var)
    return float(t), J - 1, float(2 * stats.t.sf(abs(t), J - 1))


def wilcoxon_test(diffs) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank (statistic, p); NaN below two pairs or all-zero diffs."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2 or np.all(d == 0):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.wilcoxon(d)
    return float(res.statistic), float(res.pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def no_test_note(n_pairs: int, folds: int, seeds: int) -> str:
    return (f"no test possible: {n_pairs} paired run(s) ({folds} fold(s) × {seeds} seed(s)); "
            f"a paired test needs at least 2")


def paired_tests(scores: pd.DataFrame, sizes: pd.DataFrame, order) -> pd.DataFrame:
    """Every pair of variants per group, task and (non-legacy) metric: the paired tests.

    ``scores``: runs.scores_frame; ``sizes``: one row per run index with n_train, n_test;
    ``order(variants) -> list``: the row order of the tables (method_a comes first in it).
    """
    rows = []
    base = scores[~scores["metric"].str.startswith("legacy_")]
    ratio = (sizes["n_test"] / sizes["n_train"].where(sizes["n_train"] > 0)).to_dict()
    for (group, task, metric), part in base.groupby(["group", "task", "metric"], sort=True):
        indexed = part.set_index(["fold", "seed", "variant"])
        wide = indexed["value"].unstack("variant")
        run_of = indexed["run"].unstack("variant")
        dataset = part["dataset"].iloc[0]
        for a, b in combinations(order(set(part["variant"])), 2):
            both = wide[[a, b]].dropna()
            d = (both[a] - both[b]).to_numpy()
            keys = both.index
            folds = len({k[0] for k in keys})
            seeds = len({k[1] for k in keys})
            r = [ratio.get(run_of.loc[k, v]) for k in keys for v in (a, b)]
            r = float(np.mean(r)) if r and all(x is not None for x in r) else math.nan
            w_stat, w_p = wilcoxon_test(d)
            t, df, p = corrected_t_test(d, r)
            note = ""
            if len(d) < 2:
                note = no_test_note(len(d), folds, seeds)
            elif not math.isfinite(t):
                note = ("no t statistic: the differences are all equal (zero variance)"
                        if math.isfinite(r) else "no t statistic: n_train unknown")
            mean_diff = float(d.mean()) if len(d) else math.nan
            better = ""
            if len(d) and mean_diff != 0 and math.isfinite(mean_diff):
                a_better = (mean_diff < 0) if lower_is_better(metric) else (mean_diff > 0)
                better = a if a_better else b
            rows.append({
                "group": group, "dataset": dataset, "task": task, "metric": metric,
                "method_a": a, "method_b": b, "n_pairs": len(d), "folds": folds, "seeds": seeds,
                "mean_a": float(both[a].mean()) if len(d) else math.nan,
                "mean_b": float(both[b].mean()) if len(d) else math.nan,
                "mean_diff": mean_diff, "wilcoxon_stat": w_stat, "wilcoxon_p": w_p,
                "n_test_over_n_train": r, "t_corrected": t, "df": df, "p_corrected": p,
                "better": better, "significant": bool(math.isfinite(p) and p < ALPHA
                                                      and better != ""),
                "note": note,
            })
    out = pd.DataFrame(rows, columns=[c for c in TEST_COLUMNS if c != "p_corrected_holm"])
    out["p_corrected_holm"] = math.nan
    for _, idx in out.groupby(["group", "task", "metric"]).groups.items():
        out.loc[idx, "p_corrected_holm"] = holm(out.loc[idx, "p_corrected"])
    return out[TEST_COLUMNS]


def wins(tests: pd.DataFrame, group: str, task: str, variant: str) -> dict[str, list[str]]:
    """metric -> the variants ``variant`` significantly beats in ``group``/``task``."""
    sel = tests[(tests["group"] == group) & (tests["task"] == task) & tests["significant"]
                & (tests["better"] == variant)]
    out: dict[str, list[str]] = {}
    for row in sel.itertuples(index=False):
        other = row.method_b if row.method_a == variant else row.method_a
        out.setdefault(row.metric, []).append(other)
    return out


def testable(tests: pd.DataFrame, group: str, task: str | None = None) -> tuple[bool, str]:
    """Whether any pair of ``group`` (and ``task``) could be tested; else the reason shown."""
    sel = tests[(tests["group"] == group) & ((tests["task"] == task) if task else True)]
    if sel.empty:
        return False, "no test possible: a single method"
    if (sel["n_pairs"] >= 2).any():
        return True, ""
    worst = sel.iloc[0]
    return False, no_test_note(int(worst["n_pairs"]), int(worst["folds"]), int(worst["seeds"]))
