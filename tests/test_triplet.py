"""Seed 000 triplet pretraining: the loss against its formula, the sequence samplers' invariants
on a hand-built folds table, semi-hard selection, the method's stages and a short pretraining."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fake_fold import make_fold_files, write_config
from ferbench import cli
from ferbench.data.augment import AugmentConfig, Augmenter
from ferbench.errors import FerbenchError
from ferbench.methods.losses import semi_hard_negatives, squared_distances, triplet_loss
from ferbench.methods import Batch, TaskInfo, get_method
from ferbench.data.folds import build_sequence_table
from ferbench.methods.triplet_sampling import Method1Sampler, Method2Sampler, sorted_distinct, valid_negatives

TEST_FOLD = 0


# -- a hand-built folds table ------------------------------------------------------------------
def _seq(subject, name, emotion, frames, fold, apex=None, first=1):
    apex = first + frames - 1 if apex is None else apex
    return [{"subject": subject, "sequence": name, "frame": f, "emotion": emotion,
             "apex": emotion is not None and f == apex, "fold": fold}
            for f in range(first, first + frames)]


def hand_table() -> pd.DataFrame:
    """Training subjects A, C, D (usable for Method 1), B (one emotion), U (unlabelled, fold -1:
    never tested); test-fold subject T; stills of E. Rows shuffled: positions != frame order."""
    rows = (_seq("A", "A_ang", "anger", 5, 1) + _seq("A", "A_hap", "happiness", 4, 1, first=7)
            + _seq("A", "A_sur", "surprise", 1, 1)
            + _seq("B", "B_hap", "happiness", 4, 2) + _seq("B", "B_hap2", "happiness", 3, 2)
            + _seq("C", "C_sad", "sadness", 2, 1) + _seq("C", "C_ang", "anger", 6, 1, apex=4)
            + _seq("D", "D_unl", None, 4, 2) + _seq("D", "D_fea", "fear", 3, 2)
            + _seq("D", "D_dis", "disgust", 3, 2)
            + _seq("U", "U_unl", None, 3, -1)
            + _seq("T", "T_ang", "anger", 5, TEST_FOLD) + _seq("T", "T_hap", "happiness", 5, TEST_FOLD)
            + [{"subject": "E", "sequence": None, "frame": None, "emotion": "fear", "apex": False,
                "fold": 1} for _ in range(3)])
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)
    table["frame"] = table["frame"].astype("Int64")
    return table


@pytest.fixture(scope="module")
def table():
    return hand_table()


@pytest.fixture(scope="module")
def mask(table):
    return table["fold"].to_numpy() != TEST_FOLD


@pytest.fixture(scope="module")
def seqs(table, mask):
    return build_sequence_table(table, mask)


def _col(table, name, positions):
    return table[name].to_numpy(object)[positions]


# -- the loss ----------------------------------------------------------------------------------
def test_triplet_loss_hand_computed():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    n = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    # row 0: ||a-p||^2 = 0.2^2 + 0.6^2 = 0.40, ||a-n||^2 = 1 + 1 = 2.00 -> [0.40 - 2.00 + 0.2]_+ = 0
    # row 1: ||a-p||^2 = 1 + 1 = 2.00, ||a-n||^2 = 0.4^2 + 0.8^2 = 0.80 -> 2.00 - 0.80 + 0.2 = 1.40
    per = triplet_loss(a, p, n, margin=0.2, reduction="none")
    assert torch.allclose(per, torch.tensor([0.0, 1.4]), atol=1e-6)
    assert triplet_loss(a, p, n, margin=0.2).item() == pytest.approx(0.7, abs=1e-6)   # (0 + 1.4) / 2
    assert triplet_loss(a, p, n, margin=0.2, reduction="sum").item() == pytest.approx(1.4, abs=1e-6)
    # margin 1.7: row 0 = 0.40 - 2.00 + 1.7 = 0.10
    assert triplet_loss(a, p, n, margin=1.7, reduction="none")[0].item() == pytest.approx(0.1, abs=1e-6)
    with pytest.raises(ValueError):
        triplet_loss(a, p, n[:1])


def test_triplet_loss_is_zero_when_negatives_are_far():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(32, 8, generator=g), dim=1)
    p = torch.nn.functional.normalize(a + 0.01 * torch.randn(32, 8, generator=g), dim=1)
    assert triplet_loss(a, p, -a, margin=0.2).item() == 0.0   # d_an = 4, d_ap ~ 1e-4


def test_triplet_loss_gradient_moves_positive_in_and_negative_out():
    a = torch.tensor([[1.0, 0.0]], requires_grad=True)
    p = torch.tensor([[0.0, 1.0]], requires_grad=True)
    n = torch.tensor([[0.6, 0.8]], requires_grad=True)
    triplet_loss(a, p, n, margin=0.2).backward()
    # d/dp = 2(p - a), d/dn = 2(a - n), d/da = 2(n - p) for an active triplet
    assert torch.allclose(p.grad, 2 * (p - a).detach())
    assert torch.allclose(n.grad, 2 * (a - n).detach())
    assert torch.allclose(a.grad, 2 * (n - p).detach())
    # descent (-grad) brings p towards a and pushes n away
    step = 0.05
    with torch.no_grad():
        a2, p2, n2 = a - step * a.grad, p - step * p.grad, n - step * n.grad
    assert ((a2 - p2) ** 2).sum() < ((a - p) ** 2).sum()
    assert ((a2 - n2) ** 2).sum() > ((a - n) ** 2).sum()
    # an easy triplet gives no gradient at all
    a.grad = p.grad = n.grad = None
    triplet_loss(a, a.detach(), -a.detach(), margin=0.2).backward()
    assert torch.count_nonzero(a.grad) == 0


def test_squared_distances_match_brute_force():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    brute = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    assert torch.allclose(squared_distances(x, y), brute, atol=1e-5)


def test_semi_hard_negatives_rule():
    d_ap = torch.tensor([1.0, 1.0, 1.0, 1.0])
    d_an = torch.tensor([[0.5, 1.2, 1.5],    # farther than 1.0: 1.2, 1.5 -> closest of them: 1
                         [0.5, 0.8, 2.0],    # 2.0 invalid; valid 0.5, 0.8 both hard -> farthest: 1
                         [0.5, 0.8, 3.0],    # only column 2 valid -> 2
                         [1.0, 1.1, 0.2]])   # d_an == d_ap is not farther -> 1.1: column 1
    valid = torch.tensor([[True, True, True], [True, True, False], [False, False, True],
                          [True, True, True]])
    assert semi_hard_negatives(d_ap, d_an, valid).tolist() == [1, 1, 2, 1]


# -- the sequence table and samplers -------------------------------------------------------------
def test_sequence_table_orders_frames_and_trims_after_the_apex(table, seqs):
    for s in range(seqs.n_sequences):
        rows = seqs.order[seqs.start[s]:seqs.start[s] + seqs.length[s]]
        frames = _col(table, "frame", rows).astype(int)
        assert (np.diff(frames) > 0).all()
        assert len(set(_col(table, "sequence", rows))) == 1
    lengths = {_col(table, "sequence", seqs.order[seqs.start[s]]): int(seqs.length[s])
               for s in range(seqs.n_sequences)}
    assert lengths["C_ang"] == 4                  # frames 5 and 6 come after the apex (frame 4)
    assert "T_ang" not in lengths and len(lengths) == 11
    untrimmed = build_sequence_table(table, table["fold"].to_numpy() != TEST_FOLD, until_apex=False)
    assert int(untrimmed.length.sum()) == int(seqs.length.sum()) + 2


def test_method1_invariants(table, seqs):
    sampler = Method1Sampler(seqs)
    draws = sampler.draw(4000, torch.Generator().manual_seed(0))
    assert draws.dtype == np.int64 and draws.shape == (4000, 3)
    a, p, n = draws.T
    subj = [_col(table, "subject", c) for c in (a, p, n)]
    assert (subj[0] == subj[1]).all() and (subj[0] == subj[2]).all()
    assert (_col(table, "sequence", a) == _col(table, "sequence", p)).all()
    assert (_col(table, "frame", a).astype(int) < _col(table, "frame", p).astype(int)).all()
    emo_a, emo_n = _col(table, "emotion", a), _col(table, "emotion", n)
    assert pd.notna(emo_n).all() and (emo_a != emo_n).all()
    assert (table["fold"].to_numpy()[draws] != TEST_FOLD).all()       # never a test-fold subject
    assert set(np.unique(subj[0])) == {"A", "C", "D"}
    anchors = set(_col(table, "sequence", a))
    assert anchors == {"A_ang", "A_hap", "C_sad", "C_ang", "D_fea", "D_dis"}
    assert "A_sur" in set(_col(table, "sequence", n))                # a 1-frame sequence is a fine negative
    assert not set(_col(table, "sequence", n)) & {"D_unl", "U_unl", "B_hap"}
    # C_ang after its apex (frames 5, 6) is never drawn
    c_ang = _col(table, "sequence", draws.ravel()) == "C_ang"
    assert _col(table, "frame", draws.ravel())[c_ang].astype(int).max() == 4
    # balanced: shuffled passes give each anchor sequence 4000 / 6 draws, +-1
    counts = pd.Series(_col(table, "sequence", a)).value_counts()
    assert counts.max() - counts.min() <= 1


def test_method2_invariants_and_unlabelled_sequences(table, seqs):
    draws = Method2Sampler(seqs).draw(4000, torch.Generator().manual_seed(1))
    a, p, n = draws.T
    seq = [_col(table, "sequence", c) for c in (a, p, n)]
    assert (seq[0] == seq[1]).all() and (seq[0] == seq[2]).all()
    fa, fp, fn = (_col(table, "frame", c).astype(int) for c in (a, p, n))
    assert ((fa < fp) & (fp < fn)).all()
    assert (table["fold"].to_numpy()[draws] != TEST_FOLD).all()
    assert {"D_unl", "U_unl"} <= set(seq[0])                         # unlabelled sequences serve
    assert not set(seq[0]) & {"A_sur", "C_sad", "T_ang", "T_hap"}
    # a 3-frame sequence can only give its three frames in order
    d_fea = seq[0] == "D_fea"
    assert d_fea.any() and (fa[d_fea] == 1).all() and (fn[d_fea] == 3).all()


def test_samplers_are_deterministic_under_a_seeded_generator(seqs):
    for cls in (Method1Sampler, Method2Sampler):
        one = cls(seqs).draw(300, torch.Generator().manual_seed(5), group_size=3)
        two = cls(seqs).draw(300, torch.Generator().manual_seed(5), group_size=3)
        other = cls(seqs).draw(300, torch.Generator().manual_seed(6), group_size=3)
        assert np.array_equal(one, two) and not np.array_equal(one, other)
        # groups: three consecutive triplets share their anchor sequence
        anchor_seq = seqs.seq_of[one[:, 0]].reshape(-1, 3)
        assert (anchor_seq == anchor_seq[:, :1]).all()


def test_sorted_distinct_is_uniform_over_subsets():
    ranks = sorted_distinct(np.full(60000, 4), 2, torch.Generator().manual_seed(2))
    assert (ranks[:, 0] < ranks[:, 1]).all() and ranks.min() >= 0 and ranks.max() <= 3
    freq = pd.Series(list(map(tuple, ranks))).value_counts(normalize=True)
    assert len(freq) == 6 and (abs(freq - 1 / 6) < 0.01).all()        # C(4, 2) = 6 pairs


def test_usable_counts_are_reported(seqs):
    assert Method1Sampler(seqs).usability.line() == (
        "triplet_m1: 3 of 5 subjects usable (1 have no labelled sequence, 1 have a single emotion); "
        "6 of 11 sequences usable (2 unlabelled, 1 shorter than 2 frames, "
        "2 of a subject with a single emotion)")
    assert Method2Sampler(seqs).usability.line() == (
        "triplet_m2: 5 of 5 subjects usable; 9 of 11 sequences usable (2 shorter than 3 frames)")


def test_nothing_usable_is_an_error(table):
    single = table["subject"].isin(["B", "U"]).to_numpy()      # one emotion / unlabelled only
    with pytest.raises(FerbenchError, match=r"triplet_m1: 0 of 2 subjects usable .*1 have a single emotion"):
        Method1Sampler(build_sequence_table(table, single))
    short = table["sequence"].isin(["A_sur", "C_sad"]).to_numpy()
    with pytest.raises(FerbenchError, match=r"no usable triplet \(Method 2 needs sequences of at least 3"):
        Method2Sampler(build_sequence_table(table, short))
    stills = table["sequence"].isna().to_numpy()
    with pytest.raises(FerbenchError, match="0 of 0 sequences"):
        Method2Sampler(build_sequence_table(table, stills))


def test_valid_negatives_follow_each_triplets_rule(table, seqs):
    pos = {(s, int(f)): i for i, (s, f) in enumerate(zip(table["sequence"], table["frame"].fillna(-1)))}
    m1 = np.array([[pos["A_ang", 1], pos["A_ang", 3], pos["A_hap", 7]],   # anger anchor
                   [pos["A_hap", 7], pos["A_hap", 8], pos["A_ang", 2]],   # happiness anchor
                   [pos["A_ang", 2], pos["A_ang", 4], pos["A_sur", 1]],   # anger anchor
                   [pos["C_sad", 1], pos["C_sad", 2], pos["C_ang", 1]]])  # other subject
    # row 1's own-subject candidate from A_hap shares its anchor's emotion: invalid
    assert valid_negatives(seqs, m1).tolist() == [[True, False, True, False],
                                                  [False, True, True, False],
                                                  [True, False, True, False],
                                                  [False, False, False, True]]
    m2 = np.array([[pos["A_ang", 1], pos["A_ang", 2], pos["A_ang", 3]],
                   [pos["A_ang", 2], pos["A_ang", 4], pos["A_ang", 5]],
                   [pos["D_unl", 1], pos["D_unl", 2], pos["D_unl", 4]]])
    # row 0 (positive frame 2) accepts frames 3 and 5 of A_ang; row 1 (positive 4) only frame 5
    assert valid_negatives(seqs, m2).tolist() == [[True, True, False], [False, True, False],
                                                  [False, False, True]]


# -- the method ----------------------------------------------------------------------------------
def _settings(method=None, dataset="ckplus", epochs=4, batch_size=8):
    return {"dataset": dataset, "method_name": "triplet_test", "stage": "pretrain",
            "train": {"backbone": "smallcnn", "image_size": 16, "epochs": epochs,
                      "batch_size": batch_size, "lr": 0.003, "optimizer": "adam"},
            "method": {"class": "triplet", "backbone_options": {"width": 4}, **(method or {})}}


TASK = TaskInfo("classification", ("anger", "happiness"), 16)


def _method(method=None, **kw):
    torch.manual_seed(0)
    return get_method("triplet")(_settings(method, **kw), TASK)


def test_m12_schedule_and_batches(table, mask, caplog, one_thread):
    m = _method({"sampling": "m12"})
    with caplog.at_level(logging.INFO, logger="ferbench.methods.triplet"):
        m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=TEST_FOLD), "pretrain")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("triplet_m1: 3 of 5 subjects usable") for w in warned)
    assert m.num_batches() == len(m.sampling_units()) // 8
    assert set(m.sampling_units()) <= set(np.flatnonzero(mask))
    for epoch in range(4):
        batches = m.epoch_batches(torch.Generator().manual_seed(epoch), epoch)
        assert len(batches) == m.num_batches() and all(b.shape == (8, 3) for b in batches)
        same_seq = table["sequence"].to_numpy(object)[np.concatenate(batches)]
        m2 = (same_seq[:, 0] == same_seq[:, 2]).all()
        assert m2 == (epoch >= 2)                  # epochs 0-1 Method 1, 2-3 Method 2
    assert m.extra_metrics()["triplet_m1_usable_sequences"] == 6


def test_semi_hard_switch_changes_which_negative_counts(table, mask, seqs):
    # two Method 1 triplets with anger anchors of subject A: each may use the other's negative
    pos = {(s, int(f)): i for i, (s, f) in enumerate(zip(table["sequence"], table["frame"].fillna(-1)))}
    positions = np.array([[pos["A_ang", 1], pos["A_ang", 2], pos["A_sur", 1]],
                          [pos["A_ang", 3], pos["A_ang", 4], pos["A_hap", 8]]])
    e = torch.eye(4)
    za = torch.stack([e[0], e[1]])
    zp = za.clone()                                             # d_ap = 0
    near = torch.nn.functional.normalize(e[0] + 0.1 * e[1], dim=0)
    zn = torch.stack([-e[0], near])    # own negatives: row 0 far (d = 4), row 1 d = ||e1 - near||^2 ~ 1.8
    # with semi-hard, row 0 takes `near` (||e0 - near||^2 = 2 - 2/sqrt(1.01) ~ 0.0099 > 0 = d_ap):
    # loss 0 - 0.0099 + 0.2 ~ 0.190; row 1's candidates (d = 2 and ~1.8) are both easy -> mean ~ 0.095
    results = {}
    for semi_hard in (False, True):
        m = _method({"sampling": "m1", "semi_hard": semi_hard})
        m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=TEST_FOLD), "pretrain")
        m.embedding = lambda x: x                              # the views ARE the embeddings
        batch = Batch(positions=positions, images=torch.zeros(2, 3, 1, 1, 1, dtype=torch.uint8),
                      labels=torch.full((2,), -1), va=torch.zeros(2, 2), views=[za, zp, zn])
        results[semi_hard] = m.pretraining_step(batch)
    assert results[False]["loss"].item() == 0.0 and results[False]["active"].item() == 0.0
    expected = (0.2 - (2 - 2 / np.sqrt(1.01))) / 2
    assert results[True]["loss"].item() == pytest.approx(expected, abs=1e-5)
    assert results[True]["active"].item() == 0.5


def test_cross_dataset_pretraining_settings(table, mask):
    cls = get_method("triplet")
    own = _settings({"sampling": "m1"}, dataset="ckplus")
    cross = _settings({"sampling": "m1", "pretrain_dataset": "ckplus"}, dataset="fer2013")
    assert cls.pretrain_source(own) == "ckplus" and cls.pretrain_data_depends_on_fold(own)
    assert cls.pretrain_source(cross) == "ckplus" and not cls.pretrain_data_depends_on_fold(cross)
    fc = _settings({"sampling": "m1", "finetune": "head"})
    full = _settings({"sampling": "m1", "finetune": "full"})
    m2 = _settings({"sampling": "m2", "finetune": "full"})
    assert cls.pretrain_identity(fc) == cls.pretrain_identity(full) != cls.pretrain_identity(m2)
    # a cross-dataset run's pretraining job must read the pretraining dataset
    m = get_method("triplet")(cross, TASK)
    with pytest.raises(FerbenchError, match=r"pretrain_dataset is 'ckplus'.*--dataset ckplus"):
        m.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0), "pretrain")
    # a target without sequences (FER-2013 style stills) says what to set
    stills = pd.DataFrame({"subject": [None] * 4, "sequence": [None] * 4, "frame": [pd.NA] * 4,
                           "emotion": ["anger"] * 4, "apex": [False] * 4})
    with pytest.raises(FerbenchError, match="pretrain_dataset"):
        _method({"sampling": "m2"}, dataset="fer2013").setup(
            SimpleNamespace(folds=stills, subject_mask=np.ones(4, bool), fold=0), "pretrain")


def test_bad_hyperparameters_are_one_line_errors():
    for hp, key in (({"sampling": "m3"}, "sampling"), ({"margin": 0}, "margin"),
                    ({"embedding_dim": 0}, "embedding_dim"), ({"features": "x"}, "features"),
                    ({"m12_switch": 2}, "m12_switch"), ({"alpha": 0.2}, "alpha")):
        with pytest.raises(FerbenchError, match=key):
            _method(hp)


def test_encoder_round_trip_and_fc_only_freezes_the_encoder(table, mask, one_thread):
    pre = _method({"sampling": "m2"})
    pre.setup(SimpleNamespace(folds=table, subject_mask=mask, fold=0), "pretrain")
    state = pre.encoder_state_dict()
    assert any(k.startswith("backbone.") for k in state) and "embed.weight" in state
    assert state["embed.weight"].shape == (512, pre.feature_dim)
    assert {id(p) for p in pre.trainable_parameters()} == \
        {id(p) for p in list(pre.backbone.parameters()) + list(pre.embed.parameters())}
    x = torch.rand(4, 3, 16, 16)
    pre.eval()
    for finetune in ("head", "full"):
        m = _method({"sampling": "m2", "finetune": finetune})
        data = SimpleNamespace(folds=table, subject_mask=mask, fold=0, indices={"train": np.arange(4)})
        m.setup(data, "train")
        m.load_pretrained(state)
        m.eval()
        assert torch.allclose(m(x), pre.embedding(x), atol=1e-6)     # the head reads f(x)
        assert m.predict(x).shape == (4, 2)
        trainable = {id(p) for p in m.trainable_parameters()}
        assert (trainable == {id(p) for p in m.head.parameters()}) == (finetune == "head")
    # features: backbone accepts another method's backbone-only encoder
    backbone_only = {f"backbone.{k}": v for k, v in pre.backbone.state_dict().items()}
    m = _method({"features": "backbone"})
    m.load_pretrained(backbone_only)
    assert m.head.fc.in_features == m.feature_dim
    with pytest.raises(KeyError, match="'embed' weights"):
        _method().load_pretrained(backbone_only)


# -- a short pretraining lowers the triplet loss --------------------------------------------------
def _eval_loss(m, data, triplets):
    """Mean triplet loss of fixed triplets, no augmentation, eval mode."""
    aug = Augmenter(AugmentConfig(), 3, torch.Generator().manual_seed(0))
    images = torch.from_numpy(np.ascontiguousarray(data.images[data.cache_row[triplets]]))
    m.eval()
    with torch.no_grad():
        z = [m.embedding(aug(images[:, j], train=False)) for j in range(3)]
    m.train()
    return triplet_loss(*z, margin=float(m.hp["margin"])).item()


@pytest.mark.slow
def test_short_pretraining_lowers_the_triplet_loss(tmp_path, one_thread):
    from ferbench.data.folds import load_fold
    from ferbench.train.trainer import Trainer

    cache, folds = make_fold_files(tmp_path, size=16, subjects=6, frames=4)
    data = load_fold(cache, folds, 0, 16)
    settings = _settings({"sampling": "m2", "semi_hard": False}, dataset="fake", epochs=8, batch_size=16)
    torch.manual_seed(0)
    m = get_method("triplet")(settings, TaskInfo(data.task, tuple(data.classes), 16))
    m.setup(data, "pretrain")
    assert data.subject_mask[m.sampling_units()].all()
    fixed = m.samplers["m2"].draw(128, torch.Generator().manual_seed(123))
    before = _eval_loss(m, data, fixed)
    Trainer(m, data, settings, torch.device("cpu"), seed=0, out=None).fit()
    after = _eval_loss(m, data, fixed)
    assert before > 0.1 and after < 0.5 * before, (before, after)


@pytest.mark.slow
def test_cli_pretrain_then_fc_only_train(tmp_path, one_thread):
    cache, folds = make_fold_files(tmp_path, size=16, subjects=6, frames=3)
    config = write_config(tmp_path, size=16, epochs=1, batch_size=8, methods={
        "triplet_m12_fc_only": {"class": "triplet", "sampling": "m12", "finetune": "head",
                                "backbone_options": {"width": 4}, "pretrain": {"epochs": 2}}})
    common = ["--config", str(config), "--dataset", "fake", "--method", "triplet_m12_fc_only",
              "--fold", "0", "--seed", "0", "--cache", str(cache), "--folds", str(folds), "--no-progress"]
    pre, run = tmp_path / "pre", tmp_path / "run"
    assert cli.main(["pretrain", *common, "--out", str(pre)]) == 0
    encoder = torch.load(pre / "encoder.pt", weights_only=True)
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["extra"]["triplet_m2_usable_sequences"] == metrics["extra"]["triplet_m2_sequences"] == 16
    assert cli.main(["train", *common, "--out", str(run), "--pretrained", str(pre / "encoder.pt")]) == 0
    model = torch.load(run / "model.pt", weights_only=True)
    for key, value in encoder["state"].items():    # FC-only: the encoder did not move
        assert torch.equal(model[key], value), key
    assert "accuracy" in json.loads((run / "metrics.json").read_text())["metrics"]
