"""Facial regions of aligned face crops, batched on tensors, for seed 001's FaceSwap and MaskFN.

The face cache holds crops aligned by each dataset's landmarks (or a detector), but not the
landmark points themselves, so the regions are *canonical* boxes of the aligned crop (fractions
``[y0, y1, x0, x1]`` of its height and width) instead of the convex hulls of 68 landmarks the
authors used: eyes and brows, nose and mouth (FaceSwap), eyes and mouth (MaskFN's patches).
Both faces of a swap are aligned crops, so the landmark alignment step is the identity.

* :func:`region_mask`: the union of boxes, feathered by a Gaussian blur -> [1, 1, H, W] in [0, 1];
* :func:`gaussian_blur`: separable Gaussian blur of [B, C, H, W] (reflect padding);
* :func:`face_swap`: paste the masked regions of ``source`` (the expression) onto ``base``
  (another subject's face) after colour correction source * blur(base) / blur(source) (the
  classic face-swap's correction, blur width 0.6 x the pupil distance);
* :func:`crop_patches`: the box of each image, resized to a square [B, C, size, size].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

Box = Sequence[float]   # [y0, y1, x0, x1], fractions of the crop

#: canonical boxes of an aligned face crop (inferred; override per dataset in the method block)
DEFAULT_REGIONS: dict[str, list[float]] = {
    "eyes_brows": [0.18, 0.52, 0.12, 0.88],
    "nose_mouth": [0.45, 0.92, 0.28, 0.72],
    "eyes": [0.28, 0.52, 0.12, 0.88],
    "mouth": [0.66, 0.92, 0.25, 0.75],
}
#: pupil distance as a fraction of the crop width (canonical eye centres at 0.32 and 0.68)
PUPIL_DISTANCE = 0.36


def check_box(box: Box) -> tuple[float, float, float, float]:
    y0, y1, x0, x1 = (float(v) for v in box)
    if not (0.0 <= y0 < y1 <= 1.0 and 0.0 <= x0 < x1 <= 1.0):
        raise ValueError(f"box {list(box)}: need 0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1")
    return y0, y1, x0, x1


def _pixels(box: Box, h: int, w: int) -> tuple[int, int, int, int]:
    y0, y1, x0, x1 = check_box(box)
    top, left = int(math.floor(y0 * h)), int(math.floor(x0 * w))
    return top, max(int(math.ceil(y1 * h)), top + 1), left, max(int(math.ceil(x1 * w)), left + 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] (kernel radius 3 sigma, reflect padding)."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    radius = max(1, min(int(math.ceil(3 * sigma)), min(h, w) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def region_mask(boxes: Sequence[Box], h: int, w: int, feather: float = 0.03,
                device: torch.device | None = None) -> torch.Tensor:
    """[1, 1, h, w]: 1 inside any box, 0 outside, edges feathered by a Gaussian of sigma
    ``feather`` x the crop size."""
    mask = torch.zeros(1, 1, h, w, device=device)
    for box in boxes:
        top, bottom, left, right = _pixels(box, h, w)
        mask[..., top:bottom, left:right] = 1.0
    return gaussian_blur(mask, feather * max(h, w)).clamp_(0.0, 1.0)


def face_swap(base: torch.Tensor, source: torch.Tensor, mask: torch.Tensor,
              pupil_distance: float = PUPIL_DISTANCE) -> torch.Tensor:
    """``source``'s masked regions on ``base`` (float [B, C, H, W] in [0, 1]), colour-corrected
    to ``base``'s local colour: source * blur(base) / blur(source)."""
    sigma = 0.6 * pupil_distance * base.shape[-1] / 6   # the blur kernel spans 0.6 x pupil distance
    blur_b, blur_s = gaussian_blur(base, sigma), gaussian_blur(source, sigma)
    corrected = (source * blur_b / blur_s.clamp(min=1.0 / 255)).clamp(0.0, 1.0)
    return mask * corrected + (1 - mask) * base


def crop_patches(x: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """The box of every image of [B, C, H, W], resized (bilinear) to [B, C, size, size]."""
    top, bottom, left, right = _pixels(box, *x.shape[-2:])
    return F.interpolate(x[..., top:bottom, left:right], size=(size, size), mode="bilinear",
                         align_corners=False)
