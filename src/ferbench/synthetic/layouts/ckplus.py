"""CK+ layout: ``cohn-kanade-images/S005/001/S005_001_00000001.png`` with ``Emotion``,
``Landmarks`` and ``FACS`` text files beside it, grey (some subjects colour) 640x490-shaped
frames from a posed lab recording, a few unlabelled sequences and macOS ``.DS_Store`` files."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.synthetic.config import LAYOUT_CODE, LayoutSummary, SyntheticConfig, layout_rng
from ferbench.synthetic.face import AU_NAMES, FACS_NUMBER, sample_identity
from ferbench.synthetic.layouts.common import PNG, lab_sequence, save_image
from ferbench.synthetic.render import RenderedSequence

CKPLUS_CODES = {"neutral": 0, "anger": 1, "contempt": 2, "disgust": 3, "fear": 4,
                "happiness": 5, "sadness": 6, "surprise": 7}

# CK+ class totals (DATASETS.md): sequence emotions are drawn with these weights.
_CKPLUS_WEIGHTS = {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25, "happiness": 69,
                   "sadness": 28, "surprise": 83}
_FOLDERS = ("cohn-kanade-images", "Emotion", "Landmarks", "FACS")
_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(26) + b"\x00\x00\x08\x0b\x00\x00\x00\x08" + bytes(20)


def _exp(value: float) -> str:
    return f"{value:.7e}"


def _subject_plan(rng: np.random.Generator, unlabelled: bool
                  ) -> tuple[list[str | None], np.ndarray, bool]:
    """One subject's sequences (an emotion each, None for an unlabelled blend), their sequence
    numbers, and whether the subject was recorded in colour."""
    names = list(_CKPLUS_WEIGHTS)
    # square root: keeps CK+'s order of class sizes without starving fear/sadness in a demo
    weights = np.sqrt([_CKPLUS_WEIGHTS[n] for n in names])
    n_labelled = 0 if unlabelled else int(rng.integers(2, 7))
    emotions: list[str | None] = list(rng.choice(names, n_labelled, replace=False,
                                                 p=weights / weights.sum()))
    emotions += [None] * int(rng.integers(0, 3))
    rng.shuffle(emotions)
    numbers = np.sort(rng.choice(np.arange(1, 3 * len(emotions) + 2), len(emotions),
                                 replace=False))
    return emotions, numbers, rng.uniform() < 0.1


def _facs_text(aus: np.ndarray) -> str:
    """The FACS file: AUs active at apex as FACS numbers with a 1-5 intensity code."""
    merged: dict[int, float] = {}
    for n, v in zip(AU_NAMES, aus):
        if v >= 0.15:
            merged[FACS_NUMBER[n]] = max(merged.get(FACS_NUMBER[n], 0.0), v)
    return "".join(f"   {_exp(k)}   {_exp(min(5, math.ceil(v * 4)))}\n"
                   for k, v in sorted(merged.items()))


def _write_sequence(root: Path, subject: str, seq: str, emotion: str | None,
                    rendered: RenderedSequence) -> list[dict[str, Any]]:
    """Frames and landmark files of one sequence, its FACS file, and its emotion file if
    labelled; returns the frames' records."""
    images_dir, emo_dir, lm_dir, facs_dir = (root / n for n in _FOLDERS)
    for sub in (images_dir, emo_dir, lm_dir, facs_dir):
        (sub / subject / seq).mkdir(parents=True)
    last = len(rendered.images)
    records = []
    for fi, (image, lm) in enumerate(zip(rendered.images, rendered.landmarks), start=1):
        stem = f"{subject}_{seq}_{fi:08d}"
        save_image(image, images_dir / subject / seq / f"{stem}.png", PNG)
        (lm_dir / subject / seq / f"{stem}_landmarks.txt").write_text(
            "".join(f"   {_exp(x)}   {_exp(y)}\n" for x, y in lm))
        records.append({
            "path": f"cohn-kanade-images/{subject}/{seq}/{stem}.png", "subject": subject,
            "sequence": f"{subject}_{seq}", "frame": fi, "emotion": emotion,
            "valence": math.nan, "arousal": math.nan, "split": None,
            "apex": bool(emotion) and fi == last,
        })
    stem = f"{subject}_{seq}_{last:08d}"
    (facs_dir / subject / seq / f"{stem}_facs.txt").write_text(_facs_text(rendered.aus[-1]))
    if emotion:
        (emo_dir / subject / seq / f"{stem}_emotion.txt").write_text(
            f"   {_exp(CKPLUS_CODES[emotion])}\n")
    return records


def write_ckplus(root: Path, cfg: SyntheticConfig) -> LayoutSummary:
    code = LAYOUT_CODE["ckplus"]
    lay = layout_rng(cfg.seed, code)
    # scattered three-digit IDs like the real S005, S010, ... (four digits only past 995)
    top = 1000 if cfg.subjects <= 995 else 5 + cfg.subjects
    ids = np.sort(lay.choice(np.arange(5, top), cfg.subjects, replace=False))
    no_label = int(lay.integers(cfg.subjects)) if cfg.subjects >= 12 else -1
    for name in _FOLDERS:
        (root / name).mkdir(parents=True)
    records: list[dict[str, Any]] = []
    labels: Counter = Counter()
    n_seq = 0
    for si, sid in enumerate(ids):
        subject = f"S{int(sid):03d}"
        rng = layout_rng(cfg.seed, code, si)
        idn = sample_identity(rng)
        height = cfg.size if rng.uniform() < 0.7 else max(24, round(cfg.size * 480 / 490))
        canvas = (round(cfg.size * 640 / 490), height)
        emotions, numbers, rgb_subject = _subject_plan(rng, si == no_label)
        mode = "RGB" if rgb_subject else "L"
        for qi, (emotion, num) in enumerate(zip(emotions, numbers)):
            rendered = lab_sequence(idn, emotion, layout_rng(cfg.seed, code, si, qi + 1),
                                    canvas=canvas, frames=cfg.frames, face_frac=(0.46, 0.56),
                                    mode=mode, clutter=(0, 3), center_y=0.47, center_jitter=0.03)
            records += _write_sequence(root, subject, f"{int(num):03d}", emotion, rendered)
            n_seq += 1
            if emotion:
                labels[emotion] += 1
    # the real archives carry macOS metadata files at several levels
    images_dir = root / _FOLDERS[0]
    for where in (images_dir, images_dir / f"S{int(ids[0]):03d}", root / "Emotion"):
        (where / ".DS_Store").write_bytes(_DS_STORE)
    return LayoutSummary("ckplus", root, cfg.subjects, n_seq, sum(labels.values()), len(records),
                         labels, 0.0, records)
