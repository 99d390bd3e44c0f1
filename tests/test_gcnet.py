"""Seed 003 GCNet: the Hadsell and reconstruction losses against their formulas, the networks'
shapes, what each S/R variant trains on, the (frame, first frame) pairs, and a short run on
synthetic sequences (neutral frame = a subject's base face, expressive frames add a
class-dependent pattern)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fake_fold import write_config
from ferbench import cli
from ferbench.data.augment import Augmenter
from ferbench.data.folds import load_fold
from ferbench.train.trainer import Trainer, seed_everything
from ferbench.errors import FerbenchError
from ferbench.methods.losses import gcnet_reconstruction_loss, hadsell_contrastive_loss, half_squared_error
from ferbench.methods import Batch, TaskInfo, get_method
from ferbench.methods.gcnet import GCNet

CLASSES = ("anger", "happiness", "sadness", "surprise")
VARIANTS = [(False, False), (True, False), (False, True), (True, True)]   # S0R0 S1R0 S0R1 S1R1

pytestmark = pytest.mark.usefixtures("one_thread")


# -- synthetic sequences ------------------------------------------------------------------------
def base_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """A subject's neutral face: shaded background, an ellipse of its own size and brightness,
    two dark eyes."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = 0.5 + rng.uniform(-0.05, 0.05, 2)
    face = ((yy - cy) / rng.uniform(0.38, 0.46)) ** 2 + ((xx - cx) / rng.uniform(0.3, 0.38)) ** 2 < 1
    img = 20 + 30 * yy + face * rng.uniform(50, 80)
    ey = cy - rng.uniform(0.08, 0.14)
    for ex in (cx - 0.14, cx + 0.14):
        img -= 40 * (((yy - ey) / 0.06) ** 2 + ((xx - ex) / 0.08) ** 2 < 1)
    return img  # at most 130: an expression band (+110) never clips, the face stays recoverable


