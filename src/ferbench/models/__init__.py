"""Backbones and heads. ``build_backbone(name, in_channels, image_size) -> (module, feature_dim)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from ferbench.errors import FerbenchError
from ferbench.models.backbones import BACKBONES, Backbone
from ferbench.models.heads import LinearHead, mlp

__all__ = ["Backbone", "LinearHead", "backbone_names", "build_backbone", "mlp"]


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, in_channels: int = 3, image_size: int = 64,
                   **options: Any) -> tuple[nn.Module, int]:
    """Build a randomly initialised backbone; ``options`` go to its builder (e.g. width)."""
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise FerbenchError(
            f"backbone: unknown name {name!r} (known: {', '.join(backbone_names())})") from None
    if in_channels not in (1, 3):
        raise FerbenchError(f"backbone: in_channels must be 1 or 3, got {in_channels}")
    if image_size < 16:
        raise FerbenchError(f"backbone: image_size {image_size} is too small (minimum 16)")
    module = builder(in_channels, image_size, **options)
    return module, module.feature_dim
