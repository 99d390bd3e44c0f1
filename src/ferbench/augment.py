"""Batched image augmentation with per-sample random parameters, on the batch's device.

torchvision.transforms.v2 draws ONE set of random parameters for a whole batch tensor; face
training needs a different crop/flip/jitter per sample. Here every sample gets its own draw;
all geometric parts (random resized crop, small rotation, flip) compose into one affine matrix
per sample and are applied with a single ``affine_grid`` + ``grid_sample``.

Parameters are drawn on the CPU from a ``torch.Generator`` (a few numbers per sample), then
moved to the device: the draws are the same on CPU and GPU, and the generator's state is all a
checkpoint needs to resume the exact sequence.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ferbench.errors import FerbenchError

#: ITU-R BT.601 luma weights, as PIL's "L" conversion uses.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
#: smallest standard deviation per-image standardisation divides by ([0, 1] grey levels)
STANDARDIZE_EPS = 1.0 / 255


@dataclasses.dataclass
class AugmentConfig:
    flip: float = 0.5                      # probability of a horizontal flip
    scale: tuple[float, float] = (0.85, 1.0)   # crop area as a fraction of the image
    ratio: tuple[float, float] = (0.9, 1.1)    # crop aspect ratio w/h
    rotate: float = 10.0                   # max |rotation| in degrees
    brightness: float = 0.2                # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2                  # factor drawn from [1 - c, 1 + c]
    mean: float = 0.5                      # normalisation: (x - mean) / std, per channel alike
    std: float = 0.5
    standardize: bool = False              # instead: each image to mean 0, std 1 (its own
                                           # statistics), which evens out lighting and exposure
    enabled: bool = True

    @classmethod
    def from_settings(cls, given: Mapping[str, Any] | None, where: str = "augment") -> "AugmentConfig":
        given = dict(given or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise FerbenchError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
        for key in ("scale", "ratio"):
            if key in given:
                lo, hi = (float(v) for v in given[key])
                if not 0 < lo <= hi:
                    raise FerbenchError(f"{where}.{key}: need 0 < low <= high, got {given[key]!r}")
                given[key] = (lo, hi)
        return cls(**given)


@dataclasses.dataclass
class AugmentParams:
    """Per-sample parameters, each a tensor of shape [B]."""

    flip: torch.Tensor        # bool
    scale_x: torch.Tensor     # crop width / image width
    scale_y: torch.Tensor
    shift_x: torch.Tensor     # crop centre, normalised coordinates in [-1, 1]
    shift_y: torch.Tensor
    angle: torch.Tensor       # radians
    brightness: torch.Tensor  # multiplicative factor
    contrast: torch.Tensor    # blend factor with the per-image mean grey level

    @classmethod
    def identity(cls, n: int) -> "AugmentParams":
        ones, zeros = torch.ones(n), torch.zeros(n)
        return cls(torch.zeros(n, dtype=torch.bool), ones, ones.clone(), zeros, zeros.clone(),
                   zeros.clone(), ones.clone(), ones.clone())

    def to(self, device: torch.device) -> "AugmentParams":
        if self.angle.device == torch.device(device):
            return self
        # one host->device copy for all fields instead of eight
        names = [f.name for f in dataclasses.fields(self)]
        packed = torch.stack([getattr(self, n).float() for n in names]).to(device, non_blocking=True)
        fields = dict(zip(names, packed.unbind(0)))
        fields["flip"] = fields["flip"] > 0.5
        return AugmentParams(**fields)

    def theta(self) -> torch.Tensor:
        """[B, 2, 3] affine matrices mapping output to input coordinates (affine_grid's convention)."""
        cos, sin = torch.cos(self.angle), torch.sin(self.angle)
        sx = torch.where(self.flip, -self.scale_x, self.scale_x)
        sy = self.scale_y
        row0 = torch.stack([sx * cos, -sy * sin, self.shift_x], dim=1)
        row1 = torch.stack([sx * sin, sy * cos, self.shift_y], dim=1)
        return torch.stack([row0, row1], dim=1)


class Augmenter:
    """uint8 [B, C, H, W] on any device -> float [B, channels, H, W], augmented and normalised."""

    def __init__(self, config: AugmentConfig, channels: int, generator: torch.Generator) -> None:
        self.config = config
        self.channels = channels
        self.generator = generator

    # -- parameters ----------------------------------------------------------------------
    def _uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self.generator)

    def sample(self, n: int) -> AugmentParams:
        """Draw per-sample parameters (CPU; always the same number of draws per call)."""
        c = self.config
        flip = torch.rand(n, generator=self.generator) < c.flip
        area = self._uniform(n, *c.scale)
        log_ratio = self._uniform(n, math.log(c.ratio[0]), math.log(c.ratio[1]))
        ratio = torch.exp(log_ratio)
        scale_x = torch.sqrt(area * ratio).clamp(max=1.0)
        scale_y = torch.sqrt(area / ratio).clamp(max=1.0)
        # the crop stays inside the image: centre within +-(1 - scale) in normalised units
        shift_x = (2 * torch.rand(n, generator=self.generator) - 1) * (1 - scale_x)
        shift_y = (2 * torch.rand(n, generator=self.generator) - 1) * (1 - scale_y)
        angle = self._uniform(n, -c.rotate, c.rotate) * (math.pi / 180.0)
        brightness = self._uniform(n, 1 - c.brightness, 1 + c.brightness)
        contrast = self._uniform(n, 1 - c.contrast, 1 + c.contrast)
        return AugmentParams(flip, scale_x, scale_y, shift_x, shift_y, angle, brightness, contrast)

    # -- application ---------------------------------------------------------------------
    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1] with the wanted number of channels (grey = BT.601 luma)."""
        x = images.float().div_(255.0)
        have = x.shape[1]
        if have == self.channels:
            return x
        if have == 3 and self.channels == 1:
            w = x.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)
            return (x * w).sum(dim=1, keepdim=True)
        if have == 1 and self.channels == 3:
            return x.expand(-1, 3, -1, -1).contiguous()
        raise FerbenchError(f"cannot convert {have}-channel images to {self.channels} channels")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.standardize:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
            # a flat image (std 0) becomes all zeros instead of NaN
            return (x - mean) / std.clamp_min(STANDARDIZE_EPS)
        return (x - self.config.mean) / self.config.std

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment with given per-sample parameters; returns normalised float images."""
        x = self.to_float(images)
        p = params.to(x.device)
        grid = F.affine_grid(p.theta().to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        b = p.brightness.view(-1, 1, 1, 1).to(x.dtype)
        c = p.contrast.view(-1, 1, 1, 1).to(x.dtype)
        grey_mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x * b - grey_mean * b) * c + grey_mean * b).clamp_(0.0, 1.0)
        return self.normalise(x)

    def __call__(self, images: torch.Tensor, train: bool = True) -> torch.Tensor:
        """Training: fresh per-sample parameters; evaluation (or disabled): only convert."""
        if not train or not self.config.enabled:
            return self.normalise(self.to_float(images))
        return self.apply(images, self.sample(images.shape[0]))
