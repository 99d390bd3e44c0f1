"""The training engine: augmentation, learning, resume equality, artefacts, bad input, methods."""

from __future__ import annotations

import warnings
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fake_fold import CLASSES, make_fold_files, write_config
from ferbench import cli
from ferbench.train.checkpoint import CHECKPOINT
from ferbench.train.trainer import Trainer, seed_everything
from ferbench.config import stage_settings
from ferbench.data.augment import AugmentConfig, Augmenter, AugmentParams
from ferbench.config import load_config
from ferbench.data.folds import build_sequence_table, load_fold
from ferbench.errors import FerbenchError
from ferbench.methods import Method, TaskInfo, get_method, method_names
from ferbench.methods.supervised import Supervised

METRIC_KEYS = {"dataset", "method", "fold", "seed", "task", "classes", "metrics", "confusion",
               "n_train", "n_test", "steps", "wall_s", "budget", "backbone", "device", "extra", "inputs",
               "provenance", "precision", "memory_format", "train_images_per_s"}


def run_cli(verb: str, root: Path, config: Path, out: Path, *, method: str = "supervised",
            fold: int = 0, seed: int = 0, cache: Path | None = None, folds: Path | None = None,
            extra: list[str] | None = None) -> int:
    argv = [verb, "--config", str(config), "--dataset", "fake", "--method", method,
            "--fold", str(fold), "--seed", str(seed), "--cache", str(cache or root / "cache"),
            "--folds", str(folds or root / "folds.parquet"), "--out", str(out),
            "--threads", "1", "--device", "cpu", "--no-progress"] + (extra or [])
    return cli.main(argv)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


# -- augmentation ------------------------------------------------------------------------------
def _images(n: int = 6, size: int = 16, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def _augmenter(seed: int = 0, **cfg) -> Augmenter:
    return Augmenter(AugmentConfig(**cfg), 3, torch.Generator().manual_seed(seed))


def test_identity_parameters_give_the_identity_image() -> None:
    x = _images()
    aug = _augmenter()
    out = aug.apply(x, AugmentParams.identity(len(x)))
    assert torch.allclose(out, aug.normalise(x.float() / 255), atol=1e-5)


def test_flip_flips_exactly_the_flipped_samples() -> None:
    x = _images(8)
    aug = _augmenter()
    params = AugmentParams.identity(8)
    params.flip = torch.tensor([True, False, True, True, False, False, True, False])
    out = aug.apply(x, params)
    ref = aug.normalise(x.float() / 255)
    for i, flipped in enumerate(params.flip.tolist()):
        want = ref[i].flip(-1) if flipped else ref[i]
        assert torch.allclose(out[i], want, atol=1e-5), i
        assert flipped == (not torch.allclose(out[i], ref[i], atol=1e-3))


def test_each_sample_gets_its_own_parameters() -> None:
    aug = _augmenter()
    params = aug.sample(16)
    for field in ("angle", "brightness", "contrast"):
        assert len(set(getattr(params, field).tolist())) == 16, field
    crops = set(zip(params.scale_x.tolist(), params.scale_y.tolist(), params.shift_x.tolist()))
    assert len(crops) == 16  # (a side may clamp at the full image; the crop still differs)
    assert 0 < int(params.flip.sum()) < 16
    same = _images(1).expand(8, -1, -1, -1).contiguous()  # one image, eight times
    out = aug(same)
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 8))
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6


def test_augmentation_is_deterministic_under_a_seeded_generator() -> None:
    x = _images(8)
    a, b, c = _augmenter(5), _augmenter(5), _augmenter(6)
    first, second, other = a(x), b(x), c(x)
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)
    assert not torch.equal(a(x), first)  # the generator advances