class FakeFold:
    """Rows and noisy uint8 images of a fake fold, written as the cache + folds files
    load_fold reads."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.rows: list[dict] = []
        self.images: list[np.ndarray] = []

    def add(self, img: np.ndarray, **row) -> None:
        self.images.append(np.clip(img + self.rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)[None])
        self.rows.append({"cache_row": len(self.rows), "split": None, "valence": np.nan, "arousal": np.nan, **row})

    def write(self, root: Path, size: int, n_folds: int) -> tuple[Path, Path]:
        table = pd.DataFrame(self.rows)
        table["frame"] = table["frame"].astype("Int64")
        table["fold"] = table["subject"].str[1:].astype(int) % n_folds
        table["target"] = table["emotion"].where(table["emotion"] != "neutral", None)
        return _write_fold_files(root, table, self.images, size, n_folds)


def expressive(base: np.ndarray, c: int, step: int, steps: int) -> np.ndarray:
    """The base face with class c's bright band (horizontally centred, so flips keep it) at
    intensity step / steps."""
    size = len(base)
    band = max(4, size // 3)
    img = base.copy()
    y0 = int(c / (len(CLASSES) - 1) * (size - band))
    img[y0:y0 + band, size // 8:size - size // 8] += 110 * step / steps
    return img


def write_sequences(root: Path, *, size: int = 16, subjects: int = 8, frames: int = 4, n_folds: int = 4,
                    stills: int = 0, sequences: bool = True, seed: int = 0) -> tuple[Path, Path]:
    """Cache + folds files: per subject one sequence per class, frame 0 = the base face
    (unlabelled), frames 1.. add the class's bright band with growing intensity; optional
    stills (no sequence). Fold = subject index % n_folds."""
    fake = FakeFold(seed)
    for s in range(subjects):
        base = base_face(fake.rng, size)
        for c, emotion in enumerate(CLASSES if sequences else ()):
            for f in range(frames):
                fake.add(expressive(base, c, f, frames - 1), sample_id=f"S{s}_{c}_{f}", subject=f"S{s}",
                         sequence=f"S{s}_{c}", frame=f, emotion=emotion if f else None,
                         protocol_sample=f > 0, label=c if f else -1)
        for k in range(stills):
            fake.add(base, sample_id=f"S{s}_still{k}", subject=f"S{s}", sequence=None, frame=None,
                     emotion=CLASSES[k % 4], protocol_sample=True, label=k % 4)
    return fake.write(root, size, n_folds)


def _write_fold_files(root: Path, table: pd.DataFrame, images: list, size: int, n_folds: int) -> tuple[Path, Path]:
    cache = root / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / f"faces_{size}.npy", np.stack(images))
    table[["sample_id", "cache_row"]].to_parquet(cache / "samples.parquet", index=False)
    (cache / "report.json").write_text("{}")  # the completion marker load_fold requires
    table.to_parquet(root / "folds.parquet", index=False)
    (root / "folds.json").write_text(json.dumps({"dataset": "fake", "kind": "kfold", "n_folds": n_folds,
                                                 "classes": list(CLASSES), "task": "classification"}))
    return cache, root / "folds.parquet"


def settings(hp: dict | None = None, size: int = 16, **train) -> dict:
    schedule = {"backbone": "cnn3", "image_size": size, "epochs": 1, "batch_size": 8, "optimizer": "nesterov",
                "lr": 1e-3, "weight_decay": 1e-4, "eval_batch_size": 64, **train}
    return {"stage": "train", "dataset": "fake", "method_name": "gcnet_test", "method": dict(hp or {}),
            "train": schedule}


def build(hp: dict | None = None, size: int = 16, classes=CLASSES, seed: int = 0, moved: bool = True,
          **train) -> GCNet:
    """A GCNet; ``moved`` gives the residual generator's zero-initialised output layer random
    weights, as after some training: at G(X) = X every term but L_Gen,r has zero gradient."""
    torch.manual_seed(seed)
    m = get_method("gcnet")(settings(hp, size, **train), TaskInfo("classification", tuple(classes), size))
    if moved and m.generator.residual:
        with torch.no_grad():
            last = m.generator.decoder.layers[-1][0]
            last.weight.normal_(0, 0.1)
            last.bias.normal_(0, 0.1)
    return m


# -- losses against their formulas --------------------------------------------------------------
def test_hadsell_loss_hand_computed():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0], [0.0, 1.0]])
    # distances d = ||a - b||: 5 (3-4-5 triangle), 0, 1; margin m = 2
    same = torch.tensor([True, True, True])
    # same label: 1/2 d^2 = 12.5, 0, 0.5
    assert torch.allclose(hadsell_contrastive_loss(a, b, same, 2.0, "none"), torch.tensor([12.5, 0.0, 0.5]))
    diff = ~same
    # different labels: 1/2 max(0, m - d)^2 = 1/2 max(0, -3)^2 = 0, 1/2 (2 - 0)^2 = 2, 1/2 (2 - 1)^2 = 0.5
    assert torch.allclose(hadsell_contrastive_loss(a, b, diff, 2.0, "none"), torch.tensor([0.0, 2.0, 0.5]),
                          atol=1e-5)
    mixed = torch.tensor([True, False, False])
    # 12.5, 2, 0.5 -> mean 15 / 3 = 5, sum 15
    assert hadsell_contrastive_loss(a, b, mixed, 2.0).item() == pytest.approx(5.0)
    assert hadsell_contrastive_loss(a, b, mixed, 2.0, "sum").item() == pytest.approx(15.0)


def test_hadsell_loss_at_the_margin():
    a = torch.tensor([[0.0, 0.0]], requires_grad=True)
    b = torch.tensor([[3.0, 4.0]])
    diff = torch.tensor([False])
    # d = 5 = m: max(0, 5 - 5) = 0, no loss and no gradient
    loss = hadsell_contrastive_loss(a, b, diff, 5.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(a.grad == 0)
    # just inside the margin, m = 5.5: 1/2 (0.5)^2 = 0.125; d(loss)/da = -(m - d) (a - b) / d
    # = -0.5 * (-3, -4) / 5 = (0.3, 0.4): descending it moves a away from b
    a.grad = None
    loss = hadsell_contrastive_loss(a, b, diff, 5.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.125)
    assert torch.allclose(a.grad, torch.tensor([[0.3, 0.4]]), atol=1e-6)
    # identical features of a different-label pair: 1/2 m^2 (up to eps) and a finite gradient
    z = torch.zeros(1, 3, requires_grad=True)
    loss = hadsell_contrastive_loss(z, torch.zeros(1, 3), diff, 1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.5, rel=1e-5) and torch.isfinite(z.grad).all()
    with pytest.raises(ValueError):
        hadsell_contrastive_loss(a, b, diff, 0.0)


def test_reconstruction_losses_hand_computed():
    target = torch.zeros(2, 1, 2, 2)
    pred = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 3.0]]]])
    # per image 1/2 sum of squares over pixels: 1/2 * 4 = 2 and 1/2 * 9 = 4.5; batch mean 3.25
    assert torch.allclose(half_squared_error(pred, target, "none"), torch.tensor([2.0, 4.5]))
    assert half_squared_error(pred, target).item() == pytest.approx(3.25)
    x, x_ref = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    generated = pred                      # L_Gen,r   = mean(2, 4.5)        = 3.25
    recon_r = torch.full_like(x, 2.0)     # L_Recon,r = 1/2 * 4 * 2^2       = 8
    recon_i = torch.zeros_like(x)         # L_Recon,i = 1/2 * 4 * (1 - 0)^2 = 2
    total, terms = gcnet_reconstruction_loss(x, x_ref, generated, recon_r, recon_i)
    assert {k: v.item() for k, v in terms.items()} == pytest.approx({"gen": 3.25, "recon_r": 8.0, "recon_i": 2.0})
    assert total.item() == pytest.approx(1 * 3.25 + 0.25 * 8 + 0.25 * 2)   # = 5.75
    total, terms = gcnet_reconstruction_loss(x, x_ref, generated)          # R0: the generator's term only
    assert set(terms) == {"gen"} and total.item() == pytest.approx(3.25)
    # samples without a reference face: the X_r terms average over the others only, L_Recon,i
    # over the whole batch
    total, terms = gcnet_reconstruction_loss(x, x_ref, generated, recon_r, recon_i,
                                             has_ref=torch.tensor([False, True]))
    assert {k: v.item() for k, v in terms.items()} == pytest.approx({"gen": 4.5, "recon_r": 8.0, "recon_i": 2.0})
    _, terms = gcnet_reconstruction_loss(x, x_ref, generated, has_ref=torch.tensor([False, False]))
    assert terms["gen"].item() == 0.0


# -- networks ----------------------------------------------------------------------------------
def test_shapes_for_a_64px_grey_input():
    m = build(size=64)
    assert m.in_channels == 1 and m.hp["channels"] == 1
    m.eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        p = m.pair(x, switches=True)
        assert p["g"].shape == (2, 1, 64, 64)                     # G(X)
        assert m.encode(x).shape == p["zx"].shape == (2, 384)     # En2: (0.5*64)^2*3/2^3
        assert m(x).shape == (2, 384)                             # delta
        assert m.predict(x).shape == (2, len(CLASSES))
        assert m.de2_r(p["zg"], p["sw_g"]).shape == m.de2_i(p["zx"], p["sw_x"]).shape == (2, 1, 64, 64)
    # Table 1's encoder and its mirror (96 -> 64 -> 32 -> 1, unpool before each deconv)
    convs = [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in m.generator.encoder
             if isinstance(c, torch.nn.Conv2d)]
    pools = [c.kernel_size for c in m.generator.encoder if isinstance(c, torch.nn.MaxPool2d)]
    assert convs == [(1, 32, 5), (32, 64, 3), (64, 96, 3)] and pools == [5, 3, 3]
    deconvs = [(s[0].in_channels, s[0].out_channels, s[0].kernel_size[0]) for s in m.generator.decoder.layers]
    assert deconvs == [(96, 64, 3), (64, 32, 3), (32, 1, 5)]
    assert [k for k, _ in m.generator.decoder.steps] == ["unpool", "deconv"] * 3


def test_residual_generator_starts_as_the_identity_and_direct_is_table_1():
    x = torch.rand(3, 1, 32, 32)
    res = build(size=32, moved=False)
    direct = build({"generator_output": "direct"}, size=32)
    res.eval(), direct.eval()
    with torch.no_grad():
        assert torch.equal(res.generate(x), x)                    # zero-initialised change
        assert not torch.allclose(direct.generate(x), x, atol=1e-2)
        assert (direct.generate(x) >= 0).all()                    # Table 1's final BN + ReLU
    # the residual's last deconvolution is linear (a signed change), the direct one ends in BN, ReLU
    assert [type(l).__name__ for l in res.generator.decoder.layers[-1]] == ["ConvTranspose2d"]
    assert [type(l).__name__ for l in direct.generator.decoder.layers[-1]] == \
        ["ConvTranspose2d", "BatchNorm2d", "ReLU"]
    # both variants share the encoder and every other decoder layer's shape
    assert [p.shape for p in res.generator.encoder.parameters()] == \
        [p.shape for p in direct.generator.encoder.parameters()]
    # one generator step moves the residual away from the identity (its output layer has gradient)
    res.train()
    target = x.clone()
    target[:, :, 8:16] = 0.0
    opt = torch.optim.Adam(res.generator.parameters(), lr=1e-2)
    before = half_squared_error(res.generate(x), target).item()
    for _ in range(5):
        opt.zero_grad()
        half_squared_error(res.generate(x), target).backward()
        opt.step()
    assert half_squared_error(res.generate(x), target).item() < before


def test_contrastive_margin_is_scale_free_on_normalised_features():
    norm, raw = build(), build({"contrastive_features": "raw"})
    torch.manual_seed(3)
    zx, zg = torch.rand(5, 384), torch.rand(5, 384)
    same = torch.tensor([True, False, False, True, False])

    def s_loss(m, a, b):
        return hadsell_contrastive_loss(*m.contrastive_space(a, b), same, 1.0)

    # scaling En2's features by 30 changes nothing on the unit sphere...
    assert s_loss(norm, 30 * zx, 30 * zg).item() == pytest.approx(s_loss(norm, zx, zg).item(), rel=1e-5)
    a, b = norm.contrastive_space(zx, zg)
    assert torch.allclose(a.norm(dim=1), torch.ones(5)) and torch.allclose(b.norm(dim=1), torch.ones(5))
    # ...while in the raw space the push term vanishes once distances pass the margin
    far = s_loss(raw, 30 * zx, 30 * zg).item()
    d = (30 * (zx - zg)).norm(dim=1)
    assert (d[~same] > 1).all() and far == pytest.approx((0.5 * d[same] ** 2).sum().item() / 5, rel=1e-5)


def test_cnn_baseline_block_builds_the_grey_cnn3_baseline():
    s = settings({"class": "supervised", "channels": 1}, size=64)
    m = get_method("supervised")(s, TaskInfo("classification", CLASSES, 64))
    m.eval()
    assert m.feature_dim == 384 and m.predict(torch.rand(2, 1, 64, 64)).shape == (2, 4)


def _manual_loss(m: GCNet, x, x_ref, labels, contrastive: bool, reconstruction: bool) -> torch.Tensor:
    """The paper's L from the method's public pieces (eval mode: deterministic)."""
    g = m.generate(x)
    zx, swx = m.encode(x, switches=True)
    zg, swg = m.encode(g, switches=True)
    cls = F.cross_entropy(m.head((zx - zg).abs()), labels)
    sx, sg = (F.normalize(zx, dim=1), F.normalize(zg, dim=1)) \
        if m.hp["contrastive_features"] == "normalized" else (zx, zg)
    contr = hadsell_contrastive_loss(sx, sg, torch.zeros_like(labels, dtype=torch.bool), m.hp["margin"])
    recon = 1.0 * half_squared_error(g, x_ref)
    if reconstruction:
        recon = recon + 0.25 * half_squared_error(m.de2_r(zg, swg), x_ref) \
            + 0.25 * half_squared_error(m.de2_i(zx, swx), x)
    return cls + (1.0 * contr if contrastive else 0.0) + 1.0 * recon


@pytest.mark.parametrize("contrastive,reconstruction", VARIANTS)
def test_variants_switch_exactly_their_terms(contrastive, reconstruction):
    # a large margin keeps the push term active, so S0 really drops something
    m = build({"contrastive": contrastive, "reconstruction": reconstruction, "margin": 1e3})
    m.eval()  # dropout off, BN on running statistics: the same forward twice
    torch.manual_seed(1)
    x, x_ref, labels = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    out = m.training_step(Batch(np.zeros((4, 2), np.int64), torch.zeros(0), labels, torch.zeros(4, 2), [x, x_ref]))
    assert set(out) == {"loss", "cls", "contr", "gen", "dist", "contr_active"} \
        | ({"recon_r", "recon_i"} if reconstruction else set())
    assert out["contr"].item() > 0 and out["contr_active"].item() == 1.0
    expected = out["cls"] + out["gen"] + (out["contr"] if contrastive else 0) \
        + (0.25 * (out["recon_r"] + out["recon_i"]) if reconstruction else 0)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)

    params = [p for p in m.parameters()]
    got = torch.autograd.grad(out["loss"], params, allow_unused=True)
    want = torch.autograd.grad(_manual_loss(m, x, x_ref, labels, contrastive, reconstruction), params,
                               allow_unused=True)
    for (name, _), g, w in zip(m.named_parameters(), got, want):
        assert (g is None) == (w is None), name
        if g is not None:
            assert (g - w).abs().max() <= 1e-4 * w.abs().max() + 1e-6, name   # up to rounding
    if not contrastive:  # the contrastive term does carry a gradient into En2: S0 really leaves it out
        en2 = list(m.backbone.parameters())
        with_s = torch.autograd.grad(_manual_loss(m, x, x_ref, labels, True, reconstruction), en2)
        grad_of = {id(p): g for p, g in zip(params, got)}
        assert any(not torch.allclose(a, grad_of[id(p)]) for a, p in zip(with_s, en2))
    # R0: no De2 at all; R1: both De2 decoders get gradient; every variant trains the generator
    if reconstruction:
        grads = {n: g for (n, _), g in zip(m.named_parameters(), got) if n.startswith(("de2_r.", "de2_i."))}
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    else:
        assert m.de2_r is None and m.de2_i is None
        assert not any(n.startswith("de2_") for n, _ in m.named_parameters())
    assert all(g is not None for (n, _), g in zip(m.named_parameters(), got) if n.startswith("generator."))


def test_variants_start_from_the_same_weights():
    a = build({"contrastive": False, "reconstruction": False}, moved=False).state_dict()
    b = build({"contrastive": True, "reconstruction": True}, moved=False).state_dict()
    assert set(a) < set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reference_pair_label_is_neutral():
    labels = torch.tensor([0, 1, 2, 3])
    assert not build().pair_is_same(labels).any()                       # no neutral class: all "different"
    eight = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
    m = build(classes=eight)
    assert m.pair_is_same(torch.tensor([0, 1, 0, 7])).tolist() == [True, False, True, False]


def test_predict_uses_one_image_only():
    m = build()
    m.eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        logits = m.predict(x)
        expected = m.head((m.encode(x) - m.encode(m.generate(x))).abs())
        alone = m.predict(x[1:2])
    assert logits.shape == (3, len(CLASSES)) and torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(alone, logits[1:2], atol=1e-5)   # no other image (no reference) is needed


def test_bad_hyperparameters_are_one_line_errors():
    with pytest.raises(FerbenchError, match="margin"):
        build({"margin": 0})
    with pytest.raises(FerbenchError, match="contrastive"):
        build({"contrastive": "yes"})
    with pytest.raises(FerbenchError, match="lr_policy"):
        build({"lr_policy": "step"})
    with pytest.raises(FerbenchError, match=r"generator_output: 'skip' \(choose from residual, direct\)"):
        build({"generator_output": "skip"})
    with pytest.raises(FerbenchError, match="contrastive_features"):
        build({"contrastive_features": "cosine"})
    with pytest.raises(FerbenchError, match="mirror"):
        build(backbone="resnet18")
    assert build({"reconstruction": False}, backbone="resnet18").de2_r is None   # R0 needs no mirror
    with pytest.raises(FerbenchError, match="classification"):
        get_method("gcnet")(settings(), TaskInfo("va", (), 16))


def test_optimizer_decoder_lr_and_inv_policy():
    m = build(lr=1e-3)
    m.steps_per_epoch = m.total_steps = 10
    optimizers, (sched,) = m.configure_optimizers()
    opt = optimizers["main"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    base, dec = opt.param_groups
    assert (base["name"], dec["name"]) == ("network", "decoders")
    decoders = {id(p) for d in m.decoders() for p in d.parameters()}
    assert {id(p) for p in dec["params"]} == decoders and not decoders & {id(p) for p in base["params"]}
    assert base["lr"] == pytest.approx(1e-3) and dec["lr"] == pytest.approx(1e-2)
    for _ in range(1000):
        opt.step()
        sched.step()
    # Caffe inv: base * (1 + 1e-4 * 1000)^-0.75 = base * 1.1^-0.75
    assert base["lr"] == pytest.approx(1e-3 * 1.1 ** -0.75) and dec["lr"] == pytest.approx(1e-2 * 1.1 ** -0.75)


# -- data: pairs, augmentation, unusable samples --------------------------------------------------
def test_batches_pair_each_frame_with_its_sequences_first_frame(tmp_path):
    cache, folds = write_sequences(tmp_path, stills=2)
    data = load_fold(cache, folds, 0, 16)
    m = build()
    m.setup(data, "train")
    units = m.sampling_units()
    assert data.folds["sequence"].notna().to_numpy()[units].all()   # stills left out
    assert len(units) == 6 * 4 * 3                                   # 6 training subjects x 4 sequences x 3 frames
    batches = m.epoch_batches(torch.Generator().manual_seed(0), 0)
    assert len(batches) == m.num_batches() and all(b.shape == (8, 2) for b in batches)
    pos = np.concatenate(batches)
    seq, frame = data.folds["sequence"].to_numpy(object), data.folds["frame"].to_numpy()
    assert (seq[pos[:, 0]] == seq[pos[:, 1]]).all() and (frame[pos[:, 1]] == 0).all()
    assert (frame[pos[:, 0]] > 0).all()


def test_pairs_share_one_augmentation(tmp_path):
    m = build()
    aug = Augmenter(m.augment_config(), 1, torch.Generator().manual_seed(0))
    assert aug.config.mean == 0.0 and aug.config.std == 1.0 and aug.config.contrast == 0.0
    img = torch.randint(0, 256, (5, 1, 1, 16, 16), dtype=torch.uint8)
    batch = Batch(np.zeros((5, 2), np.int64), torch.cat([img, img], 1), torch.zeros(5), torch.zeros(5, 2))
    x, x_ref = m.transform(batch, aug, train=True)
    assert torch.equal(x, x_ref)                                       # same crop/rotation/flip/intensity
    assert not torch.allclose(x, img[:, 0].float() / 255)              # and it did augment
    # a user's augment block overrides single keys, the others keep GCNet's values
    cfg = build({"augment": {"flip": 0.0}}).augment_config()
    assert cfg.flip == 0.0 and cfg.std == 1.0 and cfg.ratio == (1.0, 1.0)


def test_samples_without_a_reference_are_counted_and_nothing_usable_fails(tmp_path, caplog):
    cache, folds = write_sequences(tmp_path / "mixed", stills=2)
    data = load_fold(cache, folds, 0, 16)
    m = build()
    with caplog.at_level(logging.WARNING, logger="ferbench.methods.gcnet"):
        m.setup(data, "train")
    # 6 training subjects: 24 sequences of 3 labelled frames + 12 stills (one-frame "sequences")
    assert "24 of 36 training sequences" in caplog.text and "12 of 84 training samples" in caplog.text
    assert m.extra_metrics()["ref_usable_train_samples"] == 72

    cache, folds = write_sequences(tmp_path / "stills", stills=3, sequences=False)
    data = load_fold(cache, folds, 0, 16)
    with pytest.raises(FerbenchError, match="0 of 18 training sequences.*nothing to train on"):
        build().setup(data, "train")


# -- reference faces without an onset frame (the CK+48 re-pack) ------------------------------------
def write_ck48_like(root: Path, *, size: int = 16, subjects: int = 8, neutral_subjects=(), n_folds: int = 4,
                    seed: int = 0) -> tuple[Path, Path]:
    """Cache + folds files laid out like the CK+48 re-pack: per subject one sequence per class
    holding only its last three frames (numbers 15, 16, 17; apex 17), every frame labelled and
    near the peak, no onset frame. Subjects in ``neutral_subjects`` also have one
    neutral-labelled still (their base face), outside the 4-class protocol."""
    fake = FakeFold(seed)
    for s in range(subjects):
        base = base_face(fake.rng, size)
        if s in neutral_subjects:
            fake.add(base, sample_id=f"S{s}_neutral", subject=f"S{s}", sequence=None, frame=None, apex=False,
                     emotion="neutral", protocol_sample=False, label=-1)
        for c, emotion in enumerate(CLASSES):
            for f in (15, 16, 17):
                fake.add(expressive(base, c, f, 17), sample_id=f"S{s}_{c}_{f}", subject=f"S{s}",
                         sequence=f"S{s}_{c}", frame=f, apex=f == 17, emotion=emotion, protocol_sample=True,
                         label=c)
    return fake.write(root, size, n_folds)


def test_reference_faces_onset_then_subject_neutral_then_none():
    from ferbench.data.folds import build_sequence_table
    from ferbench.methods.gcnet import REF_SOURCES, reference_faces

    folds = pd.DataFrame({
        "subject": ["A"] * 4 + ["B"] * 4 + ["C"] * 3,
        #            CK+ original: frames 1..3     CK+48: 15..17 + a neutral still    CK+48, no neutral
        "sequence": ["A_1", "A_1", "A_1", "A_2", "B_1", "B_1", "B_1", None, "C_1", "C_1", "C_1"],
        "frame": pd.array([1, 2, 3, 9, 15, 16, 17, None, 15, 16, 17], dtype="Int64"),
        "apex": [False, False, True, True, False, False, True, False, False, False, True],
        "emotion": ["anger"] * 3 + ["fear"] + ["happiness"] * 3 + ["neutral"] + ["surprise"] * 3,
    })
    ref, source, in_seq = reference_faces(folds, build_sequence_table(folds, np.ones(len(folds), bool)))
    names = [REF_SOURCES[k] for k in source]
    assert names[:3] == ["onset"] * 3 and list(ref[:3]) == [0, 0, 0]
    # A_2 is a one-frame sequence of subject A, who has no neutral image: no reference
    assert names[3] == "none" and ref[3] == 3 and not in_seq[3]
    assert names[4:8] == ["subject_neutral"] * 4 and list(ref[4:8]) == [7] * 4   # B's neutral still
    assert names[8:] == ["none"] * 3 and list(ref[8:]) == [8, 9, 10]             # themselves: never used
    assert not folds["apex"].to_numpy()[ref[source < 2]].any()                     # never an apex frame


def test_ck48_like_sequences_say_so_and_use_the_subjects_neutral_image_or_no_reference(tmp_path, caplog):
    cache, folds = write_ck48_like(tmp_path, neutral_subjects=(1, 2, 3))
    data = load_fold(cache, folds, 0, 16)     # fold 0: subjects 0 and 4 test, 1-3 and 5-7 train
    m = build()
    with caplog.at_level(logging.INFO, logger="ferbench.methods.gcnet"):
        m.setup(data, "train")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "24 of 24 training sequences hold no onset (neutral) frame" in warnings[0]
    assert "neutral-labelled image for 36 samples, none for 36 samples" in warnings[0]
    extra = m.extra_metrics()
    assert (extra["ref_source_onset"], extra["ref_source_subject_neutral"], extra["ref_source_none"]) == (0, 36, 36)
    sid = data.folds["sample_id"].to_numpy(object)
    pairs = np.concatenate(m.epoch_batches(torch.Generator().manual_seed(0), 0))
    for x, r in pairs:
        subject = int(sid[x][1])
        if subject in (1, 2, 3):
            assert sid[r] == f"S{subject}_neutral"       # the subject's neutral face
        else:
            assert r == x                                  # no reference (and never an apex frame)
    # the X_r terms leave the samples without a reference out; L_Cls and L_Recon,i keep them
    batch_pos = np.stack([pairs[:8, 0], pairs[:8, 1]], axis=1)
    has_ref = m._has_ref[batch_pos[:, 0]]
    assert 0 < has_ref.sum() < 8, has_ref
    aug = Augmenter(m.augment_config(), 1, torch.Generator())
    x, x_ref = aug(torch.from_numpy(data.images[data.cache_row[batch_pos.T.ravel()]]), train=False).chunk(2)
    batch = Batch(batch_pos, torch.zeros(0), torch.from_numpy(data.label[batch_pos[:, 0]]), torch.zeros(8, 2),
                  [x, x_ref])
    m.eval()
    with torch.no_grad():
        out = m.training_step(batch)
        gen = half_squared_error(m.generate(x), x_ref, "none")
    assert out["gen"].item() == pytest.approx(gen[torch.from_numpy(has_ref)].mean().item(), rel=1e-5)
    assert extra["ref_test_samples"] == 0     # the test subjects 0 and 4 have no neutral image

    cache, folds = write_ck48_like(tmp_path / "none")
    data = load_fold(cache, folds, 0, 16)
    m = build()
    m.setup(data, "train")
    assert m.extra_metrics()["ref_source_none"] == len(m.sampling_units()) == 6 * 4 * 3


@pytest.mark.slow
def test_without_any_reference_gcnet_still_trains_its_generator(tmp_path):
    """The CK+48 re-pack without neutral images: no X_r term at all, yet a short run moves the
    generator (through L_Cls, S and L_Recon,i) and lowers the classification loss."""
    cache, folds = write_ck48_like(tmp_path, subjects=8)
    data = load_fold(cache, folds, 0, 16)
    s = settings({}, size=16, epochs=6, batch_size=8, optimizer="adam", lr=2e-3)
    seed_everything(0)
    m = get_method("gcnet")(s, TaskInfo("classification", CLASSES, 16))
    m.setup(data, "train")
    generator = {k: v.clone() for k, v in m.generator.state_dict().items()}
    fixed = m.sampling_units()[::2]
    aug = Augmenter(m.augment_config(), 1, torch.Generator())
    x = aug(torch.from_numpy(data.images[data.cache_row[fixed]]), train=False)
    labels = torch.from_numpy(data.label[fixed])

    def cls_loss() -> float:
        m.eval()
        with torch.no_grad():
            return F.cross_entropy(m.head(m(x)), labels).item()

    before = cls_loss()
    Trainer(m, data, s, torch.device("cpu"), seed=0, out=None).fit()
    moved = [k for k, v in m.generator.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, generator[k])]
    assert any(k.startswith("decoder") for k in moved), moved
    assert cls_loss() < before


# -- a short run --------------------------------------------------------------------------------
def _eval_terms(m: GCNet, data, positions: np.ndarray) -> dict[str, float]:
    """Every loss term on fixed pairs, eval mode, no augmentation."""
    aug = Augmenter(m.augment_config(), 1, torch.Generator())
    rows = np.concatenate([data.cache_row[positions], data.cache_row[data.sequence_table().first_of(positions)]])
    x, x_ref = aug(torch.from_numpy(data.images[rows]), train=False).chunk(2)
    labels = torch.from_numpy(data.label[positions])
    was = m.training
    m.eval()
    with torch.no_grad():
        n = len(x)
        out = m.training_step(Batch(np.zeros((n, 2), np.int64), torch.zeros(0), labels, torch.zeros(n, 2), [x, x_ref]))
    m.train(was)
    return {k: v.item() for k, v in out.items() if k not in ("loss", "dist", "contr_active")}


@pytest.mark.slow
def test_short_training_lowers_every_loss_and_the_generator_beats_identity(tmp_path):
    cache, folds = write_sequences(tmp_path, size=16, subjects=12, frames=4)
    data = load_fold(cache, folds, 0, 16)
    s = settings({}, size=16, epochs=10, batch_size=8, optimizer="adam", lr=2e-3)
    seed_everything(0)
    m = get_method("gcnet")(s, TaskInfo("classification", CLASSES, 16))
    m.setup(data, "train")
    fixed = m.sampling_units()[::2]
    before = _eval_terms(m, data, fixed)
    trainer = Trainer(m, data, s, torch.device("cpu"), seed=0, out=None)
    trainer.fit()
    after = _eval_terms(m, data, fixed)
    assert set(before) == {"cls", "contr", "gen", "recon_r", "recon_i"}
    for key in before:
        assert after[key] < before[key], (key, before, after)
    extra = m.extra_metrics()
    assert extra["ref_test_samples"] == len(data.indices["test"]) == 3 * 4 * 3   # subjects 0, 4, 8
    # the generated reference is far closer to the true neutral face than the input itself
    assert extra["gen_ref_mse_test"] < 0.5 * extra["identity_ref_mse_test"], extra


@pytest.mark.slow
def test_cli_pretraining_then_training_from_its_generator_and_en2(tmp_path):
    """The pretraining stage (stand-in for the paper's CASIA-WebFace pretraining): every frame of
    the training subjects, the generator on L_Gen,r and En2 on subject identification; train
    then starts from the generator and En2's convolutions, nothing else."""
    cache, folds = write_sequences(tmp_path, size=16, subjects=8, frames=4)
    config = write_config(tmp_path, size=16, epochs=1, batch_size=8, backbone="cnn3", methods={
        "gcnet_s1r1": {"class": "gcnet", "decoder_lr_mult": 1.0, "pretrain": {"epochs": 20}}})
    common = ["--config", str(config), "--dataset", "fake", "--method", "gcnet_s1r1", "--fold", "0",
              "--seed", "0", "--cache", str(cache), "--folds", str(folds), "--threads", "1", "--no-progress"]
    pre, run = tmp_path / "pre", tmp_path / "run"
    assert cli.main(["pretrain", *common, "--out", str(pre)]) == 0
    metrics = json.loads((pre / "metrics.json").read_text())
    # fold 0 holds subjects 0 and 4: 6 training subjects x 4 sequences x 4 frames, onsets included
    assert metrics["n_train"] == metrics["extra"]["ref_usable_train_samples"] == 6 * 4 * 4
    assert metrics["extra"]["pretrain_subjects"] == 6
    log_rows = pd.read_csv(pre / "train_log.csv")
    for term in ("gen", "identification"):   # logged every few steps: first and last three entries
        first, last = log_rows[term].iloc[:3].mean(), log_rows[term].iloc[-3:].mean()
        assert last < 0.5 * first, (term, log_rows[term].tolist())
    encoder = torch.load(pre / "encoder.pt", weights_only=True)["state"]
    assert {k.split(".")[0] for k in encoder} == {"generator", "backbone"}
    assert all(k.startswith(("generator.", "backbone.body.")) for k in encoder)   # En2's FC starts afresh

    fresh = build({"contrastive": True, "reconstruction": True}, size=16, moved=False)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    fresh.load_pretrained(encoder)
    after = fresh.state_dict()
    for key, value in after.items():
        if key in encoder:
            assert torch.equal(value, encoder[key]), key
        else:  # the classifier, En2's FC and De2 keep their fresh weights
            assert torch.equal(value, before[key]), key
    assert any(not torch.equal(before[k], encoder[k]) for k in encoder if before[k].is_floating_point())

    assert cli.main(["train", *common, "--out", str(run)]) != 0             # the pretraining is required
    assert cli.main(["train", *common, "--out", str(run), "--pretrained", str(pre / "encoder.pt")]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["extra"]["ref_train_samples"] == 6 * 4 * 3                  # protocol samples only


@pytest.mark.parametrize("budget", ["demo", "cpu", "paper"])
def test_gcnet_and_its_baseline_augment_alike_under_every_budget(budget):
    """GCNet's own pipeline replaces a budget's generic augmentation whole (the cpu budget's
    per-image standardisation would put the reconstruction targets off the [0, 1] grey scale
    its losses assume), and cnn_baseline, its fair baseline, gets exactly the same; the
    supervised baseline keeps the budget's."""
    import copy
    import dataclasses

    import yaml

    from ferbench.config import stage_settings

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["budget"] = budget

    def augment(run):
        settings = stage_settings(copy.deepcopy(params), "ckplus", run, "train")
        cls = get_method(settings["method"].get("class") or run)
        method = cls(settings, TaskInfo("classification", ("anger", "happiness"),
                                        int(settings["train"]["image_size"])))
        return dataclasses.asdict(method.augment_config())

    gcnet = augment("gcnet_s1r1")
    assert (gcnet["standardize"], gcnet["mean"], gcnet["std"]) == (False, 0.0, 1.0)
    assert gcnet["rotate"] == GCNet.defaults["augment"]["rotate"]
    assert augment("cnn_baseline") == gcnet
    generic = params["budgets"][budget].get("augmentation") or {}
    supervised = augment("supervised")
    assert all(supervised[k] == (tuple(v) if isinstance(v, list) else v) for k, v in generic.items())
