"""AFEW-VA: ``001/ ... 600/`` video folders of ``00000.png`` frames and ``<id>.json`` labels.

Valence/arousal are integers in -10..10 (divided by 10 here). The video folders may sit directly
under the root or one/two levels down (``AFEW-VA/001``, zip parts ``AFEW-VA/01/001``).
No official split: the protocol groups by actor.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ferbench.datasets.base import (
    Reader, ReadResult, SkipLog, make_table, open_image, require_root,
)
from ferbench.errors import FerbenchError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}
MAX_DEPTH = 3  # root / AFEW-VA / 01 / 001
_DIGITS = re.compile(r"\d+")

R_MISSING = "frame image missing"
R_UNLABELLED = "frame without annotation"
R_NO_JSON = "video folder without annotation file"
R_KEY = "frame key is not a number"
R_VALUE = "valence/arousal missing or not a number"
R_RANGE = "valence/arousal outside -10..10"
R_DUPLICATE = "frame listed twice"


class AfewVA(Reader):
    name = "afewva"
    kind = "sequence"
    task = "va"
    has_landmarks = True
    # no official split: 5:1 cross-validation grouped by actor
    default_protocol = {"kind": "group_kfold", "folds": 6, "selection": "all", "task": "va"}

    def recognise(self, root: Path) -> str | None:
        root = require_root(root, self.name)
        videos, _ = _find_videos(root)
        if not videos:
            raise FerbenchError(
                f"{root}: not an AFEW-VA layout: expected numbered video folders (001/ ...) each "
                f"holding frames and <id>.json, at most {MAX_DEPTH - 1} levels below the root")
        return f"{len(videos)} video folders"

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        skips = SkipLog(strict)
        videos, orphans = _find_videos(root)
        if not videos:
            raise FerbenchError(
                f"{root}: not an AFEW-VA layout: expected numbered video folders (001/ ...) each "
                f"holding frames and <id>.json, at most {MAX_DEPTH - 1} levels below the root"
            )
        for folder, frames in orphans:
            for _ in frames:
                skips.skip(R_NO_JSON, folder)
        rows: list[dict] = []
        for video in sorted(videos):
            folder, frames = videos[video]
            rows.extend(_video_rows(root, video, folder, frames, skips))
        table = make_table(rows, self.name)
        nested = {videos[v][0].parent for v in videos} != {root}
        return ReadResult(table=table, skipped=skips.counts,
                          variant="nested" if nested else "flat", precropped=False)

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        return open_image(Path(root) / row["path"])


def _find_videos(root: Path) -> tuple[dict[str, tuple[Path, dict[int, str]]], list]:
    """Video id -> (folder, frame number -> file name); and numbered folders lacking their JSON."""
    videos: dict[str, tuple[Path, dict[int, str]]] = {}
    orphans: list[tuple[Path, dict[int, str]]] = []
    frontier = [(root, 0)]
    while frontier:
        folder, depth = frontier.pop()
        try:
            with os.scandir(folder) as it:
                entries = [(e.name, e.is_dir()) for e in it if not e.name.startswith(".")]
        except OSError as err:
            raise FerbenchError(f"{folder}: cannot list folder ({err})") from err
        files = {name for name, is_dir in entries if not is_dir}
        frames = _frame_files(files)
        if depth > 0 and _DIGITS.fullmatch(folder.name):
            if f"{folder.name}.json" in files:
                if folder.name in videos:
                    raise FerbenchError(
                        f"{folder}: video {folder.name} also found at {videos[folder.name][0]}"
                    )
                videos[folder.name] = (folder, frames)
                continue
            if frames:
                orphans.append((folder, frames))
        if depth < MAX_DEPTH:
            frontier.extend((folder / name, depth + 1) for name, is_dir in entries if is_dir)
    return videos, orphans


def _frame_files(files: set[str]) -> dict[int, str]:
    frames = {}
    for name in files:
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTS and _DIGITS.fullmatch(stem):
            frames[int(stem)] = name
    return frames


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{path}: malformed JSON ({err})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), dict):
        raise FerbenchError(
            f"{path}: malformed annotation: expected an object with a 'frames' object")
    if doc.get("actor") in (None, ""):
        raise FerbenchError(f"{path}: malformed annotation: no 'actor' (needed to group subjects)")
    return doc


def _value(entry: dict, key: str) -> float | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _landmarks(entry: dict) -> np.ndarray | None:
    try:
        arr = np.asarray(entry.get("landmarks"), dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
        return None
    return arr.reshape(-1)


def _video_rows(root: Path, video: str, folder: Path, frames: dict[int, str],
                skips: SkipLog) -> list[dict]:
    json_path = folder / f"{video}.json"
    doc = _load_json(json_path)
    subject = str(doc["actor"])
    rel = folder.relative_to(root).as_posix()
    rows = []
    annotated: set[int] = set()
    for key, entry in doc["frames"].items():
        where = f"{json_path} frame {key!r}"
        if not _DIGITS.fullmatch(str(key)):
            skips.skip(R_KEY, where)
            continue
        number = int(key)
        if number in annotated:
            skips.skip(R_DUPLICATE, where)
            continue
        annotated.add(number)
        if not isinstance(entry, dict):
            skips.skip(R_VALUE, where)
            continue
        valence, arousal = _value(entry, "valence"), _value(entry, "arousal")
        if valence is None or arousal is None or np.isnan(valence) or np.isnan(arousal):
            skips.skip(R_VALUE, where)
            continue
        if not (-10 <= valence <= 10 and -10 <= arousal <= 10):
            skips.skip(R_RANGE, where)
            continue
        if number not in frames:
            skips.skip(R_MISSING, folder / f"{key}.png")
            continue
        rows.append({
            "sample_id": f"{video}_{number:05d}",
            "subject": subject,
            "sequence": video,
            "frame": number,
            "path": f"{rel}/{frames[number]}",
            "valence": valence / 10.0,
            "arousal": arousal / 10.0,
            "landmarks": _landmarks(entry),
        })
    for number in sorted(set(frames) - annotated):
        skips.skip(R_UNLABELLED, folder / frames[number])
    rows.sort(key=lambda r: r["frame"])
    return rows
