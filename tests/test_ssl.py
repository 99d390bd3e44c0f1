"""Seed 001 and the SSL references: the losses against their published formulas (hand-computed
values and a brute-force loop), the clip samplers' invariants on a hand-built folds table, the
methods' stages, and a short pretraining that lowers the contrastive loss."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fake_fold import make_fold_files
from ferbench.methods.clip_sampling import ClipSampler, offset_weights
from ferbench.data.folds import build_sequence_table
from ferbench.errors import FerbenchError
from ferbench.methods import Batch, TaskInfo, get_method
from ferbench.methods.ssl_fer import cutmix
from ferbench.methods.face_regions import crop_patches, face_swap, region_mask
from ferbench.methods.ssl_losses import (byol_loss, cosine_momentum, enqueue, moco_loss, momentum_update,
                                 most_similar_negative, nt_xent, nt_xent_pairs, pair_positives)

E = torch.eye(3)


# -- losses ----------------------------------------------------------------------------------------
def test_nt_xent_hand_computed():
    # pairs (e0, e0) and (e1, e1): each anchor's positive has cosine 1, its two negatives cosine 0
    left, right = E[:2], E[:2].clone()
    assert nt_xent_pairs(left, right, 1.0).item() == pytest.approx(math.log(1 + 2 / math.e))
    assert nt_xent_pairs(left, right, 0.5).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)))
    # scale does not matter (cosine similarity); the positive index table pairs i with i + n
    assert nt_xent_pairs(3 * left, right, 0.5).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)))
    assert pair_positives(3).tolist() == [3, 4, 5, 0, 1, 2]


def _brute_force(z, positive, t, fn=None, w=0.0):
    """Per-row loss by the formula, one row at a time in float64."""
    z = F.normalize(z.double(), dim=1)
    out = []
    for i in range(len(z)):
        s = [float(z[i] @ z[k]) / t for k in range(len(z))]
        f = -1 if fn is None else int(fn[i])
        negs = sum(math.exp(s[k]) for k in range(len(z)) if k not in (i, int(positive[i]), f))
        p = s[int(positive[i])]
        loss = -math.log(math.exp(p) / (math.exp(p) + negs))
        if f >= 0 and w > 0:
            loss += w * -math.log(math.exp(s[f]) / (math.exp(s[f]) + negs))
        out.append(loss)
    return torch.tensor(out, dtype=torch.float64)


def test_nt_xent_matches_the_formula_with_and_without_a_false_negative():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 5, generator=g)
    pos = pair_positives(4)
    assert torch.allclose(nt_xent(z, pos, 0.07, reduction="none").double(), _brute_force(z, pos, 0.07), rtol=1e-4)
    fn = torch.tensor([2, -1, 0, 1, 5, 3, -1, 4])
    for w in (0.0, 0.8):
        got = nt_xent(z, pos, 0.3, false_negative=fn, false_negative_weight=w, reduction="none")
        assert torch.allclose(got.double(), _brute_force(z, pos, 0.3, fn, w), rtol=1e-5)


def test_false_negative_is_removed_exactly_and_weighted_as_asked():
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    pos = pair_positives(3)
    fn = torch.tensor([1, -1, -1, -1, -1, -1])          # row 0's negative 1 is a false negative
    removed = nt_xent(z, pos, 0.5, false_negative=fn, reduction="none")
    plain = nt_xent(z, pos, 0.5, reduction="none")
    assert torch.allclose(removed[1:], plain[1:]) and removed[0] < plain[0]
    # row 0 no longer depends on z[1]: move z[1] far and row 0's loss stays
    z2 = z.clone()
    z2[1] = -z[0]
    assert nt_xent(z2, pos, 0.5, false_negative=fn, reduction="none")[0].item() == pytest.approx(removed[0].item())
    # weighted positive: loss(w) - loss(0) = w * -log(e^{s01/t} / (e^{s01/t} + S_0))
    zn = F.normalize(z, dim=1)
    s = zn @ zn.t() / 0.5
    S0 = torch.exp(s[0, [2, 4, 5]]).sum()
    extra = -torch.log(torch.exp(s[0, 1]) / (torch.exp(s[0, 1]) + S0))
    weighted = nt_xent(z, pos, 0.5, false_negative=fn, false_negative_weight=0.8, reduction="none")
    assert (weighted[0] - removed[0]).item() == pytest.approx(0.8 * extra.item(), rel=1e-5)
    assert torch.allclose(weighted[1:], removed[1:])
    with pytest.raises(ValueError, match="false negative is the row itself or its positive"):
        nt_xent(z, pos, 0.5, false_negative=torch.tensor([3, -1, -1, -1, -1, -1]))


def test_most_similar_negative_skips_self_and_positive():
    f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.95, 0.05]])
    pos = torch.tensor([1, 0, 3, 2])
    # row 0: its positive 1 is the closest but excluded -> 3; row 1 -> 3; row 2 (e1) -> 1; row 3 -> 0
    assert most_similar_negative(f, pos).tolist() == [3, 3, 1, 0]
    assert most_similar_negative(f[:2], torch.tensor([1, 0])).tolist() == [-1, -1]


def test_byol_moco_and_the_queue():
    p, z = torch.tensor([[3.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # 2 - 2 cos: cos 1 and 1/sqrt(2); equal to the MSE of the normalised vectors
    assert byol_loss(p, z, reduction="none").tolist() == pytest.approx([0.0, 2 - math.sqrt(2)])
    assert byol_loss(p, z).item() == pytest.approx(
        (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(1).mean().item())
    # q = k = e0, queue [e1, -e0], t = 1: logits [1, 0, -1]
    q = E[:1, :2]
    assert moco_loss(q, q, torch.tensor([[0.0, 1.0], [-1.0, 0.0]]), 1.0).item() == pytest.approx(
        -math.log(math.e / (math.e + 1 + math.exp(-1))))
    queue, ptr = torch.zeros(5, 2), torch.tensor(3)
    enqueue(queue, ptr, torch.tensor([[1.0, 1], [2, 2], [3, 3]]))       # rows 3, 4, then 0
    assert queue[:, 0].tolist() == [3, 0, 0, 1, 2] and int(ptr) == 1


def test_momentum_update_and_schedule():
    online, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [t.detach().clone() for t in target.parameters()]
    momentum_update(online, target, 0.9)
    for o, t, b in zip(online.parameters(), target.parameters(), before):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)


# -- clip sampling ---------------------------------------------------------------------------------
TEST_SUBJECT = "T"


@pytest.fixture(scope="module")
def clips():
    """Clips of 30, 15, 4 and 2 frames (subject A, B, A, B) and a test subject's 30-frame clip;
    rows shuffled so that time order must come from the frame numbers."""
    rows = []
    for seq, subject, n in (("A_long", "A", 30), ("B_mid", "B", 15), ("A_short", "A", 4),
                            ("B_tiny", "B", 2), ("T_long", TEST_SUBJECT, 30)):
        rows += [{"sequence": seq, "subject": subject, "frame": f} for f in range(n)]
    rows.append({"sequence": None, "subject": "A", "frame": None})          # a still
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)
    table["frame"] = table["frame"].astype("Int64")
    mask = (table["subject"] != TEST_SUBJECT).to_numpy()
    return table, mask, build_sequence_table(table, mask, until_apex=False)


def _frames(table, rows):
    return table["frame"].to_numpy(dtype=np.float64, na_value=np.nan)[rows]


def test_timeaug_positive_same_clip_offset_and_nearer_likelier(clips):
    table, mask, seqs = clips
    s = ClipSampler(seqs, time_aug=True, min_offset=2, max_offset=6)
    rows = s.draw(np.repeat(s.anchors, 50), torch.Generator().manual_seed(0))
    assert rows.shape == (len(s.anchors) * 50, 2) and mask[rows].all()
    seq = table["sequence"].to_numpy(object)
    assert (seq[rows[:, 0]] == seq[rows[:, 1]]).all()
    offset = _frames(table, rows[:, 1]) - _frames(table, rows[:, 0])
    assert (np.abs(offset) >= 2).all() and (np.abs(offset) <= 6).all()
    assert (offset > 0).any() and (offset < 0).any()
    # in the middle of the long clip every offset fits both ways: frequencies follow 5:4:3:2:1
    middle = (seq[rows[:, 0]] == "A_long") & (np.abs(_frames(table, rows[:, 0]) - 15) <= 5)
    freq = np.bincount(np.abs(offset[middle]).astype(int), minlength=7)[2:] / middle.sum()
    assert np.allclose(freq, offset_weights(2, 6), atol=0.04), freq
    # B_tiny (2 frames) has no frame 2 away: skipped; A_short's frames 0..3 all have one
    assert set(seq[s.anchors]) == {"A_long", "B_mid", "A_short"}
    assert s.usability.usable_clips == 3 and s.usability.clips == 4
    assert "1 shorter than 3 frames" in s.usability.line()


def test_hardneg_far_enough_with_its_own_positive(clips):
    table, mask, seqs = clips
    s = ClipSampler(seqs, time_aug=True, hard_neg=True, min_offset=2, max_offset=6, interval=12)
    assert s.views == 4
    rows = s.draw(np.repeat(s.anchors, 20), torch.Generator().manual_seed(1))
    assert mask[rows].all()
    seq, f = table["sequence"].to_numpy(object), lambda j: _frames(table, rows[:, j])
    assert all((seq[rows[:, j]] == seq[rows[:, 0]]).all() for j in range(1, 4))
    assert (np.abs(f(2) - f(0)) >= 12).all()
    assert ((np.abs(f(3) - f(2)) >= 2) & (np.abs(f(3) - f(2)) <= 6)).all()
    assert (f(2) < f(0)).any() and (f(2) > f(0)).any()
    # only the 30- and 15-frame clips serve; in B_mid (15 frames) only frames 0-2 and 12-14 can anchor
    assert set(seq[s.anchors]) == {"A_long", "B_mid"}
    mid = _frames(table, s.anchors[seq[s.anchors] == "B_mid"])
    assert sorted(mid) == [0, 1, 2, 12, 13, 14]
    assert s.usability.line() == ("ssl clips: 2 of 4 clips usable (1 shorter than 3 frames (TimeAug offset 2), "
                                  "1 shorter than 13 frames (HardNeg interval 12)); 36 of 51 frames can anchor")
    # without TimeAug the positive is the anchor itself (two augmentations of one frame)
    plain = ClipSampler(seqs, time_aug=False, hard_neg=True, interval=12).draw(s.anchors[:5], torch.Generator())
    assert (plain[:, 0] == plain[:, 1]).all() and (plain[:, 2] == plain[:, 3]).all()


def test_nothing_usable_is_an_error(clips):
    _, _, seqs = clips
    with pytest.raises(FerbenchError, match="no usable clip frame: ssl clips: 0 of 4"):
        ClipSampler(seqs, time_aug=True, hard_neg=True, min_offset=2, max_offset=6, interval=40)


# -- the methods -----------------------------------------------------------------------------------
def _settings(name, method=None, dataset="ckplus", epochs=4, batch_size=8):
    return {"dataset": dataset, "method_name": f"{name}_test", "stage": "pretrain",
            "train": {"backbone": "smallcnn", "image_size": 16, "epochs": epochs,
                      "batch_size": batch_size, "lr": 0.003, "optimizer": "adam"},
            "method": {"class": name, "backbone_options": {"width": 4}, "proj_hidden_dim": 32,
                       **(method or {})}}


TASK = TaskInfo("classification", ("anger", "happiness"), 16)


def _method(name, method=None, **kw):
    torch.manual_seed(0)
    return get_method(name)(_settings(name, method, **kw), TASK)


def test_ssl_fer_batches_and_skipped_clips_logged(clips, caplog):
    table, mask, seqs = clips
    m = _method("ssl_fer", {"hard_neg": True, "hard_neg_interval": 12})
    with caplog.at_level(logging.INFO, logger="ferbench.methods.ssl_fer"):
        m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0), "pretrain")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "2 of 4 clips usable" in warned[0]
    assert m.num_batches() == 36 // 8
    batches = m.epoch_batches(torch.Generator().manual_seed(0), 0)
    assert len(batches) == 4 and all(b.shape == (8, 4) for b in batches)
    assert len(np.unique(np.concatenate(batches)[:, 0])) == 32          # one pass over the anchors
    assert m.extra_metrics() == {"clips": 4, "usable_clips": 2, "anchor_frames": 36}


def test_pretraining_dataset_settings_and_stages(clips):
    table, mask, _ = clips
    cls = get_method("ssl_fer")
    own, cross = _settings("ssl_fer"), _settings("ssl_fer", {"pretrain_dataset": "ckplus"}, dataset="affectnet")
    assert cls.pretrain_source(own) == "ckplus" and cls.pretrain_data_depends_on_fold(own)
    assert cls.pretrain_source(cross) == "ckplus" and not cls.pretrain_data_depends_on_fold(cross)
    assert cls.pretrain_identity(cross) == cls.pretrain_identity(_settings("ssl_fer", {"finetune": "head"}))
    with pytest.raises(FerbenchError, match=r"pretrain_dataset is 'ckplus'.*--dataset ckplus"):
        get_method("ssl_fer")(cross, TASK).setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0), "pretrain")
    with pytest.raises(FerbenchError, match="hard_neg_interval: must be >= time_offsets"):
        _method("ssl_fer", {"hard_neg": True, "hard_neg_interval": 1})
    m = _method("byol")
    m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0), "train")
    trainable = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"backbone", "head"}                    # projector, predictor, targets frozen
    assert set(m.encoder_modules()) == {"backbone"}


def test_byol_target_follows_the_ema_and_moco_fills_its_queue(clips):
    table, mask, _ = clips
    data = SimpleNamespace(folds=table, subject_mask=mask, fold=0)
    m = _method("byol")
    m.setup(data, "pretrain")
    m.total_steps = 10
    for p in m.backbone.parameters():
        p.data.add_(1.0)
    before = [t.clone() for t in m.momentum_backbone.parameters()]
    m.on_step_end(5)
    tau = cosine_momentum(5, 10, 0.996)
    for o, t, b in zip(m.backbone.parameters(), m.momentum_backbone.parameters(), before):
        assert torch.allclose(t, tau * b + (1 - tau) * o)
    moco = _method("mocov2", {"queue_size": 12})
    moco.setup(data, "pretrain")
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    batch = Batch(positions=np.zeros((4, 2), np.int64), images=torch.zeros(4, 2, 3, 16, 16, dtype=torch.uint8),
                  labels=torch.full((4,), -1), va=torch.zeros(4, 2), views=views)
    old = moco.queue.clone()
    out = moco.pretraining_step(batch)
    out["loss"].backward()
    assert int(moco.queue_ptr) == 4 and torch.equal(moco.queue[4:], old[4:]) and not torch.equal(moco.queue[:4], old[:4])


def test_cutmix_pastes_one_rectangle_from_another_sample():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 8, 8).clone()
    out = cutmix(x, 1.0, (0.25, 0.25), torch.Generator().manual_seed(0))
    for i in range(4):
        changed = out[i] != x[i]
        assert changed.sum() == 2 * 16                        # a 4x4 square on both channels
        assert len(out[i][changed].unique()) == 1 and out[i][changed][0] != i
    assert torch.equal(cutmix(x, 0.0, (0.25, 0.25), torch.Generator()), x)


# -- a short pretraining lowers the contrastive loss ---------------------------------------------
@pytest.mark.slow
def test_short_pretraining_lowers_the_contrastive_loss(tmp_path, one_thread):
    from ferbench.data.augment import Augmenter, AugmentConfig
    from ferbench.data.folds import load_fold
    from ferbench.train.trainer import Trainer

    cache, folds = make_fold_files(tmp_path, size=16, subjects=6, frames=8)
    data = load_fold(cache, folds, 0, 16)
    settings = _settings("ssl_fer", {"time_offsets": [1, 2], "hard_neg": True, "hard_neg_interval": 4,
                                     "temperature": 0.2}, dataset="fake", epochs=12, batch_size=32)
    torch.manual_seed(0)
    m = get_method("ssl_fer")(settings, TaskInfo(data.task, tuple(data.classes), 16))
    m.setup(data, "pretrain")
    assert data.subject_mask[m.sampler.positions_used()].all()
    fixed = m.sampler.draw(m.sampler.anchors[:64], torch.Generator().manual_seed(123))
    aug = Augmenter(AugmentConfig(), 3, torch.Generator().manual_seed(0))
    images = torch.from_numpy(np.ascontiguousarray(data.images[data.cache_row[fixed]]))

    def loss() -> float:
        m.eval()
        with torch.no_grad():
            z = [m.project(aug(images[:, j], train=False)) for j in range(4)]
        m.train()
        return nt_xent_pairs(torch.cat([z[0], z[2]]), torch.cat([z[1], z[3]]), 0.2).item()

    before = loss()
    Trainer(m, data, settings, torch.device("cpu"), seed=0, out=None).fit()
    after = loss()
    # same-class clips of other subjects look alike (one bar per class): the loss cannot go far
    assert after < 0.9 * before, (before, after)


# -- FaceSwap and MaskFN -------------------------------------------------------------------------
def test_face_regions_mask_swap_and_patches():
    mask = region_mask([[0.25, 0.5, 0.25, 0.75]], 16, 16, feather=0.0)
    assert mask.shape == (1, 1, 16, 16) and mask.sum() == 4 * 8 and mask[0, 0, 4, 4] == 1 and mask[0, 0, 0, 0] == 0
    soft = region_mask([[0.25, 0.5, 0.25, 0.75]], 16, 16, feather=0.05)
    assert 0 < soft[0, 0, 3, 8] < 1 and soft[0, 0, 15, 0] < 1e-3
    base = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    # colour correction: a uniformly darker copy of the base comes back as the base itself
    assert torch.allclose(face_swap(base, 0.5 * base, torch.ones(1, 1, 16, 16)), base, atol=1e-5)
    src = torch.zeros_like(base) + 0.3
    out = face_swap(base, src, mask)
    assert torch.equal(out[..., mask[0, 0] == 0], base[..., mask[0, 0] == 0])
    x = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    patch = crop_patches(x, [0.0, 1.0, 0.5, 1.0], 8)       # the right half, columns 8..15
    assert patch.shape == (1, 1, 8, 8) and 8 <= patch.min() and patch.max() <= 15


def _constant_batch(m, table, rows):
    """A pretraining batch whose images are constant per subject (value 40 + 40 * subject code)."""
    subject = m._subject[rows[:, 0]]
    images = torch.from_numpy(40 + 40 * subject).to(torch.uint8).view(-1, 1, 1, 1, 1)
    images = images.expand(len(rows), rows.shape[1], 3, 16, 16).clone()
    return Batch(positions=rows, images=images, labels=torch.full((len(rows),), -1), va=torch.zeros(len(rows), 2))


def test_face_swap_pastes_the_positive_on_another_subject(clips):
    table, mask, _ = clips
    m = _method("ssl_fer", {"face_swap": 1.0, "face_swap_feather": 0.0})
    m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0), "pretrain")
    seq = table["sequence"].to_numpy(object)[m.sampler.anchors]
    anchors = np.r_[m.sampler.anchors[seq == "A_long"][:4], m.sampler.anchors[seq == "B_mid"][:4]]
    rows = m.sampler.draw(anchors, torch.Generator().manual_seed(0))
    batch = _constant_batch(m, table, rows)
    stripes = torch.tensor([-20, 20] * 8, dtype=torch.int16).view(1, 1, 1, 16)
    batch.images[:, 1] = (batch.images[:, 1].to(torch.int16) + stripes).to(torch.uint8)  # the expression
    out = m.swap_positives(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], batch.images[:, 0])                       # anchors untouched
    own = batch.images[:, 0, 0, 0, 0]
    corner = out[:, 1, 0, 0, 0]
    assert (corner != own).all() and (out[:, 1, :, 0:2, :] == corner.view(-1, 1, 1, 1)).all()
    # the eyes/nose/mouth region keeps the positive's stripes (colour-corrected to the donor)
    nose = out[:, 1, 0, 10, 6:10].float()
    assert (nose[:, 1] - nose[:, 0] > 5).all() and (nose[:, 3] - nose[:, 2] > 5).all()


def test_mask_fn_removes_the_most_similar_negative_and_weights_it(clips, monkeypatch):
    table, mask, _ = clips
    m = _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": "random", "mask_fn_weight": 0.8, "temperature": 0.5})
    assert not any(p.requires_grad for p in m.mask_encoder.parameters())
    m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0), "pretrain")
    m.train()
    assert not m.mask_encoder.training
    views = [torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(j)) for j in range(2)]
    desc = [torch.randn(4, 6, generator=torch.Generator().manual_seed(7 + j)) for j in range(2)]
    monkeypatch.setattr(m, "part_descriptors", lambda v, boxes=None: desc)
    batch = Batch(positions=np.zeros((4, 2), np.int64), images=torch.zeros(4, 2, 3, 16, 16, dtype=torch.uint8),
                  labels=torch.full((4,), -1), va=torch.zeros(4, 2), views=views + views)
    got = m.pretraining_step(batch)["loss"]
    z = m.project(torch.cat(views))
    fn = most_similar_negative(torch.cat(desc), pair_positives(4))
    assert (fn >= 0).all()
    expected = nt_xent(z, pair_positives(4), 0.5, false_negative=fn, false_negative_weight=0.8)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert got.item() != pytest.approx(nt_xent(z, pair_positives(4), 0.5).item(), rel=1e-3)


@pytest.mark.slow
def test_cli_pretrain_all_switches_then_fine_tune(tmp_path, one_thread):
    import json

    from fake_fold import write_config
    from ferbench import cli

    cache, folds = make_fold_files(tmp_path, size=16, subjects=6, frames=8)
    small = {"backbone_options": {"width": 4}, "proj_hidden_dim": 32, "pretrain": {"epochs": 2}}
    simclr_pre = tmp_path / "simclr"
    config = write_config(tmp_path, size=16, epochs=1, batch_size=8, methods={
        "simclr": {"class": "simclr", **small},
        "ssl_all": {"class": "ssl_fer", "hard_neg": True, "face_swap": 0.8, "mask_fn": True,
                    "mask_fn_encoder": str(simclr_pre / "encoder.pt"),    # as the workflow resolves it
                    "time_offsets": [1, 2], "hard_neg_interval": 4, **small}})
    common = ["--config", str(config), "--dataset", "fake", "--fold", "0",
              "--seed", "0", "--cache", str(cache), "--folds", str(folds), "--no-progress"]
    assert cli.main(["pretrain", *common, "--method", "simclr", "--out", str(simclr_pre)]) == 0
    common += ["--method", "ssl_all"]
    pre, run = tmp_path / "pre", tmp_path / "run"
    assert cli.main(["pretrain", *common, "--out", str(pre)]) == 0
    extra = json.loads((pre / "metrics.json").read_text())["extra"]
    assert extra["usable_clips"] == extra["clips"] == 16
    assert cli.main(["train", *common, "--out", str(run), "--pretrained", str(pre / "encoder.pt")]) == 0
    assert "accuracy" in json.loads((run / "metrics.json").read_text())["metrics"]


# -- MaskFN's frozen patch encoder -----------------------------------------------------------------
def _encoder_file(path, m, subjects, dataset="ckplus"):
    """An encoder.pt as `ferbench pretrain` writes it, of method ``m``'s backbone."""
    torch.save({"method": "simclr", "class": "simclr", "backbone": "smallcnn", "in_channels": 3,
                "image_size": 16, "state": m.encoder_state_dict(),
                "provenance": {"dataset": dataset, "fold": None, "all_subjects": True,
                               "subjects": [[dataset, s] for s in subjects]}}, path)
    return path


