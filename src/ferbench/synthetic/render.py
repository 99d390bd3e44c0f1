"""Turning a face-model state (identity, AU activations) in a scene into pixels and landmarks.

A frame is drawn back to front at SS x the canvas (head, fine lines, hair, brows, eyes, nose,
mouth), box-downsampled, then multiplied by a blurred coarse shading layer and the scene's light,
and sensor noise is added. Landmarks go through the same pose as the drawing.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ferbench.synthetic.face import (
    AU_INDEX, AU_NAMES, Identity, expression_aus, intensity_ramp, valence_arousal)
from ferbench.synthetic.geometry import (
    LANDMARK_DEPTH, PHI_FACE, contour, face_geometry, lower_lip_bottom)
from ferbench.synthetic.scene import SS, Pose, Scene, make_scene, rgb


class _Mapper:
    """Face units -> pixels through the pose (roll, yaw shift by depth, scale, translation)."""

    def __init__(self, scene: Scene, pose: Pose) -> None:
        c, s = math.cos(pose.roll), math.sin(pose.roll)
        self.m = scene.unit * pose.scale * np.array([[c, -s], [s, c]])
        self.t = np.array([scene.center[0] + pose.dx, scene.center[1] + pose.dy])
        self.yaw = pose.yaw
        self.unit = scene.unit * pose.scale
        self.unit_hi = self.unit * SS

    def px(self, pts: np.ndarray, z: Any = 0.0) -> np.ndarray:
        p = np.array(pts, dtype=float, copy=True).reshape(-1, 2)
        p[:, 0] += self.yaw * np.asarray(z, float)
        return p @ self.m.T + self.t

    def lo(self, pts: np.ndarray, z: Any = 0.0) -> list[float]:
        # 1x drawing (the blurred shading layer): pixel i centred on coordinate i
        return self.px(pts, z).ravel().tolist()

    def hi(self, pts: np.ndarray, z: Any = 0.0) -> list[float]:
        # low-res pixel i is centred on hi-res coordinate SS*i + (SS-1)/2
        return (self.px(pts, z) * SS + (SS - 1) / 2).ravel().tolist()

    def w(self, units: float) -> int:
        return max(1, int(round(units * self.unit_hi)))


_CIRCLES: dict[int, np.ndarray] = {}
_QUADS: dict[int, np.ndarray] = {}


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    if n not in _CIRCLES:
        a = np.linspace(0, 2 * math.pi, n, endpoint=False)
        _CIRCLES[n] = np.stack([np.cos(a), np.sin(a)], axis=1)
    return _CIRCLES[n] * (rx, ry) + (cx, cy)


def _quad(p0: Any, p1: Any, p2: Any, n: int = 8) -> np.ndarray:
    """Quadratic Bezier as a polyline."""
    if n not in _QUADS:
        t = np.linspace(0, 1, n)
        _QUADS[n] = np.stack([(1 - t) ** 2, 2 * (1 - t) * t, t ** 2], axis=1)
    return _QUADS[n] @ np.array([p0, p1, p2], dtype=float)


def _shade(level: float) -> int:
    # shade images hold 200 for "unchanged" so that highlights (>1) are possible
    return min(255, max(0, int(round(200 * level))))


def _skin(idn: Identity, level: float = 1.0) -> tuple[int, int, int]:
    """The subject's skin colour scaled by ``level`` (below 1: a line or a shadow)."""
    return rgb(np.asarray(idn.skin) * level)


# --------------------------------------------------------------------------------------------
# drawing steps, back to front

