"""The training recipe keys a budget can set (per-image standardisation, class weighting, label
smoothing, learning-rate policies, flip test-time augmentation, starting weights) and the
engine's flushing of subnormal floats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from fake_fold import CLASSES, make_fold_files
from ferbench.train.evaluation import predict
from ferbench.train.trainer import Trainer, flush_denormals
from ferbench.data.augment import AugmentConfig, Augmenter
from ferbench.data.folds import load_fold
from ferbench.errors import FerbenchError
from ferbench.methods import Batch, TaskInfo
from ferbench.methods.supervised import Supervised, balanced_class_weights
from ferbench.models import build_backbone, load_backbone_weights

TASK = TaskInfo("classification", tuple(CLASSES), 32)


def _settings(**train) -> dict:
    return {"method_name": "sup", "dataset": "fake", "method": {},
            "train": {"backbone": "smallcnn", "image_size": 32, "batch_size": 8, "lr": 0.01,
                      "epochs": 2, "optimizer": "adam", **train}}


def test_per_image_standardisation() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 16, 16), generator=g, dtype=torch.uint8)
    images[4] = 77                                               # a flat image
    aug = Augmenter(AugmentConfig(standardize=True), 3, torch.Generator())
    x = aug(images, train=False)
    flat = x[:4].flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(4), atol=1e-4)
    assert torch.equal(x[4], torch.zeros_like(x[4]))             # no NaN from a zero std
    # it evens out exposure: a darker copy of an image standardises to (nearly) the same image
    darker = (images[:1].float() * 0.5).round().to(torch.uint8)
    assert (aug(darker, train=False) - x[:1]).abs().max() < 0.05


def test_balanced_class_weights_match_scikit_learn() -> None:
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 3, 3, 3])
    ours = balanced_class_weights(labels, 5)
    theirs = compute_class_weight("balanced", classes=np.arange(4), y=labels)
    assert torch.allclose(ours[:4].double(), torch.from_numpy(theirs), atol=1e-6)
    assert ours[4] == 0                                          # absent from training: weight 0


def test_label_smoothing_and_class_weights_reach_the_loss(tmp_path) -> None:
    make_fold_files(tmp_path, subjects=6, frames=3, n_folds=3)
    data = load_fold(tmp_path / "cache", tmp_path / "folds.parquet", 0, 32)
    m = Supervised(_settings(label_smoothing=0.1, class_weighting="balanced"), TASK)
    m.setup(data, "train")
    weights = balanced_class_weights(data.label[data.indices["train"]], len(CLASSES))
    assert torch.equal(m.class_weight, weights)
    logits = torch.randn(6, len(CLASSES), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 1, 1])
    # by hand: smoothed targets (1 - e) one-hot + e / k, each sample weighted by its class
    k, e = len(CLASSES), 0.1
    target = torch.full((6, k), e / k)
    target[torch.arange(6), labels] += 1 - e
    w = weights[None, :] * target
    expected = -(w * F.log_softmax(logits, 1)).sum() / weights[labels].sum()
    batch = Batch(np.zeros((6, 1), np.int64), torch.zeros(0), labels, torch.zeros(6, 2))
    assert torch.allclose(m.supervised_loss(logits, batch), expected, atol=1e-6)
    with pytest.raises(FerbenchError, match="class_weighting"):
        Supervised(_settings(class_weighting="inverse"), TASK).setup(data, "train")


def _rates(policy: str, steps: int = 100) -> list[list[float]]:
    m = Supervised(_settings(lr_schedule=policy), TASK)
    m.steps_per_epoch, m.total_steps = steps // 2, steps
    optimizers, schedulers = m.configure_optimizers()
    opt = optimizers["main"]
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        for s in schedulers:
            s.step()
    return out


def test_learning_rate_policies() -> None:
    assert all(r == [0.01] for r in _rates("constant"))
    cosine = [r[0] for r in _rates("cosine")]
    assert cosine[0] == pytest.approx(0.01) and cosine[50] == pytest.approx(0.005, rel=1e-6)
    assert cosine[-1] < 1e-5 and all(a >= b for a, b in zip(cosine, cosine[1:]))
    one = [r[0] for r in _rates("onecycle")]
    peak = int(np.argmax(one))
    assert one[0] == pytest.approx(0.01 / 25) and 28 <= peak <= 30 and one[peak] == pytest.approx(0.01, rel=1e-3)
    assert one[-1] < 0.01 / 500 and all(a >= b for a, b in zip(one[peak:], one[peak + 1:]))


def test_flip_test_time_augmentation_averages_the_mirror_image(tmp_path) -> None:
    make_fold_files(tmp_path, subjects=6, frames=3, n_folds=3)
    data = load_fold(tmp_path / "cache", tmp_path / "folds.parquet", 0, 32)
    outs = {}
    for tta in ("none", "flip"):
        torch.manual_seed(0)
        m = Supervised(_settings(tta=tta, eval_batch_size=5), TASK)
        m.setup(data, "train")
        trainer = Trainer(m, data, m.settings, torch.device("cpu"), 0, None)
        outs[tta] = predict(trainer, data.indices["test"])
    aug = Augmenter(m.augment_config(), 3, torch.Generator())
    x = aug(torch.from_numpy(data.images[data.cache_row[data.indices["test"]]]), train=False)
    m.eval()
    with torch.no_grad():
        mirrored = m.predict(x.flip(-1)).numpy()
    np.testing.assert_allclose(outs["flip"], (outs["none"] + mirrored) / 2, atol=1e-5)
    assert not np.allclose(outs["flip"], outs["none"])


def test_flush_denormals_zeroes_only_subnormals() -> None:
    m = Supervised(_settings(), TASK)
    optimizers, _ = m.configure_optimizers()
    tiny = torch.finfo(torch.float32).tiny
    w = m.head.fc.weight
    m.predict(torch.rand(2, 3, 32, 32)).sum().backward()
    optimizers["main"].step()
    with torch.no_grad():
        w[0, :3] = torch.tensor([tiny / 4, -tiny / 1000, tiny])   # two subnormals, the smallest normal
    state = optimizers["main"].state[w]
    state["exp_avg_sq"][0, 0] = tiny / 8
    keep = w.detach().clone()
    flush_denormals(m, optimizers)
    assert w[0, 0] == 0 and w[0, 1] == 0 and state["exp_avg_sq"][0, 0] == 0
    rest = torch.ones_like(w, dtype=torch.bool)
    rest[0, :2] = False
    assert torch.equal(w[rest], keep[rest])
    for t in (*m.parameters(), *state.values()):
        if torch.is_tensor(t) and t.is_floating_point() and t.dim():
            assert not ((t != 0) & (t.abs() < tiny)).any()


def test_backbone_weights_from_local_files(tmp_path) -> None:
    source, _ = build_backbone("smallcnn", 3, 32)
    state = source.state_dict()
    torch.save(state, tmp_path / "bare.pt")
    torch.save({f"backbone.{k}": v for k, v in state.items()} | {"head.fc.weight": torch.zeros(1)},
               tmp_path / "model.pt")
    torch.save({"method": "x", "state": {f"backbone.{k}": v for k, v in state.items()}},
               tmp_path / "encoder.pt")
    for name in ("bare.pt", "model.pt", "encoder.pt"):
        target, _ = build_backbone("smallcnn", 3, 32)
        load_backbone_weights(target, str(tmp_path / name), "smallcnn", 3, 32)
        assert all(torch.equal(v, target.state_dict()[k]) for k, v in state.items()), name
    # through the schedule: every method subclassing Supervised starts from them
    m = Supervised(_settings(backbone_weights=str(tmp_path / "model.pt")), TASK)
    assert torch.equal(m.backbone.state_dict()["body.0.weight"], state["body.0.weight"])

    wider, _ = build_backbone("smallcnn", 3, 32, width=16)
    torch.save(wider.state_dict(), tmp_path / "wider.pt")
    with pytest.raises(FerbenchError, match=r"wider.pt: weights do not fit backbone 'smallcnn'"):
        load_backbone_weights(build_backbone("smallcnn", 3, 32)[0], str(tmp_path / "wider.pt"), "smallcnn", 3, 32)
    torch.save({"body.0.weight": state["body.0.weight"]}, tmp_path / "partial.pt")
    with pytest.raises(FerbenchError, match=r"partial.pt: .*missing \['body.1.bias'"):
        load_backbone_weights(build_backbone("smallcnn", 3, 32)[0], str(tmp_path / "partial.pt"), "smallcnn", 3, 32)
    with pytest.raises(FerbenchError, match="does not exist"):
        load_backbone_weights(source, str(tmp_path / "absent.pt"), "smallcnn", 3, 32)


def test_imagenet_weights_fail_with_one_line_when_unavailable(monkeypatch) -> None:
    import torchvision

    with pytest.raises(FerbenchError, match="inception_v1, resnet18, resnet50 only, not 'smallcnn'"):
        load_backbone_weights(build_backbone("smallcnn", 3, 32)[0], "imagenet", "smallcnn", 3, 32)

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(FerbenchError, match=r"imagenet: cannot download .*place the file at .*resnet18"):
        load_backbone_weights(build_backbone("resnet18", 3, 32)[0], "imagenet", "resnet18", 3, 32)


def test_imagenet_weights_map_onto_our_resnet18(monkeypatch) -> None:
    """torchvision's key names land on our Backbone's body (weights made here, nothing downloads)."""
    import torchvision

    reference = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda self, **kw: reference)
    big, _ = build_backbone("resnet18", 3, 128)
    load_backbone_weights(big, "imagenet", "resnet18", 3, 128)
    assert torch.equal(big.state_dict()["body.7.1.conv2.weight"], reference["layer4.1.conv2.weight"])
    assert torch.equal(big.state_dict()["body.0.weight"], reference["conv1.weight"])
    grey, _ = build_backbone("resnet18", 1, 128)
    load_backbone_weights(grey, "imagenet", "resnet18", 1, 128)
    assert torch.allclose(grey.state_dict()["body.0.weight"], reference["conv1.weight"].sum(1, keepdim=True))
    small, _ = build_backbone("resnet18", 3, 32)   # 3x3 stem: stays random, the rest loads
    load_backbone_weights(small, "imagenet", "resnet18", 3, 32)
    assert torch.equal(small.state_dict()["body.4.0.conv1.weight"], reference["layer1.0.conv1.weight"])


def _imagenet_check(monkeypatch, name: str, reference: dict, body_of: dict[str, str], stem: str) -> None:
    """``reference`` (a torchvision state dict made here) loads onto backbone ``name``: every
    tensor of torchvision's layer L lands at ``body.<body_of[L]>`` unchanged, only the
    classifiers are dropped, the grey stem is the RGB filters summed, and the small-input stem
    stays random while the rest still loads."""
    import torchvision

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda self, **kw: reference)
    layer, _, rest = stem.partition(".")
    stem_key = f"body.{body_of[layer]}.{rest}"

    def check(channels: int, size: int) -> dict:
        model, _ = build_backbone(name, channels, size)
        before = model.state_dict()[stem_key].clone()
        load_backbone_weights(model, "imagenet", name, channels, size)
        got = model.state_dict()
        mapped = 0
        for key, value in reference.items():
            layer, _, rest = key.partition(".")
            if layer not in body_of:
                assert layer in ("fc", "aux1", "aux2"), key       # only the classifiers are dropped
            elif key != stem:
                assert torch.equal(got[f"body.{body_of[layer]}.{rest}"], value), key
                mapped += 1
        assert mapped == len(got) - 1                               # all of ours but the stem from it
        return {"stem": got[stem_key], "before": before}

    assert torch.equal(check(3, 128)["stem"], reference[stem])
    assert torch.allclose(check(1, 128)["stem"], reference[stem].sum(1, keepdim=True))
    small = check(3, 32)                                            # 3x3 stem: random, untouched
    assert torch.equal(small["stem"], small["before"]) and small["stem"].shape[-1] == 3


def test_imagenet_weights_map_onto_our_resnet50(monkeypatch) -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).state_dict()
    for value in reference.values():        # distinct values: a wrong position cannot match
        if value.is_floating_point():
            value.copy_(torch.randn_like(value))
    body_of = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    _imagenet_check(monkeypatch, "resnet50", reference, body_of, "conv1.weight")


def test_imagenet_weights_map_onto_our_inception_v1(monkeypatch) -> None:
    """GoogLeNet's file holds the aux classifiers (it is saved with aux_logits on): dropped, as
    its fc; a file without BatchNorm batch counters still loads (they are filled with 0)."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()
    for value in reference.values():
        if value.is_floating_point():
            value.copy_(torch.randn_like(value))
    assert any(k.startswith("aux1.") for k in reference)
    body_of = {"conv1": "0", "conv2": "2", "conv3": "3", "inception3a": "5", "inception3b": "6",
               "inception4a": "8", "inception4b": "9", "inception4c": "10", "inception4d": "11",
               "inception4e": "12", "inception5a": "14", "inception5b": "15"}
    _imagenet_check(monkeypatch, "inception_v1", reference, body_of, "conv1.conv.weight")
    no_counters = {k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda self, **kw: no_counters)
    model, _ = build_backbone("inception_v1", 3, 128)
    load_backbone_weights(model, "imagenet", "inception_v1", 3, 128)
    assert torch.equal(model.state_dict()["body.15.branch4.1.conv.weight"],
                       reference["inception5b.branch4.1.conv.weight"])