def test_mask_fn_encoder_default_is_simclr_loaded_random_only_when_asked(clips, tmp_path, caplog):
    table, mask, _ = clips
    data = SimpleNamespace(folds=table, subject_mask=mask, fold=0)
    cls = get_method("ssl_fer")
    # the default names our SimCLR run: the workflow resolves it (an input of the pretraining)
    assert cls.all_defaults()["mask_fn_encoder"] == "simclr"
    assert cls.encoder_inputs(_settings("ssl_fer", {"mask_fn": True})) == {"mask_fn_encoder": "simclr"}
    assert cls.encoder_inputs(_settings("ssl_fer", {"mask_fn": False})) == {}
    assert cls.encoder_inputs(_settings("ssl_fer", {"mask_fn": True, "mask_fn_encoder": "random"})) == {}
    with pytest.raises(FerbenchError, match=r"mask_fn_encoder: 'simclr' names a run; the workflow resolves"):
        _method("ssl_fer", {"mask_fn": True}).setup(data, "pretrain")
    # a named encoder.pt: the frozen network carries its (trained, here perturbed) weights
    torch.manual_seed(5)
    simclr = get_method("simclr")(_settings("simclr"), TASK)
    with torch.no_grad():
        for p in simclr.backbone.parameters():
            p.add_(0.5)
    path = _encoder_file(tmp_path / "encoder.pt", simclr, ["A", "B"])
    m = _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": str(path)})
    fresh = {k: v.clone() for k, v in m.mask_encoder.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="ferbench.methods.ssl_fer"):
        m.setup(data, "pretrain")
    loaded = m.mask_encoder.state_dict()
    for key, value in simclr.backbone.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert any(not torch.equal(loaded[k], fresh[k]) for k in fresh)   # not the random init
    assert not any(p.requires_grad for p in m.mask_encoder.parameters())
    assert any("frozen patch encoder loaded from" in r.getMessage() for r in caplog.records)
    # random: only when asked, and said so in one warning line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ferbench.methods.ssl_fer"):
        _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": "random"}).setup(data, "pretrain")
    lines = [r.getMessage() for r in caplog.records if "randomly initialised" in r.getMessage()]
    assert len(lines) == 1 and "mask_fn_encoder: random" in lines[0] and caplog.records[-1].levelno == logging.WARNING
    with pytest.raises(FerbenchError, match="mask_fn_encoder: None is NoneType, expected a string"):
        _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": None})


