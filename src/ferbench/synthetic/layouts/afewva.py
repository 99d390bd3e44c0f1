"""AFEW-VA layout: one folder per video clip (``001/00000.png`` ...) with ``001/001.json`` holding
the actor and, per frame, integer valence/arousal in [-10, 10] and 68 landmarks. In-the-wild
framing: strong clutter, head motion and noise.

Each actor plays ``CLIPS_PER_ACTOR`` clips, each a different emotion, and the emotions are
balanced over the copy: with one random emotion per clip (as first written) an actor's identity
predicted most of his valence/arousal, and a regressor trained on 30-odd actors learnt who, not
how (held-out CCC below 0).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.datasets.base import EMOTIONS
from ferbench.synthetic.config import LAYOUT_CODE, LayoutSummary, SyntheticConfig, layout_rng
from ferbench.synthetic.face import sample_apex, sample_gamma, sample_identity
from ferbench.synthetic.layouts.common import PNG, save_image
from ferbench.synthetic.render import render_sequence
from ferbench.synthetic.scene import make_scene


CLIPS_PER_ACTOR = 4


def write_afewva(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = LAYOUT_CODE["afewva"]
    root.mkdir(parents=True, exist_ok=True)
    lay = layout_rng(cfg.seed, code)
    videos = [(si, k) for si in range(cfg.subjects) for k in range(CLIPS_PER_ACTOR)]
    # actor si's clip k plays emotion (offset_si + k) mod 8: distinct per actor, and every
    # emotion equally often across actors
    offsets = lay.permutation(cfg.subjects) % len(EMOTIONS)
    videos = [videos[i] for i in lay.permutation(len(videos))]
    width = max(3, len(str(len(videos))))
    identities = [sample_identity(layout_rng(cfg.seed, code, si)) for si in range(cfg.subjects)]
    canvas = (round(cfg.size * 1.25), cfg.size)
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    for vi, (si, k) in enumerate(videos, start=1):
        vid = f"{vi:0{width}d}"
        actor = f"actor{si + 1:03d}"
        rng = layout_rng(cfg.seed, code, si, k + 1)
        emotion = EMOTIONS[(offsets[si] + k * (len(EMOTIONS) // CLIPS_PER_ACTOR + 1)) % len(EMOTIONS)]
        scene = make_scene(rng, canvas, rng.uniform(0.38, 0.5), mode="RGB", clutter=(4, 12),
                           center=(canvas[0] / 2, canvas[1] * 0.45), center_jitter=0.1,
                           nuisance=1.3)
        rendered = render_sequence(identities[si], emotion, frames=cfg.frames,
                                   apex=sample_apex(rng), gamma=sample_gamma(rng), rng=rng,
                                   scene=scene, va_noise=0.06)
        folder = root / vid
        folder.mkdir()
        frames: dict[str, Any] = {}
        for fi, (image, lm, v, a) in enumerate(zip(rendered.images, rendered.landmarks,
                                                   rendered.valence, rendered.arousal)):
            key = f"{fi:05d}"
            save_image(image, folder / f"{key}.png", PNG)
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
