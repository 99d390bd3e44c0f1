"""The method contract, checked for every method ferbench ships, and the engine's
manual-optimisation path (several networks, several optimisers, two passes per step).

A new method file is checked here without a test of its own for the plumbing: it builds, one
training step moves every parameter group it declares (and nothing frozen), its encoder
survives the round trip through encoder.pt, and a run killed mid-way resumes to the same
result as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fake_fold import make_fold_files, write_config
from ferbench import cli
from ferbench.train.checkpoint import CHECKPOINT
from ferbench.train.trainer import Trainer
from ferbench.config import load_config, stage_settings
from ferbench.data.folds import gather, load_fold
from ferbench.methods import TaskInfo, get_method, method_names
from ferbench.methods.base import Method, ParamGroup
from ferbench.methods.supervised import Supervised
from ferbench.models import build_backbone
from ferbench.methods.losses import av_loss


def run_cli(verb: str, root: Path, config: Path, out: Path, method: str, task_root: Path | None = None,
            extra: list[str] | None = None) -> int:
    base = task_root or root
    return cli.main([verb, "--config", str(config), "--dataset", "fake", "--method", method,
                     "--fold", "0", "--seed", "0", "--cache", str(base / "cache"),
                     "--folds", str(base / "folds.parquet"), "--out", str(out), "--threads", "1",
                     "--device", "cpu", "--no-progress"] + (extra or []))


# -- a toy two-optimiser method ------------------------------------------------------------------
class ToyTwoOptimizers(Method):
    """An encoder + head trained against a critic, like CAF/AVCE: pass 1 steps the critic
    (SGD), pass 2 the encoder and head (the budget's Adam). No entry is called ``loss``."""

    name = "toy_two_optimizers_for_tests"
    manual_optimization = True
    defaults = {"nan_after": 0}   # > 0: the critic term turns NaN from this many steps on

    def __init__(self, settings, task):
        super().__init__(settings, task)
        self.backbone, dim = build_backbone(self.schedule["backbone"], self.in_channels, task.image_size)
        self.head = nn.Linear(dim, task.num_outputs)
        self.critic = nn.Sequential(nn.Linear(dim, 8), nn.ReLU(), nn.Linear(8, 1))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))

    def param_groups(self):
        return [ParamGroup("encoder", [self.backbone]), ParamGroup("head", [self.head], lr_mult=2.0),
                ParamGroup("critic", [self.critic], optimizer="critic")]

    def optimizer_settings(self):
        return {"critic": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0}}

    def features(self, x):
        return self.backbone(x)

    def predict(self, x):
        out = self.head(self.features(x))
        return torch.tanh(out) if self.task.task == "va" else out

    def task_loss(self, out, batch):
        if self.task.task == "va":
            return av_loss(torch.tanh(out), batch.va)
        return nn.functional.cross_entropy(out, batch.labels)

    def training_step(self, batch, optimizers=None):
        z = self.backbone(batch.x)
        # pass 1: the critic learns to tell the features of the two halves of the batch apart
        half = len(z) // 2
        score = self.critic(z.detach()).squeeze(1)
        critic = nn.functional.softplus(score[half:] - score[:half]).mean()
        if int(self.nan_after) and int(self.steps_done) >= int(self.nan_after):
            critic = critic * float("nan")
        optimizers["critic"].zero_grad(set_to_none=True)
        critic.backward()
        optimizers["critic"].step()
        # pass 2: the encoder and head learn the task (the critic's gradient is not stepped)
        out = self.head(z)
        task = self.task_loss(out, batch)
        optimizers["main"].zero_grad(set_to_none=True)
        task.backward()
        optimizers["main"].step()
        self.steps_done += 1
        return {"critic": critic.detach(), "task": task.detach()}

    @property
    def nan_after(self) -> int:
        return int(self.hp["nan_after"])


