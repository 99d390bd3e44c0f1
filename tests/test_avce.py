"""AVCE (seed 004): sparsemax against hand-computed vectors, autograd and a convex solver; the
similarities, L_AVCE and L_dis against hand-computed values; which networks each pass steps;
every run name of params.yaml builds; a short training on fake VA data lowers the AV loss."""

from __future__ import annotations

import math
from pathlib import Path

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
import torch

from fake_fold import make_fold_files, write_config
from ferbench import cli
from ferbench.config import load_config, stage_settings
from ferbench.methods.losses import (avce_discriminative_loss, avce_infonce_loss, avce_objective, avce_similarity,
                             barlow_twins_loss, sparsemax)
from ferbench.methods import TaskInfo, get_method
from ferbench.methods.avce import AVCE
from ferbench.methods.base import Batch

REPO = Path(__file__).resolve().parents[1]
AVCE_RUNS = ("avce", "avce_f1", "avce_f2", "avce_no_dis", "avce_infonce", "avce_barlow")


# -- sparsemax -------------------------------------------------------------------------------------
def test_sparsemax_on_hand_computed_vectors() -> None:
    z = torch.tensor([[1.0, 0.5, -1.0],     # support {1, 2}: tau = (1.5 - 1) / 2 = 0.25
                      [2.0, 0.0, 0.0],      # support {1}: tau = 1
                      [0.1, 0.2, 0.3],      # all: tau = (0.6 - 1) / 3
                      [0.0, 0.0, 0.0]])     # all: uniform
    want = torch.tensor([[0.75, 0.25, 0.0], [1.0, 0.0, 0.0],
                         [0.1 + 0.4 / 3, 0.2 + 0.4 / 3, 0.3 + 0.4 / 3], [1 / 3, 1 / 3, 1 / 3]])
    p = sparsemax(z)
    torch.testing.assert_close(p, want, rtol=0, atol=1e-6)
    assert (p >= 0).all() and torch.allclose(p.sum(1), torch.ones(4))
    assert (p == 0).sum().item() == 3          # exact zeros: sparse, unlike softmax
    torch.testing.assert_close(sparsemax(z.T, dim=0), want.T)   # any dimension, batched
    big = torch.randn(64, 32, dtype=torch.float64) * 3
    q = sparsemax(big)
    assert (q >= 0).all() and torch.allclose(q.sum(1), torch.ones(64, dtype=torch.float64))
    assert (q == 0).any(1).all()


def test_sparsemax_gradient_is_exact() -> None:
    torch.manual_seed(0)
    z = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sparsemax, (z,), eps=1e-6, atol=1e-8)
    # the Jacobian on the support S: I - 1 1^T / |S| (zero off the support)
    p = sparsemax(z)[0]
    jac = torch.autograd.functional.jacobian(lambda v: sparsemax(v[None])[0], z[0].detach())
    s = (p > 0).to(torch.float64)
    torch.testing.assert_close(jac, torch.diag(s) - torch.outer(s, s) / s.sum())


def test_sparsemax_matches_a_convex_solver() -> None:
    """The authors' definition: argmin_p ||p - z||^2 on the simplex, solved by CVXPY."""
    rng = np.random.default_rng(0)
    z_value = rng.normal(scale=2.0, size=(12, 32))
    p = cp.Variable(32)
    z = cp.Parameter(32)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(p - z)), [p >= 0, cp.sum(p) == 1])
    ref = []
    for row in z_value:
        z.value = row
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        ref.append(p.value)
    ours = sparsemax(torch.from_numpy(z_value)).numpy()
    np.testing.assert_allclose(ours, np.array(ref), rtol=0, atol=1e-5)


# -- similarities, L_AVCE, L_dis, the ablation terms -------------------------------------------------
X = torch.tensor([[1.0, 0.0], [0.3, 0.4], [0.5, 0.0]])
Y = torch.tensor([[-0.5, 0.5], [0.6, 0.8], [-0.5, 0.0]])
# row 0: theta = 3 pi / 4, norms 1 and sqrt(1/2), valence signs differ
# row 1: theta = 0, norms 0.5 and 1, same signs
# row 2: theta = pi (angular part clipped to 1e-6), equal norms, signs differ
R = math.sqrt(0.5)