def test_mask_fn_encoder_that_saw_other_subjects_is_refused(clips, tmp_path):
    """Provenance: the pretraining's encoder.pt records only its own subjects, so a patch encoder
    that saw another (e.g. the test subject T) would slip past train's leak check: refused."""
    table, mask, _ = clips
    data = SimpleNamespace(folds=table, subject_mask=mask, fold=0)
    m = _method("simclr")
    leaky = _encoder_file(tmp_path / "leaky.pt", m, ["A", "B", TEST_SUBJECT])
    with pytest.raises(FerbenchError, match=r"leaky\.pt: MaskFN's patch encoder saw 1 subject\(s\) .*ckplus/T"):
        _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": str(leaky)}).setup(data, "pretrain")
    other = _encoder_file(tmp_path / "other.pt", m, ["A"], dataset="oulu")
    with pytest.raises(FerbenchError, match="oulu/A"):
        _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": str(other)}).setup(data, "pretrain")
    subset = _encoder_file(tmp_path / "subset.pt", m, ["A"])
    _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": str(subset)}).setup(data, "pretrain")
    torch.save({"backbone": "smallcnn", "state": m.encoder_state_dict()}, tmp_path / "bare.pt")
    with pytest.raises(FerbenchError, match="bare.pt: encoder records no provenance"):
        _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": str(tmp_path / "bare.pt")}).setup(data, "pretrain")
    with pytest.raises(FerbenchError, match="missing.pt: MaskFN patch encoder does not exist"):
        _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": str(tmp_path / "missing.pt")}).setup(data, "pretrain")


