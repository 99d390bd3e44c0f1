"""Evaluation metrics: textbook definitions, plus a `legacy` mode reproducing the authors' code.

Classification
    accuracy, macro-F1 and the confusion matrix, all over the explicit label set
    ``0 .. num_classes-1`` so that a class absent from a fold keeps its row/column.
    Macro-F1 averages the per-class F1 over the classes that occur in ``y_true`` or ``y_pred``:
    a class with neither (F1 = 0/0) is left out of the average instead of counting as 0 (a CK+
    fold without *fear* would otherwise be penalised for something no model could do); a class
    that is predicted but absent from the truth still counts, with F1 = 0.

Valence / arousal (each dimension separately; textbook, ``legacy=False``)
    RMSE = sqrt(mean((y - p)^2))
    PCC  = cov(y, p) / (std y * std p)                      population moments (ddof=0)
    CCC  = 2 cov(y, p) / (var y + var p + (mean y - mean p)^2)   population moments (Lin)
    SAGR = mean(sign(y) == sign(p))      (np.sign(0) == 0: y = p = 0 is an agreement)

Legacy (``legacy=True``): what kdhht2334/AVCE_FER (src/evaluation.py, src/main.py
``interm_evaluation``) and kdhht2334/Contrastive-Adversarial-Learning-FER (src/main.py and
src/CAL_FER_AlexNet.py ``model_evaluation``) compute:
    RMSE: the evaluation set is cut, in the given order, into consecutive batches of
          ``batch_size`` (the last one may be short); the per-batch sqrt(MSE) values are
          averaged with equal weight per batch. So it depends on the batch size, and it equals
          the textbook RMSE when one batch holds everything. ``legacy_rmse="batch_mse"``
          reproduces the CAF scripts, whose "RMSE" is ``nn.MSELoss()`` without a square root
          (still averaged per batch).
    PCC:  covariance with ddof=1 (``np.cov``) over standard deviations with ddof=0
          (``np.std``), i.e. the textbook value times N/(N-1).
    CCC:  2 * cov(ddof=1) / (var(ddof=0) + var(ddof=0) + (mean y - mean p)^2).
    SAGR: ``sagr_variant="avce"`` counts y == 0 as a miss whatever p is;
          ``sagr_variant="caf"`` is the textbook count (sign(0) == sign(0) is a hit).
    Only the formulas are reproduced, not their data handling (AVCE's loader also scales labels
    by 0.8; that is a data choice, not a metric).

Degenerate inputs never raise: a constant truth or prediction makes PCC NaN (0/0), and CCC is
NaN only when both are the same constant (0/0); NaN predictions propagate into RMSE/PCC/CCC and
count as SAGR misses. Shape errors and an empty evaluation set raise ValueError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

VA_DIMS = ("valence", "arousal")
VA_STATS = ("rmse", "pcc", "ccc", "sagr")
VA_KEYS = tuple(f"{dim}_{stat}" for dim in VA_DIMS for stat in VA_STATS)
SAGR_VARIANTS = ("avce", "caf")
LEGACY_RMSE = ("batch_rmse", "batch_mse")


# --------------------------------------------------------------------------- classification
def classification_metrics(y_true: Any, y_pred: Any, num_classes: int) -> dict[str, Any]:
    """accuracy, macro_f1 (floats) and confusion (list of lists, rows = true class)."""
    yt = np.asarray(y_true).reshape(-1)
    yp = np.asarray(y_pred).reshape(-1)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has {yt.size} labels but y_pred has {yp.size}")
    if yt.size == 0:
        raise ValueError("classification_metrics: no samples")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    for name, arr in (("y_true", yt), ("y_pred", yp)):
        if arr.dtype.kind not in "iu" and not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"{name} must hold integer class indices")
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(f"{name} has a class index outside 0..{num_classes - 1}")
    yt = yt.astype(np.int64)
    yp = yp.astype(np.int64)
    labels = np.arange(num_classes)
    macro_f1 = f1_score(yt, yp, labels=labels, average="macro", zero_division=np.nan)
    return {
        "accuracy": float(accuracy_score(yt, yp)),
        "macro_f1": float(macro_f1),
        "confusion": confusion_matrix(yt, yp, labels=labels).astype(int).tolist(),
    }


# --------------------------------------------------------------------------- valence/arousal
def rmse(y: Any, p: Any) -> float:
    y, p = _pair(y, p)
    return float(np.sqrt(np.mean((y - p) ** 2)))


def pcc(y: Any, p: Any, legacy: bool = False) -> float:
    """Pearson correlation; ``legacy`` uses cov ddof=1 over std ddof=0 (authors' code)."""
    y, p = _pair(y, p)
    cov = _cov(y, p, ddof=1 if legacy else 0)
    denom = np.std(y) * np.std(p)
    return _ratio(cov, denom)


def ccc(y: Any, p: Any, legacy: bool = False) -> float:
    """Lin's concordance correlation; ``legacy`` uses cov ddof=1 with variances ddof=0."""
    y, p = _pair(y, p)
    cov = _cov(y, p, ddof=1 if legacy else 0)
    denom = np.var(y) + np.var(p) + (y.mean() - p.mean()) ** 2
    return _ratio(2.0 * cov, denom)


def sagr(y: Any, p: Any, zero_is_miss: bool = False) -> float:
    """Sign agreement rate; ``zero_is_miss`` reproduces AVCE's code (y == 0 never agrees)."""
    y, p = _pair(y, p)
    hit = np.sign(y) == np.sign(p)
    if zero_is_miss:
        hit &= y != 0
    return float(np.mean(hit))


def legacy_batch_rmse(y: Any, p: Any, batch_size: int, root: bool = True) -> float:
    """Mean over consecutive evaluation batches of the per-batch RMSE (or MSE if not ``root``)."""
    y, p = _pair(y, p)
    if batch_size is None or int(batch_size) < 1:
        raise ValueError(f"legacy RMSE needs a positive batch_size, got {batch_size!r}")
    batch_size = int(batch_size)
    per_batch = []
    for start in range(0, y.size, batch_size):
        mse = np.mean((y[start:start + batch_size] - p[start:start + batch_size]) ** 2)
        per_batch.append(np.sqrt(mse) if root else mse)
    return float(np.mean(per_batch))


def va_metrics(
    true_va: Any,
    pred_va: Any,
    legacy: bool = False,
    batch_size: int | None = None,
    sagr_variant: str = "avce",
    legacy_rmse: str = "batch_rmse",
) -> dict[str, float]:
    """RMSE, PCC, CCC, SAGR for valence (column 0) and arousal (column 1) of [N, 2] arrays.

    ``legacy=True`` needs ``batch_size`` (the evaluation batch size; the authors used 64 for
    AVCE and 16 for CAF) and honours ``sagr_variant`` ("avce" or "caf") and ``legacy_rmse``
    ("batch_rmse", or "batch_mse" for the CAF scripts); both are ignored when ``legacy`` is off.
    """
    t = np.asarray(true_va, dtype=np.float64)
    p = np.asarray(pred_va, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape != p.shape:
        raise ValueError(f"expected two [N, 2] arrays, got {t.shape} and {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("va_metrics: no samples")
    if legacy:
        if sagr_variant not in SAGR_VARIANTS:
            raise ValueError(f"sagr_variant must be one of {SAGR_VARIANTS}, got {sagr_variant!r}")
        if legacy_rmse not in LEGACY_RMSE:
            raise ValueError(f"legacy_rmse must be one of {LEGACY_RMSE}, got {legacy_rmse!r}")
        if batch_size is None:
            raise ValueError("legacy metrics need the evaluation batch_size")
    out: dict[str, float] = {}
    for col, dim in enumerate(VA_DIMS):
        y, q = t[:, col], p[:, col]
        if legacy:
            root = legacy_rmse == "batch_rmse"
            out[f"{dim}_rmse"] = legacy_batch_rmse(y, q, batch_size, root=root)
            out[f"{dim}_sagr"] = sagr(y, q, zero_is_miss=sagr_variant == "avce")
        else:
            out[f"{dim}_rmse"] = rmse(y, q)
            out[f"{dim}_sagr"] = sagr(y, q)
        out[f"{dim}_pcc"] = pcc(y, q, legacy=legacy)
        out[f"{dim}_ccc"] = ccc(y, q, legacy=legacy)
    return {key: out[key] for key in VA_KEYS}


# --------------------------------------------------------------------------- helpers
def _pair(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"truth has {y.size} values but prediction has {p.size}")
    if y.size == 0:
        raise ValueError("no samples")
    return y, p


def _cov(y: np.ndarray, p: np.ndarray, ddof: int) -> float:
    n = y.size - ddof
    if n <= 0:
        return float("nan")
    return float(np.sum((y - y.mean()) * (p - p.mean())) / n)


def _ratio(num: float, denom: float) -> float:
    # 0/0 (constant inputs) is undefined, not an error: report NaN.
    if not np.isfinite(denom) or denom == 0 or not np.isfinite(num):
        return float("nan")
    return float(num / denom)
