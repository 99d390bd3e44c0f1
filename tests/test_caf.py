"""CAF (seed 002): grouping, the critic's hinge and Fisher objective, the adaptive margin, bad
batches, and a short training run on fake valence/arousal data. The plumbing (groups move,
resume, encoder.pt) is the method contract's (tests/test_method_contract.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_fold import make_fold_files, write_config
from ferbench.train.trainer import Trainer
from ferbench.config import load_config, stage_settings
from ferbench.data.folds import load_fold
from ferbench.errors import FerbenchError
from ferbench.methods.losses import (adaptive_margin, between_class_variance, caf_pair_distances,
                             contrastive_hinge, emotion_groups, equalise_groups, fisher_critic_loss,
                             legacy_cumulative_threshold, otsu_threshold)
from ferbench.methods import TaskInfo, get_method
from ferbench.methods.base import Batch


def brute_force_split(values: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The split of ``values`` (between two consecutive sorted values) with the largest
    between-class variance: (that variance, upper-class mask)."""
    sorted_values = values.double().sort().values.unique()
    best, best_mask = -1.0, None
    for cut in (sorted_values[:-1] + sorted_values[1:]) / 2:
        mask = values.double() > cut
        var = between_class_variance(values, mask)
        if var > best:
            best, best_mask = var, mask
    return best, best_mask


# -- grouping ---------------------------------------------------------------------------------
def test_otsu_threshold_cuts_a_bimodal_sample_where_brute_force_does() -> None:
    g = torch.Generator().manual_seed(0)
    low = 0.2 + 0.05 * torch.randn(40, generator=g)
    high = 0.8 + 0.05 * torch.randn(25, generator=g)
    values = torch.cat([low, high])[torch.randperm(65, generator=g)]
    t = otsu_threshold(values)
    assert low.max() < t <= high.min()
    _, brute = brute_force_split(values)
    assert torch.equal(values > t, brute)