# -- pretraining augmentation: hue/saturation jitter and Gaussian blur ---------------------------
def _laplacian_variance(x):
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k).flatten(1).var(dim=1).view(x.shape[0], -1).mean(dim=1)


def test_blur_is_v2_gaussian_blur_per_sample_and_lowers_the_laplacian_variance():
    import torchvision.transforms.v2.functional as TF

    from ferbench.data.augment import gaussian_blur

    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0)).expand(4, -1, -1, -1).contiguous()
    sigma = torch.tensor([0.0, 0.5, 1.0, 2.0])                          # one image, four sigmas
    out = gaussian_blur(x, sigma, 3)
    assert torch.equal(out[0], x[0])                                     # sigma 0: untouched
    for i in range(1, 4):
        ref = TF.gaussian_blur(x[i], [3, 3], [float(sigma[i])] * 2)
        assert torch.allclose(out[i], ref, atol=1e-5), i
    lap = _laplacian_variance(out)
    assert lap[0] == pytest.approx(_laplacian_variance(x)[0].item())
    # fewer edges (a 3-tap kernel flattens towards a box as sigma grows, so not monotone past 1)
    assert (lap[1:] < 0.6 * lap[0]).all() and lap[2] < lap[1]


def test_hue_and_saturation_are_v2s_per_sample_and_leave_grey_images_alone(caplog):
    import torchvision.transforms.v2.functional as TF

    from ferbench.data.augment import AugmentConfig, Augmenter, adjust_hue, adjust_saturation

    x = torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    hue = torch.tensor([0.0, 0.1, -0.2, 0.5, -0.35])
    sat = torch.tensor([1.0, 0.6, 1.4, 0.0, 1.2])
    got_h, got_s = adjust_hue(x, hue), adjust_saturation(x, sat)
    for i in range(5):
        assert torch.allclose(got_h[i], TF.adjust_hue(x[i], float(hue[i])), atol=1e-4), i
        assert torch.allclose(got_s[i], TF.adjust_saturation(x[i], float(sat[i])), atol=1e-5), i
    assert not torch.allclose(got_h[1], x[1], atol=1e-2)                   # the hue really moved
    grey = x[:, :1].expand(-1, 3, -1, -1)                               # R = G = B
    assert torch.allclose(adjust_hue(adjust_saturation(grey, sat), hue), grey, atol=1e-4)  # v2 luma sums to 0.9999
    # the Augmenter: colour inputs get them; grey (1-channel) inputs skip them, said once, and
    # draw the same parameters as a configuration without them
    jitter = {"saturation": 0.4, "hue": 0.2, "brightness": 0.0, "contrast": 0.0, "rotate": 0.0,
              "scale": (1.0, 1.0), "ratio": (1.0, 1.0), "flip": 0.0}
    images = (x * 255).to(torch.uint8)
    colour = Augmenter(AugmentConfig(**jitter), 3, torch.Generator().manual_seed(0))
    assert not torch.allclose(colour(images), colour(images, train=False), atol=1e-2)
    with caplog.at_level(logging.WARNING, logger="ferbench.data.augment"):
        mono = Augmenter(AugmentConfig(**jitter), 1, torch.Generator().manual_seed(0))
    assert [r.getMessage() for r in caplog.records] == [
        "augment: hue/saturation jitter skipped: the inputs are grey (1 channel)"]
    plain = Augmenter(AugmentConfig(**{**jitter, "saturation": 0.0, "hue": 0.0}), 1, torch.Generator().manual_seed(0))
    assert torch.allclose(mono(images), mono(images, train=False), atol=1e-6)  # grey: unchanged
    a, b = mono.sample(6), plain.sample(6)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("scale_x", "shift_x", "angle", "brightness"))


