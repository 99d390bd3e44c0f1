"""Facial regions of face crops, batched on tensors, for seed 001's FaceSwap and MaskFN.

Regions are boxes ``[y0, y1, x0, x1]`` in fractions of the crop's height and width, one per
image: from the image's 68 iBUG landmarks (the face cache's landmarks.npy, see
:func:`landmark_boxes`: the points of the part, padded) where it has them, else the *canonical*
boxes of an aligned crop (``DEFAULT_REGIONS``). The authors used the parts' convex hulls; boxes
keep everything a few batched comparisons. FaceSwap aligns the expression's face onto the
identity's by a similarity transform fitted to their landmarks (:func:`similarity_theta`,
batched Procrustes); without landmarks on either side the crops' own alignment stands in.

* :func:`landmark_boxes`: per-image boxes of landmark parts (NaN rows: no usable points);
* :func:`box_masks`: the union of each image's boxes, feathered -> [B, 1, H, W] in [0, 1];
* :func:`crop_boxes`: each image's own box resized to a square [B, C, size, size];
* :func:`similarity_theta`: affine_grid matrices warping images so their points land on others';

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
#: the iBUG 68-point parts (0-based indices)
IBUG = {"brows": tuple(range(17, 27)), "nose": tuple(range(27, 36)), "eyes": tuple(range(36, 48)),
        "mouth": tuple(range(48, 68))}
#: each region as landmark parts and padding (fraction of the box's larger side on every side)
LANDMARK_REGIONS: dict[str, tuple[tuple[str, ...], float]] = {
    "eyes_brows": (("brows", "eyes"), 0.08),
    "nose_mouth": (("nose", "mouth"), 0.08),
    "eyes": (("eyes",), 0.15),
    "mouth": (("mouth",), 0.15),
}


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


# -- per-image regions from landmarks --------------------------------------------------------------
def landmark_boxes(points: torch.Tensor, region: str) -> torch.Tensor:
    """[B, 4] boxes [y0, y1, x0, x1] (crop fractions, clipped to the crop) of ``region``
    (LANDMARK_REGIONS) from 68-point landmarks [B, 68, 2] (x, y fractions); NaN rows where the
    image has no usable points (missing, another count, or a box empty after clipping)."""
    b = points.shape[0]
    nan = torch.full((b, 4), float("nan"), device=points.device)
    if points.ndim != 3 or points.shape[1] != 68:
        return nan
    parts, pad = LANDMARK_REGIONS[region]
    idx = [i for part in parts for i in IBUG[part]]
    pts = points[:, idx].float()
    lo, hi = pts.amin(dim=1), pts.amax(dim=1)                  # [B, 2] (x, y)
    margin = pad * (hi - lo).amax(dim=1, keepdim=True)
    lo, hi = (lo - margin).clamp(0.0, 1.0), (hi + margin).clamp(0.0, 1.0)
    boxes = torch.stack([lo[:, 1], hi[:, 1], lo[:, 0], hi[:, 0]], dim=1)
    ok = torch.isfinite(pts).all(dim=(1, 2)) & (hi - lo > 1e-3).all(dim=1)
    return torch.where(ok.view(-1, 1), boxes, nan)


def boxes_or_default(boxes: torch.Tensor, default: Box) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes with NaN rows replaced by ``default``, bool [B]: the row came from landmarks)."""
    ok = torch.isfinite(boxes).all(dim=1)
    fallback = torch.tensor(check_box(default), dtype=torch.float32, device=boxes.device).expand_as(boxes)
    return torch.where(ok.view(-1, 1), boxes.float(), fallback), ok


def box_masks(boxes: torch.Tensor, h: int, w: int, feather: float = 0.03) -> torch.Tensor:
    """[B, 1, h, w]: 1 inside any of each image's boxes [B, G, 4] (fractions), 0 outside, edges
    feathered by a Gaussian of sigma ``feather`` x the crop size. Pixel (i, j) is inside when
    its centre is."""
    ys = (torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5) / w
    y0, y1, x0, x1 = (boxes[..., i].unsqueeze(-1) for i in range(4))       # [B, G, 1]
    in_y = (ys >= y0) & (ys <= y1)                                          # [B, G, h]
    in_x = (xs >= x0) & (xs <= x1)                                          # [B, G, w]
    mask = (in_y.unsqueeze(-1) & in_x.unsqueeze(-2)).any(dim=1, keepdim=True).float()
    return gaussian_blur(mask, feather * max(h, w)).clamp_(0.0, 1.0)


def crop_boxes(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's own box [B, 4] (fractions) of [B, C, H, W], resampled (bilinear) to
    [B, C, size, size]: one grid_sample for the batch."""
    y0, y1, x0, x1 = boxes.to(x.dtype).unbind(1)
    zeros = torch.zeros_like(x0)
    # output normalised (-1..1) -> input normalised: centre 2c - 1, half-extent (x1 - x0)
    theta = torch.stack([torch.stack([x1 - x0, zeros, x0 + x1 - 1], dim=1),
                         torch.stack([zeros, y1 - y0, y0 + y1 - 1], dim=1)], dim=1)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def similarity_theta(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """[B, 2, 3] affine_grid matrices (align_corners=False) that warp each image whose points
    are ``moving`` [B, N, 2] (x, y crop fractions) so that they land on ``fixed``: the least-
    squares similarity fixed <- moving (Procrustes, no reflection), inverted for sampling.
    Rows with a non-finite point get the identity."""
    ok = torch.isfinite(moving).all(dim=(1, 2)) & torch.isfinite(fixed).all(dim=(1, 2))
    m = torch.where(ok.view(-1, 1, 1), moving, torch.zeros_like(moving)).double()
    f = torch.where(ok.view(-1, 1, 1), fixed, torch.zeros_like(fixed)).double()
    # normalised coordinates: 2 * fraction - 1
    m, f = 2 * m - 1, 2 * f - 1
    mc, fc = m.mean(dim=1, keepdim=True), f.mean(dim=1, keepdim=True)
    m0, f0 = m - mc, f - fc
    cov = f0.transpose(1, 2) @ m0                                   # [B, 2, 2]
    u, sv, vt = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vt))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), d], dim=1))
    rot = u @ fix @ vt                                              # fixed = s R moving + t
    scale = (sv * fix.diagonal(dim1=1, dim2=2)).sum(dim=1) / (m0 ** 2).sum(dim=(1, 2)).clamp_min(1e-12)
    # sampling maps an output (fixed-frame) point p to the moving image: R^T (p - t) / s
    inv = rot.transpose(1, 2) / scale.clamp_min(1e-12).view(-1, 1, 1)
    t = fc.squeeze(1) - scale.view(-1, 1) * (rot @ mc.transpose(1, 2)).squeeze(-1)
    theta = torch.cat([inv, -(inv @ t.unsqueeze(-1))], dim=2)
    eye = torch.eye(2, 3, dtype=theta.dtype, device=theta.device).expand_as(theta)
    ok = ok & torch.isfinite(theta).all(dim=(1, 2)) & (scale > 1e-6)
    return torch.where(ok.view(-1, 1, 1), theta, eye).float()


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """grid_sample [B, C, H, W] through affine_grid matrices [B, 2, 3] (border padding)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
