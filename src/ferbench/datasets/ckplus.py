"""CK+ (Extended Cohn-Kanade): the original distribution and the CK+48 re-pack.

Original (variant ``"original"``)::

    <root>/.../cohn-kanade-images/S005/001/S005_001_00000011.png
    <root>/.../Emotion/S005/001/S005_001_00000011_emotion.txt     (one float, e.g. "   3.0000000e+00")
    <root>/.../Landmarks/S005/001/S005_001_00000011_landmarks.txt (68 lines "x y"; optional tree)

Each folder may sit up to three levels below ``root`` (``extended-cohn-kanade-images/
cohn-kanade-images``, ``Emotion_labels/Emotion``, ``Landmarks/Landmarks``). Every image sequence
is read; sequences without a label file (their Emotion folder is empty or absent) get emotion
None. A label belongs to the frame named in its file name (apex=True there), and is the
emotion of every frame of that sequence. A malformed label or landmark file is a FerbenchError
naming it: one bad file makes the annotation untrustworthy, so it is not skipped.

CK+48 (variant ``"ck+48"``)::

    <root>/.../CK+48/<class>/S010_004_00000017.png     (48x48 face crops -> precropped)

Subject, sequence and frame come from the file name; the last frame of a sequence is its apex.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferbench.datasets._lab import IMAGE_SUFFIXES, entries, find_dirs, rel
from ferbench.datasets.base import (
    BASIC_SIX, EMOTIONS, Reader, ReadResult, SkipLog, make_table, open_image, require_root,
)
from ferbench.errors import FerbenchError

#: Emotion file codes 0..7 are exactly the canonical order.
CODES: dict[int, str] = dict(enumerate(EMOTIONS))

CK48_CLASSES: dict[str, str] = {
    "anger": "anger", "angry": "anger", "contempt": "contempt", "disgust": "disgust",
    "fear": "fear", "happy": "happiness", "happiness": "happiness", "sadness": "sadness",
    "sad": "sadness", "surprise": "surprise", "neutral": "neutral",
}

_SUBJECT = re.compile(r"^S\d+$", re.IGNORECASE)
_SEQUENCE = re.compile(r"^\d+$")
_FRAME = re.compile(r"^(S\d+)_(\d+)_(\d+)$", re.IGNORECASE)
_LABEL = re.compile(r"^(S\d+)_(\d+)_(\d+)_emotion\.txt$", re.IGNORECASE)
_LANDMARKS = re.compile(r"^(S\d+)_(\d+)_(\d+)_landmarks\.txt$", re.IGNORECASE)

_EXPECTED = (
    "expected CK+ as distributed (cohn-kanade-images/S###/###/*.png with Emotion/S###/###/"
    "*_emotion.txt) or the CK+48 re-pack (CK+48/<class>/S###_###_########.png)"
)


def _has_subject_dirs(folder: Path) -> bool:
    try:
        return any(e.is_dir() and _SUBJECT.match(e.name) for e in entries(folder))
    except OSError:
        return False


def _named_tree(name: str):
    def match(folder: Path) -> bool:
        return folder.name.lower() == name and _has_subject_dirs(folder)
    return match


def _is_ck48(folder: Path) -> bool:
    try:
        names = {e.name.lower() for e in entries(folder) if e.is_dir()}
    except OSError:
        return False
    return len(names & set(CK48_CLASSES)) >= 4


def _one(found: list[Path], what: str, root: Path) -> Path | None:
    if len(found) > 1:
        listing = ", ".join(str(p) for p in found)
        raise FerbenchError(f"{root}: more than one CK+ {what} folder found ({listing}); point the root at one copy")
    return found[0] if found else None


def parse_label_file(path: Path) -> str:
    """``   3.0000000e+00`` -> canonical emotion name; FerbenchError naming the file otherwise."""
    try:
        text = path.read_text(errors="strict").strip()
        value = float(text)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise FerbenchError(f"{path}: malformed CK+ label file (expected one number, got {err})") from err
    if not math.isfinite(value) or value != int(value) or int(value) not in CODES:
        raise FerbenchError(f"{path}: malformed CK+ label file (code {text!r} is not an integer 0..7)")
    return CODES[int(value)]


def parse_landmarks_file(path: Path) -> list[float]:
    """68 ``x y`` lines (exponent floats, runs of spaces) -> flat list of 136 floats."""
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise FerbenchError(f"{path}: malformed CK+ landmarks file ({err})") from err
    if len(values) != 136 or not all(math.isfinite(v) for v in values):
        raise FerbenchError(f"{path}: malformed CK+ landmarks file (expected 68 finite x y pairs, got {len(values)} numbers)")
    return values


class CKPlusReader(Reader):
    name = "ckplus"
    kind = "sequence"
    task = "classification"
    has_landmarks = True  # the original distribution's Landmarks tree (CK+48 has none)
    fixed_camera = True
    default_protocol = {"kind": "kfold", "folds": 10, "classes": 7,
                        "selection": "peak", "task": "classification"}
    class_sets = {6: BASIC_SIX, 7: BASIC_SIX + ("contempt",), 8: EMOTIONS}

    def recognise(self, root: Path) -> str | None:
        root = require_root(root, self.name)
        if _one(find_dirs(root, _named_tree("cohn-kanade-images")), "cohn-kanade-images", root):
            return "original"
        if _one(find_dirs(root, _is_ck48), "CK+48", root):
            return "ck+48"
        raise FerbenchError(f"{root}: not a CK+ layout; {_EXPECTED}")

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        log = SkipLog(strict)
        images = _one(find_dirs(root, _named_tree("cohn-kanade-images")), "cohn-kanade-images", root)
        if images is not None:
            emotion = _one(find_dirs(root, _named_tree("emotion")), "Emotion", root)
            if emotion is None:
                raise FerbenchError(
                    f"{root}: found {images} but no Emotion folder (Emotion/S###/###/*_emotion.txt) "
                    "within three levels; unzip Emotion_labels next to cohn-kanade-images"
                )
            landmarks = _one(find_dirs(root, _named_tree("landmarks")), "Landmarks", root)
            rows = self._read_original(root, images, emotion, landmarks, log)
            return ReadResult(make_table(rows, self.name), log.counts, "original", precropped=False)
        ck48 = _one(find_dirs(root, _is_ck48), "CK+48", root)
        if ck48 is not None:
            rows = self._read_ck48(root, ck48, log)
            return ReadResult(make_table(rows, self.name), log.counts, "ck+48", precropped=True)
        raise FerbenchError(f"{root}: not a CK+ layout; {_EXPECTED}")

    # -- original distribution -------------------------------------------------------------
    def _read_original(
        self, root: Path, images: Path, emotion_dir: Path, landmark_dir: Path | None, log: SkipLog
    ) -> list[dict[str, Any]]:
        labels = self._read_labels(emotion_dir)
        rows: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for subj in entries(images):
            if not (subj.is_dir() and _SUBJECT.match(subj.name)):
                log.skip("unexpected entry in cohn-kanade-images (not a S### folder)", subj.path)
                continue
            for seq in entries(Path(subj.path)):
                if not (seq.is_dir() and _SEQUENCE.match(seq.name)):
                    log.skip("unexpected entry in a subject folder (not a ### sequence folder)", seq.path)
                    continue
                key = (subj.name, seq.name)
                seen.add(key)
                rows.extend(self._read_sequence(root, Path(seq.path), key, labels.get(key), landmark_dir, log))
        for key, (label_path, _, _) in sorted(labels.items()):
            if key not in seen:
                log.skip("label file without an image sequence", label_path)
        return rows

    def _read_labels(self, emotion_dir: Path) -> dict[tuple[str, str], tuple[Path, int, str]]:
        """(subject, sequence) -> (label file, labelled frame, emotion). Empty folders = unlabelled."""
        labels: dict[tuple[str, str], tuple[Path, int, str]] = {}
        for subj in entries(emotion_dir):
            if not (subj.is_dir() and _SUBJECT.match(subj.name)):
                continue
            for seq in entries(Path(subj.path)):
                if not seq.is_dir():
                    continue
                files = [e for e in entries(Path(seq.path)) if e.is_file() and e.name.lower().endswith("_emotion.txt")]
                if len(files) > 1:
                    raise FerbenchError(f"{seq.path}: more than one CK+ label file in one sequence folder")
                if not files:
                    continue
                path = Path(files[0].path)
                m = _LABEL.match(path.name)
                if not m or m[1] != subj.name or m[2] != seq.name:
                    raise FerbenchError(
                        f"{path}: malformed CK+ label file name (expected {subj.name}_{seq.name}_########_emotion.txt)"
                    )
                labels[(subj.name, seq.name)] = (path, int(m[3]), parse_label_file(path))
        return labels

    def _read_sequence(
        self,
        root: Path,
        folder: Path,
        key: tuple[str, str],
        label: tuple[Path, int, str] | None,
        landmark_dir: Path | None,
        log: SkipLog,
    ) -> list[dict[str, Any]]:
        subject, seq = key
        sequence = f"{subject}_{seq}"
        frames: list[tuple[int, Path]] = []
        for f in entries(folder):
            path = Path(f.path)
            m = _FRAME.match(path.stem)
            if not (f.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and m):
                log.skip("unexpected file in an image sequence folder", path)
                continue
            if m[1] != subject or m[2] != seq:
                log.skip("frame file name does not match its S###/### folder", path)
                continue
            frames.append((int(m[3]), path))
        if not frames:
            return []
        emotion = None
        apex_frame = None
        if label is not None:
            label_path, apex_frame, emotion = label
            if apex_frame not in {n for n, _ in frames}:
                raise FerbenchError(
                    f"{label_path}: CK+ label names frame {apex_frame}, which is not in {folder}"
                )
        marks_folder = None if landmark_dir is None else landmark_dir / subject / seq
        rows = []
        for number, path in sorted(frames):
            marks = None
            if marks_folder is not None:
                marks_path = marks_folder / f"{path.stem}_landmarks.txt"
                if marks_path.is_file():
                    marks = parse_landmarks_file(marks_path)
            rows.append(_frame_row(path, root, subject, sequence, number, emotion,
                                   apex=number == apex_frame, landmarks=marks))
        return rows

    # -- CK+48 re-pack -------------------------------------------------------------------------
    def _read_ck48(self, root: Path, folder: Path, log: SkipLog) -> list[dict[str, Any]]:
        found: dict[str, list[tuple[int, Path, str, str]]] = {}
        for cls in entries(folder):
            emotion = CK48_CLASSES.get(cls.name.lower())
            if not cls.is_dir():
                log.skip("unexpected file beside the CK+48 class folders", cls.path)
                continue
            for f in entries(Path(cls.path)):
                path = Path(f.path)
                if emotion is None:
                    log.skip(f"unknown CK+48 class folder {cls.name!r}", path)
                    continue
                m = _FRAME.match(path.stem)
                if not (f.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and m):
                    log.skip("CK+48 file name is not S###_###_########.<image>", path)
                    continue
                subject = m[1].upper()
                sequence = f"{subject}_{m[2]}"
                found.setdefault(sequence, []).append((int(m[3]), path, emotion, subject))
        rows: list[dict[str, Any]] = []
        for sequence, frames in sorted(found.items()):
            if len({e for _, _, e, _ in frames}) > 1:
                for _, path, _, _ in frames:
                    log.skip("CK+48 sequence appears under two class folders", path)
                continue
            frames.sort()
            last = frames[-1][0]
            for number, path, emotion, subject in frames:
                rows.append(_frame_row(path, root, subject, sequence, number, emotion,
                                       apex=number == last))
        return rows

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        return open_image(Path(root) / row["path"])


def _frame_row(path: Path, root: Path, subject: str, sequence: str, number: int,
               emotion: str | None, *, apex: bool, landmarks: list[float] | None = None) -> dict[str, Any]:
    """One frame's sample-table row; both CK+ layouts name frames S###_###_########."""
    return {"sample_id": path.stem, "subject": subject, "sequence": sequence, "frame": number,
            "path": rel(path, root), "emotion": emotion, "apex": apex, "landmarks": landmarks}