def test_ssl_pretraining_augmentation_is_the_authors_list():
    from ferbench.data.augment import Augmenter

    m = _method("simclr")
    m.stage = "pretrain"
    c = m.augment_config()
    assert (c.brightness, c.contrast, c.saturation, c.hue, c.jitter_p) == (0.4, 0.4, 0.4, 0.2, 0.8)
    assert (c.blur, c.blur_kernel, c.blur_sigma) == (0.5, 3, (0.1, 2.0))
    p = Augmenter(c, 3, torch.Generator().manual_seed(0)).sample(4000)
    jittered = (p.brightness != 1) | (p.hue != 0)
    assert jittered.float().mean().item() == pytest.approx(0.8, abs=0.03)
    assert (p.blur_sigma > 0).float().mean().item() == pytest.approx(0.5, abs=0.03)
    on = p.blur_sigma[p.blur_sigma > 0]
    assert 0.1 <= on.min() and on.max() <= 2.0
    m.stage = "train"
    assert m.augment_config().blur == 0.0 and m.augment_config().hue == 0.0   # fine-tuning: as before


# -- FaceSwap / MaskFN regions from landmarks ------------------------------------------------------
def _template(dx=0.0, dy=0.0, scale=1.0):
    """68 iBUG points (crop fractions) of a schematic face, moved by (dx, dy) and scaled about
    the centre: brows at y 0.3, eyes at 0.38, nose 0.4-0.6 on the midline, mouth round (0.5, 0.75)."""
    pts = np.zeros((68, 2))
    pts[0:17] = np.c_[np.linspace(0.15, 0.85, 17), 0.5 + 0.35 * np.sin(np.linspace(0, np.pi, 17))]
    pts[17:22] = np.c_[np.linspace(0.25, 0.45, 5), np.full(5, 0.30)]
    pts[22:27] = np.c_[np.linspace(0.55, 0.75, 5), np.full(5, 0.30)]
    pts[27:36] = np.c_[np.full(9, 0.5), np.linspace(0.40, 0.60, 9)]
    pts[36:42] = np.c_[np.linspace(0.28, 0.42, 6), np.full(6, 0.38)]
    pts[42:48] = np.c_[np.linspace(0.58, 0.72, 6), np.full(6, 0.38)]
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts[48:68] = np.c_[0.5 + 0.12 * np.cos(a), 0.75 + 0.04 * np.sin(a)]
    return ((pts - 0.5) * scale + 0.5 + [dx, dy]).astype(np.float32)