def _draw_head(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity, face: np.ndarray) -> None:
    """Body, neck, long hair behind the head, ears, and the face's skin."""
    a = idn.face_w
    draw.polygon(m.hi([[-2.4, 3.6], [-2.1, 1.95], [-0.5, 1.55], [0.5, 1.55], [2.1, 1.95],
                       [2.4, 3.6]]), fill=rgb(idn.clothes))
    neck_bottom = max(1.75, idn.face_h + 0.4)
    draw.polygon(m.hi([[-0.42 * a, 0.4], [0.42 * a, 0.4], [0.48 * a, neck_bottom],
                       [0.0, neck_bottom + 0.15], [-0.48 * a, neck_bottom]], -0.1),
                 fill=_skin(idn, 0.8))
    if idn.hair_long:
        A, B = a + idn.hair_volume + 0.1, idn.face_h + idn.hair_volume
        th = np.linspace(math.pi, 2 * math.pi, 16)
        top = np.stack([A * np.cos(th), B * np.sin(th)], axis=1)
        back = np.vstack([[[-A * 1.02, idn.face_h * 0.95]], top, [[A * 1.02, idn.face_h * 0.95]],
                          [[0.6 * a, idn.face_h * 0.7]], [[-0.6 * a, idn.face_h * 0.7]]])
        draw.polygon(m.hi(back), fill=rgb(np.asarray(idn.hair) * 0.85))
    ear_y = idn.eye_y + 0.17
    for s in (-1, 1):
        ear = _ellipse(s * a * 1.0, ear_y, 0.09 * idn.ear, 0.2 * idn.ear, 14)
        draw.polygon(m.hi(ear, -0.15), fill=_skin(idn, 0.92))
    draw.polygon(m.hi(face), fill=_skin(idn))


def _coarse_shading(m: _Mapper, canvas: tuple[int, int], idn: Identity, geo: dict[str, Any],
                    g: dict[str, float], face: np.ndarray) -> np.ndarray:
    """Face roundness, eye sockets, cheeks: a blurred 1x gain layer (float32, 1 = unchanged)."""
    w, h = canvas
    coarse = Image.new("L", (w, h), 200)
    cd = ImageDraw.Draw(coarse)
    cd.polygon(m.lo(face), fill=_shade(0.8))
    cd.polygon(m.lo(face * [0.8, 0.8] + [0, 0.06]), fill=_shade(1.0))
    nose = geo["nose"]
    for s, eye in zip((-1, 1), geo["eyes"]):
        c = eye["center"]
        cd.polygon(m.lo(_ellipse(c[0], c[1] - 0.04, idn.eye_w * 1.45, idn.eye_h * 2.6 + 0.02),
                        0.1), fill=_shade(0.72))
        cheek_y = idn.eye_y + 0.33 - 0.06 * g["AU6"]
        cd.polygon(m.lo(_ellipse(s * idn.eye_sep * 1.05, cheek_y, 0.2, 0.14)),
                   fill=_shade(1.05 + 0.12 * g["AU6"]))
        cd.line(m.lo(_quad([s * 0.07, idn.eye_y + 0.05], [s * 0.1, idn.nose_tip - 0.15],
                           [s * nose["nw"] * 1.05, nose["yn"] - 0.05]), 0.25),
                fill=_shade(0.85), width=max(1, int(round(0.05 * m.unit))))
    cd.polygon(m.lo(_ellipse(0, (idn.eye_y + idn.nose_tip) / 2, 0.045, 0.2), 0.3),
               fill=_shade(1.1))
    cd.polygon(m.lo(_ellipse(0, nose["yn"] + 0.045, nose["nw"] * 0.95, 0.045), 0.3),
               fill=_shade(0.72))
    lo_y = lower_lip_bottom(geo["mouth"])
    cd.polygon(m.lo(_ellipse(0, lo_y + 0.07, idn.mouth_w * 0.6, 0.05), 0.15), fill=_shade(0.85))
    shade = np.asarray(coarse.filter(ImageFilter.GaussianBlur(0.09 * m.unit)), np.float32)
    shade *= np.float32(1 / 200)
    return shade