def test_grey_conversion_and_eval_mode() -> None:
    x = _images(4)
    aug = Augmenter(AugmentConfig(), 1, torch.Generator().manual_seed(0))
    out = aug(x, train=False)
    assert out.shape == (4, 1, 16, 16)
    grey = (x.float() / 255 * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(out, (grey - 0.5) / 0.5, atol=1e-6)
    assert aug.generator.initial_seed() == 0 and torch.equal(aug(x, train=False), out)


# -- learning ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_supervised_learns_a_separable_task(tmp_path: Path) -> None:
    make_fold_files(tmp_path, subjects=12, frames=3, n_folds=3)
    config = write_config(tmp_path, epochs=12, batch_size=8, checkpoint_every=1000, lr=0.003)
    out = tmp_path / "run"
    assert run_cli("train", tmp_path, config, out) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert set(result) == METRIC_KEYS
    assert result["classes"] == CLASSES and result["n_train"] == 32 and result["n_test"] == 16
    assert result["steps"] == 12 * 4
    # how it computed: what `auto` resolves to on this CPU, and a positive speed within the wall time
    from ferbench import precision
    assert {k: result[k] for k in ("precision", "memory_format")} == precision.resolve({}, "cpu").record()
    assert result["train_images_per_s"] > 0 and result["wall_s"] > 48 * 8 / result["train_images_per_s"] * 0.99
    assert result["metrics"]["accuracy"] >= 0.75  # chance is 0.25
    cm = np.array(result["confusion"])
    assert cm.shape == (4, 4) and cm.sum() == 16
    preds = pd.read_parquet(out / "predictions.parquet")
    assert list(preds.columns) == ["sample_id", "label", "pred"] + [f"prob_{c}" for c in CLASSES]
    assert np.allclose(preds.filter(like="prob_").sum(axis=1), 1.0, atol=1e-5)
    assert (preds["pred"] == preds["label"]).mean() == pytest.approx(result["metrics"]["accuracy"])
    state = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("backbone.") for k in state) and "head.fc.weight" in state
    log = pd.read_csv(out / "train_log.csv")
    assert {"step", "epoch", "lr", "loss"} <= set(log.columns) and log["step"].iloc[-1] == 48
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    assert any((out / "tb").iterdir())
    assert "test: accuracy" in (out / "run.log").read_text()
    assert temp_files(out) == []


@pytest.mark.slow
def test_va_task_and_legacy_metrics(tmp_path: Path) -> None:
    make_fold_files(tmp_path, subjects=6, frames=3, task="va", kind="group_kfold", n_folds=3)
    config = write_config(tmp_path, epochs=1, batch_size=16, checkpoint_every=1000, legacy=True)
    out = tmp_path / "run"
    assert run_cli("train", tmp_path, config, out) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["task"] == "va" and "classes" not in result and "confusion" not in result
    keys = {f"{d}_{s}" for d in ("valence", "arousal") for s in ("rmse", "pcc", "ccc", "sagr")}
    assert set(result["metrics"]) == keys and set(result["legacy_metrics"]) == keys
    preds = pd.read_parquet(out / "predictions.parquet")
    assert list(preds.columns) == ["sample_id", "valence", "arousal", "pred_valence", "pred_arousal"]
    assert preds[["pred_valence", "pred_arousal"]].abs().max().max() < 1  # tanh head