def test_landmark_regions_patches_and_alignment():
    from ferbench.methods.face_regions import box_masks, crop_boxes, landmark_boxes, similarity_theta, warp

    pts = torch.from_numpy(np.stack([_template(), _template(0.1, 0.05)]))
    mouth = landmark_boxes(pts, "mouth")
    pad = 0.15 * 0.24
    assert torch.allclose(mouth[0], torch.tensor([0.71 - pad, 0.79 + pad, 0.38 - pad, 0.62 + pad]), atol=1e-3)
    assert torch.allclose(mouth[1] - mouth[0], torch.tensor([0.05, 0.05, 0.1, 0.1]), atol=1e-3)
    nan = torch.full((1, 68, 2), float("nan"))
    assert torch.isnan(landmark_boxes(nan, "eyes")).all()
    mask = box_masks(torch.tensor([[[0.25, 0.5, 0.25, 0.75]]]), 16, 16, feather=0.0)
    assert mask.sum() == 4 * 8 and mask[0, 0, 4, 4] == 1 and mask[0, 0, 3, 4] == 0
    # each image's own box: a ramp's right half is columns 8..15
    x = torch.arange(16.0).view(1, 1, 1, 16).expand(2, 1, 16, 16)
    patch = crop_boxes(x, torch.tensor([[0.0, 1.0, 0.5, 1.0], [0.0, 1.0, 0.0, 0.5]]), 8)
    assert 8 <= patch[0].min() and patch[0].max() <= 15 and patch[1].max() <= 7.5
    # Procrustes: warping the image of points `moving` puts them on `fixed` (shift and scale)
    img = torch.zeros(1, 1, 64, 64)
    img[0, 0, 30:34, 20:24] = 1.0                                   # a blob at fractions (0.34, 0.5)
    moving = torch.from_numpy(_template())[None]
    fixed = torch.from_numpy(_template(0.15, -0.1, 1.2))[None]
    out = warp(img, similarity_theta(moving, fixed))
    ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    want = ((np.array([22.0, 32.0]) / 64 - 0.5) * 1.2 + 0.5 + [0.15, -0.1]) * 64  # blob centre moved
    assert abs(xs.float().mean().item() + 0.5 - want[0]) < 1.0 and abs(ys.float().mean().item() + 0.5 - want[1]) < 1.0
    assert torch.equal(similarity_theta(nan, fixed), torch.eye(2, 3)[None])   # no points: identity


