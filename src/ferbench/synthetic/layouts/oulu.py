"""Oulu-CASIA layout: ``OriginalImg/VL/Strong/P001/Anger/000.jpeg``, one posed sequence per
subject and basic emotion (no neutral, no contempt), colour 4:3 JPEG frames from a lab."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from ferbench.synthetic.config import LAYOUT_CODE, LayoutSummary, SyntheticConfig, layout_rng
from ferbench.synthetic.face import sample_identity
from ferbench.synthetic.layouts.common import JPEG, lab_sequence, save_image

OULU_FOLDERS = {"anger": "Anger", "disgust": "Disgust", "fear": "Fear",
                "happiness": "Happiness", "sadness": "Sadness", "surprise": "Surprise"}


def write_oulu(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = LAYOUT_CODE["oulu"]
    base = root / "OriginalImg" / "VL" / "Strong"
    base.mkdir(parents=True)
    canvas = (round(cfg.size * 4 / 3), cfg.size)
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    for si in range(cfg.subjects):
        subject = f"P{si + 1:03d}"
        idn = sample_identity(layout_rng(cfg.seed, code, si))
        for qi, emotion in enumerate(OULU_FOLDERS):
            folder = base / subject / OULU_FOLDERS[emotion]
            folder.mkdir(parents=True)
            rendered = lab_sequence(idn, emotion, layout_rng(cfg.seed, code, si, qi + 1),
                                    canvas=canvas, frames=cfg.frames, face_frac=(0.55, 0.66),
                                    mode="RGB", clutter=(0, 4), center_y=0.5, center_jitter=0.04)
            for fi, image in enumerate(rendered.images):
                save_image(image, folder / f"{fi:03d}.jpeg", JPEG)
                records.append({
                    "path": f"OriginalImg/VL/Strong/{subject}/{OULU_FOLDERS[emotion]}/{fi:03d}.jpeg",
                    "subject": subject, "sequence": f"{subject}_{OULU_FOLDERS[emotion]}",
                    "frame": fi, "emotion": emotion, "valence": math.nan, "arousal": math.nan,
                    "split": None, "apex": fi == cfg.frames - 1,
                })
            labels[emotion] += 1
    n = cfg.subjects * len(OULU_FOLDERS)
    return LayoutSummary("oulu", root, cfg.subjects, n, n, len(records), labels, 0.0, records)