# -- resume ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["kfold", "official"])  # official: validation every epoch
def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path, killed_after_step, kind: str) -> None:
    make_fold_files(tmp_path, subjects=9 if kind == "kfold" else 8, frames=2, n_folds=3, kind=kind)
    # dropout in the head makes the global RNG matter too
    config = write_config(tmp_path, epochs=3, batch_size=8, checkpoint_every=4,
                          methods={"supervised": {"head_dropout": 0.3}})
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert run_cli("train", tmp_path, config, whole) == 0

    with killed_after_step(6):  # dies after step 6; last checkpoint at step 4
        run_cli("train", tmp_path, config, broken)
    assert not (broken / "metrics.json").exists()
    assert (broken / CHECKPOINT).exists()
    assert temp_files(broken) == []
    ckpt = torch.load(broken / CHECKPOINT, weights_only=True)
    assert ckpt["step"] == 4 and ckpt["epoch"] == 1 and ckpt["index"] == 1  # mid-epoch

    assert run_cli("train", tmp_path, config, broken) == 0
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((broken / "metrics.json").read_text())
    for key in ("metrics", "confusion", "steps", "n_train", "n_test"):
        assert a[key] == b[key], key
    wa = torch.load(whole / "model.pt", weights_only=True)
    wb = torch.load(broken / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    pa, pb = pd.read_parquet(whole / "predictions.parquet"), pd.read_parquet(broken / "predictions.parquet")
    pd.testing.assert_frame_equal(pa, pb, check_exact=True)
    la, lb = pd.read_csv(whole / "train_log.csv"), pd.read_csv(broken / "train_log.csv")
    pd.testing.assert_frame_equal(la, lb, check_exact=True)
    assert ("val_accuracy" in la.columns) == (kind == "official")
    assert "resumed from" in (broken / "run.log").read_text()
    assert temp_files(broken) == []


# -- bad input ---------------------------------------------------------------------------------
def _fails(capsys, *args, **kwargs) -> str:
    rc = run_cli(*args, **kwargs)
    err = capsys.readouterr().err
    assert rc == 2
    return err


def test_fold_out_of_range(tmp_path: Path, capsys) -> None:
    make_fold_files(tmp_path, subjects=6, frames=2, n_folds=3)
    config = write_config(tmp_path)
    err = _fails(capsys, "train", tmp_path, config, tmp_path / "run", fold=3)
    assert "fold 3 out of range" in err
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_missing_cache_size(tmp_path: Path, capsys) -> None:
    make_fold_files(tmp_path, size=32, subjects=6, frames=2)
    config = write_config(tmp_path, size=48)
    err = _fails(capsys, "train", tmp_path, config, tmp_path / "run")
    assert "faces_48.npy" in err and "faces_32.npy" in err
    assert not (tmp_path / "run").exists()


def test_corrupt_checkpoint_names_the_file(tmp_path: Path, capsys) -> None:
    make_fold_files(tmp_path, subjects=6, frames=2)
    config = write_config(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"not a checkpoint at all")
    err = _fails(capsys, "train", tmp_path, config, out)
    assert str(out / CHECKPOINT) in err and "corrupt" in err
    assert not (out / "metrics.json").exists()


def test_unknown_method_and_config_keys(tmp_path: Path, capsys) -> None:
    make_fold_files(tmp_path, subjects=6, frames=2)
    config = write_config(tmp_path, methods={"supervised": {"finetun": "head"},
                                             "ghost": {"class": "nosuchmethod"}})
    assert "methods.nope" in _fails(capsys, "train", tmp_path, config, tmp_path / "a", method="nope")
    assert "'finetun'" in _fails(capsys, "train", tmp_path, config, tmp_path / "b")
    assert "'nosuchmethod'" in _fails(capsys, "train", tmp_path, config, tmp_path / "c", method="ghost")
    err = _fails(capsys, "pretrain", tmp_path, config, tmp_path / "d")
    assert "no pretraining stage" in err


def test_empty_fold_and_missing_folds_file(tmp_path: Path, capsys) -> None:
    cache, folds = make_fold_files(tmp_path, subjects=6, frames=2, n_folds=3)
    table = pd.read_parquet(folds)
    table.loc[table["fold"] == 1, "protocol_sample"] = False
    table.to_parquet(folds, index=False)
    config = write_config(tmp_path)
    assert "empty test set" in _fails(capsys, "train", tmp_path, config, tmp_path / "run", fold=1)
    err = _fails(capsys, "train", tmp_path, config, tmp_path / "run", folds=tmp_path / "nope.parquet")
    assert "nope.parquet" in err


# -- methods -----------------------------------------------------------------------------------
def _trainer(root: Path, methods: dict, epochs: int = 2, seed: int = 0, stage: str = "train"):
    config = load_config(write_config(root, epochs=epochs, batch_size=8, methods=methods), validate=False)
    name = next(iter(methods))
    settings = stage_settings(config, "fake", name, stage)
    data = load_fold(root / "cache", root / "folds.parquet", 0, 32)
    seed_everything(seed)
    cls = get_method(settings["method"].get("class", name))
    method = cls(settings, TaskInfo(data.task, tuple(data.classes), 32))
    method.setup(data, stage)
    return Trainer(method, data, settings, torch.device("cpu"), seed, out=None)


@pytest.mark.slow
def test_head_only_finetune_leaves_the_backbone_unchanged(tmp_path: Path) -> None:
    make_fold_files(tmp_path, subjects=6, frames=2)
    trainer = _trainer(tmp_path, {"probe": {"class": "supervised", "finetune": "head"}})
    before = {k: v.clone() for k, v in trainer.method.state_dict().items()}
    trainer.fit()
    after = trainer.method.state_dict()
    assert trainer.step > 0
    for key in before:
        if key.startswith("backbone."):  # weights AND BN running statistics
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["head.fc.weight"], after["head.fc.weight"])
    optimised = {id(q) for g in trainer.optimizers["main"].param_groups for q in g["params"]}
    assert optimised == {id(p) for p in trainer.method.head.parameters()}
    assert not any(p.requires_grad for p in trainer.method.backbone.parameters())


