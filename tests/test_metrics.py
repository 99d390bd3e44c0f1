"""Metrics (textbook and legacy) and the L_AV loss, against hand-worked numbers and references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ferbench.train import metrics
from ferbench.methods.losses import av_loss, ccc_torch, pcc_torch
from ferbench.train.metrics import classification_metrics, va_metrics

# Hand-worked VA example used by several tests.
# valence y = [-1, 0, 1, 2], p = [-1, 1, 1, 3]
#   errors 0, -1, 0, -1 -> squares 0, 1, 0, 1 -> MSE 0.5 -> RMSE sqrt(0.5) = 0.707107
#   mean y = 0.5, mean p = 1.0; yc = [-1.5, -0.5, 0.5, 1.5], pc = [-2, 0, 0, 2]
#   sum yc*pc = 3 + 0 + 0 + 3 = 6 -> cov0 = 6/4 = 1.5, cov1 = 6/3 = 2
#   var0 y = (2.25 + 0.25 + 0.25 + 2.25)/4 = 1.25, var0 p = (4 + 0 + 0 + 4)/4 = 2
#   PCC = 1.5 / sqrt(1.25 * 2) = 1.5 / 1.581139 = 0.948683
#   CCC = 2 * 1.5 / (1.25 + 2 + 0.5^2) = 3 / 3.5 = 0.857143
#   legacy PCC = 2 / 1.581139 = 1.264911 (> 1: the ddof mix is not a correlation)
#   legacy CCC = 4 / 3.5 = 1.142857
#   SAGR: signs y -1, 0, 1, 1 vs p -1, 1, 1, 1 -> hit, miss, hit, hit = 0.75 (both variants)
# arousal y = [0, 0, 0.5, -0.5], p = [0, 0.2, 0.4, 0.1]
#   errors 0, -0.2, 0.1, -0.6 -> squares 0, .04, .01, .36 -> MSE .41/4 = .1025 -> RMSE .320156
#   mean y = 0, mean p = .175; yc = [0, 0, .5, -.5], pc = [-.175, .025, .225, -.075]
#   sum yc*pc = .1125 + .0375 = .15 -> cov0 = .0375
#   var0 y = .5/4 = .125; var0 p = (.030625 + .000625 + .050625 + .005625)/4 = .021875
#   PCC = .0375 / sqrt(.125 * .021875) = .0375 / .0522913 = 0.717137
#   CCC = .075 / (.125 + .021875 + .175^2) = .075 / .1775 = 0.422535
#   SAGR textbook / caf: signs 0,0,1,-1 vs 0,1,1,1 -> hit, miss, hit, miss = 0.5
#   SAGR avce (y == 0 is a miss): miss, miss, hit, miss = 0.25
#   legacy RMSE, batch 2: sqrt((0+.04)/2) = .141421, sqrt((.01+.36)/2) = .430116 -> .285769
#   legacy RMSE, batch 3: sqrt(.05/3) = .129099, sqrt(.36) = .6 -> mean .364550
TRUE_VA = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.5], [2.0, -0.5]])
PRED_VA = np.array([[-1.0, 0.0], [1.0, 0.2], [1.0, 0.4], [3.0, 0.1]])


# ------------------------------------------------------------------------ classification
def test_classification_hand_worked_with_absent_class():
    # y_true = [0,0,1,1,2], y_pred = [0,1,1,1,2], 4 classes (class 3 never occurs)
    #   accuracy = 4/5 = 0.8
    #   F1 class 0: tp 1, fp 0, fn 1 -> 2/(2+0+1) = 2/3
    #   F1 class 1: tp 2, fp 1, fn 0 -> 4/5 = 0.8
    #   F1 class 2: tp 1 -> 1.0; class 3: 0/0 -> left out of the average
    #   macro-F1 = (2/3 + 0.8 + 1) / 3 = 0.822222
    out = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 2], num_classes=4)
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)
    assert out["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_classification_predicted_but_absent_class_counts_as_zero():
    # y_true = [0,0], y_pred = [0,2], 3 classes
    #   class 0: tp 1, fn 1 -> 2/3; class 2: fp 1 -> F1 0 (counts); class 1: absent -> left out
    #   macro-F1 = (2/3 + 0) / 2 = 1/3
    out = classification_metrics([0, 0], [0, 2], num_classes=3)
    assert out["macro_f1"] == pytest.approx(1 / 3)
    assert out["confusion"] == [[1, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_classification_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    k = 7
    y = rng.integers(0, k, size=500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, k, size=500))
    out = classification_metrics(y, p, num_classes=k)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert out["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert out["confusion"] == confusion_matrix(y, p, labels=list(range(k))).tolist()


def test_classification_rejects_bad_input():
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0], num_classes=2)
    with pytest.raises(ValueError):
        classification_metrics([0, 5], [0, 1], num_classes=3)
    with pytest.raises(ValueError):
        classification_metrics([], [], num_classes=3)


# ------------------------------------------------------------------------ VA textbook
def test_va_textbook_hand_worked():
    out = va_metrics(TRUE_VA, PRED_VA)
    assert set(out) == set(metrics.VA_KEYS)
    assert out["valence_rmse"] == pytest.approx(math.sqrt(0.5))
    assert out["valence_pcc"] == pytest.approx(1.5 / math.sqrt(2.5))
    assert out["valence_ccc"] == pytest.approx(3 / 3.5)
    assert out["valence_sagr"] == pytest.approx(0.75)
    assert out["arousal_rmse"] == pytest.approx(math.sqrt(0.1025))
    assert out["arousal_pcc"] == pytest.approx(0.0375 / math.sqrt(0.125 * 0.021875))
    assert out["arousal_ccc"] == pytest.approx(0.075 / 0.1775)
    assert out["arousal_sagr"] == pytest.approx(0.5)


def test_pcc_agrees_with_scipy_on_random_data():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, size=(300, 2))
    p = 0.6 * y + rng.normal(0, 0.3, size=(300, 2)) + 0.1
    out = va_metrics(y, p)
    for col, dim in enumerate(("valence", "arousal")):
        ref = scipy.stats.pearsonr(y[:, col], p[:, col])[0]
        assert out[f"{dim}_pcc"] == pytest.approx(ref, rel=1e-10)
        assert out[f"{dim}_rmse"] == pytest.approx(np.sqrt(np.mean((y[:, col] - p[:, col]) ** 2)))


def test_ccc_properties():
    rng = np.random.default_rng(2)
    y = rng.uniform(-1, 1, size=200)
    p = y + rng.normal(0, 0.2, size=200)
    assert metrics.ccc(y, y) == pytest.approx(1.0)
    # A constant bias keeps PCC at 1 but lowers CCC.
    assert metrics.pcc(y, y + 0.5) == pytest.approx(1.0)
    assert metrics.ccc(y, y + 0.5) < metrics.pcc(y, y + 0.5)
    assert metrics.ccc(y, p) < metrics.pcc(y, p)
    assert metrics.ccc(y, p) == pytest.approx(metrics.ccc(p, y))
    assert metrics.ccc(y, p, legacy=True) == pytest.approx(metrics.ccc(p, y, legacy=True))


def test_degenerate_inputs_give_nan_not_errors():
    y = np.array([0.1, -0.3, 0.5, 0.2])
    const = np.full(4, 0.2)
    out = va_metrics(np.stack([y, y], 1), np.stack([const, const], 1))
    assert math.isnan(out["valence_pcc"])          # 0 / 0
    assert out["valence_ccc"] == pytest.approx(0.0)  # cov 0 over a positive denominator
    assert math.isfinite(out["valence_rmse"])
    # Both constant and equal: CCC is 0/0.
    assert math.isnan(metrics.ccc(const, const))
    assert math.isnan(metrics.pcc(const, const, legacy=True))


# ------------------------------------------------------------------------ VA legacy
def test_legacy_correlations_hand_worked():
    out = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=64)
    assert out["valence_pcc"] == pytest.approx(2 / math.sqrt(2.5))
    assert out["valence_ccc"] == pytest.approx(4 / 3.5)
    # cov ddof=1 over ddof=0 moments: the textbook value times N/(N-1).
    n = len(TRUE_VA)
    text = va_metrics(TRUE_VA, PRED_VA)
    assert out["arousal_pcc"] == pytest.approx(text["arousal_pcc"] * n / (n - 1))
    assert out["arousal_ccc"] == pytest.approx(text["arousal_ccc"] * n / (n - 1))


def test_legacy_rmse_depends_on_batch_size_and_matches_textbook_in_one_batch():
    text = va_metrics(TRUE_VA, PRED_VA)
    b2 = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=2)
    b3 = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=3)
    b4 = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=4)
    b_big = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=1000)
    assert b2["arousal_rmse"] == pytest.approx((math.sqrt(0.02) + math.sqrt(0.185)) / 2)
    assert b3["arousal_rmse"] == pytest.approx((math.sqrt(0.05 / 3) + 0.6) / 2)
    assert b2["arousal_rmse"] != pytest.approx(b3["arousal_rmse"])
    assert b4["arousal_rmse"] == pytest.approx(text["arousal_rmse"])
    assert b_big["valence_rmse"] == pytest.approx(text["valence_rmse"])
    # CAF scripts call nn.MSELoss "RMSE": per-batch MSE, averaged.
    mse2 = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=2, legacy_rmse="batch_mse")
    assert mse2["arousal_rmse"] == pytest.approx((0.02 + 0.185) / 2)


def test_legacy_rmse_on_random_data_differs_with_batch_size():
    rng = np.random.default_rng(3)
    y = rng.uniform(-1, 1, size=(100, 2))
    p = y + rng.normal(0, 0.3, size=(100, 2)) * np.linspace(0.1, 2, 100)[:, None]
    r16 = va_metrics(y, p, legacy=True, batch_size=16)["valence_rmse"]
    r64 = va_metrics(y, p, legacy=True, batch_size=64)["valence_rmse"]
    text = va_metrics(y, p)["valence_rmse"]
    assert r16 != pytest.approx(r64)
    # Mean of per-batch square roots <= square root of the mean (Jensen), with equal batches.
    assert va_metrics(y, p, legacy=True, batch_size=25)["valence_rmse"] <= text + 1e-12


def test_sagr_zero_handling_variants():
    avce = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=4, sagr_variant="avce")
    caf = va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=4, sagr_variant="caf")
    text = va_metrics(TRUE_VA, PRED_VA)
    assert avce["arousal_sagr"] == pytest.approx(0.25)
    assert caf["arousal_sagr"] == pytest.approx(0.5)
    assert text["arousal_sagr"] == pytest.approx(0.5)
    assert avce["valence_sagr"] == caf["valence_sagr"] == pytest.approx(0.75)
    assert metrics.sagr([0.0, 0.0], [0.0, 0.0]) == 1.0
    assert metrics.sagr([0.0, 0.0], [0.0, 0.0], zero_is_miss=True) == 0.0


def test_va_rejects_bad_shapes_and_missing_batch_size():
    with pytest.raises(ValueError):
        va_metrics(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        va_metrics(np.zeros((3, 2)), np.zeros((3, 2)), legacy=True)
    with pytest.raises(ValueError):
        va_metrics(TRUE_VA, PRED_VA, legacy=True, batch_size=4, sagr_variant="nope")


# ------------------------------------------------------------------------ L_AV
def test_torch_correlations_match_numpy():
    rng = np.random.default_rng(4)
    y = rng.uniform(-1, 1, size=(64, 2))
    p = 0.5 * y + rng.normal(0, 0.3, size=(64, 2)) - 0.2
    ty, tp = torch.tensor(y), torch.tensor(p)
    for col in range(2):
        assert float(pcc_torch(tp, ty)[col]) == pytest.approx(metrics.pcc(y[:, col], p[:, col]), abs=1e-6)
        assert float(ccc_torch(tp, ty)[col]) == pytest.approx(metrics.ccc(y[:, col], p[:, col]), abs=1e-6)


def test_av_loss_matches_formula():
    rng = np.random.default_rng(5)
    y = rng.uniform(-1, 1, size=(128, 2))
    p = 0.7 * y + rng.normal(0, 0.2, size=(128, 2))
    m = va_metrics(y, p)
    rmse_mean = (m["valence_rmse"] + m["arousal_rmse"]) / 2
    pcc_mean = (m["valence_pcc"] + m["arousal_pcc"]) / 2
    ccc_mean = (m["valence_ccc"] + m["arousal_ccc"]) / 2
    expected = rmse_mean + ((1 - pcc_mean) + (1 - ccc_mean)) / 2
    got = av_loss(torch.tensor(p, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    assert float(got) == pytest.approx(expected, abs=1e-4)
    got_sum = av_loss(torch.tensor(p), torch.tensor(y), rmse_reduction="sum")
    assert float(got_sum) == pytest.approx(expected + rmse_mean, abs=1e-4)


def test_av_loss_perfect_prediction_is_zero_and_gradients_finite():
    torch.manual_seed(0)
    target = torch.rand(32, 2) * 2 - 1
    perfect = target.clone().requires_grad_(True)
    loss = av_loss(perfect, target)
    assert loss.item() == pytest.approx(0.0, abs=1e-4)
    loss.backward()
    assert torch.isfinite(perfect.grad).all()

    pred = torch.randn(32, 2, requires_grad=True)
    loss = av_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0

    # A constant batch (zero variance) must not produce NaN either.
    const = torch.zeros(8, 2, requires_grad=True)
    loss = av_loss(const, target[:8])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(const.grad).all()
