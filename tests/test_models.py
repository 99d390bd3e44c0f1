"""Backbones and heads: shapes for every name, size and channel count; registry errors."""

from __future__ import annotations

import pytest
import torch

from ferbench.errors import FerbenchError
from ferbench.models import LinearHead, backbone_names, build_backbone, mlp


SIZES = {"resnet18": (32, 64), "resnet50": (32, 64, 224), "inception_v1": (32, 64, 224)}
CASES = [(name, size, channels)
         for name in ("resnet18", "resnet50", "inception_v1", "alexnet_reduced", "cnn3", "smallcnn")
         for size in SIZES.get(name, (32, 48, 64, 112))  # 112, 224: ImageNet stems
         for channels in (1, 3)]


@pytest.mark.parametrize(("name", "size", "channels"), CASES)
def test_backbone_output_shape(name: str, size: int, channels: int) -> None:
    torch.manual_seed(0)
    model, dim = build_backbone(name, channels, size)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, channels, size, size))
    assert out.shape == (1, dim)
    assert torch.isfinite(out).all()
    # the spatial trunk is reachable for methods that need feature maps
    with torch.no_grad():
        fmap = model.body(torch.randn(1, channels, size, size))
    assert fmap.ndim == 4 and fmap.shape[-1] >= 1


def test_feature_dims_follow_the_papers() -> None:
    assert build_backbone("resnet18", 3, 64)[1] == 512
    assert build_backbone("resnet50", 3, 64)[1] == 2048
    assert build_backbone("inception_v1", 3, 64)[1] == 1024
    assert build_backbone("cnn3", 1, 64)[1] == 384          # (0.5 * 64)^2 * 3 / 2^3
    assert build_backbone("alexnet_reduced", 3, 224)[1] == 32  # 9216 -> 32 bottleneck
    assert build_backbone("smallcnn", 3, 48)[1] == 128


def test_resnet_stem_depends_on_input_size() -> None:
    small, _ = build_backbone("resnet18", 3, 48)
    large, _ = build_backbone("resnet18", 1, 224)
    assert small.body[0].stride == (1, 1) and isinstance(small.body[3], torch.nn.Identity)
    assert large.body[0].stride == (2, 2) and large.body[0].in_channels == 1
    with torch.no_grad():
        assert large.eval()(torch.randn(1, 1, 224, 224)).shape == (1, 512)


def test_resnet50_and_inception_v1_stems_and_maps() -> None:
    """Small inputs get the gentle stem (stride 8 overall: 4 px at 32, 8 px at 64); 224 px keeps
    ImageNet's stride 32 (7 px); grey input has a 1-channel first conv."""
    for name, stem, first_pool in (("resnet50", "0", 3), ("inception_v1", "0.conv", 1)):
        small, _ = build_backbone(name, 3, 32)
        large, _ = build_backbone(name, 1, 224)
        small_conv, large_conv = small.body.get_submodule(stem), large.body.get_submodule(stem)
        assert small_conv.stride == (1, 1) and small_conv.kernel_size == (3, 3), name
        assert isinstance(small.body[first_pool], torch.nn.Identity), name
        assert large_conv.stride == (2, 2) and large_conv.kernel_size == (7, 7), name
        assert large_conv.in_channels == 1, name
        with torch.no_grad():
            assert small.eval().body(torch.randn(1, 3, 32, 32)).shape[-1] == 4, name
            assert large.eval().body(torch.randn(1, 1, 224, 224)).shape[-1] == 7, name
    # InceptionV1 as the papers use it: no auxiliary classifiers in the trunk
    inception, _ = build_backbone("inception_v1", 3, 224)
    assert not any("aux" in key or "fc" in key for key in inception.state_dict())


def test_cnn3_layers_match_table_1() -> None:
    model, _ = build_backbone("cnn3", 1, 64)
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [(5, 32), (3, 64), (3, 96)]
    pools = [m for m in model.body if isinstance(m, torch.nn.MaxPool2d)]
    assert [p.kernel_size for p in pools] == [5, 3, 3]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.body) == 3


def test_unknown_backbone_and_bad_channels() -> None:
    with pytest.raises(FerbenchError, match="unknown name 'vgg'"):
        build_backbone("vgg", 3, 64)
    with pytest.raises(FerbenchError, match="in_channels"):
        build_backbone("smallcnn", 4, 64)
    assert backbone_names() == ["alexnet_reduced", "cnn3", "inception_v1", "resnet18", "resnet50", "smallcnn"]


def test_heads() -> None:
    head = LinearHead(16, 2, tanh=True)
    out = head(torch.randn(5, 16) * 100)
    assert out.shape == (5, 2) and out.abs().max() <= 1
    proj = mlp(16, 32, 8)
    assert proj(torch.randn(4, 16)).shape == (4, 8)
    assert mlp(16, 32, 8, layers=3, last_bn=True)(torch.randn(4, 16)).shape == (4, 8)