@pytest.mark.parametrize("seed", range(5))
def test_otsu_split_is_near_the_brute_force_maximum_on_any_sample(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(60, generator=g) ** (1 + seed)   # skewed differently per seed
    best, _ = brute_force_split(values)
    otsu = between_class_variance(values, values > otsu_threshold(values, bins=256))
    assert otsu >= 0.995 * best   # the histogram's quantisation costs at most a little


def test_otsu_of_a_constant_sample_has_no_upper_class() -> None:
    values = torch.full((5,), 0.3)
    assert otsu_threshold(values) == pytest.approx(0.3)
    hard, weak = emotion_groups(torch.full((6, 2), 0.3))
    assert len(hard) == len(weak) == 0


def test_legacy_cumulative_threshold_by_hand() -> None:
    # argmin 1, argmax 2 -> m = 1: (0.2 - 0.5) / (0.2 - 0.5 + 0.9 + 0.1)
    d = torch.tensor([0.2, -0.5, 0.9, 0.1])
    assert float(legacy_cumulative_threshold(d)) == pytest.approx(-0.3 / 0.7)
    # v: argmin 3, argmax 0 -> m = 1, th_v = 1.0 / 2.1; a: argmin 1, argmax 2 -> m = 1, th_a =
    # 0.8 / 2.0; t = sqrt(th_v^2 + th_a^2) + 0.25 = 0.8719 on s = v^2 + a^2 =
    # [1.45, 0.01, 1.45, 0.01, 0.05, 0.02]: hard {0, 2}, weak {1, 3, 4, 5}
    va = torch.tensor([[0.9, 0.8], [0.1, 0.0], [0.8, 0.9], [0.0, 0.1], [0.2, 0.1], [0.1, 0.1]])
    th_v, th_a = legacy_cumulative_threshold(va[:, 0]), legacy_cumulative_threshold(va[:, 1])
    assert float(th_v) == pytest.approx(1.0 / 2.1) and float(th_a) == pytest.approx(0.4)
    hard, weak = emotion_groups(va, "legacy")
    assert hard.tolist() == [0, 2] and weak.tolist() == [1, 3]
    # th_v = 0.9 / 1.6 (m = 0), th_a = 0.1 / 1.1 (m = 1): t = 0.8198 > max s = 0.81, no hard
    # sample, so the fallback: s > 0.65 -> {0, 2}, s < 0.3 -> {1, 3}
    va = torch.tensor([[0.9, 0.0], [0.0, 0.1], [0.0, 0.9], [0.1, 0.1], [0.6, 0.0]])
    assert float(legacy_cumulative_threshold(va[:, 0])) == pytest.approx(0.9 / 1.6)
    assert float(legacy_cumulative_threshold(va[:, 1])) == pytest.approx(0.1 / 1.1)
    hard, weak = emotion_groups(va, "legacy")
    assert hard.tolist() == [0, 2] and weak.tolist() == [1, 3]
    # a single hard sample cannot pair: equalised to nothing
    va = torch.tensor([[0.9, 0.9], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    assert [len(g) for g in emotion_groups(va, "legacy")] == [0, 0]


@pytest.mark.parametrize("grouping", ["otsu", "legacy"])
def test_groups_are_equal_even_disjoint_and_in_batch_order(grouping: str) -> None:
    g = torch.Generator().manual_seed(1)
    non_empty = 0
    for _ in range(50):
        n = int(torch.randint(2, 40, (1,), generator=g))
        va = torch.rand(n, 2, generator=g) * 2 - 1
        hard, weak = emotion_groups(va, grouping)
        assert len(hard) == len(weak) and len(hard) % 2 == 0
        assert not set(hard.tolist()) & set(weak.tolist())
        assert hard.tolist() == sorted(hard.tolist()) and weak.tolist() == sorted(weak.tolist())
        r = va.norm(dim=1)
        if len(hard):
            non_empty += 1
            assert r[hard].min() > r[weak].max()
        if grouping == "otsu" and len(hard):
            # the first of each full Otsu group, in batch order
            t = otsu_threshold(r)
            full_hard, full_weak = (r > t).nonzero().squeeze(1), (r <= t).nonzero().squeeze(1)
            assert torch.equal(hard, full_hard[:len(hard)]) and torch.equal(weak, full_weak[:len(weak)])
    assert non_empty > 25


def test_equalise_and_non_finite_labels() -> None:
    hard, weak = equalise_groups(torch.arange(5), torch.arange(10, 13))
    assert hard.tolist() == [0, 1] and weak.tolist() == [10, 11]
    va = torch.tensor([[0.9, 0.9], [0.0, 0.05], [float("nan"), 0.0], [0.8, 0.95], [0.05, 0.0]])
    hard, weak = emotion_groups(va)
    assert hard.tolist() == [0, 3] and weak.tolist() == [1, 4]


# -- the critic's objective -------------------------------------------------------------------
def test_pairs_hinge_and_fisher_objective_by_hand() -> None:
    h = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    w = torch.tensor([[0.0, 2.0], [0.5, 0.0]])
    d2_pos, d2_neg = caf_pair_distances(h, w)
    # positive (h0, h1), (h1, h0); negative (h0, w1), (h1, w0)
    assert d2_pos.tolist() == [1.0, 1.0] and d2_neg.tolist() == [0.25, 5.0]
    d2 = torch.tensor([0.2, 1.5])
    assert contrastive_hinge(d2, 1.0, 1.0).tolist() == pytest.approx([0.0, -0.5])
    assert contrastive_hinge(d2, -1.0, 1.0).tolist() == pytest.approx([0.8, 0.0])
    lam = torch.tensor(0.3, requires_grad=True)
    f_p, f_q = torch.tensor([0.0, -0.5]), torch.tensor([0.8, 0.0])
    loss, c = fisher_critic_loss(f_p, f_q, lam, rho=0.1)
    # E_P f = -0.25, E_Q f = 0.4; c = 1 - (0.125 / 2 + 0.32 / 2) = 0.7775
    assert float(c) == pytest.approx(0.7775)
    assert float(loss.detach()) == pytest.approx(-(-0.25 - 0.4 + 0.3 * 0.7775 - 0.05 * 0.7775 ** 2))
    loss.backward()
    assert float(lam.grad) == pytest.approx(-0.7775)   # lambda <- lambda + rho * grad = lambda - rho c


def test_adaptive_margin_on_a_known_correlation() -> None:
    # eta = 0.6: -1/2 log(0.64) = 0.22314; log(256 / 4) / 8 = 0.51986
    assert float(adaptive_margin(torch.tensor(0.6), 256, 4.0, 4.0)) == pytest.approx(0.74300, abs=1e-5)
    assert float(adaptive_margin(torch.tensor(0.0), 32, 4.0, 4.0)) == pytest.approx(math.log(8) / 8)
    # |eta| = 1 (infinite Gaussian MI) is clamped to mi_max
    assert float(adaptive_margin(torch.tensor(-1.0), 4, 4.0, 1.0, mi_max=2.5)) == pytest.approx(2.5)


def _caf(**hp) -> torch.nn.Module:
    settings = {"method_name": "caf", "method": hp,
                "train": {"backbone": "smallcnn", "image_size": 16, "lr": 1e-3, "optimizer": "adam",
                          "batch_size": 8}}
    torch.manual_seed(0)
    return get_method("caf")(settings, TaskInfo("va", (), 16))


def test_margins_read_the_negative_pairs_correlation() -> None:
    m = _caf()
    d_hard = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]])
    # pair 0: (h0, w1) with w1 = 2 h0 + 1 (eta 1); pair 1: (h1, w0), eta = -1/sqrt(3) ... by hand:
    d_weak = torch.tensor([[1.0, 0.0, 0.0, 0.0], [3.0, 5.0, 7.0, 9.0]])
    eta1 = float(torch.corrcoef(torch.stack([d_hard[1], d_weak[0]]))[0, 1])
    alpha = m.margins(d_hard, d_weak, batch_size=64)
    conf = math.log(64 / 4) / 8
    assert alpha.tolist() == pytest.approx([2.5 + conf, -0.5 * math.log(1 - eta1 ** 2) + conf], abs=1e-4)
    fixed = _caf(adaptive_margin=False, margin=0.7).margins(d_hard, d_weak, 64)
    assert fixed.tolist() == pytest.approx([0.7, 0.7])


