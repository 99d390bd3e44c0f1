"""GCNet's networks (seed 003, Table 1): the reference generator En1 + De1,r and the mirrored
decoders De2,r/De2,i, built on max-unpooling with the encoder's own pooling indices."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ferbench.errors import FerbenchError
from ferbench.models import build_backbone

#: layers a mirrored decoder can undo
_MIRRORABLE = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d)


def encode_with_switches(body: nn.Sequential, x: torch.Tensor
                         ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
    """Run a conv/pool body, keeping each max-pool's indices and input size (its "switches")."""
    switches = []
    for layer in body:
        if isinstance(layer, nn.MaxPool2d):
            size = x.shape[-2:]
            x, idx = F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                  ceil_mode=layer.ceil_mode, return_indices=True)
            switches.append((idx, size))
        else:
            x = layer(x)
    return x, switches


class MirrorDecoder(nn.Module):
    """The mirror of a conv/BN/ReLU/max-pool body (Table 1's decoder): each max-pool becomes a
    max-unpool fed the encoder's indices, each conv a same-size transposed conv to the conv's
    input channels followed by BN and ReLU (the last one included, as Table 1 lists)."""

    def __init__(self, body: nn.Sequential, out_channels: int, linear_output: bool = False) -> None:
        super().__init__()
        self.steps: list[tuple[str, Any]] = []
        layers = nn.ModuleList()
        convs = [m for m in body if isinstance(m, nn.Conv2d)]
        for m in reversed(list(body)):
            if isinstance(m, nn.MaxPool2d):
                self.steps.append(("unpool", m))
            elif isinstance(m, nn.Conv2d):
                k, last = m.kernel_size, m is convs[0]
                cout = out_channels if last else m.in_channels
                deconv = nn.ConvTranspose2d(m.out_channels, cout, k, padding=(k[0] // 2, k[1] // 2),
                                            bias=last and linear_output)
                if last and linear_output:
                    # a signed output that starts at zero (the residual generator starts as identity)
                    nn.init.zeros_(deconv.weight)
                    nn.init.zeros_(deconv.bias)
                    layers.append(nn.Sequential(deconv))
                else:
                    layers.append(nn.Sequential(deconv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)))
                self.steps.append(("deconv", len(layers) - 1))
        self.layers = layers

    def forward(self, y: torch.Tensor, switches: list[tuple[torch.Tensor, torch.Size]]) -> torch.Tensor:
        pending = list(switches)
        for kind, item in self.steps:
            if kind == "unpool":
                idx, size = pending.pop()
                y = F.max_unpool2d(y, idx, item.kernel_size, item.stride, item.padding,
                                   output_size=size)
            else:
                y = self.layers[item](y)
        return y


def check_mirrorable(body: nn.Module, what: str) -> nn.Sequential:
    """The body as a plain Sequential of stride-1 'same' convs, BN, ReLU and max-pools."""
    ok = isinstance(body, nn.Sequential) and all(isinstance(m, _MIRRORABLE) for m in body)
    ok = ok and all(m.stride == (1, 1) and m.padding == (m.kernel_size[0] // 2, m.kernel_size[1] // 2)
                    and m.kernel_size[0] % 2 == 1 and m.kernel_size[1] % 2 == 1
                    for m in body if isinstance(m, nn.Conv2d))
    if not ok:
        raise FerbenchError(f"{what}: the decoders mirror En2's layers, which must be stride-1 convs, "
                            f"BN, ReLU and max-pools (backbones cnn3, the paper's, or smallcnn)")
    return body


class Generator(nn.Module):
    """En1 + De1,r: the Table 1 encoder-decoder with index unpooling.

    ``residual``: G(X) = X + De1,r(En1(X)), the decoder's last deconvolution linear and
    zero-initialised, so the generator starts as the identity mapping and learns the expression
    change; otherwise G(X) = De1,r(En1(X)) with Table 1's final BN + ReLU."""

    def __init__(self, in_channels: int, image_size: int, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.encoder = build_backbone("cnn3", in_channels, image_size)[0].body
        self.decoder = MirrorDecoder(self.encoder, in_channels, linear_output=residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(*encode_with_switches(self.encoder, x))
        return x + out if self.residual else out


class VectorDecoder(nn.Module):
    """De2: En2's feature vector -> (FC, ReLU) En2's last conv map -> mirrored decoder."""

    def __init__(self, body: nn.Sequential, feature_dim: int, map_shape: tuple[int, int, int],
                 out_channels: int) -> None:
        super().__init__()
        self.map_shape = map_shape
        self.fc = nn.Sequential(nn.Linear(feature_dim, int(np.prod(map_shape))), nn.ReLU(inplace=True))
        self.decoder = MirrorDecoder(body, out_channels)

    def forward(self, z: torch.Tensor, switches: list[tuple[torch.Tensor, torch.Size]]) -> torch.Tensor:
        return self.decoder(self.fc(z).view(-1, *self.map_shape), switches)
