"""Do a copy's official splits look alike? Per-split image statistics and a check on them.

A dataset copy can be damaged in one split only (a FER-2013 copy whose training images were
blurred while its test images were sharp trained to 45% on training images and 17% on the
test split, below the majority class). Nothing else in a run points at it, so ``inspect`` and
``prepare`` compare the splits on statistics that sampling barely moves:

  height, width   the decoded image's size (pixels)
  channels        1 (grey) or 3
  contrast        standard deviation of the grey levels, [0, 1] scale
  sharpness       variance of the Laplacian of the per-image standardised grey image (blur
                  lowers it by orders of magnitude; exposure and contrast do not move it)

A statistic is flagged when two splits' medians differ more than ``ratio`` times (contrast,
sharpness) or their most common value differs (size, channels). Splits of fewer than
``MIN_IMAGES`` images are not compared: their medians say too little.

``check_splits`` decodes a seeded sample of each official split through the dataset's reader
(the same for ``inspect`` and ``prepare``); ``report_problems`` writes one warning line per
finding, or raises on the first in strict mode.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import ndimage

from ferbench.data.augment import GREY_WEIGHTS
from ferbench.datasets.base import Reader
from ferbench.errors import FerbenchError

STATISTICS = ("height", "width", "channels", "contrast", "sharpness")
#: statistics compared by the ratio of medians; the others by their most common value
RATIO_STATISTICS = ("contrast", "sharpness")
#: splits smaller than this are not compared
MIN_IMAGES = 10
#: a ratio of split medians beyond this is far outside what sampling gives for natural faces
DEFAULT_RATIO = 3.0
#: images decoded per official split for the check (a seeded random sample)
SPLIT_SAMPLE = 300


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """The statistics of one uint8 image, HxW or HxWxC."""
    array = np.asarray(image)
    channels = 1 if array.ndim == 2 else int(array.shape[2])
    grey = array.astype(np.float64) / 255.0
    if channels == 3:
        grey = grey @ np.asarray(GREY_WEIGHTS)
    elif channels != 1:
        grey = grey.mean(axis=2)
    std = float(grey.std())
    standardised = (grey - grey.mean()) / max(std, 1.0 / 255)
    return {"height": float(array.shape[0]), "width": float(array.shape[1]), "channels": float(channels),
            "contrast": std, "sharpness": float(ndimage.laplace(standardised).var())}


def split_statistics(images: Iterable[np.ndarray], splits: Iterable[str]) -> pd.DataFrame:
    """One row per image: its split and its statistics."""
    rows = [{"split": split, **image_statistics(image)} for image, split in zip(images, splits)]
    return pd.DataFrame(rows, columns=["split", *STATISTICS])


def summarize_splits(stats: pd.DataFrame) -> pd.DataFrame:
    """Per split: image count and the median of every statistic."""
    grouped = stats.groupby("split", sort=True)
    out = grouped[list(STATISTICS)].median()
    out.insert(0, "images", grouped.size())
    return out


def compare_splits(stats: pd.DataFrame, ratio: float = DEFAULT_RATIO) -> list[str]:
    """One line per statistic on which two splits differ far beyond sampling, naming both
    splits and their values; empty when the splits look alike."""
    summary = summarize_splits(stats)
    summary = summary[summary["images"] >= MIN_IMAGES]
    problems = []
    for stat in STATISTICS:
        if len(summary) < 2:
            break
        if stat in RATIO_STATISTICS:
            values = summary[stat].clip(lower=1e-12)
            low, high = values.idxmin(), values.idxmax()
            if values[high] / values[low] > ratio:
                problems.append(f"{stat}: split {high!r} median {values[high]:.4g} is "
                                f"{values[high] / values[low]:.0f}x split {low!r} median {values[low]:.4g}")
        else:
            modes = stats[stats["split"].isin(summary.index)].groupby("split")[stat].agg(
                lambda s: s.mode().iloc[0])
            if modes.nunique() > 1:
                shown = ", ".join(f"{split} {value:g}" for split, value in modes.items())
                problems.append(f"{stat}: the splits' most common values differ ({shown})")
    return problems



def check_splits(reader: Reader, root: Path, table: pd.DataFrame, sample: int = SPLIT_SAMPLE,
                 seed: int = 0) -> tuple[pd.DataFrame | None, list[str]]:
    """Per-image statistics of up to ``sample`` decoded images per official split (a seeded
    random sample, so a rerun decodes the same images), and the check's findings;
    (None, []) for a dataset without official splits. Unreadable images are left out."""
    if "split" not in table.columns or table["split"].nunique() < 2:
        return None, []
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for rows in table[table["split"].notna()].groupby("split").groups.values():
        rows = np.asarray(rows)
        picked.extend(rng.choice(rows, min(len(rows), sample), replace=False).tolist())
    chosen = table.loc[sorted(picked)]
    pairs = [(image, split) for image, split in zip(reader.iter_images(root, chosen), chosen["split"])
             if not isinstance(image, FerbenchError)]
    stats = split_statistics((i for i, _ in pairs), (s for _, s in pairs))
    return stats, compare_splits(stats)


def summary_dict(stats: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """split -> {images, median height, width, channels, contrast, sharpness}: JSON-ready."""
    return {split: {k: (int(v) if k == "images" else float(v)) for k, v in row.items()}
            for split, row in summarize_splits(stats).iterrows()}


def format_summary(summary: dict[str, dict[str, float | int]], indent: str = "    ") -> list[str]:
    """One text line per split: image count and the medians."""
    return [f"{indent}{split:<10} {row['images']:>6} images  size {row['height']:g}x{row['width']:g}, "
            f"{row['channels']:g} channel(s), contrast {row['contrast']:.3f}, "
            f"sharpness {row['sharpness']:.3g}" for split, row in summary.items()]


def report_problems(problems: list[str], splits: str, strict: bool, flag: str = "--strict") -> None:
    """Each finding as one ``warning:`` line on stderr; with ``strict`` the first is an error
    (a FerbenchError naming ``splits``, e.g. "data/fer2013: the fer2013 splits", the two
    splits and the statistic)."""
    for problem in problems:
        message = f"{splits} differ far beyond sampling: {problem}"
        if strict:
            raise FerbenchError(f"{message} ({flag})")
        print(f"warning: {message}", file=sys.stderr)
