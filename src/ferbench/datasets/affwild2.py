"""Aff-Wild2 valence/arousal: per-video label files over ``cropped_aligned`` face crops.

``annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt`` (older releases:
``VA_Set``): header ``valence,arousal``, then data line i (1-based) labels
``cropped_aligned/<video>/{i:05d}.jpg``; -5 marks an invalid frame. Train_Set -> train,
Validation_Set -> test (the challenge's test labels are withheld). ``_left``/``_right`` videos are
two different people, so the suffix stays in the subject.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ferbench.datasets.base import (
    Reader, ReadResult, SkipLog, file_line, make_table, open_image, require_root,
)
from ferbench.errors import FerbenchError

TASK_DIRS = ("VA_Estimation_Challenge", "VA_Set")
SETS = (("Train_Set", "train"), ("Validation_Set", "test"))
CROPS_PREFIX = "cropped_aligned"  # also cropped_aligned_new_50_vids in later releases
INVALID = -5.0
IMAGE_EXTS = {".jpg", ".jpeg", ".png"}
SEARCH_DEPTH = 2

R_INVALID = "invalid frame (-5 marker)"
R_VALUE = "valence/arousal not a number"
R_RANGE = "valence/arousal outside [-1, 1]"
R_MISSING = "frame image missing"


class AffWild2(Reader):
    name = "affwild2"
    kind = "sequence"
    task = "va"
    has_landmarks = False
    # Validation_Set is the test set (the challenge's test labels are withheld)
    default_protocol = {"kind": "official", "selection": "all", "task": "va"}

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        skips = SkipLog(strict)
        task_dir, crop_dirs = _find_layout(root)
        if task_dir is None or not crop_dirs:
            missing = " and ".join(
                what for what, absent in (
                    (f"annotations/{{{','.join(TASK_DIRS)}}}/{{Train_Set,Validation_Set}}",
                     task_dir is None),
                    ("cropped_aligned/<video>/", not crop_dirs),
                ) if absent
            )
            raise FerbenchError(f"{root}: not an Aff-Wild2 layout: expected {missing}")
        frames = _FrameListing(crop_dirs)
        rows: list[dict] = []
        owner: dict[str, Path] = {}
        notes: list[str] = []
        for set_name, split in SETS:
            folder = task_dir / set_name
            if not folder.is_dir():
                notes.append(f"{folder} not found: no {split} split")
                continue
            with os.scandir(folder) as it:
                files = sorted(Path(e.path) for e in it if e.name.endswith(".txt") and e.is_file())
            for label_file in files:
                video = label_file.stem
                if video in owner:
                    raise FerbenchError(
                        f"{label_file}: video {video} is also labelled by {owner[video]}")
                owner[video] = label_file
                rows.extend(_video_rows(root, label_file, video, split, frames, skips))
        table = make_table(rows, self.name)
        table.attrs["notes"] = notes
        return ReadResult(table=table, skipped=skips.counts, variant=task_dir.name, precropped=True)

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        return open_image(Path(root) / row["path"])


def _dirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as it:
            return sorted(Path(e.path) for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _find_layout(root: Path) -> tuple[Path | None, list[Path]]:
    """The VA label folder and every ``cropped_aligned*`` folder, up to two levels down."""
    task_dir = None
    crop_dirs: list[Path] = []
    level = [root]
    for _ in range(SEARCH_DEPTH + 1):
        below = []
        for folder in level:
            for sub in _dirs(folder):
                if sub.name.startswith(CROPS_PREFIX):
                    crop_dirs.append(sub)
                    continue  # never descend into thousands of video folders
                if task_dir is None and sub.name in TASK_DIRS and any(
                        (sub / s).is_dir() for s, _ in SETS):
                    task_dir = sub
                    continue
                below.append(sub)
        level = below
        if task_dir is not None and crop_dirs:
            break
    return task_dir, crop_dirs


class _FrameListing:
    """Frame file names per video, listed once across every cropped_aligned folder."""

    def __init__(self, crop_dirs: list[Path]) -> None:
        self.crop_dirs = crop_dirs
        self.cache: dict[str, tuple[Path, dict[str, str]] | None] = {}

    def video(self, name: str) -> tuple[Path, dict[str, str]] | None:
        if name not in self.cache:
            self.cache[name] = None
            for crops in self.crop_dirs:
                folder = crops / name
                if folder.is_dir():
                    with os.scandir(folder) as it:
                        stems = {os.path.splitext(e.name)[0]: e.name for e in it
                                 if os.path.splitext(e.name)[1].lower() in IMAGE_EXTS}
                    self.cache[name] = (folder, stems)
                    break
        return self.cache[name]


def _video_rows(root: Path, label_file: Path, video: str, split: str,
                frames: _FrameListing, skips: SkipLog) -> list[dict]:
    try:
        lines = label_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{label_file}: unreadable label file ({err})") from err
    header = lines[0].replace(" ", "").lower() if lines else ""
    if header != "valence,arousal":
        raise FerbenchError(
            f"{label_file} line 1: expected header 'valence,arousal', got {header!r}")
    body = lines[1:]
    while body and not body[-1].strip():
        body.pop()  # a trailing blank line is harmless; an inner one would shift frame numbers
    commas = np.fromiter((line.count(",") for line in body), dtype=np.int64, count=len(body))
    bad = np.flatnonzero(commas != 1)
    if len(bad):
        raise FerbenchError(
            f"{label_file} line {file_line(bad[0])}: expected 2 columns valence,arousal, "
            f"got {body[bad[0]]!r}"
        )
    parts = pd.Series(body, dtype=object).str.split(",", n=1, expand=True) if body else None
    if parts is None:
        return []
    valence = pd.to_numeric(parts[0].str.strip(), errors="coerce").to_numpy(float)
    arousal = pd.to_numeric(parts[1].str.strip(), errors="coerce").to_numpy(float)
    invalid = (valence == INVALID) | (arousal == INVALID)
    nan = np.isnan(valence) | np.isnan(arousal)
    out_of_range = ~nan & ~invalid & ((np.abs(valence) > 1) | (np.abs(arousal) > 1))
    listing = frames.video(video)
    folder, stems = listing if listing is not None else (None, {})
    rel = folder.relative_to(root).as_posix() if folder is not None else None

    rows = []
    for i in range(len(body)):
        number = i + 1  # frame numbers start at 1 (00001.jpg); the header is line 1
        where = f"{label_file} line {file_line(i)}"
        if invalid[i]:
            # The dataset's own marker, not damage: counted, but not an error under --strict.
            skips.counts[R_INVALID] += 1
            continue
        if nan[i]:
            skips.skip(R_VALUE, where)
            continue
        if out_of_range[i]:
            skips.skip(R_RANGE, where)
            continue
        name = stems.get(f"{number:05d}")
        if name is None:
            skips.skip(R_MISSING, f"{where} ({CROPS_PREFIX}/{video}/{number:05d}.jpg)")
            continue
        rows.append({
            "sample_id": f"{video}_{number:05d}",
            "subject": video,
            "sequence": video,
            "frame": number,
            "path": f"{rel}/{name}",
            "valence": valence[i],
            "arousal": arousal[i],
            "split": split,
        })
    return rows
