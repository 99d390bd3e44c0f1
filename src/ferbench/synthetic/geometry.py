"""Face geometry in face units (half-width ~1, y down) for an identity and its AU activations.

One function gives both what the renderer draws and the 68 landmarks (iBUG order), so the
landmarks always sit on the drawn features.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferbench.synthetic.face import AU_INDEX, AU_NAMES, Identity

_T_EYE = np.linspace(0.0, 1.0, 13)    # lid parameter, outer (0) to inner (1) corner
_U_BROW = np.linspace(0.0, 1.0, 9)    # brow parameter, outer (0) to inner (1) end
_U_MOUTH = np.linspace(-1.0, 1.0, 25)  # mouth parameter, image-left (-1) to image-right (+1)
#: Angles of the whole face outline (the drawn skin).
PHI_FACE = np.linspace(0.0, 2 * math.pi, 72, endpoint=False)
_PHI_JAW = np.linspace(math.pi + 0.12, -0.12, 17)

#: Landmark depth (for the yaw shift): nose tip stands out most, contour least.
LANDMARK_DEPTH = np.concatenate([
    np.zeros(17), np.full(10, 0.12), [0.2, 0.28, 0.36, 0.45], [0.25, 0.32, 0.38, 0.32, 0.25],
    np.full(12, 0.1), np.full(20, 0.18),
])


def contour(idn: Identity, au: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Points of the face outline at angles ``phi`` (the jaw drops with AU26)."""
    lower = np.clip(np.sin(phi), 0, 1)
    upper = np.clip(-np.sin(phi), 0, 1)
    x = idn.face_w * np.cos(phi) * (1 - idn.jaw_taper * lower ** 2.5) * (1 - 0.06 * upper ** 2)
    y = idn.face_h * np.sin(phi) + 0.26 * au[AU_INDEX["AU26"]] * lower ** 3
    return np.stack([x, y], axis=1)


def _brow(idn: Identity, au: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre line (outer->inner) and per-point thickness of one brow; side -1 image-left."""
    u, L = _U_BROW, idn.brow_len
    x = -idn.eye_sep - 1.1 * L + 1.9 * L * u
    y = (idn.eye_y - idn.brow_gap - idn.brow_arch * np.sin(math.pi * (0.85 * u + 0.05))
         + 0.03 * (1 - u) ** 3)
    a1, a2, a4, a9 = (au[AU_INDEX[n]] for n in ("AU1", "AU2", "AU4", "AU9"))
    y = y - 0.16 * a1 * u ** 1.5 - 0.13 * a2 * (1 - u) ** 1.2 - 0.04 * a2 * u
    y = y + 0.09 * a4 * (0.3 + 0.7 * u) + 0.025 * a9 * u
    x = x + 0.06 * a4 * u ** 2
    if side > 0:
        x, y = -x, y + idn.asym
    thick = idn.brow_thick * (0.55 + 0.45 * np.sqrt(u))
    return np.stack([x, y], axis=1), thick


def _eye(idn: Identity, au: np.ndarray, side: int) -> dict[str, Any]:
    a5, a6, a7, a43 = (au[AU_INDEX[n]] for n in ("AU5", "AU6", "AU7", "AU43"))
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
    g = {name: au[AU_INDEX[name]] for name in AU_NAMES}
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


def lower_lip_bottom(mouth: dict[str, Any]) -> float:
    """y of the lower lip's outer edge at the mouth's middle (the chin starts below it)."""
    return float(mouth["dense"]["lower_outer"][12])


def _nose(idn: Identity, au: np.ndarray) -> dict[str, Any]:
    a9, a10 = au[AU_INDEX["AU9"]], au[AU_INDEX["AU10"]]
    yn = idn.nose_tip + 0.07 - 0.04 * a9 - 0.02 * a10
    nw = idn.nose_w * (1 + 0.15 * a9 + 0.05 * a10)
    bridge = np.stack([np.zeros(4), np.linspace(idn.eye_y - 0.02, idn.nose_tip, 4)], axis=1)
    base = np.array([[-nw, yn - 0.03], [-0.5 * nw, yn + 0.005], [0.0, yn + 0.015],
                     [0.5 * nw, yn + 0.005], [nw, yn - 0.03]])
    return {"bridge": bridge, "base": base, "yn": yn, "nw": nw}


def face_geometry(idn: Identity, au: np.ndarray) -> dict[str, Any]:
    """Brows, eyes, mouth and nose as the renderer draws them, and the 68 landmarks on them."""
    brows = [_brow(idn, au, s) for s in (-1, 1)]
    eyes = [_eye(idn, au, s) for s in (-1, 1)]
    mouth = _mouth(idn, au)
    nose = _nose(idn, au)
    lm = np.zeros((68, 2))
    lm[0:17] = contour(idn, au, _PHI_JAW)
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
    return face_geometry(identity, np.asarray(aus, float))["landmarks"]