def _draw_side_lines(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity,
                     geo: dict[str, Any], g: dict[str, float]) -> None:
    """Per side: nasolabial fold, crow's feet, dimple, lid crease, lower-lid line."""
    nose, mouth = geo["nose"], geo["mouth"]
    for s, sfx, eye, corner in zip((-1, 1), ("L", "R"), geo["eyes"], mouth["corners"]):
        depth = min(1.0, 0.12 * idn.fold_depth + 0.4 * g["AU12" + sfx] + 0.25 * g["AU10"]
                    + 0.2 * g["AU9"] + 0.1 * g["AU6"])
        fold = _quad([s * nose["nw"] * 1.15, nose["yn"] - 0.03],
                     [s * (nose["nw"] + 0.22), (nose["yn"] + corner[1]) / 2],
                     [corner[0] * 1.15, corner[1] + 0.1])
        if depth > 0.02:
            draw.line(m.hi(fold, 0.15), fill=_skin(idn, 1 - 0.4 * depth), width=m.w(0.022))
        crow = 0.8 * g["AU6"] + 0.2 * g["AU7"]
        if crow > 0.02:
            ox, oy = s * (idn.eye_sep + idn.eye_w + 0.04), idn.eye_y
            for dy in (-0.05, 0.0, 0.05):
                draw.line(m.hi([[ox, oy + dy * 0.5], [ox + s * 0.08, oy + dy * 1.6]], 0.05),
                          fill=_skin(idn, 1 - 0.3 * crow), width=m.w(0.012))
        dimple = g["AU14" + sfx]
        if dimple > 0.02:
            draw.line(m.hi([[corner[0] + s * 0.03, corner[1] - 0.04],
                            [corner[0] + s * 0.035, corner[1] + 0.04]], 0.15),
                      fill=_skin(idn, 1 - 0.4 * dimple), width=m.w(0.02))
        crease = eye["upper"].copy()
        crease[:, 1] -= 0.035 + 0.3 * eye["h_up"]
        draw.line(m.hi(crease[2:-1], 0.1), fill=_skin(idn, 0.85), width=m.w(0.012))
        bag = eye["lower"].copy()
        bag[:, 1] += 0.04
        draw.line(m.hi(bag[3:-2], 0.1), fill=_skin(idn, 0.92 - 0.3 * g["AU7"] - 0.2 * g["AU6"]),
                  width=m.w(0.012))


def _draw_midline_lines(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity,
                        geo: dict[str, Any], g: dict[str, float]) -> None:
    """Forehead (AU1/AU2), between the brows (AU4), nose bridge (AU9) and chin (AU17)."""
    forehead = max(g["AU1"], g["AU2"])
    if forehead > 0.02:
        top = idn.eye_y - idn.brow_gap - 0.16
        xs = np.linspace(-0.42, 0.42, 9)
        for k in range(3):
            ys = top - 0.1 * k + 0.05 * xs ** 2 * (1 + k)
            draw.line(m.hi(np.stack([xs, ys], 1), 0.05), fill=_skin(idn, 1 - 0.3 * forehead),
                      width=m.w(0.014))
    if g["AU4"] > 0.02:
        by = idn.eye_y - idn.brow_gap
        for s in (-1, 1):
            draw.line(m.hi([[s * 0.05, by - 0.06], [s * 0.04, by + 0.08]], 0.1),
                      fill=_skin(idn, 1 - 0.4 * g["AU4"]), width=m.w(0.015))
    if g["AU9"] > 0.02:
        for k in range(3):
            y = idn.eye_y + 0.06 + 0.045 * k
            draw.line(m.hi([[-0.06, y], [0.0, y - 0.015], [0.06, y]], 0.25),
                      fill=_skin(idn, 1 - 0.35 * g["AU9"]), width=m.w(0.012))
    if g["AU17"] > 0.02:
        cy = lower_lip_bottom(geo["mouth"]) + 0.09
        draw.line(m.hi(_quad([-0.12, cy], [0, cy + 0.05], [0.12, cy]), 0.1),
                  fill=_skin(idn, 1 - 0.3 * g["AU17"]), width=m.w(0.02))


def _draw_hair_front(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity) -> None:
    """Cap and fringe; drawn after the fine lines, it is not skin."""
    a = idn.face_w
    A, B = a + 0.5 * idn.hair_volume, idn.face_h + idn.hair_volume
    t0 = math.asin(float(np.clip(-idn.hair_side / B, -0.99, 0.99)))
    th = np.linspace(t0, math.pi - t0, 18)
    outer = np.stack([A * np.cos(th), -B * np.sin(th)], axis=1)
    th2 = np.linspace(math.pi, 0, 15)
    hairline = np.stack([a * 0.97 * np.cos(th2),
                         idn.hairline + (idn.hair_side - idn.hairline) * np.abs(np.cos(th2)) ** 3],
                        axis=1)
    draw.polygon(m.hi(np.vstack([outer, hairline])), fill=rgb(idn.hair))