@pytest.mark.slow
def test_registry_and_variant_names(tmp_path: Path) -> None:
    assert "supervised" in method_names() and get_method("supervised") is Supervised
    with pytest.raises(FerbenchError, match="unknown class 'nope'"):
        get_method("nope")
    make_fold_files(tmp_path, subjects=6, frames=2)
    config = write_config(tmp_path, epochs=1, methods={"sup_probe": {"class": "supervised", "finetune": "head"}})
    assert run_cli("train", tmp_path, config, tmp_path / "run", method="sup_probe") == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["method"] == "sup_probe"


class ToyPretrain(Supervised):
    """A two-view pretraining method in a few lines: the shape later SSL methods take."""

    name = "toy_pretrain_for_tests"
    pretrain = True
    pretrain_views = 2
    defaults = {"weight": 1.0}

    def pretraining_step(self, batch, optimizers=None):
        z1, z2 = self(batch.views[0]), self(batch.views[1])
        loss = self.hp["weight"] * (z1 - z2).pow(2).mean() + 0.1 * (1 - z1.std(0)).clamp(min=0).mean()
        return {"loss": loss, "gap": (z1 - z2).abs().mean()}


@pytest.mark.slow
def test_pretrain_then_finetune_from_the_encoder(tmp_path: Path, capsys) -> None:
    make_fold_files(tmp_path, subjects=6, frames=3)
    config = write_config(tmp_path, epochs=1, methods={
        "toy": {"class": ToyPretrain.name, "finetune": "head", "pretrain": {"epochs": 2, "lr": 0.01}}})
    pre, run = tmp_path / "pre", tmp_path / "run"
    assert run_cli("pretrain", tmp_path, config, pre, method="toy") == 0
    meta = json.loads((pre / "metrics.json").read_text())
    # pretraining sees every frame of the training subjects (4 of 6 subjects x 4 seqs x 3 frames)
    assert meta["stage"] == "pretrain" and meta["n_train"] == 48 and meta["steps"] == 2 * 6
    assert set(meta["losses"]) == {"loss", "gap"}
    encoder = torch.load(pre / "encoder.pt", weights_only=True)
    assert encoder["backbone"] == "smallcnn" and any(k.startswith("backbone.body.") for k in encoder["state"])
    assert "needs --pretrained" in _fails(capsys, "train", tmp_path, config, run, method="toy")
    assert run_cli("train", tmp_path, config, run, method="toy", extra=["--pretrained", str(pre / "encoder.pt")]) == 0
    final = torch.load(run / "model.pt", weights_only=True)
    for key, value in encoder["state"].items():  # FC-only fine-tuning kept the pretrained encoder
        assert torch.equal(final[key], value), key


def test_sequence_helpers(tmp_path: Path) -> None:
    make_fold_files(tmp_path, subjects=6, frames=3, n_folds=3)
    data = load_fold(tmp_path / "cache", tmp_path / "folds.parquet", 0, 32)
    train = data.indices["train"]
    table = data.sequence_table()
    first = table.first_of(train)
    assert (data.folds["frame"].to_numpy()[first] == 0).all()
    assert (data.folds["sequence"].to_numpy()[first] == data.folds["sequence"].to_numpy()[train]).all()
    assert table.n_sequences == 6 * 4 and (table.length == 3).all()   # every subject's sequences
    assert (table.subject[table.seq_of[first]] == table.subject[table.seq_of[train]]).all()
    seqs = data.sequences()
    assert len(seqs) == 4 * 4 and all(len(s) == 3 for s in seqs)  # 4 training subjects x 4 sequences
    assert all(data.subject_mask[s].all() for s in seqs)
    assert all((np.diff(data.folds["frame"].to_numpy()[s].astype(int)) > 0).all() for s in seqs)


