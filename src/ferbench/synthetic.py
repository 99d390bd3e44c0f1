"""Procedural face sequences (neutral to apex), written in the real dataset layouts.

This is the embedded default data: with no licensed dataset on disk, every reader, ``prepare``
and the training jobs run on these files. The faces have real structure so that a model has to
learn something: each subject has its own face shape, skin, hair and feature placement (identity
is a nuisance), expressions come from action-unit-like parameters with one profile per basic
emotion (plus a per-subject idiosyncrasy), intensity ramps from neutral at frame 0 to a random
apex at the last frame, and valence/arousal follow the circumplex position of the emotion scaled
by intensity. Pose jitter, lighting, sensor noise and background clutter are added on top.
Landmarks (iBUG-68 order) come from the same geometry that is drawn, through the same pose.

Everything is seeded: the same arguments give byte-identical files. Each layout (and each
subject/sequence inside it) draws from its own ``numpy`` Generator keyed by
``(seed, layout, subject, sequence)``, so writing one layout alone gives the same bytes as
writing it among others.

Python API::

    cfg = SyntheticConfig(subjects=6, frames=5, size=64, seed=0)
    summaries = write_layouts("data/synthetic", cfg)          # {layout: LayoutSummary}
    identity = sample_identity(np.random.default_rng(0))
    seq = render_sequence(identity, "surprise", frames=8, apex=1.0, rng=np.random.default_rng(1))
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ferbench.datasets.base import EMOTIONS
from ferbench.errors import FerbenchError

LAYOUTS: tuple[str, ...] = ("ckplus", "oulu", "affectnet", "afewva", "fer2013")
_LAYOUT_CODE = {"ckplus": 1, "oulu": 2, "affectnet": 3, "afewva": 4, "fer2013": 5}

#: Action-unit-like parameters. L/R are image left/right (used for unilateral contempt).
AU_NAMES: tuple[str, ...] = (
    "AU1",    # inner brow raiser
    "AU2",    # outer brow raiser
    "AU4",    # brow lowerer
    "AU5",    # upper lid raiser
    "AU6",    # cheek raiser
    "AU7",    # lid tightener
    "AU9",    # nose wrinkler
    "AU10",   # upper lip raiser
    "AU12L",  # lip corner puller, image-left corner
    "AU12R",  # lip corner puller, image-right corner
    "AU14L",  # dimpler, image-left
    "AU14R",  # dimpler, image-right
    "AU15",   # lip corner depressor
    "AU17",   # chin raiser
    "AU20",   # lip stretcher
    "AU23",   # lip tightener / presser
    "AU25",   # lips part
    "AU26",   # jaw drop
    "AU43",   # lid droop
)
_A = {name: i for i, name in enumerate(AU_NAMES)}
_FACS_NUMBER = {
    "AU1": 1, "AU2": 2, "AU4": 4, "AU5": 5, "AU6": 6, "AU7": 7, "AU9": 9, "AU10": 10,
    "AU12L": 12, "AU12R": 12, "AU14L": 14, "AU14R": 14, "AU15": 15, "AU17": 17, "AU20": 20,
    "AU23": 23, "AU25": 25, "AU26": 26, "AU43": 43,
}

#: Prototypical AU activations at full intensity (after EMFACS-style prototypes).
AU_PROFILES: dict[str, dict[str, float]] = {
    "neutral": {},
    "anger": {"AU4": 1.0, "AU5": 0.35, "AU7": 0.8, "AU23": 0.9, "AU17": 0.45, "AU10": 0.1},
    "contempt": {"AU12R": 0.7, "AU14R": 0.8},
    "disgust": {"AU9": 1.0, "AU10": 0.9, "AU4": 0.45, "AU7": 0.4, "AU6": 0.25, "AU15": 0.35,
                "AU17": 0.4, "AU25": 0.25},
    "fear": {"AU1": 1.0, "AU2": 0.65, "AU4": 0.6, "AU5": 1.0, "AU20": 1.0, "AU25": 0.8,
             "AU26": 0.35},
    "happiness": {"AU6": 1.0, "AU12L": 1.0, "AU12R": 1.0, "AU25": 0.55, "AU10": 0.2,
                  "AU26": 0.1},
    "sadness": {"AU1": 1.0, "AU4": 0.55, "AU15": 1.0, "AU17": 0.6, "AU43": 0.45},
    "surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 0.9, "AU25": 1.0, "AU26": 1.0},
}

#: Circumplex position (valence, arousal) of each emotion at full intensity.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, -0.05),
    "anger": (-0.65, 0.65),
    "contempt": (-0.45, 0.2),
    "disgust": (-0.7, 0.35),
    "fear": (-0.6, 0.75),
    "happiness": (0.8, 0.45),
    "sadness": (-0.7, -0.35),
    "surprise": (0.2, 0.8),
}

CKPLUS_CODES = {"neutral": 0, "anger": 1, "contempt": 2, "disgust": 3, "fear": 4,
                "happiness": 5, "sadness": 6, "surprise": 7}
OULU_FOLDERS = {"anger": "Anger", "disgust": "Disgust", "fear": "Fear",
                "happiness": "Happiness", "sadness": "Sadness", "surprise": "Surprise"}
AFFECTNET_CODES = {"neutral": 0, "happiness": 1, "sadness": 2, "surprise": 3, "fear": 4,
                   "disgust": 5, "anger": 6, "contempt": 7}
FER2013_CODES = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4,
                 "surprise": 5, "neutral": 6}
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                    "facial_landmarks,expression,valence,arousal")

# CK+ class totals (DATASETS.md): sequence emotions are drawn with these weights.
_CKPLUS_WEIGHTS = {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25, "happiness": 69,
                   "sadness": 28, "surprise": 83}
# AffectNet training is imbalanced (happy and neutral dominate); kept mild here.
_AFFECTNET_WEIGHTS = {"neutral": 2.0, "happiness": 2.5, "sadness": 1.0, "surprise": 1.0,
                      "fear": 0.8, "disgust": 0.7, "anger": 1.0, "contempt": 0.6}

SS = 2  # supersampling factor: draw at 2x, box-downsample (anti-aliasing)
_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(26) + b"\x00\x00\x08\x0b\x00\x00\x00\x08" + bytes(20)

_PNG = {"format": "PNG", "optimize": False, "compress_level": 6}
_JPEG = {"format": "JPEG", "quality": 90, "optimize": False, "progressive": False,
         "subsampling": 2}


# --------------------------------------------------------------------------------------------
# configuration

@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """What to write. Validated on construction (FerbenchError with one clear line)."""

    subjects: int = 24
    frames: int = 8
    size: int = 96
    seed: int = 0
    layouts: tuple[str, ...] = LAYOUTS

    def __post_init__(self) -> None:
        layouts = tuple(self.layouts)
        object.__setattr__(self, "layouts", layouts)
        if not layouts:
            raise FerbenchError(f"no synthetic layout given; known: {', '.join(LAYOUTS)}")
        for name in layouts:
            if name not in LAYOUTS:
                raise FerbenchError(
                    f"unknown synthetic layout {name!r}; known: {', '.join(LAYOUTS)}")
        if len(set(layouts)) != len(layouts):
            raise FerbenchError(f"synthetic layout listed twice in {','.join(layouts)}")
        for key, low in (("subjects", 1), ("frames", 2), ("size", 24)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise FerbenchError(f"--{key} must be an integer (got {value!r})")
            if value < low:
                what = "positive" if low == 1 else f"at least {low}"
                raise FerbenchError(f"--{key} must be {what} (got {value})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise FerbenchError(f"--seed must be a non-negative integer (got {self.seed!r})")


@dataclasses.dataclass
class LayoutSummary:
    """What one layout writer produced.

    ``records`` is the expected sample table, one dict per image with the base.py columns that
    the files determine (path relative to the layout root, subject, sequence, frame, emotion,
    valence, arousal, split, apex) plus a few generator-side keys: ``code``/``box`` (AffectNet),
    ``expressed`` (the emotion behind an AFEW-VA video), ``usage`` and the subject index
    (FER-2013, whose file has no subjects).
    """

    layout: str
    path: Path
    subjects: int
    sequences: int
    labelled: int
    images: int
    labels: Counter
    seconds: float
    records: list[dict[str, Any]]

    def line(self) -> str:
        seq = f", {self.sequences} sequences ({self.labelled} labelled)" if self.sequences else ""
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
        return (f"{self.layout}: {self.subjects} subjects{seq}, {self.images} images "
                f"[{labels}] -> {self.path} ({self.seconds:.1f} s)")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


# --------------------------------------------------------------------------------------------
# identity

@dataclasses.dataclass(eq=False)
class Identity:
    """One subject's appearance and expressive idiosyncrasy, in face units (half-width ~1, y down)."""

    face_w: float
    face_h: float
    jaw_taper: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hairline: float
    hair_side: float
    hair_volume: float
    hair_long: bool
    eye_sep: float
    eye_y: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    iris: tuple[float, float, float]
    iris_r: float
    brow_gap: float
    brow_thick: float
    brow_arch: float
    brow_len: float
    brow_color: tuple[float, float, float]
    nose_tip: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_lo: float
    lip_color: tuple[float, float, float]
    ear: float
    fold_depth: float
    asym: float
    clothes: tuple[float, float, float]
    contempt_left: bool
    rest: np.ndarray    # (n_au,) resting activation (a face that looks a bit cross at rest)
    gain: np.ndarray    # (n_emotions, n_au) how strongly this person uses each AU per emotion