def test_face_swap_from_landmarks_keeps_the_expression_region_and_the_identity(clips):
    """The expression's face (subject A, dark skin 60, an open mouth: a bright bar on its mouth)
    sits elsewhere in its crop than the identity's (subject B, skin 150, closed mouth): the swap
    puts A's mouth at B's mouth, B's skin everywhere outside B's parts, and nothing at A's
    mouth position (the fixed regions would have pasted it there)."""
    table, mask, _ = clips
    s = 32
    src_pts, base_pts = _template(-0.12, -0.1), _template(0.08, 0.06)
    seq = table["sequence"].to_numpy(object)
    a_rows = np.flatnonzero(seq == "A_long")[:2]
    b_rows = np.flatnonzero(seq == "B_mid")[:2]
    points = {int(a_rows[1]): src_pts, int(b_rows[0]): base_pts}

    def landmarks_at(positions):
        flat = [points.get(int(p), np.full((68, 2), np.nan, np.float32)) for p in np.ravel(positions)]
        return np.stack(flat).reshape(np.shape(positions) + (68, 2))

    m = _method("ssl_fer", {"face_swap": 1.0, "face_swap_feather": 0.0})
    m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0, landmarks_at=landmarks_at), "pretrain")
    extra = m.extra_metrics()                                          # counted: 2 frames with points
    assert extra["landmark_frames"] == 2 and extra["part_frames"] == 49
    face_a = torch.full((3, s, s), 60, dtype=torch.uint8)
    (mx, my) = (src_pts[48:68].mean(0) * s).astype(int)
    face_a[:, my - 1:my + 1, mx - 3:mx + 3] = 230                        # A's open mouth
    face_b = torch.full((3, s, s), 150, dtype=torch.uint8)
    images = torch.stack([torch.stack([face_b, face_a]), torch.stack([face_b, face_b])])
    rows = np.array([[a_rows[0], a_rows[1]], [b_rows[0], b_rows[1]]])
    batch = Batch(positions=rows, images=images, labels=torch.full((2,), -1), va=torch.zeros(2, 2))
    out = m.swap_positives(batch, torch.Generator().manual_seed(0))[0, 1, 0].int()
    (bx, by) = (base_pts[48:68].mean(0) * s).astype(int)
    assert out[by, bx] > 200 and out[by - 1:by + 1, bx - 2:bx + 2].float().mean() > 200   # A's mouth at B's
    assert (out[my - 1:my + 1, mx - 3:mx + 3] == 150).all()           # not where A had it
    assert (out[:4] == 150).all() and (out[:, :4] == 150).all()       # B's identity around