def test_sequence_table_orders_frames_and_leaves_stills_alone() -> None:
    """Rows out of time order, an unnumbered frame, a still and a one-frame sequence."""
    folds = pd.DataFrame({
        "sequence": ["a", "a", None, "b", "a", "c", "b"],
        "frame": pd.array([3, 1, None, 2, None, 5, 1], dtype="Int64"),
        "subject": ["s1", "s1", "s2", "s2", "s1", "s3", "s2"],
        "emotion": ["happy", "happy", "sad", "sad", None, "fear", "anger"],
    })
    table = build_sequence_table(folds, np.ones(len(folds), bool), until_apex=False)
    # a: unnumbered frame first, then frames 1, 3; b: frames 1, 2; c: one frame
    assert [list(s) for s in table.sequences()] == [[4, 1, 0], [6, 3], [5]]
    assert [list(s) for s in table.sequences(min_frames=2)] == [[4, 1, 0], [6, 3]]
    assert list(table.first_of(np.arange(7))) == [4, 4, 2, 6, 4, 5, 6]   # the still maps to itself
    assert list(table.rank_of) == [2, 1, -1, 1, 0, 0, 0]
    # b's labels tie (sad, anger): the first name in sorted order wins
    assert [table.emotions[e] for e in table.emotion] == ["happy", "anger", "fear"]
    masked = build_sequence_table(folds, np.array([1, 1, 1, 0, 1, 0, 0], bool), until_apex=False)
    assert masked.n_sequences == 1 and list(masked.seq_of) == [0, 0, -1, -1, 0, -1, -1]


def test_method_interface_defaults() -> None:
    assert Method.all_defaults() == {"channels": 3, "augment": {}, "pretrain_augment": {}}
    assert {"finetune", "head_dropout", "channels"} <= set(Supervised.all_defaults())
    assert ToyPretrain.all_defaults()["weight"] == 1.0 and ToyPretrain.pretrain


def test_pretrain_augmentation_applies_to_the_pretraining_stage_only() -> None:
    settings = {"method_name": "toy", "dataset": "fake",
                "method": {"augment": {"flip": 0.0}, "pretrain_augment": {"scale": [0.2, 1.0]}},
                "train": {"backbone": "smallcnn", "image_size": 32, "batch_size": 8, "lr": 0.001}}
    method = ToyPretrain(settings, TaskInfo("classification", tuple(CLASSES), 32))
    method.stage = "pretrain"
    assert method.augment_config().scale == (0.2, 1.0) and method.augment_config().flip == 0.0
    method.stage = "train"
    assert method.augment_config().scale == AugmentConfig().scale and method.augment_config().flip == 0.0
    with pytest.raises(FerbenchError, match="methods.toy.augment: unknown key 'zoom'"):
        settings["method"]["augment"] = {"zoom": 2}
        ToyPretrain(settings, TaskInfo("classification", tuple(CLASSES), 32)).augment_config()


@pytest.mark.slow
def test_diverging_loss_stops_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_fold_files(tmp_path, subjects=12, frames=3, n_folds=3)
    # lr 1e30 blows the weights up within a few Adam steps: the loss turns inf/NaN.
    config = write_config(tmp_path, epochs=6, batch_size=8, checkpoint_every=1000, lr=1e30)
    out = tmp_path / "run"
    assert run_cli("train", tmp_path, config, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0]
    assert "training 'loss' is" in errors[0] and "within steps" in errors[0]
    assert not (out / "metrics.json").exists()


def test_auto_device_falls_back_to_cpu_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferbench.train.trainer import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.warns(RuntimeWarning, match="CUDA_VISIBLE_DEVICES=0"):
        assert resolve_device("auto").type == "cpu"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no GPU assigned, none used: nothing to warn about
        assert resolve_device("auto").type == "cpu"