def test_similarity_f_f1_f2_by_hand() -> None:
    f = torch.tensor([0.25 + 0.75 * R, 1.0 + 0.75 * 0.5, 1e-6 + 0.75])
    torch.testing.assert_close(avce_similarity(X, Y, "f"), f)
    torch.testing.assert_close(avce_similarity(X, Y, "f1"), torch.tensor([-0.5, 0.5, -0.25]))
    torch.testing.assert_close(avce_similarity(X, Y, "f2"), f - torch.tensor([0.5, 0.0, 0.5]))
    torch.testing.assert_close(avce_similarity(X, Y, "f", mu=0.0), torch.tensor([0.25, 1.0, 1e-6]))
    # the authors' code: cos / 2 inside the arccos, angle x 0.25, mu 0.8, 0.1 x 0.5 sign penalty
    code = avce_similarity(X, Y, "f", mu=0.8, polarity=0.05, cos_scale=0.5, angle_scale=0.25)
    angular = [1 - 0.25 * math.acos(-R / 2) / math.pi, 1 - 0.25 * math.acos(0.5) / math.pi,
               1 - 0.25 * math.acos(-0.5) / math.pi]
    want = torch.tensor([angular[0] + 0.8 * R - 0.05, angular[1] + 0.8 * 0.5, angular[2] + 0.8 - 0.05])
    torch.testing.assert_close(code, want)
    # finite gradients at theta = 0 and pi
    x, y = X.clone().requires_grad_(), Y.clone().requires_grad_()
    avce_similarity(x, y, "f2").sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_avce_objective_by_hand() -> None:
    f_pos, f_neg = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    # E_pos f = 1.5, E_neg f = 0.5, E_pos f^2 = 2.5, E_neg f^2 = 0.5
    want = 1.5 - 0.5 * 0.5 - 0.005 / 2 * 2.5 - 0.5 / 2 * 0.5
    assert avce_objective(f_pos, f_neg).item() == pytest.approx(want)
    assert avce_objective(f_pos, f_neg, reduction="sum").item() == pytest.approx(2 * want)
    assert avce_objective(f_pos, f_neg, 1.0, 0.0, 0.0).item() == pytest.approx(1.0)


def test_discriminative_loss_by_hand() -> None:
    v = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    v_a = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    v_n = torch.tensor([[0.0, 1.5], [-1.0, 0.0]])
    # push: [1 - 0.25]_+ = 0.75 and [1 - 16]_+ = 0; hold: 2 (sqrt 2 - 0.8) and (0 - 0.8) + (2 - 0.8)
    push, hold = 0.75 / 2, (2 * (math.sqrt(2) - 0.8) + 0.4) / 2
    total, terms = avce_discriminative_loss(v, v_a, v_n, delta1=1.0, delta2=0.8)
    assert terms["push"].item() == pytest.approx(push) and terms["hold"].item() == pytest.approx(hold)
    assert total.item() == pytest.approx(push + hold)
    total, _ = avce_discriminative_loss(v, v_a, v_n, delta1=1.0, delta2=1.0, hold_weight=0.01)
    assert total.item() == pytest.approx(push + 0.01 * (hold - 2 * 0.2))


def test_infonce_and_barlow_twins_by_hand() -> None:
    sim = lambda a, b: (a * b).sum(1)  # noqa: E731
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y_pos = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y_neg = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # row 0 logits: [1 | 0, 1]; row 1: [2 | 0, 1]
    want = -((1 - math.log(math.e + 1 + math.e)) + (2 - math.log(math.e ** 2 + 1 + math.e))) / 2
    assert avce_infonce_loss(x, y_pos, y_neg, sim).item() == pytest.approx(want)
    a = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(a, a, lambd=0.5, eps=0.0).item() == pytest.approx(0.0, abs=1e-8)   # C = I
    b = a * torch.tensor([1.0, -1.0])                         # dimension 2 anti-correlated
    assert barlow_twins_loss(a, b, lambd=0.5, eps=0.0).item() == pytest.approx(4.0, abs=1e-6)  # (1 + 1)^2


# -- the method --------------------------------------------------------------------------------------
def _method(**hp) -> AVCE:
    settings = {"method_name": "avce", "method": hp,
                "train": {"backbone": "smallcnn", "image_size": 16, "lr": 1e-3, "batch_size": 8}}
    torch.manual_seed(0)
    return AVCE(settings, TaskInfo("va", (), 16))


def _batch(n: int = 8) -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(positions=np.zeros((n, 1), np.int64), images=torch.zeros(n, 1, 3, 16, 16, dtype=torch.uint8),
                 labels=torch.full((n,), -1), va=torch.rand(n, 2, generator=g) * 2 - 1,
                 views=[torch.randn(n, 3, 16, 16, generator=g)])


