"""The nuisance around a face: head pose, camera framing, background clutter, lighting and sensor
noise. A Scene holds what stays fixed over one sequence; the pose drifts within it."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SS = 2  # supersampling factor: draw at 2x, box-downsample (anti-aliasing)


def rgb(c: Any) -> tuple[int, int, int]:
    """A colour (three floats) as the 8-bit tuple that PIL draws with."""
    r, g, b = (min(255, max(0, int(round(float(v))))) for v in c)
    return (r, g, b)


@dataclasses.dataclass
class Pose:
    """Head pose of one frame relative to the camera."""

    roll: float = 0.0    # radians
    yaw: float = 0.0     # face units of sideways shift per unit depth (a cheap head turn)
    scale: float = 1.0
    dx: float = 0.0      # pixels
    dy: float = 0.0


@dataclasses.dataclass(eq=False)
class Scene:
    """Everything that stays fixed over one sequence: camera, background, lighting."""

    canvas: tuple[int, int]            # (width, height) in pixels
    center: tuple[float, float]        # face centre in pixels
    unit: float                        # pixels per face unit
    mode: str                          # "L" or "RGB"
    background: Image.Image            # RGB at SS x canvas
    gain: np.ndarray                   # (H, W, 3) illumination gradient x brightness x colour
    gain_grey: np.ndarray              # (H, W) the same for grey frames
    noise: float                       # sensor noise sigma (grey levels)
    pose: Pose
    drift: Pose                        # pose change from first to last frame
    jitter: float                      # per-frame pose jitter (relative)


def make_scene(rng: np.random.Generator, canvas: tuple[int, int], face_frac: float, *,
               mode: str = "RGB", clutter: tuple[int, int] = (2, 8), nuisance: float = 1.0,
               center: tuple[float, float] | None = None, center_jitter: float = 0.04,
               motion: float = 1.0, sensor: float = 1.0) -> Scene:
    """A random camera/background/lighting for one sequence. ``nuisance`` 0 gives a clean scene.

    ``motion`` scales the head movement within the sequence (drift and per-frame jitter) and
    ``sensor`` the sensor noise, on top of ``nuisance``: a lab recording (fixed camera, a subject
    asked to keep still, good light) has both well below 1, while the first frame's pose, the
    framing, light and background still vary from sequence to sequence.
    """
    w, h = int(canvas[0]), int(canvas[1])
    k = float(nuisance)
    km = k * float(motion)
    cx, cy = center if center is not None else (w / 2, h * 0.48)
    cx += k * rng.normal(0, center_jitter * w)
    cy += k * rng.normal(0, center_jitter * h * 0.6)
    unit = face_frac * h / 2.7 * (1 + k * rng.normal(0, 0.05))
    background = _background(rng, w, h, clutter if k > 0 else (0, 0), blur=k > 0)
    # illumination: a linear gradient in a random direction, brightness, slight colour cast
    ang = rng.uniform(0, 2 * math.pi)
    strength = k * rng.uniform(0.0, 0.35)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(ang) * (xx / max(w - 1, 1) - 0.5) + np.sin(ang) * (yy / max(h - 1, 1) - 0.5))
    bright = 1.0 + k * rng.uniform(-0.2, 0.12)
    cast = 1.0 + k * rng.normal(0, 0.04, 3)
    gain = ((1 + 2 * strength * ramp) * bright)[:, :, None] * cast[None, None, :].astype(np.float32)
    pose = Pose(roll=k * rng.normal(0, math.radians(4)), yaw=k * rng.normal(0, 0.08),
                scale=1.0, dx=0.0, dy=0.0)
    drift = Pose(roll=km * rng.normal(0, math.radians(1.5)), yaw=km * rng.normal(0, 0.03),
                 scale=km * rng.normal(0, 0.02), dx=km * rng.normal(0, 0.01 * w),
                 dy=km * rng.normal(0, 0.01 * h))
    return Scene(canvas=(w, h), center=(cx, cy), unit=unit, mode=mode, background=background,
                 gain=gain.astype(np.float32), gain_grey=gain.mean(axis=2).astype(np.float32),
                 noise=k * float(sensor) * rng.uniform(1.5, 6.0), pose=pose,
                 drift=drift, jitter=km * 0.004)


def _background(rng: np.random.Generator, w: int, h: int, clutter: tuple[int, int],
                blur: bool = True) -> Image.Image:
    W, H = w * SS, h * SS
    c0 = rng.uniform(50, 210, 3)
    c1 = np.clip(c0 + rng.normal(0, 35, 3), 0, 255)
    t = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    col = (c0[None, :] * (1 - t) + c1[None, :] * t).astype(np.uint8)  # (H, 3)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (H, W, 3))))
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(clutter[0], clutter[1] + 1)) if clutter[1] > 0 else 0
    for _ in range(n):
        kind = int(rng.integers(4))
        color = rgb(rng.uniform(15, 240, 3))
        x0, y0 = rng.uniform(-0.1, 1.0) * W, rng.uniform(-0.1, 1.0) * H
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * W, y0 + rng.uniform(0.05, 0.5) * H
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        elif kind == 2:
            draw.line([x0, y0, x1, y1], fill=color, width=int(rng.integers(1, 4) * SS))
        else:
            pts = rng.uniform(0, 1, (int(rng.integers(3, 6)), 2)) * [W, H]
            draw.polygon(pts.ravel().tolist(), fill=color)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    return img
