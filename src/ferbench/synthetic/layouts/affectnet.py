"""AffectNet layout: single in-the-wild images under ``Manually_Annotated_Images/<folder>/``
with hex names, listed in ``Manually_Annotated_file_lists/training.csv`` (with a header) and
``validation.csv`` (without): face box, 68 landmarks, expression code (0-7 emotions, 8 none,
9 uncertain, 10 non-face) and valence/arousal. Training is class-imbalanced; validation is
balanced and, given two subjects or more, subject-disjoint from training."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.synthetic.config import LAYOUT_CODE, LayoutSummary, SyntheticConfig, layout_rng
from ferbench.synthetic.face import (
    Identity, expression_aus, random_blend, sample_identity, valence_arousal)
from ferbench.synthetic.layouts.common import JPEG, PNG, save_image
from ferbench.synthetic.render import render_face
from ferbench.synthetic.scene import SS, make_scene

AFFECTNET_CODES = {"neutral": 0, "happiness": 1, "sadness": 2, "surprise": 3, "fear": 4,
                   "disgust": 5, "anger": 6, "contempt": 7}
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                    "facial_landmarks,expression,valence,arousal")

# AffectNet training is imbalanced (happy and neutral dominate); kept mild here.
_AFFECTNET_WEIGHTS = {"neutral": 2.0, "happiness": 2.5, "sadness": 1.0, "surprise": 1.0,
                      "fear": 0.8, "disgust": 0.7, "anger": 1.0, "contempt": 0.6}


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


def _plans(lay: np.random.Generator, subjects: int
           ) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Training and validation plans: (kind, emotion) per image, kind one of emotion, none,
    uncertain, nonface (codes 8-10 as in the real lists)."""
    classes = list(AFFECTNET_CODES)
    p = np.array([_AFFECTNET_WEIGHTS[c] for c in classes])
    p = p / p.sum()
    n_train = 20 * subjects
    n_extra = max(1, round(0.01 * n_train))
    plan_train: list[tuple[str, Any]] = [("emotion", str(c)) for c in lay.choice(classes, n_train, p=p)]
    plan_train += [("none", None)] * n_extra + [("uncertain", None)] * n_extra
    plan_train += [("nonface", None)] * n_extra
    order_train = lay.permutation(len(plan_train))
    plan_train = [plan_train[i] for i in order_train]
    per_class = max(2, subjects // 3)
    plan_val = [("emotion", c) for c in classes for _ in range(per_class)]
    plan_val = [plan_val[i] for i in lay.permutation(len(plan_val))]
    return plan_train, plan_val


def _file_name(rng: np.random.Generator, used: set[str]) -> str:
    """A hex stem not given to an earlier image, and an extension (mostly .jpg)."""
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
    return f"{folder}/{name}{ext}"


def _annotation(kind: str, emotion: str | None, level: float,
                rng: np.random.Generator) -> tuple[int, str, str]:
    """Expression code and valence/arousal text of one list row (-2 where AffectNet has none)."""
    if kind == "emotion":
        v, a = valence_arousal(emotion, level, rng)
        return AFFECTNET_CODES[emotion], f"{v:.6f}", f"{a:.6f}"
    if kind == "none":
        v, a = float(np.clip(rng.normal(0, 0.3), -1, 1)), float(np.clip(rng.normal(0, 0.3), -1, 1))
        return 8, f"{v:.6f}", f"{a:.6f}"
    return (9 if kind == "uncertain" else 10), "-2", "-2"


def write_affectnet(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = LAYOUT_CODE["affectnet"]
    img_root = root / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    img_root.mkdir(parents=True)
    lists.mkdir(parents=True)
    lay = layout_rng(cfg.seed, code)
    order = lay.permutation(cfg.subjects)
    n_val_subjects = max(1, round(0.2 * cfg.subjects)) if cfg.subjects > 1 else 0
    val_subjects = sorted(order[:n_val_subjects].tolist()) or [0]
    train_subjects = sorted(order[n_val_subjects:].tolist()) or [0]
    identities = [sample_identity(layout_rng(cfg.seed, code, si)) for si in range(cfg.subjects)]
    plan_train, plan_val = _plans(lay, cfg.subjects)
    used: set[str] = set()
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    texts: dict[str, list[str]] = {"training": [AFFECTNET_HEADER], "validation": []}
    # an image's stream is keyed past every subject index, training and validation apart
    for split, plan, pool, first_key in (("training", plan_train, train_subjects, 1_000_000),
                                         ("validation", plan_val, val_subjects, 1_500_000)):
        for k, (kind, emotion) in enumerate(plan):
            rng = layout_rng(cfg.seed, code, first_key + k)
            idn = identities[int(pool[int(rng.integers(len(pool)))])]
            rel = _file_name(rng, used)
            if kind == "emotion":
                level = 0.0 if emotion == "neutral" else float(rng.uniform(0.25, 1.0))
                expr: Any = emotion
                labels[emotion] += 1
            else:
                level, expr = 1.0, random_blend(rng)
            image, lm, box = _affectnet_image(idn, expr, level, rng, cfg.size, kind != "nonface")
            (img_root / rel).parent.mkdir(exist_ok=True)
            save_image(image, img_root / rel, PNG if rel.endswith(".png") else JPEG)
            expr_code, vs, as_ = _annotation(kind, emotion, level, rng)
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
