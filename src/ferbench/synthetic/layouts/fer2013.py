"""FER-2013 layout: one ``fer2013.csv`` with ``emotion,pixels,Usage`` rows, 48x48 grey tight
crops as space-separated pixel values, ordered Training, PublicTest, PrivateTest. The real file
has no subjects; here the usages are split by subject so that no identity is in two splits."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from ferbench.synthetic.config import LAYOUT_CODE, LayoutSummary, SyntheticConfig, layout_rng
from ferbench.synthetic.face import expression_aus, sample_identity
from ferbench.synthetic.render import render_face
from ferbench.synthetic.scene import make_scene

FER2013_CODES = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4,
                 "surprise": 5, "neutral": 6}
FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def fer2013_usage(subjects: int, seed: int = 0) -> dict[int, str]:
    """Subject index -> Usage: ~80/10/10 by subject, so no identity is in two splits."""
    order = layout_rng(seed, LAYOUT_CODE["fer2013"], 7).permutation(subjects)
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


def write_fer2013(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = LAYOUT_CODE["fer2013"]
    root.mkdir(parents=True, exist_ok=True)
    usage = fer2013_usage(cfg.subjects, cfg.seed)
    rows: dict[str, list[tuple[int, str, int, str]]] = {u: [] for u in FER2013_USAGE}
    for si in range(cfg.subjects):
        idn = sample_identity(layout_rng(cfg.seed, code, si))
        for ei, emotion in enumerate(FER2013_CODES):
            for k in range(3):
                srng = layout_rng(cfg.seed, code, si, 1 + 3 * ei + k)
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
    shuffle = layout_rng(cfg.seed, code)
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