_SKIN = np.array([[242, 212, 190], [222, 178, 145], [190, 140, 105], [140, 95, 65],
                  [95, 62, 44]], dtype=float)
_HAIR = np.array([[22, 18, 16], [52, 36, 24], [92, 62, 38], [150, 110, 62], [205, 172, 112],
                  [150, 148, 145], [110, 48, 24]], dtype=float)
_HAIR_P = np.array([0.3, 0.25, 0.15, 0.1, 0.08, 0.07, 0.05])
_IRIS = np.array([[70, 45, 28], [38, 28, 22], [70, 100, 140], [80, 108, 72], [112, 86, 48]],
                 dtype=float)


def _mix(a: Any, b: Any, t: float) -> np.ndarray:
    return np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t


def _rgb(c: Any) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, int(round(float(v))))) for v in c)
    return (r, g, b)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one subject: face shape, skin, hair, feature placement, AU idiosyncrasy."""
    u = rng.uniform
    t = u(0, 1) * (len(_SKIN) - 1)
    i = min(int(t), len(_SKIN) - 2)
    skin = _mix(_SKIN[i], _SKIN[i + 1], t - i) + rng.normal(0, 6, 3)
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] + rng.normal(0, 8, 3)
    face_h = u(1.25, 1.45)
    eye_y = u(-0.12, 0.02)
    eye_h = u(0.055, 0.085)
    nose_tip = eye_y + u(0.42, 0.56)
    mouth_y = min(nose_tip + u(0.28, 0.38), face_h - 0.36)
    rest = np.zeros(len(AU_NAMES))
    for name in ("AU4", "AU15", "AU1", "AU43", "AU23"):
        if u(0, 1) < 0.4:
            rest[_A[name]] = u(0.0, 0.15)
    smile = u(0, 0.12) if u(0, 1) < 0.4 else 0.0
    rest[_A["AU12L"]] = rest[_A["AU12R"]] = smile
    return Identity(
        face_w=u(0.9, 1.05), face_h=face_h, jaw_taper=u(0.12, 0.38),
        skin=tuple(np.clip(skin, 0, 255)), hair=tuple(np.clip(hair, 0, 255)),
        hairline=u(-1.02, -0.68), hair_side=u(-0.35, 0.05), hair_volume=u(0.04, 0.22),
        hair_long=bool(u(0, 1) < 0.35),
        eye_sep=u(0.36, 0.46), eye_y=eye_y, eye_w=u(0.15, 0.2), eye_h=eye_h,
        eye_tilt=u(-0.02, 0.035), iris=tuple(_IRIS[rng.integers(len(_IRIS))]),
        iris_r=eye_h * u(1.1, 1.35),
        brow_gap=u(0.2, 0.3), brow_thick=u(0.04, 0.08), brow_arch=u(0.0, 0.06),
        brow_len=u(0.21, 0.28), brow_color=tuple(_mix(hair, (20, 15, 12), u(0.2, 0.6))),
        nose_tip=nose_tip, nose_w=u(0.12, 0.19),
        mouth_y=mouth_y, mouth_w=u(0.27, 0.37), lip_up=u(0.035, 0.065), lip_lo=u(0.05, 0.085),
        lip_color=tuple(_mix(skin, (165, 62, 72), u(0.3, 0.6))),
        ear=u(0.8, 1.2), fold_depth=u(0.0, 0.5), asym=u(-0.015, 0.015),
        clothes=tuple(rng.uniform(20, 230, 3)), contempt_left=bool(u(0, 1) < 0.5),
        rest=rest, gain=np.exp(rng.normal(0.0, 0.22, (len(EMOTIONS), len(AU_NAMES)))),
    )


def expression_aus(identity: Identity, emotion: str | dict[str, float],
                   intensity: float) -> np.ndarray:
    """AU activations for ``emotion`` (a name or an explicit AU dict) at ``intensity`` in [0, 1].

    Intensity 0 gives the subject's resting face; the profile is scaled by the subject's gains.
    """
    if isinstance(emotion, str):
        if emotion not in AU_PROFILES:
            raise FerbenchError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
        profile = dict(AU_PROFILES[emotion])
        gain = identity.gain[EMOTIONS.index(emotion)]
        if emotion == "contempt" and identity.contempt_left:
            profile = {k.replace("R", "L") if k.endswith("R") else k: v for k, v in profile.items()}
    else:
        profile, gain = emotion, np.ones(len(AU_NAMES))
    aus = identity.rest.copy()
    for name, value in profile.items():
        aus[_A[name]] += float(intensity) * value * gain[_A[name]]
    return np.clip(aus, 0.0, 1.3)


def valence_arousal(emotion: str, intensity: float,
                    rng: np.random.Generator | None = None, noise: float = 0.05) -> tuple[float, float]:
    """Circumplex position of ``emotion`` scaled by intensity, plus small noise, in [-1, 1].

    The noise is truncated at 2 sigma so that it never flips the sign of a clear expression's
    valence (anger at intensity 0.25 is still negative).
    """
    v, a = CIRCUMPLEX[emotion]
    v, a = v * intensity, a * intensity
    if rng is not None and noise > 0:
        v += float(np.clip(rng.normal(0, noise), -2 * noise, 2 * noise))
        a += float(np.clip(rng.normal(0, noise), -2 * noise, 2 * noise))
    return float(np.clip(v, -1, 1)), float(np.clip(a, -1, 1))


# --------------------------------------------------------------------------------------------
# geometry: one function gives both what is drawn and the 68 landmarks

_T_EYE = np.linspace(0.0, 1.0, 13)    # lid parameter, outer (0) to inner (1) corner
_U_BROW = np.linspace(0.0, 1.0, 9)    # brow parameter, outer (0) to inner (1) end
_U_MOUTH = np.linspace(-1.0, 1.0, 25)  # mouth parameter, image-left (-1) to image-right (+1)
_PHI_FACE = np.linspace(0.0, 2 * math.pi, 72, endpoint=False)
_PHI_JAW = np.linspace(math.pi + 0.12, -0.12, 17)

# landmark depth (for the yaw shift): nose tip stands out most, contour least
_Z68 = np.concatenate([
    np.zeros(17), np.full(10, 0.12), [0.2, 0.28, 0.36, 0.45], [0.25, 0.32, 0.38, 0.32, 0.25],
    np.full(12, 0.1), np.full(20, 0.18),
])


def _contour(idn: Identity, au: np.ndarray, phi: np.ndarray) -> np.ndarray:
    lower = np.clip(np.sin(phi), 0, 1)
    upper = np.clip(-np.sin(phi), 0, 1)
    x = idn.face_w * np.cos(phi) * (1 - idn.jaw_taper * lower ** 2.5) * (1 - 0.06 * upper ** 2)
    y = idn.face_h * np.sin(phi) + 0.26 * au[_A["AU26"]] * lower ** 3
    return np.stack([x, y], axis=1)


def _brow(idn: Identity, au: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre line (outer->inner) and per-point thickness of one brow; side -1 image-left."""
    u, L = _U_BROW, idn.brow_len
    x = -idn.eye_sep - 1.1 * L + 1.9 * L * u
    y = (idn.eye_y - idn.brow_gap - idn.brow_arch * np.sin(math.pi * (0.85 * u + 0.05))
         + 0.03 * (1 - u) ** 3)
    a1, a2, a4, a9 = au[_A["AU1"]], au[_A["AU2"]], au[_A["AU4"]], au[_A["AU9"]]
    y = y - 0.16 * a1 * u ** 1.5 - 0.13 * a2 * (1 - u) ** 1.2 - 0.04 * a2 * u
    y = y + 0.09 * a4 * (0.3 + 0.7 * u) + 0.025 * a9 * u
    x = x + 0.06 * a4 * u ** 2
    if side > 0:
        x, y = -x, y + idn.asym
    thick = idn.brow_thick * (0.55 + 0.45 * np.sqrt(u))
    return np.stack([x, y], axis=1), thick


