"""Heads on top of a backbone's feature vector."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """Linear classifier/regressor; ``tanh=True`` bounds outputs to (-1, 1) (valence/arousal)."""

    def __init__(self, in_dim: int, out_dim: int, tanh: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_dim, out_dim)
        self.tanh = tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.dropout(x))
        return torch.tanh(x) if self.tanh else x


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, batch_norm: bool = True,
        last_bn: bool = False) -> nn.Sequential:
    """Projector/predictor MLP for the SSL methods: (Linear [BN] ReLU) x (layers-1), Linear [BN].

    SimCLR/MoCo-v2: mlp(d, 2048, 128); BYOL projector/predictor: mlp(d, 4096, 256);
    Barlow Twins uses layers=3 and last_bn=True.
    """
    if layers < 1:
        raise ValueError("an MLP needs at least one layer")
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            mods.append(nn.BatchNorm1d(hidden_dim))
        mods.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    mods.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)
