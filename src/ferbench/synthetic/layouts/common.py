"""What the layout writers share: the image encoders and the posed lab recording."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ferbench.synthetic.face import Identity, random_blend, sample_apex, sample_gamma
from ferbench.synthetic.render import RenderedSequence, render_sequence
from ferbench.synthetic.scene import make_scene

PNG = {"format": "PNG", "optimize": False, "compress_level": 6}
JPEG = {"format": "JPEG", "quality": 90, "optimize": False, "progressive": False,
        "subsampling": 2}

# Posed lab recordings (CK+, Oulu-CASIA): the subject is asked to keep still in front of a fixed
# camera and to produce a strong apex; sensor noise is low. Head drift, jitter and noise are
# these fractions of the in-the-wild amounts, and the apex intensity starts at _LAB_APEX.
_LAB_MOTION = 0.12
_LAB_SENSOR = 0.35
_LAB_APEX = 0.75


def save_image(image: np.ndarray, path: Path, fmt: dict[str, Any]) -> None:
    """Encode ``image`` to ``path`` with fixed settings (PNG or JPEG), so the bytes are stable."""
    Image.fromarray(image).save(path, **fmt)


def lab_sequence(idn: Identity, emotion: str | None, rng: np.random.Generator, *,
                 canvas: tuple[int, int], frames: int, face_frac: tuple[float, float], mode: str,
                 clutter: tuple[int, int], center_y: float,
                 center_jitter: float) -> RenderedSequence:
    """One posed neutral-to-apex sequence in a lab (CK+, Oulu-CASIA).

    ``emotion`` None gives an AU blend that matches no prototype (an unlabelled sequence);
    ``face_frac`` is the range the face size is drawn from, ``center_y`` the face centre's
    height as a fraction of the canvas.
    """
    scene = make_scene(rng, canvas, rng.uniform(*face_frac), mode=mode, clutter=clutter,
                       center=(canvas[0] / 2, canvas[1] * center_y), center_jitter=center_jitter,
                       nuisance=0.8, motion=_LAB_MOTION, sensor=_LAB_SENSOR)
    expr: str | dict[str, float] = emotion if emotion else random_blend(rng)
    return render_sequence(idn, expr, frames=frames, apex=sample_apex(rng, _LAB_APEX),
                           gamma=sample_gamma(rng), rng=rng, scene=scene)