def _draw_brows(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity,
                brows: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for centre, thick in brows:
        upper = centre - np.stack([np.zeros_like(thick), thick / 2], 1)
        lower = centre + np.stack([np.zeros_like(thick), thick / 2], 1)
        draw.polygon(m.hi(np.vstack([upper, lower[::-1]]), 0.12), fill=rgb(idn.brow_color))


def _draw_eyes(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity,
               eyes: list[dict[str, Any]]) -> None:
    """Sclera, iris and pupil clipped to the lids, lash line."""
    for eye in eyes:
        up, lo = eye["upper"], eye["lower"]
        draw.polygon(m.hi(np.vstack([up, lo[::-1]]), 0.1), fill=(232, 226, 220))
        xs = up[:, 0]
        order = np.argsort(xs)
        for radius, colour in ((eye["r"], rgb(idn.iris)), (eye["r"] * 0.45, (15, 12, 12))):
            circ = _ellipse(eye["iris"][0], eye["iris"][1], radius, radius, 18)
            circ[:, 0] = np.clip(circ[:, 0], xs.min(), xs.max())
            y_up = np.interp(circ[:, 0], xs[order], up[order, 1])
            y_lo = np.interp(circ[:, 0], xs[order], lo[order, 1])
            circ[:, 1] = np.clip(circ[:, 1], y_up, np.maximum(y_up, y_lo))
            draw.polygon(m.hi(circ, 0.1), fill=colour)
        draw.line(m.hi(up, 0.1), fill=rgb(np.asarray(idn.brow_color) * 0.7), width=m.w(0.022))
        draw.line(m.hi(lo[2:-2], 0.1), fill=_skin(idn, 0.7), width=m.w(0.01))


def _draw_nose(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity,
               nose: dict[str, Any]) -> None:
    """Nostrils and wings."""
    nb = nose["base"]
    for k in (1, 3):
        draw.polygon(m.hi(_ellipse(nb[k, 0], nb[k, 1] - 0.012, nose["nw"] * 0.22, 0.02, 10), 0.32),
                     fill=_skin(idn, 0.35))
    for s, k in ((-1, 0), (1, 4)):
        wing = _quad(nb[k], [nb[k, 0] + s * 0.03, nb[k, 1] - 0.06], [s * nose["nw"] * 0.5,
                                                                     nose["yn"] - 0.1], 6)
        draw.line(m.hi(wing, 0.28), fill=_skin(idn, 0.65), width=m.w(0.015))


def _draw_mouth(draw: ImageDraw.ImageDraw, m: _Mapper, idn: Identity,
                mouth: dict[str, Any]) -> None:
    """Lips, the opening and teeth when the lips part, the line between the lips."""
    d = mouth["dense"]
    x = d["x"]
    lips = np.vstack([np.stack([x, d["upper_outer"]], 1), np.stack([x, d["lower_outer"]], 1)[::-1]])
    draw.polygon(m.hi(lips, 0.18), fill=rgb(idn.lip_color))
    gap = d["lower_inner"] - d["upper_inner"]
    if gap.max() > 0.004:
        draw.polygon(m.hi(np.vstack([np.stack([x, d["upper_inner"]], 1),
                                     np.stack([x, d["lower_inner"]], 1)[::-1]]), 0.18),
                     fill=(55, 18, 22))
        if mouth["teeth"] > 0.05:
            teeth_lo = np.minimum(d["upper_inner"] + 0.05, d["lower_inner"])
            xi = x[2:-2]
            draw.polygon(m.hi(np.vstack([np.stack([xi, d["upper_inner"][2:-2]], 1),
                                         np.stack([xi, teeth_lo[2:-2]], 1)[::-1]]), 0.18),
                         fill=(236, 232, 218))
    draw.line(m.hi(np.stack([x, d["upper_inner"]], 1), 0.18),
              fill=rgb(np.asarray(idn.lip_color) * 0.55), width=m.w(0.012))


def _expose(img: Image.Image, shade: np.ndarray, scene: Scene,
            rng: np.random.Generator | None) -> np.ndarray:
    """Downsample (anti-aliasing), apply shading and light, add sensor noise: the uint8 frame."""
    low = img.reduce(SS)
    gen = rng if rng is not None else np.random.default_rng(0)
    if scene.mode == "L":
        arr = np.asarray(low.convert("L"), np.float32) * (shade * scene.gain_grey)
    else:
        arr = np.asarray(low, np.float32) * (shade[:, :, None] * scene.gain)
    if scene.noise > 0:
        arr += gen.standard_normal(arr.shape, dtype=np.float32) * np.float32(scene.noise)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# frames and sequences

def render_face(identity: Identity, aus: np.ndarray, scene: Scene, pose: Pose | None = None,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one frame. Returns (uint8 image HxW or HxWx3, landmarks (68, 2) in pixels)."""
    idn, au = identity, np.asarray(aus, float)
    geo = face_geometry(idn, au)
    m = _Mapper(scene, pose or scene.pose)
    face = contour(idn, au, PHI_FACE)
    g = {name: float(au[AU_INDEX[name]]) for name in AU_NAMES}
    img = scene.background.copy()
    draw = ImageDraw.Draw(img)
    _draw_head(draw, m, idn, face)
    # coarse shading is multiplied onto the downsampled frame; fine lines are drawn in darker
    # skin straight onto the face
    shade = _coarse_shading(m, scene.canvas, idn, geo, g, face)
    _draw_side_lines(draw, m, idn, geo, g)
    _draw_midline_lines(draw, m, idn, geo, g)
    _draw_hair_front(draw, m, idn)
    _draw_brows(draw, m, idn, geo["brows"])
    _draw_eyes(draw, m, idn, geo["eyes"])
    _draw_nose(draw, m, idn, geo["nose"])
    _draw_mouth(draw, m, idn, geo["mouth"])
    return _expose(img, shade, scene, rng), m.px(geo["landmarks"], LANDMARK_DEPTH)


@dataclasses.dataclass
class RenderedSequence:
    """One sequence's frames, landmarks and face-model state per frame."""

    emotion: str | None
    images: list[np.ndarray]
    landmarks: np.ndarray      # (T, 68, 2) pixels
    intensity: np.ndarray      # (T,)
    aus: np.ndarray            # (T, n_au)
    valence: np.ndarray        # (T,)
    arousal: np.ndarray        # (T,)


def _frame_pose(scene: Scene, progress: float, rng: np.random.Generator) -> Pose:
    """The scene's pose drifted by ``progress`` (0 first frame, 1 last) plus per-frame jitter."""
    base, drift, j = scene.pose, scene.drift, scene.jitter
    return Pose(roll=base.roll + progress * drift.roll + rng.normal(0, j),
                yaw=base.yaw + progress * drift.yaw + rng.normal(0, j),
                scale=base.scale + progress * drift.scale + rng.normal(0, j),
                dx=base.dx + progress * drift.dx + rng.normal(0, j * scene.canvas[0]),
                dy=base.dy + progress * drift.dy + rng.normal(0, j * scene.canvas[1]))


def render_sequence(identity: Identity, emotion: str | dict[str, float], *, frames: int = 8,
                    apex: float = 1.0, gamma: float = 1.0, rng: np.random.Generator | None = None,
                    scene: Scene | None = None, canvas: tuple[int, int] = (96, 96),
                    face_frac: float = 0.6, mode: str = "RGB", nuisance: float = 1.0,
                    va_noise: float = 0.05) -> RenderedSequence:
    """One neutral-to-apex sequence. ``emotion`` may be an AU dict (e.g. an unlabelled blend).

    Pose drifts smoothly over the sequence with a little per-frame jitter; the scene (camera,
    background, light) stays fixed, as in a posed-expression recording.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    if scene is None:
        scene = make_scene(rng, canvas, face_frac, mode=mode, nuisance=nuisance)
    ramp = intensity_ramp(frames, apex, gamma)
    images, lms, aus, vs, As = [], [], [], [], []
    for i, level in enumerate(ramp):
        pose = _frame_pose(scene, i / max(frames - 1, 1), rng)
        a = expression_aus(identity, emotion, level)
        image, lm = render_face(identity, a, scene, pose, rng)
        images.append(image)
        lms.append(lm)
        aus.append(a)
        if isinstance(emotion, str):
            v, ar = valence_arousal(emotion, level, rng, va_noise)
        else:
            v, ar = math.nan, math.nan
        vs.append(v)
        As.append(ar)
    return RenderedSequence(emotion=emotion if isinstance(emotion, str) else None, images=images,
                            landmarks=np.stack(lms), intensity=ramp, aus=np.stack(aus),
                            valence=np.array(vs), arousal=np.array(As))