def test_each_pass_steps_its_own_networks(monkeypatch) -> None:
    m = _method()
    optimizers, _ = m.configure_optimizers()
    assert isinstance(optimizers["main"], torch.optim.Adam) and isinstance(optimizers["heads"], torch.optim.SGD)
    assert [g["name"] for g in optimizers["heads"].param_groups] == ["projection", "dis_head"]
    assert optimizers["heads"].param_groups[0]["lr"] == pytest.approx(0.1)   # 100 x Adam's 1e-3
    assert _method(head_lr=0.01).configure_optimizers()[0]["heads"].param_groups[0]["lr"] == 0.01
    owner = {id(p): name.split(".")[0] for name, p in m.named_parameters()}
    stepped: list[set[str]] = []
    for opt in optimizers.values():
        def record(*args, _step=opt.step, _opt=opt, **kwargs):
            stepped.append({owner[id(p)] for g in _opt.param_groups for p in g["params"] if p.grad is not None})
            return _step(*args, **kwargs)
        monkeypatch.setattr(opt, "step", record)
    out = m.training_step(_batch(), optimizers)
    assert {"loss", "av", "avce", "f_pos", "f_neg", "dis", "push", "hold", "support"} <= set(out)
    pass1, pass2 = stepped[0] | stepped[1], stepped[2] | stepped[3]
    assert pass1 == {"backbone", "compressor", "head", "projection"}
    assert pass2 == {"backbone", "compressor", "dis_head"}


@pytest.mark.parametrize("hp", [{"similarity": "f1"}, {"similarity": "f2"}, {"contrastive": "infonce"},
                                {"contrastive": "barlow"}, {"dis": False}, {"projection_tanh": True},
                                {"fidelity": "code"},
                                {"fidelity": "code", "mu": 0.5}])
def test_variants_train_one_step(hp) -> None:
    m = _method(**hp)
    optimizers, _ = m.configure_optimizers()
    out = m.training_step(_batch(), optimizers)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert ("dis" in out) == m.hp["dis"]
    if not m.hp["dis"]:
        assert all(not p.requires_grad for p in m.dis_head.parameters())
        assert len(optimizers["heads"].param_groups) == 1
    if hp.get("fidelity") == "code":
        assert m.const["mu"] == hp.get("mu", 0.8) and m.const["reduction"] == "sum"
        assert optimizers["main"].defaults["betas"] == (0.5, 0.9)


def test_learning_rate_steps_and_validation() -> None:
    paper, code = _method(), _method(fidelity="code")
    assert [paper.lr_factor(s) for s in (0, 4999, 5000, 24999, 25000, 45000)] == pytest.approx(
        [1, 1, 0.8, 0.8, 0.64, 0.512])
    assert [code.lr_factor(s) for s in (4999, 5000, 10000, 20000, 50000, 100000)] == pytest.approx(
        [1, 0.8, 0.64, 0.512, 0.4096, 0.32768])
    with pytest.raises(Exception, match="similarity"):
        _method(similarity="cosine")
    with pytest.raises(Exception, match="classification"):
        AVCE({"method_name": "avce", "method": {}, "train": {"backbone": "smallcnn", "image_size": 16}},
             TaskInfo("classification", ("a", "b"), 16))


def test_params_yaml_runs_build() -> None:
    config = load_config(REPO / "params.yaml")
    for name in AVCE_RUNS:
        settings = stage_settings(config, "afewva", name, "train")
        cls = get_method(settings["method"].get("class", name))
        assert cls is AVCE
        cls(settings, TaskInfo("va", (), int(settings["train"]["image_size"])))


@pytest.mark.slow
def test_short_training_lowers_the_av_loss(tmp_path: Path, one_thread) -> None:
    make_fold_files(tmp_path, subjects=9, frames=3, n_folds=3, task="va", kind="group_kfold")
    config = write_config(tmp_path, epochs=8, batch_size=12, checkpoint_every=1000, task="va",
                          methods={"m": {"class": "avce"}})
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(config), "--dataset", "fake", "--method", "m", "--fold", "0",
                     "--seed", "0", "--cache", str(tmp_path / "cache"), "--folds", str(tmp_path / "folds.parquet"),
                     "--out", str(out), "--threads", "1", "--device", "cpu", "--no-progress"]) == 0
    log = pd.read_csv(out / "train_log.csv")
    assert {"av", "avce", "dis", "lr_projection", "lr_dis_head"} <= set(log.columns)
    assert log["av"].tail(3).mean() < 0.7 * log["av"].iloc[0]   # noisy per row: the last three