def test_bad_hyperparameters_are_one_line_errors() -> None:
    with pytest.raises(FerbenchError, match="grouping"):
        _caf(grouping="kmeans")
    with pytest.raises(FerbenchError, match="finetune"):
        _caf(finetune="head")


# -- bad batches ------------------------------------------------------------------------------
def _step(m, va: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    optimizers, _ = m.configure_optimizers()
    batch = Batch(positions=np.zeros((len(va), 1), np.int64), images=torch.zeros(0), labels=-torch.ones(len(va)),
                  va=va, views=[x])
    m.train()
    return m.training_step(batch, optimizers)


@pytest.mark.parametrize("adversarial", ["pairs", "legacy"])
def test_a_normal_step_trains_the_critic_and_logs_finite_terms(adversarial: str) -> None:
    m = _caf(adversarial=adversarial)
    critic = [p.detach().clone() for p in m.critic.parameters()]
    va = torch.tensor([[0.9, 0.8]] * 4 + [[0.05, 0.0]] * 4)
    out = _step(m, va, torch.randn(8, 3, 16, 16))
    assert all(torch.isfinite(v) for v in out.values())
    assert float(out["skipped_groups"]) == float(out["skipped_nonfinite"]) == 0
    assert float(out["margin"]) > 0
    if adversarial == "pairs":   # -E_Q f_cont, f_cont of a negative pair in [0, alpha]
        assert -float(out["margin"]) - 1e-6 <= float(out["adv"]) <= 0
    assert any(not torch.equal(a, b) for a, b in zip(critic, m.critic.parameters()))
    assert float(m.fisher_lambda) == pytest.approx(-1e-6 * float(out["constraint"]))


def test_a_batch_without_two_groups_or_with_nan_features_skips_the_critic() -> None:
    m = _caf()
    critic = [p.detach().clone() for p in m.critic.parameters()]
    out = _step(m, torch.full((8, 2), 0.5), torch.randn(8, 3, 16, 16))   # one intensity: no groups
    assert float(out["skipped_groups"]) == 1 and int(m.skipped_groups_total) == 1
    assert all(torch.isfinite(v) for v in out.values()) and float(out["critic"]) == 0
    x = torch.randn(8, 3, 16, 16)
    x[0] = float("nan")                                                   # a NaN image, hard group
    out = _step(m, torch.tensor([[0.9, 0.8]] * 4 + [[0.05, 0.0]] * 4), x)
    assert float(out["skipped_nonfinite"]) == 1 and int(m.skipped_nonfinite_total) == 1
    assert all(torch.isfinite(out[k]) for k in ("critic", "adv", "margin", "constraint", "lambda"))
    assert all(torch.equal(a, b) for a, b in zip(critic, m.critic.parameters()))
    assert m.extra_metrics()["caf_skipped_groups"] == 1


# -- a short run --------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_on_fake_va_data_lowers_the_av_loss(tmp_path: Path, one_thread) -> None:
    make_fold_files(tmp_path, subjects=9, frames=3, n_folds=3, task="va", kind="group_kfold")
    config = write_config(tmp_path, epochs=8, batch_size=16, checkpoint_every=1000, task="va",
                          methods={"caf": {"class": "caf"}})
    settings = stage_settings(load_config(config, validate=False), "fake", "caf", "train", str(config))
    settings["all_subjects"] = False
    data = load_fold(tmp_path / "cache", tmp_path / "folds.parquet", 0, 32, need_labels=True)
    torch.manual_seed(0)
    method = get_method("caf")(settings, TaskInfo("va", (), 32))
    method.setup(data, "train")
    trainer = Trainer(method, data, settings, torch.device("cpu"), 0, None)
    trainer.fit(resume=False)
    rows = [r for r in trainer.log_rows if "av" in r]
    assert rows[-1]["av"] < 0.8 * rows[0]["av"], [round(r["av"], 3) for r in rows]
    assert all(math.isfinite(r[k]) for r in rows for k in ("critic", "adv", "margin", "lambda"))
    assert sum(r["skipped_groups"] for r in rows) < len(rows)   # the critic trained on most batches
    assert {"lr_encoder", "lr_head", "lr_critic"} <= set(rows[0])