@pytest.mark.slow
def test_checkpoint_of_another_config_is_discarded_not_resumed(tmp_path: Path, killed_after_step) -> None:
    """A job killed under one config and rerun (by the workflow) under a changed one trains the
    new config from scratch, exactly like an uninterrupted run of it."""
    make_fold_files(tmp_path, subjects=12, frames=3, n_folds=3)
    old = write_config(tmp_path, epochs=3, batch_size=8, checkpoint_every=4,
                       methods={"supervised": {"head_dropout": 0.3}})
    broken = tmp_path / "broken"
    with killed_after_step(6):
        run_cli("train", tmp_path, old, broken)
    assert (broken / CHECKPOINT).exists()

    new_root = tmp_path / "new"
    new_root.mkdir()
    new = write_config(new_root, epochs=3, batch_size=8, checkpoint_every=4,
                       methods={"supervised": {"head_dropout": 0.1}})
    whole = tmp_path / "whole"
    assert run_cli("train", tmp_path, new, whole) == 0
    assert run_cli("train", tmp_path, new, broken) == 0
    assert "different configuration" in (broken / "run.log").read_text()
    assert "resumed from" not in (broken / "run.log").read_text()
    wa = torch.load(whole / "model.pt", weights_only=True)
    wb = torch.load(broken / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (broken / CHECKPOINT).exists()  # finished jobs keep no resume state


# -- what a run records about itself -------------------------------------------------------------
EPOCH_LINE = (r"train epoch (\d+)/(\d+): loss ([0-9.e+-]+); (\d+) images/s; elapsed \S+; "
              r"ETA \S+(; val_accuracy [0-9.]+, val_macro_f1 [0-9.]+)?$")


@pytest.mark.parametrize("kind", ["kfold", "official"])  # official: a validation split
def test_one_log_line_per_epoch_with_the_epoch_mean_loss(tmp_path: Path, kind: str) -> None:
    import re

    make_fold_files(tmp_path, subjects=9 if kind == "kfold" else 8, frames=2, n_folds=3, kind=kind)
    config = write_config(tmp_path, epochs=2, batch_size=8, checkpoint_every=1000)
    out = tmp_path / "run"
    assert run_cli("train", tmp_path, config, out) == 0
    lines = [line.split(" ", 2)[2] for line in (out / "run.log").read_text().splitlines()
             if " train epoch " in line]
    found = [re.match(EPOCH_LINE, line) for line in lines]
    assert all(found), lines
    assert [(int(m[1]), int(m[2])) for m in found] == [(1, 2), (2, 2)]
    assert all(bool(m[5]) == (kind == "official") for m in found)
    # fewer than LOG_EVERY steps per epoch: train_log.csv has one row per epoch, the same mean
    log = pd.read_csv(out / "train_log.csv")
    assert len(log) == 2
    for m, loss in zip(found, log["loss"]):
        assert float(m[3]) == pytest.approx(loss, rel=1e-3)


def test_settings_json_and_provenance(tmp_path: Path) -> None:
    from ferbench.config import resolved_settings

    make_fold_files(tmp_path, subjects=6, frames=2, n_folds=3)
    config = write_config(tmp_path, epochs=1, batch_size=8, size=32,
                          methods={"supervised": {"epochs": 2, "head_dropout": 0.1}})
    out = tmp_path / "run"
    assert run_cli("train", tmp_path, config, out) == 0
    written = json.loads((out / "settings.json").read_text())
    expected = resolved_settings(load_config(config, validate=False), "fake", "supervised", "train")
    assert written == json.loads(json.dumps(expected))
    assert written["train"]["epochs"] == {"value": 2, "from": "method block: methods.supervised.epochs"}
    assert written["train"]["image_size"] == {"value": 32, "from": "budget: budgets.tiny.image_size"}
    assert written["hyperparameters"]["head_dropout"]["value"] == 0.1
    result = json.loads((out / "metrics.json").read_text())
    assert result["steps"] == 2 * (result["n_train"] // 8)  # settings.json's 2 epochs were trained
    prov = result["provenance"]
    assert prov["data"]["root"] == str(tmp_path) and prov["data"]["origin"] == "real"
    assert prov["data"]["cache_fingerprint"] == result["inputs"]["cache"]["fingerprint"]
    assert prov["data"]["folds_fingerprint"] == result["inputs"]["folds"]["fingerprint"]
    assert prov["software"]["torch"] == torch.__version__
    assert prov["hardware"] == {"device": "cpu", "threads": 1, "device_name": None}
    assert prov["train_images_per_s"] > 0 and prov["wall_s"] == result["wall_s"]
    # the report reads both back: real data with its cache fingerprint, input size and epochs
    from ferbench.report.runs import load_run

    run = load_run(out / "metrics.json")
    fingerprint = prov["data"]["cache_fingerprint"]   # the fake cache is older than fingerprints
    assert run.data == f"real: fake ({fingerprint[:12] if fingerprint else 'no fingerprint'})"
    assert (run.image_size, run.epochs, run.protocol) == (32, 2, "kfold, 3 folds")