def test_per_channel_normalisation_matches_torchvision() -> None:
    from torchvision.transforms.v2 import functional as TF

    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 8, 8), generator=g, dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    config = AugmentConfig.from_settings({"mean": list(mean), "std": list(std)})
    x = Augmenter(config, 3, torch.Generator())(images, train=False)
    assert torch.allclose(x, TF.normalize(images.float() / 255, list(mean), list(std)), atol=1e-6)
    # grey input: the channels' average statistics
    grey = Augmenter(config, 1, torch.Generator())(images[:, :1], train=False)
    assert torch.allclose(grey, (images[:, :1].float() / 255 - sum(mean) / 3) / (sum(std) / 3), atol=1e-6)
    for bad, key in (({"mean": [0.5, 0.5]}, "mean"), ({"std": [0.2, 0.0, 0.2]}, "std"), ({"std": 0}, "std")):
        with pytest.raises(FerbenchError, match=rf"augment\.{key}: "):
            AugmentConfig.from_settings(bad)


def test_imagenet_weights_bring_imagenet_input_statistics(monkeypatch) -> None:
    """backbone_weights: imagenet normalises with torchvision's preset for those weights, unless
    the recipe names its own mean/std; other starts keep the default [-1, 1] range."""
    import torchvision

    reference = torchvision.models.resnet18(weights=None).state_dict()   # nothing downloads
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda self, **kw: reference)
    preset = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    imagenet = Supervised(_settings(backbone="resnet18", backbone_weights="imagenet"), TASK).augment_config()
    assert (imagenet.mean, imagenet.std) == (tuple(preset.mean), tuple(preset.std))
    own = Supervised(_settings(backbone="resnet18", backbone_weights="imagenet",
                               augmentation={"mean": 0.0, "std": 1.0}), TASK).augment_config()
    assert (own.mean, own.std) == (0.0, 1.0)
    plain = Supervised(_settings(backbone="resnet18"), TASK).augment_config()
    assert (plain.mean, plain.std) == (0.5, 0.5)


def test_inception_v1_imagenet_input_is_what_torchvision_feeds_its_first_conv() -> None:
    """torchvision's GoogLeNet weights run with transform_input, which turns the preset's
    normalisation into another before conv1; our trunk (no transform_input) must be fed that."""
    import torchvision

    from ferbench.models import imagenet_normalisation

    preset = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.transforms()
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False,
                                       transform_input=True)
    raw = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    at_conv1 = net._transform_input(_normalize(raw, preset.mean, preset.std))
    mean, std = imagenet_normalisation("inception_v1")
    assert torch.allclose(at_conv1, _normalize(raw, mean, std), atol=1e-6)


def _normalize(x, mean, std):
    from torchvision.transforms.v2 import functional as TF

    return TF.normalize(x, list(mean), list(std))