def _eye(idn: Identity, au: np.ndarray, side: int) -> dict[str, Any]:
    a5, a6, a7, a43 = au[_A["AU5"]], au[_A["AU6"]], au[_A["AU7"]], au[_A["AU43"]]
    cx, cy = idn.eye_sep, idn.eye_y + (idn.asym if side > 0 else 0.0)
    outer_x = cx + idn.eye_w * (1 - 0.08 * a6)
    inner_x = cx - idn.eye_w
    outer_y, inner_y = cy - idn.eye_tilt, cy
    h_up = max(idn.eye_h * (1 + 1.1 * a5 - 0.35 * a7 - 0.25 * a6 - 0.75 * a43), 0.12 * idn.eye_h)
    h_lo = max(0.75 * idn.eye_h * (1 - 0.5 * a7 - 0.45 * a6 + 0.25 * a5), 0.1 * idn.eye_h)
    t = _T_EYE
    x = outer_x + (inner_x - outer_x) * t
    base = outer_y + (inner_y - outer_y) * t
    s = np.sin(math.pi * t)
    upper = np.stack([x, base - h_up * s ** 0.85], axis=1)
    lower = np.stack([x, base + h_lo * s], axis=1)
    sign = float(side)
    upper[:, 0] *= sign
    lower[:, 0] *= sign
    iris_c = np.array([sign * cx, cy - 0.1 * idn.eye_h])
    return {"upper": upper, "lower": lower, "iris": iris_c, "r": idn.iris_r,
            "h_up": h_up, "center": np.array([sign * cx, cy])}


