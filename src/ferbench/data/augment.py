"""Batched image augmentation with per-sample random parameters, on the batch's device.

torchvision.transforms.v2 draws ONE set of random parameters for a whole batch tensor; face
training needs a different crop/flip/jitter per sample. Here every sample gets its own draw;
all geometric parts (random resized crop, small rotation, flip) compose into one affine matrix
per sample and are applied with a single ``affine_grid`` + ``grid_sample``.

Parameters are drawn on the CPU from a ``torch.Generator`` (a few numbers per sample), then
moved to the device: the draws are the same on CPU and GPU, and the generator's state is all a
checkpoint needs to resume the exact sequence.

Colour jitter and blur (SimCLR-style lists; off unless configured, and then drawn only when on,
so configurations without them draw exactly what they did before):

* ``saturation`` / ``hue``: per-sample factor in [1 - s, 1 + s] and hue shift in [-h, h] (a
  fraction of the hue circle), as torchvision.transforms.v2's ``adjust_saturation`` /
  ``adjust_hue`` with one factor per sample (v2 takes one per call): the blend with
  ``v2.functional.rgb_to_grayscale`` and a batched HSV round trip. Colour inputs only: with a
  grey (1-channel) input they are skipped, and the Augmenter says so once in the log;
* ``jitter_p``: probability that a sample gets the colour jitter (brightness, contrast,
  saturation, hue) at all, as SimCLR's RandomApply(ColorJitter, p=0.8); default 1;
* ``blur``: probability of a Gaussian blur (``blur_kernel`` wide, sigma uniform in
  ``blur_sigma``), as v2's ``gaussian_blur`` (reflect padding) with a sigma per sample: one
  grouped convolution over the batch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ferbench.errors import FerbenchError

log = logging.getLogger(__name__)
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
    saturation: float = 0.0                # factor drawn from [1 - s, 1 + s] (colour inputs only)
    hue: float = 0.0                       # hue shift drawn from [-h, h], h <= 0.5 (colour only)
    jitter_p: float = 1.0                  # probability of the colour jitter (b, c, s, h) per sample
    blur: float = 0.0                      # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)   # its sigma, uniform (pixels)
    blur_kernel: int = 3                   # its kernel size (odd)
    # normalisation: (x - mean) / std; one value for every channel, or one per RGB channel
    # (ImageNet weights' statistics; grey input takes their average)
    mean: float | tuple[float, ...] = 0.5
    std: float | tuple[float, ...] = 0.5
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
        for key in ("scale", "ratio", "blur_sigma"):
            if key in given:
                lo, hi = (float(v) for v in given[key])
                if not 0 < lo <= hi:
                    raise FerbenchError(f"{where}.{key}: need 0 < low <= high, got {given[key]!r}")
                given[key] = (lo, hi)
        for key, top in (("saturation", 1.0), ("hue", 0.5), ("jitter_p", 1.0), ("blur", 1.0)):
            if key in given and not 0.0 <= float(given[key]) <= top:
                raise FerbenchError(f"{where}.{key}: must be in [0, {top:g}], got {given[key]!r}")
        for key in ("mean", "std"):
            if isinstance(given.get(key), (list, tuple)):
                values = tuple(float(v) for v in given[key])
                if len(values) not in (1, 3):
                    raise FerbenchError(f"{where}.{key}: one value or one per RGB channel, got {given[key]!r}")
                given[key] = values if len(values) == 3 else values[0]
        std = given.get("std", cls.std)
        if min(std if isinstance(std, tuple) else (std,)) <= 0:
            raise FerbenchError(f"{where}.std: must be positive, got {std!r}")
        kernel = given.get("blur_kernel", cls.blur_kernel)
        if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise FerbenchError(f"{where}.blur_kernel: must be an odd positive integer, got {kernel!r}")
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
    saturation: torch.Tensor  # blend factor with the image's grey version (1: unchanged)
    hue: torch.Tensor         # hue shift, fraction of the circle (0: unchanged)
    blur_sigma: torch.Tensor  # Gaussian blur sigma in pixels (0: no blur)

    @classmethod
    def identity(cls, n: int) -> "AugmentParams":
        ones, zeros = torch.ones(n), torch.zeros(n)
        return cls(torch.zeros(n, dtype=torch.bool), ones, ones.clone(), zeros, zeros.clone(),
                   zeros.clone(), ones.clone(), ones.clone(), ones.clone(), zeros.clone(), zeros.clone())

    def to(self, device: torch.device) -> "AugmentParams":
        if self.angle.device == torch.device(device):
            return self
        # one host->device copy for all fields instead of one per field
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
        #: hue/saturation jitter applies (colour inputs only)
        self.colour_jitter = channels == 3 and (config.saturation > 0 or config.hue > 0)
        if channels != 3 and (config.saturation > 0 or config.hue > 0) and config.enabled:
            log.warning(f"augment: hue/saturation jitter skipped: the inputs are grey ({channels} channel)")

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
        ones, zeros = torch.ones(n), torch.zeros(n)
        # the draws below happen only when their option is on (older configs draw as before)
        saturation, hue, sigma = ones, zeros, zeros
        if self.colour_jitter:
            saturation = self._uniform(n, 1 - c.saturation, 1 + c.saturation)
            hue = self._uniform(n, -c.hue, c.hue)
        if c.jitter_p < 1:
            off = torch.rand(n, generator=self.generator) >= c.jitter_p
            brightness, contrast = torch.where(off, ones, brightness), torch.where(off, ones, contrast)
            saturation, hue = torch.where(off, ones, saturation), torch.where(off, zeros, hue)
        if c.blur > 0:
            on = torch.rand(n, generator=self.generator) < c.blur
            sigma = torch.where(on, self._uniform(n, *c.blur_sigma), zeros)
        return AugmentParams(flip, scale_x, scale_y, shift_x, shift_y, angle, brightness, contrast,
                             saturation, hue, sigma)

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
        return (x - self._per_channel(self.config.mean, x)) / self._per_channel(self.config.std, x)

    @staticmethod
    def _per_channel(value: float | tuple[float, ...], x: torch.Tensor) -> float | torch.Tensor:
        if not isinstance(value, tuple):
            return value
        if x.shape[1] == 1:
            return sum(value) / len(value)
        return x.new_tensor(value).view(1, -1, 1, 1)

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
        if self.colour_jitter and x.shape[1] == 3:
            x = adjust_hue(adjust_saturation(x, p.saturation), p.hue)
        if self.config.blur > 0:
            x = gaussian_blur(x, p.blur_sigma, self.config.blur_kernel)
        return self.normalise(x)

    def __call__(self, images: torch.Tensor, train: bool = True) -> torch.Tensor:
        """Training: fresh per-sample parameters; evaluation (or disabled): only convert."""
        if not train or not self.config.enabled:
            return self.normalise(self.to_float(images))
        return self.apply(images, self.sample(images.shape[0]))


# -- per-sample colour and blur ops on batches [B, C, H, W] in [0, 1] ------------------------------
def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """v2's adjust_saturation with a factor per sample: blend with the grey image."""
    from torchvision.transforms.v2.functional import rgb_to_grayscale

    f = factor.to(x.dtype).view(-1, 1, 1, 1)
    return (x * f + rgb_to_grayscale(x) * (1 - f)).clamp(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """v2's adjust_hue with a shift per sample (a fraction of the hue circle): RGB -> HSV, rotate
    the hue, back. A grey pixel (no chroma) has no hue and stays as it is."""
    r, g, b = x.unbind(1)
    value, _ = x.max(dim=1)
    low, _ = x.min(dim=1)
    chroma = value - low
    has = chroma > 0
    c = torch.where(has, chroma, torch.ones_like(chroma))
    # hue in sextants (0..6) from whichever channel is the maximum
    h = torch.where(value == r, ((g - b) / c) % 6, torch.where(value == g, (b - r) / c + 2, (r - g) / c + 4))
    h = (h / 6 + shift.to(x.dtype).view(-1, 1, 1)) % 1.0
    sat = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    # back: each channel n in (5, 3, 1) is v - v s max(0, min(k, 4 - k, 1)), k = (n + 6 h) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = (n + 6 * h.unsqueeze(1)) % 6
    weight = torch.minimum(torch.minimum(k, 4 - k), torch.ones_like(k)).clamp_min(0.0)
    out = value.unsqueeze(1) - (value * sat).unsqueeze(1) * weight
    return torch.where(has.unsqueeze(1), out, x).clamp(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """v2's gaussian_blur (``kernel`` wide, reflect padding) with a sigma per sample; sigma 0
    leaves the sample as it is. Separable, one grouped convolution per direction."""
    b, ch, h, w = x.shape
    radius = kernel // 2
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device).view(1, -1)
    s = sigma.to(x.dtype).view(-1, 1)
    weights = torch.exp(-0.5 * (t / s.clamp_min(1e-6)) ** 2)
    weights = torch.where(s > 0, weights, (t == 0).to(x.dtype).expand_as(weights))
    weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(ch, dim=0)   # [B*C, k]
    y = x.reshape(1, b * ch, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), weights.view(b * ch, 1, 1, -1), groups=b * ch)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), weights.view(b * ch, 1, -1, 1), groups=b * ch)
    return y.view(b, ch, h, w)
