"""What ``ferbench synthesize`` is asked to write, what each layout writer reports back, and the
seeded random streams that make every file reproducible."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ferbench.errors import FerbenchError

LAYOUTS: tuple[str, ...] = ("ckplus", "oulu", "affectnet", "afewva", "fer2013")
#: The layout's key in every random stream, so that layouts never share draws.
LAYOUT_CODE = {"ckplus": 1, "oulu": 2, "affectnet": 3, "afewva": 4, "fer2013": 5}


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


def layout_rng(seed: int, *keys: int) -> np.random.Generator:
    """The random stream keyed by ``(seed, layout code, subject, sequence, ...)``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))