def test_mask_fn_patches_come_from_each_frames_landmarks(clips):
    from ferbench.data.augment import Augmenter
    from ferbench.methods.face_regions import DEFAULT_REGIONS, landmark_boxes

    table, mask, _ = clips
    pts = _template(0.05, -0.04)

    def landmarks_at(positions):      # frames of even position have points, odd ones none
        out = np.full(np.shape(positions) + (68, 2), np.nan, np.float32)
        out[np.asarray(positions) % 2 == 0] = pts
        return out

    m = _method("ssl_fer", {"mask_fn": True, "mask_fn_encoder": "random"})
    m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0, landmarks_at=landmarks_at), "pretrain")
    rows = m.sampler.draw(m.sampler.anchors[:6], torch.Generator().manual_seed(0))
    batch = _constant_batch(m, table, rows)
    m.stage = "pretrain"
    views = m.transform(batch, Augmenter(m.augment_config(), 3, torch.Generator().manual_seed(0)), train=True)
    assert len(views) == 4
    eyes = m.part_boxes(batch)["eyes"]                                 # column-major: [col 0 rows, col 1 rows]
    order = rows.T.reshape(-1)
    want = landmark_boxes(torch.from_numpy(pts)[None], "eyes")[0]
    for i, pos in enumerate(order):
        expected = want if pos % 2 == 0 else torch.tensor(DEFAULT_REGIONS["eyes"])
        assert torch.allclose(eyes[i], expected, atol=1e-6), (i, pos)
    desc = m.part_descriptors(views[2:], m.part_boxes(batch))
    assert len(desc) == 2 and desc[0].shape == (6, 2 * m.feature_dim)