def _mouth(idn: Identity, au: np.ndarray) -> dict[str, Any]:
    g = {name: au[_A[name]] for name in AU_NAMES}
    a12 = 0.5 * (g["AU12L"] + g["AU12R"])
    my = idn.mouth_y
    corners = []
    for s, sfx in ((-1, "L"), (1, "R")):
        w = idn.mouth_w * (1 + 0.28 * g["AU20"] + 0.18 * g["AU12" + sfx] + 0.10 * g["AU14" + sfx]
                           - 0.12 * g["AU23"] - 0.05 * g["AU26"])
        y = (my - 0.14 * g["AU12" + sfx] - 0.035 * g["AU14" + sfx] + 0.12 * g["AU15"]
             + 0.015 * g["AU20"] + 0.03 * g["AU26"] + (idn.asym if s > 0 else 0.0))
        corners.append((s * w, y))
    (xl, yl), (xr, yr) = corners
    mid = my - 0.03 * g["AU17"] - 0.02 * g["AU10"]

    def line(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = xl + (xr - xl) * (u + 1) / 2
        cy = np.where(u < 0, yl, yr)
        return x, mid + (cy - mid) * np.abs(u) ** 2

    def curves(u: np.ndarray) -> dict[str, np.ndarray]:
        x, y = line(u)
        w = np.clip(1 - u ** 2, 0, 1)
        bow = w ** 0.6 * (1 - 0.22 * np.exp(-(u / 0.18) ** 2))
        lip_up = idn.lip_up * (1 - 0.55 * g["AU23"] - 0.3 * g["AU20"] - 0.2 * a12)
        lip_lo = idn.lip_lo * (1 - 0.5 * g["AU23"] - 0.3 * g["AU20"] - 0.15 * a12 + 0.15 * g["AU17"])
        gap_up = (0.05 * g["AU10"] + 0.012 * g["AU25"] + 0.02 * g["AU26"]) * w ** 0.8
        gap_lo = (0.03 * g["AU25"] + 0.24 * g["AU26"]) * w ** 0.8
        ui = y - gap_up
        li = y + gap_lo
        return {
            "x": x,
            "upper_inner": ui,
            "upper_outer": ui - max(lip_up, 0.008) * bow - 0.02 * g["AU10"] * w,
            "lower_inner": li,
            "lower_outer": li + max(lip_lo, 0.01) * w ** 0.6,
        }

    dense = curves(_U_MOUTH)
    return {"dense": dense, "curves": curves, "corners": corners,
            "teeth": 0.6 * g["AU10"] + 0.5 * g["AU25"] + 0.6 * a12}


def _nose(idn: Identity, au: np.ndarray) -> dict[str, Any]:
    a9, a10 = au[_A["AU9"]], au[_A["AU10"]]
    yn = idn.nose_tip + 0.07 - 0.04 * a9 - 0.02 * a10
    nw = idn.nose_w * (1 + 0.15 * a9 + 0.05 * a10)
    bridge = np.stack([np.zeros(4), np.linspace(idn.eye_y - 0.02, idn.nose_tip, 4)], axis=1)
    base = np.array([[-nw, yn - 0.03], [-0.5 * nw, yn + 0.005], [0.0, yn + 0.015],
                     [0.5 * nw, yn + 0.005], [nw, yn - 0.03]])
    return {"bridge": bridge, "base": base, "yn": yn, "nw": nw}


def _geometry(idn: Identity, au: np.ndarray) -> dict[str, Any]:
    brows = [_brow(idn, au, s) for s in (-1, 1)]
    eyes = [_eye(idn, au, s) for s in (-1, 1)]
    mouth = _mouth(idn, au)
    nose = _nose(idn, au)
    lm = np.zeros((68, 2))
    lm[0:17] = _contour(idn, au, _PHI_JAW)
    bl, br = brows[0][0], brows[1][0]
    tl, tr = brows[0][1], brows[1][1]
    idx = [0, 2, 4, 6, 8]  # _U_BROW at 0, .25, .5, .75, 1
    lm[17:22] = bl[idx] - np.stack([np.zeros(5), 0.3 * tl[idx]], axis=1)
    lm[22:27] = (br[idx] - np.stack([np.zeros(5), 0.3 * tr[idx]], axis=1))[::-1]
    lm[27:31] = nose["bridge"]
    lm[31:36] = nose["base"]
    el, er = eyes
    # _T_EYE index 0 outer, 4 = 1/3, 8 = 2/3, 12 inner
    lm[36:42] = [el["upper"][0], el["upper"][4], el["upper"][8], el["upper"][12],
                 el["lower"][8], el["lower"][4]]
    lm[42:48] = [er["upper"][12], er["upper"][8], er["upper"][4], er["upper"][0],
                 er["lower"][4], er["lower"][8]]
    d, (cl, cr) = mouth["dense"], mouth["corners"]

    def at(key: str, k: int) -> list[float]:
        return [d["x"][k], d[key][k]]

    # _U_MOUTH index k is u = -1 + k/12
    lm[48] = cl
    lm[49:54] = [at("upper_outer", k) for k in (4, 8, 12, 16, 20)]
    lm[54] = cr
    lm[55:60] = [at("lower_outer", k) for k in (20, 16, 12, 8, 4)]
    inner = mouth["curves"](np.array([-0.9, 0.9]))
    mid_y = (inner["upper_inner"] + inner["lower_inner"]) / 2
    lm[60] = [inner["x"][0], mid_y[0]]
    lm[61:64] = [at("upper_inner", k) for k in (6, 12, 18)]
    lm[64] = [inner["x"][1], mid_y[1]]
    lm[65:68] = [at("lower_inner", k) for k in (18, 12, 6)]
    return {"brows": brows, "eyes": eyes, "mouth": mouth, "nose": nose, "landmarks": lm}


def face_landmarks(identity: Identity, aus: np.ndarray) -> np.ndarray:
    """68 landmarks (iBUG order) in face units, before pose: the same geometry that is drawn."""
    return _geometry(identity, np.asarray(aus, float))["landmarks"]


# --------------------------------------------------------------------------------------------
# scene (per sequence) and rendering

@dataclasses.dataclass
class Pose:
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
        color = _rgb(rng.uniform(15, 240, 3))
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


def render_face(identity: Identity, aus: np.ndarray, scene: Scene, pose: Pose | None = None,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one frame. Returns (uint8 image HxW or HxWx3, landmarks (68, 2) in pixels)."""
    idn, au = identity, np.asarray(aus, float)
    pose = pose or scene.pose
    geo = _geometry(idn, au)
    m = _Mapper(scene, pose)
    img = scene.background.copy()
    draw = ImageDraw.Draw(img)
    skin = np.asarray(idn.skin)
    face = _contour(idn, au, _PHI_FACE)

    # body, neck, ears, long hair behind the head
    a = idn.face_w
    draw.polygon(m.hi([[-2.4, 3.6], [-2.1, 1.95], [-0.5, 1.55], [0.5, 1.55], [2.1, 1.95],
                       [2.4, 3.6]]), fill=_rgb(idn.clothes))
    neck_bottom = max(1.75, idn.face_h + 0.4)
    draw.polygon(m.hi([[-0.42 * a, 0.4], [0.42 * a, 0.4], [0.48 * a, neck_bottom],
                       [0.0, neck_bottom + 0.15], [-0.48 * a, neck_bottom]], -0.1),
                 fill=_rgb(skin * 0.8))
    if idn.hair_long:
        A, B = a + idn.hair_volume + 0.1, idn.face_h + idn.hair_volume
        th = np.linspace(math.pi, 2 * math.pi, 16)
        top = np.stack([A * np.cos(th), B * np.sin(th)], axis=1)
        back = np.vstack([[[-A * 1.02, idn.face_h * 0.95]], top, [[A * 1.02, idn.face_h * 0.95]],
                          [[0.6 * a, idn.face_h * 0.7]], [[-0.6 * a, idn.face_h * 0.7]]])
        draw.polygon(m.hi(back), fill=_rgb(np.asarray(idn.hair) * 0.85))
    ear_y = idn.eye_y + 0.17
    for s in (-1, 1):
        ear = _ellipse(s * a * 1.0, ear_y, 0.09 * idn.ear, 0.2 * idn.ear, 14)
        draw.polygon(m.hi(ear, -0.15), fill=_rgb(skin * 0.92))
    draw.polygon(m.hi(face), fill=_rgb(skin))

    # coarse shading (face roundness, sockets, cheeks): drawn at 1x, blurred, multiplied
    # onto the downsampled frame; fine lines are drawn in darker skin straight onto the face
    w, h = scene.canvas
    coarse = Image.new("L", (w, h), 200)
    cd = ImageDraw.Draw(coarse)
    cd.polygon(m.lo(face), fill=_shade(0.8))
    cd.polygon(m.lo(face * [0.8, 0.8] + [0, 0.06]), fill=_shade(1.0))
    nose, mouth, (el, er) = geo["nose"], geo["mouth"], geo["eyes"]
    g = {name: float(au[_A[name]]) for name in AU_NAMES}
    for s, eye in ((-1, el), (1, er)):
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
    lo_y = float(mouth["dense"]["lower_outer"][12])
    cd.polygon(m.lo(_ellipse(0, lo_y + 0.07, idn.mouth_w * 0.6, 0.05), 0.15), fill=_shade(0.85))

    def dark(level: float) -> tuple[int, int, int]:
        return _rgb(skin * level)

    for s, sfx in ((-1, "L"), (1, "R")):
        depth = min(1.0, 0.12 * idn.fold_depth + 0.4 * g["AU12" + sfx] + 0.25 * g["AU10"]
                    + 0.2 * g["AU9"] + 0.1 * g["AU6"])
        corner = mouth["corners"][0 if s < 0 else 1]
        fold = _quad([s * nose["nw"] * 1.15, nose["yn"] - 0.03],
                     [s * (nose["nw"] + 0.22), (nose["yn"] + corner[1]) / 2],
                     [corner[0] * 1.15, corner[1] + 0.1])
        if depth > 0.02:
            draw.line(m.hi(fold, 0.15), fill=dark(1 - 0.4 * depth), width=m.w(0.022))
        crow = 0.8 * g["AU6"] + 0.2 * g["AU7"]
        if crow > 0.02:
            ox, oy = s * (idn.eye_sep + idn.eye_w + 0.04), idn.eye_y
            for dy in (-0.05, 0.0, 0.05):
                draw.line(m.hi([[ox, oy + dy * 0.5], [ox + s * 0.08, oy + dy * 1.6]], 0.05),
                          fill=dark(1 - 0.3 * crow), width=m.w(0.012))
        dimple = g["AU14" + sfx]
        if dimple > 0.02:
            draw.line(m.hi([[corner[0] + s * 0.03, corner[1] - 0.04],
                            [corner[0] + s * 0.035, corner[1] + 0.04]], 0.15),
                      fill=dark(1 - 0.4 * dimple), width=m.w(0.02))
        eye = el if s < 0 else er
        crease = eye["upper"].copy()
        crease[:, 1] -= 0.035 + 0.3 * eye["h_up"]
        draw.line(m.hi(crease[2:-1], 0.1), fill=dark(0.85), width=m.w(0.012))
        bag = eye["lower"].copy()
        bag[:, 1] += 0.04
        draw.line(m.hi(bag[3:-2], 0.1), fill=dark(0.92 - 0.3 * g["AU7"] - 0.2 * g["AU6"]),
                  width=m.w(0.012))
    forehead = max(g["AU1"], g["AU2"])
    if forehead > 0.02:
        top = idn.eye_y - idn.brow_gap - 0.16
        xs = np.linspace(-0.42, 0.42, 9)
        for k in range(3):
            ys = top - 0.1 * k + 0.05 * xs ** 2 * (1 + k)
            draw.line(m.hi(np.stack([xs, ys], 1), 0.05), fill=dark(1 - 0.3 * forehead),
                      width=m.w(0.014))
    if g["AU4"] > 0.02:
        by = idn.eye_y - idn.brow_gap
        for s in (-1, 1):
            draw.line(m.hi([[s * 0.05, by - 0.06], [s * 0.04, by + 0.08]], 0.1),
                      fill=dark(1 - 0.4 * g["AU4"]), width=m.w(0.015))
    if g["AU9"] > 0.02:
        for k in range(3):
            y = idn.eye_y + 0.06 + 0.045 * k
            draw.line(m.hi([[-0.06, y], [0.0, y - 0.015], [0.06, y]], 0.25),
                      fill=dark(1 - 0.35 * g["AU9"]), width=m.w(0.012))
    if g["AU17"] > 0.02:
        cy = lo_y + 0.09
        draw.line(m.hi(_quad([-0.12, cy], [0, cy + 0.05], [0.12, cy]), 0.1),
                  fill=dark(1 - 0.3 * g["AU17"]), width=m.w(0.02))

    # hair in front (cap and fringe): drawn after shading, it is not skin
    A, B = a + 0.5 * idn.hair_volume, idn.face_h + idn.hair_volume
    t0 = math.asin(float(np.clip(-idn.hair_side / B, -0.99, 0.99)))
    th = np.linspace(t0, math.pi - t0, 18)
    outer = np.stack([A * np.cos(th), -B * np.sin(th)], axis=1)
    th2 = np.linspace(math.pi, 0, 15)
    hairline = np.stack([a * 0.97 * np.cos(th2),
                         idn.hairline + (idn.hair_side - idn.hairline) * np.abs(np.cos(th2)) ** 3],
                        axis=1)
    draw.polygon(m.hi(np.vstack([outer, hairline])), fill=_rgb(idn.hair))

    # brows
    for centre, thick in geo["brows"]:
        upper = centre - np.stack([np.zeros_like(thick), thick / 2], 1)
        lower = centre + np.stack([np.zeros_like(thick), thick / 2], 1)
        draw.polygon(m.hi(np.vstack([upper, lower[::-1]]), 0.12), fill=_rgb(idn.brow_color))

    # eyes: sclera, iris/pupil clipped to the lids, lash line
    for eye in (el, er):
        up, lo = eye["upper"], eye["lower"]
        draw.polygon(m.hi(np.vstack([up, lo[::-1]]), 0.1), fill=(232, 226, 220))
        xs = up[:, 0]
        order = np.argsort(xs)
        for radius, colour in ((eye["r"], _rgb(idn.iris)), (eye["r"] * 0.45, (15, 12, 12))):
            circ = _ellipse(eye["iris"][0], eye["iris"][1], radius, radius, 18)
            circ[:, 0] = np.clip(circ[:, 0], xs.min(), xs.max())
            y_up = np.interp(circ[:, 0], xs[order], up[order, 1])
            y_lo = np.interp(circ[:, 0], xs[order], lo[order, 1])
            circ[:, 1] = np.clip(circ[:, 1], y_up, np.maximum(y_up, y_lo))
            draw.polygon(m.hi(circ, 0.1), fill=colour)
        draw.line(m.hi(up, 0.1), fill=_rgb(np.asarray(idn.brow_color) * 0.7), width=m.w(0.022))
        draw.line(m.hi(lo[2:-2], 0.1), fill=_rgb(skin * 0.7), width=m.w(0.01))

    # nose: nostrils and wings
    nb = nose["base"]
    for k in (1, 3):
        draw.polygon(m.hi(_ellipse(nb[k, 0], nb[k, 1] - 0.012, nose["nw"] * 0.22, 0.02, 10), 0.32),
                     fill=_rgb(skin * 0.35))
    for s, k in ((-1, 0), (1, 4)):
        wing = _quad(nb[k], [nb[k, 0] + s * 0.03, nb[k, 1] - 0.06], [s * nose["nw"] * 0.5,
                                                                     nose["yn"] - 0.1], 6)
        draw.line(m.hi(wing, 0.28), fill=_rgb(skin * 0.65), width=m.w(0.015))

    # mouth: lips, opening, teeth
    d = mouth["dense"]
    x = d["x"]
    lips = np.vstack([np.stack([x, d["upper_outer"]], 1), np.stack([x, d["lower_outer"]], 1)[::-1]])
    draw.polygon(m.hi(lips, 0.18), fill=_rgb(idn.lip_color))
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
              fill=_rgb(np.asarray(idn.lip_color) * 0.55), width=m.w(0.012))

    # downsample (anti-aliasing), shading, light, sensor noise
    low = img.reduce(SS)
    shade = np.asarray(coarse.filter(ImageFilter.GaussianBlur(0.09 * m.unit)), np.float32)
    shade *= np.float32(1 / 200)
    gen = rng if rng is not None else np.random.default_rng(0)
    if scene.mode == "L":
        arr = np.asarray(low.convert("L"), np.float32) * (shade * scene.gain_grey)
    else:
        arr = np.asarray(low, np.float32) * (shade[:, :, None] * scene.gain)
    if scene.noise > 0:
        arr += gen.standard_normal(arr.shape, dtype=np.float32) * np.float32(scene.noise)
    out = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    return out, m.px(geo["landmarks"], _Z68)


@dataclasses.dataclass
class RenderedSequence:
    emotion: str | None
    images: list[np.ndarray]
    landmarks: np.ndarray      # (T, 68, 2) pixels
    intensity: np.ndarray      # (T,)
    aus: np.ndarray            # (T, n_au)
    valence: np.ndarray        # (T,)
    arousal: np.ndarray        # (T,)


def intensity_ramp(frames: int, apex: float, gamma: float = 1.0) -> np.ndarray:
    """Monotone ramp from 0 at frame 0 to ``apex`` at the last frame."""
    t = np.linspace(0.0, 1.0, int(frames))
    return float(apex) * t ** float(gamma)


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
    base, drift, j = scene.pose, scene.drift, scene.jitter
    for i, level in enumerate(ramp):
        f = i / max(frames - 1, 1)
        pose = Pose(roll=base.roll + f * drift.roll + rng.normal(0, j),
                    yaw=base.yaw + f * drift.yaw + rng.normal(0, j),
                    scale=base.scale + f * drift.scale + rng.normal(0, j),
                    dx=base.dx + f * drift.dx + rng.normal(0, j * scene.canvas[0]),
                    dy=base.dy + f * drift.dy + rng.normal(0, j * scene.canvas[1]))
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


def _apex(rng: np.random.Generator, low: float = 0.35) -> float:
    # skewed towards strong expressions, with a tail of subtle ones down to ``low``
    return float(low + (1.0 - low) * rng.beta(2.5, 1.0))


# Posed lab recordings (CK+, Oulu-CASIA): the subject is asked to keep still in front of a fixed
# camera and to produce a strong apex; sensor noise is low. Head drift, jitter and noise are
# these fractions of the in-the-wild amounts, and the apex intensity starts at _LAB_APEX.
_LAB_MOTION = 0.12
_LAB_SENSOR = 0.35
_LAB_APEX = 0.75


def _gamma(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.7, 1.8))


def _random_blend(rng: np.random.Generator) -> dict[str, float]:
    """AU combination that matches no prototype (CK+'s unlabelled sequences)."""
    names = rng.choice(AU_NAMES, size=int(rng.integers(2, 5)), replace=False)
    return {str(n): float(rng.uniform(0.3, 1.0)) for n in names}


# --------------------------------------------------------------------------------------------
# encoders

def _save(image: np.ndarray, path: Path, fmt: dict[str, Any]) -> None:
    Image.fromarray(image).save(path, **fmt)


def _exp(value: float) -> str:
    return f"{value:.7e}"


# --------------------------------------------------------------------------------------------
# layout writers: each writes under ``root`` (a temporary folder) and returns its summary

def _write_ckplus(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = _LAYOUT_CODE["ckplus"]
    lay = _rng(cfg.seed, code)
    # scattered three-digit IDs like the real S005, S010, ... (four digits only past 995)
    top = 1000 if cfg.subjects <= 995 else 5 + cfg.subjects
    ids = np.sort(lay.choice(np.arange(5, top), cfg.subjects, replace=False))
    no_label = int(lay.integers(cfg.subjects)) if cfg.subjects >= 12 else -1
    names = list(_CKPLUS_WEIGHTS)
    # square root: keeps CK+'s order of class sizes without starving fear/sadness in a demo
    weights = np.sqrt([_CKPLUS_WEIGHTS[n] for n in names])
    images_dir, emo_dir, lm_dir, facs_dir = (root / n for n in
                                             ("cohn-kanade-images", "Emotion", "Landmarks", "FACS"))
    for d in (images_dir, emo_dir, lm_dir, facs_dir):
        d.mkdir(parents=True)
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    n_seq = n_lab = 0
    for si, sid in enumerate(ids):
        subject = f"S{int(sid):03d}"
        rng = _rng(cfg.seed, code, si)
        idn = sample_identity(rng)
        height = cfg.size if rng.uniform() < 0.7 else max(24, round(cfg.size * 480 / 490))
        canvas = (round(cfg.size * 640 / 490), height)
        n_labelled = 0 if si == no_label else int(rng.integers(2, 7))
        emotions: list[str | None] = list(rng.choice(names, n_labelled, replace=False,
                                                     p=weights / weights.sum()))
        emotions += [None] * int(rng.integers(0, 3))
        rng.shuffle(emotions)
        numbers = np.sort(rng.choice(np.arange(1, 3 * len(emotions) + 2), len(emotions),
                                     replace=False))
        rgb_subject = rng.uniform() < 0.1
        for qi, (emotion, num) in enumerate(zip(emotions, numbers)):
            seq = f"{int(num):03d}"
            srng = _rng(cfg.seed, code, si, qi + 1)
            mode = "RGB" if rgb_subject else "L"
            scene = make_scene(srng, canvas, srng.uniform(0.46, 0.56), mode=mode, clutter=(0, 3),
                               center=(canvas[0] / 2, canvas[1] * 0.47), center_jitter=0.03,
                               nuisance=0.8, motion=_LAB_MOTION, sensor=_LAB_SENSOR)  # a lab
            expr: str | dict[str, float] = emotion if emotion else _random_blend(srng)
            rendered = render_sequence(idn, expr, frames=cfg.frames, apex=_apex(srng, _LAB_APEX),
                                       gamma=_gamma(srng), rng=srng, scene=scene)
            for sub in (images_dir, emo_dir, lm_dir, facs_dir):
                (sub / subject / seq).mkdir(parents=True)
            n_seq += 1
            last = cfg.frames
            for fi, (image, lm) in enumerate(zip(rendered.images, rendered.landmarks), start=1):
                stem = f"{subject}_{seq}_{fi:08d}"
                _save(image, images_dir / subject / seq / f"{stem}.png", _PNG)
                (lm_dir / subject / seq / f"{stem}_landmarks.txt").write_text(
                    "".join(f"   {_exp(x)}   {_exp(y)}\n" for x, y in lm))
                records.append({
                    "path": f"cohn-kanade-images/{subject}/{seq}/{stem}.png", "subject": subject,
                    "sequence": f"{subject}_{seq}", "frame": fi, "emotion": emotion,
                    "valence": math.nan, "arousal": math.nan, "split": None,
                    "apex": bool(emotion) and fi == last,
                })
            stem = f"{subject}_{seq}_{last:08d}"
            facs = [(n, v) for n, v in zip(AU_NAMES, rendered.aus[-1]) if v >= 0.15]
            merged: dict[int, float] = {}
            for n, v in facs:
                merged[_FACS_NUMBER[n]] = max(merged.get(_FACS_NUMBER[n], 0.0), v)
            (facs_dir / subject / seq / f"{stem}_facs.txt").write_text("".join(
                f"   {_exp(k)}   {_exp(min(5, math.ceil(v * 4)))}\n"
                for k, v in sorted(merged.items())))
            if emotion:
                n_lab += 1
                labels[emotion] += 1
                (emo_dir / subject / seq / f"{stem}_emotion.txt").write_text(
                    f"   {_exp(CKPLUS_CODES[emotion])}\n")
    # the real archives carry macOS metadata files at several levels
    for where in (images_dir, images_dir / f"S{int(ids[0]):03d}", emo_dir):
        (where / ".DS_Store").write_bytes(_DS_STORE)
    return LayoutSummary("ckplus", root, cfg.subjects, n_seq, n_lab, len(records), labels, 0.0,
                         records)


def _write_oulu(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = _LAYOUT_CODE["oulu"]
    base = root / "OriginalImg" / "VL" / "Strong"
    base.mkdir(parents=True)
    canvas = (round(cfg.size * 4 / 3), cfg.size)
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    for si in range(cfg.subjects):
        subject = f"P{si + 1:03d}"
        rng = _rng(cfg.seed, code, si)
        idn = sample_identity(rng)
        for qi, emotion in enumerate(OULU_FOLDERS):
            srng = _rng(cfg.seed, code, si, qi + 1)
            folder = base / subject / OULU_FOLDERS[emotion]
            folder.mkdir(parents=True)
            scene = make_scene(srng, canvas, srng.uniform(0.55, 0.66), mode="RGB", clutter=(0, 4),
                               center=(canvas[0] / 2, canvas[1] * 0.5), center_jitter=0.04,
                               nuisance=0.8, motion=_LAB_MOTION, sensor=_LAB_SENSOR)
            rendered = render_sequence(idn, emotion, frames=cfg.frames,
                                       apex=_apex(srng, _LAB_APEX),
                                       gamma=_gamma(srng), rng=srng, scene=scene)
            for fi, image in enumerate(rendered.images):
                _save(image, folder / f"{fi:03d}.jpeg", _JPEG)
                records.append({
                    "path": f"OriginalImg/VL/Strong/{subject}/{OULU_FOLDERS[emotion]}/{fi:03d}.jpeg",
                    "subject": subject, "sequence": f"{subject}_{OULU_FOLDERS[emotion]}",
                    "frame": fi, "emotion": emotion, "valence": math.nan, "arousal": math.nan,
                    "split": None, "apex": fi == cfg.frames - 1,
                })
            labels[emotion] += 1
    n = cfg.subjects * len(OULU_FOLDERS)
    return LayoutSummary("oulu", root, cfg.subjects, n, n, len(records), labels, 0.0, records)


def _affectnet_image(idn: Identity, expr: str | dict[str, float], level: float,
                     rng: np.random.Generator, size: int, face: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    side = int(size + rng.integers(0, size // 2 + 1))
    canvas = (side, side) if rng.uniform() < 0.8 else (side, int(side * rng.uniform(0.85, 1.0)))
    scene = make_scene(rng, canvas, rng.uniform(0.75, 0.92), mode="RGB", clutter=(3, 10),
                       center=(canvas[0] / 2, canvas[1] * 0.5), center_jitter=0.05)
    aus = expression_aus(idn, expr, level)
    if face:
        image, lm = render_face(idn, aus, scene, scene.pose, rng)
    else:
        # a false detection: clutter only, with the box/landmarks the detector would have given
        _, lm = render_face(idn, aus, scene, scene.pose, rng)
        image = np.asarray(scene.background.reduce(SS), dtype=np.uint8).copy()
    x0, x1 = lm[:17, 0].min(), lm[:17, 0].max()
    y1 = lm[:17, 1].max()
    top = lm[17:27, 1].min()
    y0 = top - 0.25 * (y1 - top)
    w, h = canvas
    x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    x1, y1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    return image, lm, [x0, y0, x1 - x0, y1 - y0]


def _write_affectnet(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = _LAYOUT_CODE["affectnet"]
    img_root = root / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    img_root.mkdir(parents=True)
    lists.mkdir(parents=True)
    lay = _rng(cfg.seed, code)
    order = lay.permutation(cfg.subjects)
    n_val_subjects = max(1, round(0.2 * cfg.subjects)) if cfg.subjects > 1 else 0
    val_subjects = sorted(order[:n_val_subjects].tolist()) or [0]
    train_subjects = sorted(order[n_val_subjects:].tolist()) or [0]
    identities = [sample_identity(_rng(cfg.seed, code, si)) for si in range(cfg.subjects)]
    classes = list(AFFECTNET_CODES)
    p = np.array([_AFFECTNET_WEIGHTS[c] for c in classes])
    p = p / p.sum()
    n_train = 20 * cfg.subjects
    n_extra = max(1, round(0.01 * n_train))
    # (expression code or None for a class, emotion) plans; codes 8-10 as in the real lists
    plan_train: list[tuple[str, Any]] = [("emotion", str(c)) for c in lay.choice(classes, n_train, p=p)]
    plan_train += [("none", None)] * n_extra + [("uncertain", None)] * n_extra
    plan_train += [("nonface", None)] * n_extra
    order_train = lay.permutation(len(plan_train))
    plan_train = [plan_train[i] for i in order_train]
    per_class = max(2, cfg.subjects // 3)
    plan_val = [("emotion", c) for c in classes for _ in range(per_class)]
    plan_val = [plan_val[i] for i in lay.permutation(len(plan_val))]
    used: set[str] = set()
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    texts: dict[str, list[str]] = {"training": [AFFECTNET_HEADER], "validation": []}
    for split, plan, pool in (("training", plan_train, train_subjects),
                              ("validation", plan_val, val_subjects)):
        for k, (kind, emotion) in enumerate(plan):
            rng = _rng(cfg.seed, code, 1_000_000 + (0 if split == "training" else 500_000) + k)
            si = int(pool[int(rng.integers(len(pool)))])
            idn = identities[si]
            while True:
                name = rng.bytes(28).hex()
                if name not in used:
                    used.add(name)
                    break
            folder = str(int(rng.integers(1, 1300)))
            ext = ".jpg"
            r = rng.uniform()
            if r < 0.03:
                ext = ".png"
            elif r < 0.06:
                ext = ".JPG"
            if kind == "emotion":
                level = 0.0 if emotion == "neutral" else float(rng.uniform(0.25, 1.0))
                expr: Any = emotion
            else:
                level, expr = 1.0, _random_blend(rng)
            image, lm, box = _affectnet_image(idn, expr, level, rng, cfg.size, kind != "nonface")
            (img_root / folder).mkdir(exist_ok=True)
            rel = f"{folder}/{name}{ext}"
            _save(image, img_root / folder / f"{name}{ext}", _PNG if ext == ".png" else _JPEG)
            if kind == "emotion":
                v, a = valence_arousal(emotion, level, rng)
                expr_code, vs, as_ = AFFECTNET_CODES[emotion], f"{v:.6f}", f"{a:.6f}"
                labels[emotion] += 1
            elif kind == "none":
                v, a = float(np.clip(rng.normal(0, 0.3), -1, 1)), float(np.clip(rng.normal(0, 0.3), -1, 1))
                expr_code, vs, as_ = 8, f"{v:.6f}", f"{a:.6f}"
            else:
                expr_code, vs, as_ = (9 if kind == "uncertain" else 10), "-2", "-2"
                v = a = math.nan
            lm_text = ";".join(f"{c:.2f}" for c in lm.ravel())
            texts[split].append(f"{rel},{box[0]},{box[1]},{box[2]},{box[3]},{lm_text},"
                                f"{expr_code},{vs},{as_}")
            records.append({
                "path": f"Manually_Annotated_Images/{rel}", "subject": None, "sequence": None,
                "frame": None, "emotion": emotion if kind == "emotion" else None,
                "valence": float(vs) if kind in ("emotion", "none") else math.nan,
                "arousal": float(as_) if kind in ("emotion", "none") else math.nan,
                "split": split, "apex": False, "code": expr_code, "box": box,
            })
    for split, lines in texts.items():
        (lists / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return LayoutSummary("affectnet", root, cfg.subjects, 0, 0, len(records), labels, 0.0, records)


def _write_afewva(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = _LAYOUT_CODE["afewva"]
    root.mkdir(parents=True, exist_ok=True)
    lay = _rng(cfg.seed, code)
    videos = [(si, k) for si in range(cfg.subjects) for k in range(2)]
    videos = [videos[i] for i in lay.permutation(len(videos))]
    width = max(3, len(str(len(videos))))
    identities = [sample_identity(_rng(cfg.seed, code, si)) for si in range(cfg.subjects)]
    canvas = (round(cfg.size * 1.25), cfg.size)
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    for vi, (si, k) in enumerate(videos, start=1):
        vid = f"{vi:0{width}d}"
        actor = f"actor{si + 1:03d}"
        rng = _rng(cfg.seed, code, si, k + 1)
        emotion = str(rng.choice(EMOTIONS))
        scene = make_scene(rng, canvas, rng.uniform(0.38, 0.5), mode="RGB", clutter=(4, 12),
                           center=(canvas[0] / 2, canvas[1] * 0.45), center_jitter=0.1,
                           nuisance=1.3)
        rendered = render_sequence(identities[si], emotion, frames=cfg.frames,
                                   apex=_apex(rng), gamma=_gamma(rng), rng=rng, scene=scene,
                                   va_noise=0.06)
        folder = root / vid
        folder.mkdir()
        frames: dict[str, Any] = {}
        for fi, (image, lm, v, a) in enumerate(zip(rendered.images, rendered.landmarks,
                                                   rendered.valence, rendered.arousal)):
            key = f"{fi:05d}"
            _save(image, folder / f"{key}.png", _PNG)
            vi10, ai10 = int(np.clip(round(v * 10), -10, 10)), int(np.clip(round(a * 10), -10, 10))
            frames[key] = {"valence": vi10, "arousal": ai10,
                           "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in lm]}
            records.append({
                "path": f"{vid}/{key}.png", "subject": actor, "sequence": vid, "frame": fi,
                "emotion": None, "valence": vi10 / 10, "arousal": ai10 / 10, "split": None,
                "apex": False, "expressed": emotion,
            })
        labels[emotion] += 1
        doc = {"actor": actor, "frames": frames, "video_id": vid}
        (folder / f"{vid}.json").write_text(json.dumps(doc, sort_keys=True) + "\n")
    return LayoutSummary("afewva", root, cfg.subjects, len(videos), 0, len(records), labels, 0.0,
                         records)


def fer2013_usage(subjects: int, seed: int = 0) -> dict[int, str]:
    """Subject index -> Usage: ~80/10/10 by subject, so no identity is in two splits."""
    order = _rng(seed, _LAYOUT_CODE["fer2013"], 7).permutation(subjects)
    n_test = round(0.1 * subjects) if subjects >= 10 else (1 if subjects >= 3 else 0)
    n_val = n_test
    usage = {}
    for rank, si in enumerate(order.tolist()):
        if rank < n_val:
            usage[si] = "PublicTest"
        elif rank < n_val + n_test:
            usage[si] = "PrivateTest"
        else:
            usage[si] = "Training"
    return usage


def _write_fer2013(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = _LAYOUT_CODE["fer2013"]
    root.mkdir(parents=True, exist_ok=True)
    usage = fer2013_usage(cfg.subjects, cfg.seed)
    rows: dict[str, list[tuple[int, str, int, str]]] = {u: [] for u in FER2013_USAGE}
    for si in range(cfg.subjects):
        rng = _rng(cfg.seed, code, si)
        idn = sample_identity(rng)
        for ei, emotion in enumerate(FER2013_CODES):
            for k in range(3):
                srng = _rng(cfg.seed, code, si, 1 + 3 * ei + k)
                # a tight crop as in FER-2013: eyes ~40% down, chin at the bottom edge
                scene = make_scene(srng, (48, 48), srng.uniform(1.2, 1.35), mode="L",
                                   clutter=(0, 3), center=(24, 20), center_jitter=0.03,
                                   nuisance=0.8)
                level = 0.0 if emotion == "neutral" else float(srng.uniform(0.3, 1.0))
                image, _ = render_face(idn, expression_aus(idn, emotion, level), scene,
                                       scene.pose, srng)
                rows[usage[si]].append((FER2013_CODES[emotion],
                                        " ".join(map(str, image.ravel().tolist())), si, emotion))
    lines = ["emotion,pixels,Usage"]
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    shuffle = _rng(cfg.seed, code)
    for use in FER2013_USAGE:  # the real file is ordered Training, PublicTest, PrivateTest
        block = rows[use]
        for i in shuffle.permutation(len(block)).tolist():
            c, pixels, si, emotion = block[i]
            records.append({"path": f"fer2013.csv#{len(records)}", "subject": si,
                            "sequence": None, "frame": None, "emotion": emotion,
                            "valence": math.nan, "arousal": math.nan,
                            "split": FER2013_USAGE[use], "apex": False, "usage": use})
            lines.append(f"{c},{pixels},{use}")
            labels[emotion] += 1
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    return LayoutSummary("fer2013", root, cfg.subjects, 0, 0, len(records), labels, 0.0, records)


_WRITERS: dict[str, Callable[[Path, SyntheticConfig], LayoutSummary]] = {
    "ckplus": _write_ckplus, "oulu": _write_oulu, "affectnet": _write_affectnet,
    "afewva": _write_afewva, "fer2013": _write_fer2013,
}


@contextlib.contextmanager
def _atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` (old copy removed)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise FerbenchError(f"{final}: exists and is not a directory")
    # leftovers of a killed run are hidden siblings; nothing reads them
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in final.parent.glob(f".{final.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_layout(name: str, out: str | os.PathLike, config: SyntheticConfig) -> LayoutSummary:
    """Write one layout to ``out/<name>`` atomically and return what was written."""
    if name not in _WRITERS:
        raise FerbenchError(f"unknown synthetic layout {name!r}; known: {', '.join(LAYOUTS)}")
    final = Path(out) / name
    start = time.perf_counter()
    with _atomic_dir(final) as tmp:
        summary = _WRITERS[name](tmp, config)
    summary.path = final
    summary.seconds = time.perf_counter() - start
    for rec in summary.records:
        rec.setdefault("dataset", name)
    return summary


def write_layouts(out: str | os.PathLike, config: SyntheticConfig | None = None,
                  log: Callable[[str], Any] | None = None) -> dict[str, LayoutSummary]:
    """Write every layout of ``config`` under ``out``; ``log`` gets one summary line per layout."""
    config = config or SyntheticConfig()
    summaries = {}
    for name in config.layouts:
        summaries[name] = write_layout(name, out, config)
        if log is not None:
            log(summaries[name].line())
    return summaries


def parse_layouts(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(s.strip() for s in items if s.strip())
    for n in names:
        if n not in LAYOUTS:
            raise FerbenchError(f"unknown synthetic layout {n!r}; known: {', '.join(LAYOUTS)}")
    return names


def main(args: Any) -> int:
    """``ferbench synthesize``: write the requested layouts and print one line per layout."""
    config = SyntheticConfig(subjects=args.subjects, frames=args.frames, size=args.size,
                             seed=args.seed, layouts=parse_layouts(args.layouts))
    write_layouts(args.out, config, log=lambda line: print(line, flush=True))
    return 0


__all__ = [
    "AFFECTNET_CODES", "CKPLUS_CODES", "FER2013_CODES", "FER2013_USAGE", "OULU_FOLDERS",
    "AU_NAMES", "AU_PROFILES", "CIRCUMPLEX", "LAYOUTS", "Identity", "LayoutSummary", "Pose",
    "RenderedSequence", "Scene", "SyntheticConfig", "expression_aus", "face_landmarks",
    "fer2013_usage", "intensity_ramp", "make_scene", "main", "parse_layouts", "render_face",
    "render_sequence", "sample_identity", "valence_arousal", "write_layout", "write_layouts",
]
