"""The procedural face model: who is shown (an identity) and what they express (action-unit-like
parameters per emotion, an intensity ramp from neutral to apex, valence/arousal on the
circumplex).

Identity is a nuisance: each subject has its own face shape, skin, hair and feature placement,
a resting face and per-emotion gains on the action units (an expressive idiosyncrasy).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ferbench.datasets.base import EMOTIONS
from ferbench.errors import FerbenchError

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
#: Position of each AU name in an activation vector.
AU_INDEX = {name: i for i, name in enumerate(AU_NAMES)}
#: FACS number of each AU (the two sides of AU12/AU14 share one).
FACS_NUMBER = {
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
            rest[AU_INDEX[name]] = u(0.0, 0.15)
    smile = u(0, 0.12) if u(0, 1) < 0.4 else 0.0
    rest[AU_INDEX["AU12L"]] = rest[AU_INDEX["AU12R"]] = smile
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


# --------------------------------------------------------------------------------------------
# expression

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
        aus[AU_INDEX[name]] += float(intensity) * value * gain[AU_INDEX[name]]
    return np.clip(aus, 0.0, 1.3)


def random_blend(rng: np.random.Generator) -> dict[str, float]:
    """AU combination that matches no prototype (CK+'s unlabelled sequences)."""
    names = rng.choice(AU_NAMES, size=int(rng.integers(2, 5)), replace=False)
    return {str(n): float(rng.uniform(0.3, 1.0)) for n in names}


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
# intensity over a sequence

def intensity_ramp(frames: int, apex: float, gamma: float = 1.0) -> np.ndarray:
    """Monotone ramp from 0 at frame 0 to ``apex`` at the last frame."""
    t = np.linspace(0.0, 1.0, int(frames))
    return float(apex) * t ** float(gamma)


def sample_apex(rng: np.random.Generator, low: float = 0.35) -> float:
    """A sequence's apex intensity in [``low``, 1]."""
    # skewed towards strong expressions, with a tail of subtle ones down to ``low``
    return float(low + (1.0 - low) * rng.beta(2.5, 1.0))


def sample_gamma(rng: np.random.Generator) -> float:
    """A ramp's shape: below 1 the expression comes early, above 1 late."""
    return float(rng.uniform(0.7, 1.8))