def test_param_groups_build_named_optimisers_with_multipliers() -> None:
    settings = {"method_name": "toy", "method": {}, "train": {"backbone": "smallcnn", "image_size": 16,
                                                             "lr": 0.004, "optimizer": "adam"}}
    m = ToyTwoOptimizers(settings, TaskInfo("classification", ("a", "b"), 16))
    optimizers, schedulers = m.configure_optimizers()
    assert list(optimizers) == ["main", "critic"] and schedulers == []
    main, critic = optimizers["main"], optimizers["critic"]
    assert isinstance(main, torch.optim.Adam) and isinstance(critic, torch.optim.SGD)
    assert [(g["name"], g["lr"]) for g in main.param_groups] == [("encoder", 0.004), ("head", 0.008)]
    assert [(g["name"], g["lr"]) for g in critic.param_groups] == [("critic", 0.01)]
    assert {id(p) for p in critic.param_groups[0]["params"]} == {id(p) for p in m.critic.parameters()}

    class Overlapping(ToyTwoOptimizers):
        def param_groups(self):
            return [ParamGroup("all", [self]), ParamGroup("critic", [self.critic], optimizer="critic")]

    with pytest.raises(Exception, match="in groups 'all' and 'critic'"):
        Overlapping(settings, TaskInfo("classification", ("a", "b"), 16)).configure_optimizers()

    class Forgetful(ToyTwoOptimizers):
        def param_groups(self):
            return [ParamGroup("encoder", [self.backbone])]

    with pytest.raises(Exception, match="'head.weight' is in no parameter group"):
        Forgetful(settings, TaskInfo("classification", ("a", "b"), 16)).configure_optimizers()


def _toy_config(root: Path, **hp) -> Path:
    return write_config(root, epochs=3, batch_size=8, checkpoint_every=4,
                        methods={"toy": {"class": ToyTwoOptimizers.name, **hp}})


