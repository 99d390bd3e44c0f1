"""Backbones built from torchvision/torch blocks, randomly initialised here (starting weights,
ImageNet's or a ferbench run's, are loaded by ``ferbench.models.load_backbone_weights``).

Every backbone maps images [B, C, S, S] to features [B, D] through two named parts:
``body`` (the convolutional trunk, spatial map out) and ``pool`` (map -> vector). Methods that
need the spatial map (a critic on conv features, a decoder) call ``backbone.body(x)``.
"""

from __future__ import annotations

import torch
from torch import nn

#: Below this input side the ImageNet stems (stride 4 to 32 overall) would leave maps of 1 pixel
#: or less, so the stem is replaced by a gentler one.
SMALL_INPUT = 112


class Backbone(nn.Module):
    def __init__(self, body: nn.Module, pool: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.body = body
        self.pool = pool
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


def _conv_bn_relu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


#: torchvision's ResNet children in our body's order: ``body.<i>`` is ``RESNET_LAYERS[i]`` (the
#: ImageNet weights map by this; the parameter-free relu and maxpool keep the positions stable)
RESNET_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")

#: torchvision's GoogLeNet children from conv1 through inception5b, in our body's order
INCEPTION_V1_LAYERS = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                       "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
                       "inception4e", "maxpool4", "inception5a", "inception5b")


def _global_pool() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _resnet(arch: str, in_channels: int, image_size: int) -> Backbone:
    """A torchvision ResNet (``arch``: resnet18, resnet50) without its classifier; features are
    the globally pooled layer4 map (512-d for ResNet-18, 2048-d for ResNet-50)."""
    import torchvision  # lazily: importing it costs seconds in every job and DAG build

    net = getattr(torchvision.models, arch)(weights=None)
    if image_size < SMALL_INPUT:
        # CIFAR-style stem: 3x3 stride 1 and no max-pool, so a 32-64 px face keeps 4-8 px at layer4.
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    body = nn.Sequential(*(getattr(net, name) for name in RESNET_LAYERS))
    return Backbone(body, _global_pool(), net.fc.in_features)


def resnet18(in_channels: int, image_size: int) -> Backbone:
    """ResNet-18 (AVCE's and CAF's R18 rows, the budget default): 512-d features."""
    return _resnet("resnet18", in_channels, image_size)


def resnet50(in_channels: int, image_size: int) -> Backbone:
    """ResNet-50 (seed 001's SSL encoder, the authors' code): 2048-d features."""
    return _resnet("resnet50", in_channels, image_size)


def inception_v1(in_channels: int, image_size: int) -> Backbone:
    """InceptionV1 (GoogLeNet; seed 000's backbone): torchvision's trunk from conv1 through
    inception5b, global average pool, 1024-d features; no auxiliary classifiers, and no
    ``transform_input`` (its ImageNet weights expect inputs in [-1, 1], the engine's default
    normalisation already)."""
    import torchvision

    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True,
                                       transform_input=False)
    if image_size < SMALL_INPUT:
        # as ResNet's small stem: 3x3 stride 1 and no first max-pool (stride 8 overall, not 32),
        # so a 32-64 px face keeps 4-8 px at inception5b
        net.conv1.conv = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool1 = nn.Identity()
    elif in_channels != 3:
        net.conv1.conv = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    body = nn.Sequential(*(getattr(net, name) for name in INCEPTION_V1_LAYERS))
    return Backbone(body, _global_pool(), net.fc.in_features)


def alexnet_reduced(in_channels: int, image_size: int, bottleneck: int = 32,
                    dropout: float = 0.5) -> Backbone:
    """AlexNet as the CAF/AVCE authors use it: the full 5-conv AlexNet trunk, 6x6 average pool
    (9216 values), then a *reduced* fully-connected part: dropout + FC to a 32-d bottleneck + ReLU
    (their ``lin0: 9216 -> 32``) instead of AlexNet's 4096-4096 classifier. AVCE's compressor C
    (avg-pool + FC, z of d = 32) is this pool part; their regressor (32 -> 256 -> 2) is a head.
    """
    import torchvision

    features = torchvision.models.alexnet(weights=None).features
    if image_size < SMALL_INPUT:
        # 11x11 stride 4 + three stride-2 pools needs >= ~100 px; 5x5 stride 2 keeps 1-2 px at 32-48.
        features[0] = nn.Conv2d(in_channels, 64, 5, stride=2, padding=2)
    elif in_channels != 3:
        features[0] = nn.Conv2d(in_channels, 64, 11, stride=4, padding=2)
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(256 * 36, bottleneck), nn.ReLU(inplace=True))
    return Backbone(features, pool, bottleneck)


def cnn3(in_channels: int, image_size: int, fc_dim: int = 384,
         dropout: float = 0.5) -> Backbone:
    """The 3-conv CNN of GCNet (seed 003, Table 1): (5x5,32), (3x3,64), (3x3,96) conv, each with
    BN, ReLU and a stride-2 max-pool of window 5, 3, 3; then dropout 0.5 and one FC layer of
    (0.5 * 64)^2 * 3 / 2^3 = 384 outputs (the paper's rule at its 64 px; kept fixed at other sizes
    so the FC does not explode at 224 px) with ReLU. The baseline's second FC (the classifier) is
    the method's head.
    """
    body = nn.Sequential(
        *_conv_bn_relu(in_channels, 32, 5), nn.MaxPool2d(5, 2, padding=2),
        *_conv_bn_relu(32, 64, 3), nn.MaxPool2d(3, 2, padding=1),
        *_conv_bn_relu(64, 96, 3), nn.MaxPool2d(3, 2, padding=1),
    )
    side = image_size
    for _ in range(3):
        side = (side - 1) // 2 + 1
    pool = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(96 * side * side, fc_dim),
                         nn.ReLU(inplace=True))
    return Backbone(body, pool, fc_dim)


def smallcnn(in_channels: int, image_size: int, width: int = 32) -> Backbone:
    """A small fast CNN for the demo budget on 2 CPU cores: four conv-BN-ReLU blocks, the first
    three followed by a 2x2 max-pool, then global average pooling."""
    w = width
    body = nn.Sequential(
        *_conv_bn_relu(in_channels, w, 3), nn.MaxPool2d(2),
        *_conv_bn_relu(w, 2 * w, 3), nn.MaxPool2d(2),
        *_conv_bn_relu(2 * w, 4 * w, 3), nn.MaxPool2d(2),
        *_conv_bn_relu(4 * w, 4 * w, 3),
    )
    return Backbone(body, _global_pool(), 4 * w)


BACKBONES = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "inception_v1": inception_v1,
    "alexnet_reduced": alexnet_reduced,
    "cnn3": cnn3,
    "smallcnn": smallcnn,
}