@pytest.mark.slow
def test_two_optimiser_method_resumes_bit_identically_and_logs_by_name(tmp_path: Path, killed_after_step) -> None:
    make_fold_files(tmp_path, subjects=9, frames=2, n_folds=3)
    config = _toy_config(tmp_path)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert run_cli("train", tmp_path, config, whole, "toy") == 0
    with killed_after_step(6):
        run_cli("train", tmp_path, config, broken, "toy")
    assert torch.load(broken / CHECKPOINT, weights_only=True)["step"] == 4
    assert run_cli("train", tmp_path, config, broken, "toy") == 0
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((broken / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and a["steps"] == b["steps"]
    wa = torch.load(whole / "model.pt", weights_only=True)
    wb = torch.load(broken / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and int(wa["steps_done"]) == a["steps"]
    log_a, log_b = pd.read_csv(whole / "train_log.csv"), pd.read_csv(broken / "train_log.csv")
    pd.testing.assert_frame_equal(log_a, log_b, check_exact=True)
    # every optimiser's groups and every returned term, by name
    assert {"lr_encoder", "lr_head", "lr_critic", "critic", "task"} <= set(log_a.columns)
    assert (log_a["lr_head"] == 2 * log_a["lr_encoder"]).all() and (log_a["lr_critic"] == 0.01).all()
    assert log_a["task"].notna().all() and log_a["critic"].notna().all()


@pytest.mark.slow
def test_nan_in_any_returned_term_stops_with_one_line_and_keeps_the_good_checkpoint(
        tmp_path: Path, capsys) -> None:
    make_fold_files(tmp_path, subjects=9, frames=2, n_folds=3)
    config = _toy_config(tmp_path, nan_after=5)   # steps 6+ return a NaN critic term
    out = tmp_path / "run"
    assert run_cli("train", tmp_path, config, out, "toy") == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len([line for line in err if "error:" in line]) == 1
    assert "training 'critic' is nan" in err[-1] and "step 4" in err[-1]
    ckpt = torch.load(out / CHECKPOINT, weights_only=True)
    assert ckpt["step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values()
                                     if v.is_floating_point())
    assert not (out / "metrics.json").exists()


# -- the contract, for every method ferbench ships -----------------------------------------------
SHIPPED = [name for name in method_names() if get_method(name).__module__.startswith("ferbench.methods.")]


def _task_for(cls: type[Method]) -> str:
    return "classification" if "classification" in cls.tasks else "va"


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for task, kind in (("classification", "kfold"), ("va", "group_kfold")):
        root = tmp_path_factory.mktemp(task)
        make_fold_files(root, subjects=9, frames=3, n_folds=3, task=task, kind=kind)
        roots[task] = root
    return roots


def _contract_config(root: Path, name: str) -> Path:
    cls = get_method(name)
    block = {"class": name, "pretrain": {"epochs": 1}}
    if "cnn3" in getattr(cls, "preferred_backbones", ()) or name == "gcnet":
        block.update({"channels": 1})
    return write_config(root, epochs=2, batch_size=8, checkpoint_every=3, methods={"m": block},
                        task=_task_for(cls))


def _built(root: Path, config: Path, stage: str) -> tuple[Method, object]:
    settings = stage_settings(load_config(config, validate=False), "fake", "m", stage, str(config))
    settings["all_subjects"] = False
    size = int(settings["train"]["image_size"])
    data = load_fold(root / "cache", root / "folds.parquet", 0, size, need_labels=stage == "train")
    cls = get_method(settings["method"]["class"])
    torch.manual_seed(0)
    method = cls(settings, TaskInfo(data.task, tuple(data.classes), size))
    method.setup(data, stage)
    return method, data


def _check_embeddings(whole: Path, broken: Path, data, method: Method) -> None:
    """embeddings.parquet: one row per test sample, in predictions.parquet's order, one fixed
    width (the features the head reads), finite; a resumed run writes the same numbers."""
    emb = pd.read_parquet(whole / "embeddings.parquet")
    preds = pd.read_parquet(whole / "predictions.parquet")
    test_ids = data.folds["sample_id"].to_numpy(object)[data.indices["test"]]
    assert len(emb) == len(test_ids) > 0
    assert emb["sample_id"].tolist() == preds["sample_id"].tolist() == list(test_ids)
    values = emb.drop(columns="sample_id")
    width = values.shape[1]
    assert width >= 2 and list(values.columns) == [f"e{j}" for j in range(width)]
    assert (values.dtypes == np.float32).all() and np.isfinite(values.to_numpy()).all()
    # the width is the method's own, and the features are what its head reads
    size = method.task.image_size
    x = torch.rand(3, method.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        method.eval()
        z = method.features(x)
        out, z2 = method.predict_with_features(x)
        assert tuple(z.shape) == (3, width) and torch.equal(z, z2)
        torch.testing.assert_close(method.predict(x), method.head(z))
        torch.testing.assert_close(out, method.predict(x))
    pd.testing.assert_frame_equal(emb, pd.read_parquet(broken / "embeddings.parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_method_contract(name: str, fake_roots, tmp_path: Path, killed_after_step, one_thread) -> None:
    cls = get_method(name)
    root = fake_roots[_task_for(cls)]
    config = _contract_config(tmp_path, name)
    stages = ["pretrain", "train"] if cls.pretrain else ["train"]
    pretrained: list[str] = []
    for stage in stages:
        method, data = _built(root, config, stage)
        # one step on a fixed batch moves every declared group and nothing frozen
        trainer = Trainer(method, data, method.settings, torch.device("cpu"), 0, None)
        if stage == "train" and pretrained:
            method.load_pretrained(torch.load(pretrained[0], weights_only=True)["state"])
        before = {n: p.detach().clone() for n, p in method.named_parameters()}
        batch = trainer.prepare(gather(data, method.epoch_batches(torch.Generator().manual_seed(0), 0)[0]),
                                train=True)
        out = trainer.train_step(batch)
        assert out and all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))
        changed = {n for n, p in method.named_parameters() if not torch.equal(before[n], p)}
        for group in method.param_groups():
            names = {n for n, p in method.named_parameters()
                     if p.requires_grad and any(p is q for q in group.parameters())}
            assert not names or names & changed, f"{stage}: group {group.name!r} did not move"
        frozen = {n for n, p in method.named_parameters() if not p.requires_grad}
        assert not frozen & changed, f"{stage}: frozen parameters moved: {sorted(frozen & changed)[:3]}"

        # the CLI job: killed mid-way and resumed equals an uninterrupted run
        whole, broken = tmp_path / f"{stage}_whole", tmp_path / f"{stage}_broken"
        extra = ["--pretrained", pretrained[0]] if stage == "train" and pretrained else []
        assert run_cli(stage, tmp_path, config, whole, "m", task_root=root, extra=extra) == 0
        with killed_after_step(4):
            run_cli(stage, tmp_path, config, broken, "m", task_root=root, extra=extra)
        assert run_cli(stage, tmp_path, config, broken, "m", task_root=root, extra=extra) == 0
        a = json.loads((whole / "metrics.json").read_text())
        b = json.loads((broken / "metrics.json").read_text())
        assert a.get("metrics") == b.get("metrics") and a.get("losses") == b.get("losses")
        # both stages record how and how fast they computed
        assert {k: a[k] for k in ("precision", "memory_format")} == trainer.compute.record()
        assert a["train_images_per_s"] > 0 and a["wall_s"] > 0
        if stage == "train":
            _check_embeddings(whole, broken, data, method)
        if stage == "pretrain":
            # the encoder round trip: what train loads is exactly what pretraining exported
            encoder = torch.load(whole / "encoder.pt", weights_only=True)
            fresh, _ = _built(root, config, "train")
            fresh.load_pretrained(encoder["state"])
            assert encoder["state"].keys() == fresh.encoder_state_dict().keys()
            assert all(torch.equal(v, fresh.encoder_state_dict()[k]) for k, v in encoder["state"].items())
            pretrained.append(str(whole / "encoder.pt"))


# -- the contract in the fast compute path -------------------------------------------------------
#: "auto": what the engine picks on this machine (channels_last, and bf16 where the CPU has it);
#: "bf16": bf16 autocast forced, so the bf16 path of every method runs on any CPU (emulated
#: where bf16 is not native: slow, but one step)
FAST_PATHS = {"auto": {"precision": "auto", "memory_format": "auto"},
              "bf16": {"precision": "bf16", "memory_format": "channels_last"}}


@pytest.mark.parametrize("path", sorted(FAST_PATHS))
@pytest.mark.parametrize("name", SHIPPED)
def test_method_step_in_the_fast_path(name: str, path: str, fake_roots, tmp_path: Path, one_thread) -> None:
    """One step in the fast path moves every parameter group, returns finite losses, keeps the
    weights (the master copy) float32 and the convolutions in the path's layout."""
    cls = get_method(name)
    root = fake_roots[_task_for(cls)]
    config = _contract_config(tmp_path, name)
    for stage in (["pretrain", "train"] if cls.pretrain else ["train"]):
        method, data = _built(root, config, stage)
        settings = {**method.settings, "train": {**method.settings["train"], **FAST_PATHS[path]}}
        trainer = Trainer(method, data, settings, torch.device("cpu"), 0, None)
        if path == "bf16":
            assert trainer.compute.precision == "bf16"
        before = {n: p.detach().clone() for n, p in method.named_parameters()}
        batch = trainer.prepare(gather(data, method.epoch_batches(torch.Generator().manual_seed(0), 0)[0]),
                                train=True)
        layout = trainer.compute.torch_memory_format
        assert all(v.is_contiguous(memory_format=layout) for v in batch.views if v.dim() == 4)
        out = trainer.train_step(batch)
        assert out and all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))
        changed = {n for n, p in method.named_parameters() if not torch.equal(before[n], p)}
        for group in method.param_groups():
            names = {n for n, p in method.named_parameters()
                     if p.requires_grad and any(p is q for q in group.parameters())}
            assert not names or names & changed, f"{stage}: group {group.name!r} did not move in {path}"
        assert all(p.dtype == torch.float32 for p in method.parameters())
        convs = [m for m in method.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(c.weight.is_contiguous(memory_format=layout) for c in convs)
