"""Oulu-CASIA NIR&VIS, original images::

    <root>/.../OriginalImg/{NI,VL}/{Dark,Strong,Weak}/P001/<Emotion>/000.jpeg

``OriginalImg`` may sit up to three levels below ``root`` (the archive unpacks as
``B_OriginalImg/OriginalImg``). The protocol reads VL (visible light) under Strong illumination
only; ``OuluReader(spectra=..., illuminations=...)`` reads other conditions. A sequence is one
(spectrum, illumination, subject, emotion) folder, its last frame is the apex.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ferbench.datasets._lab import IMAGE_SUFFIXES, entries, find_dirs, rel
from ferbench.datasets.base import (
    BASIC_SIX, SIX_AND_NEUTRAL, Reader, ReadResult, SkipLog, make_table, open_image, require_root,
)
from ferbench.errors import FerbenchError

SPECTRA = ("NI", "VL")
ILLUMINATIONS = ("Dark", "Strong", "Weak")
EMOTION_FOLDERS: dict[str, str] = {
    "anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "happiness",
    "sadness": "sadness", "surprise": "surprise",
}

_SUBJECT = re.compile(r"^P\d+$", re.IGNORECASE)
_FRAME = re.compile(r"^\d+$")


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder called ``name`` ignoring case (archives differ in capitalisation)."""
    for e in entries(folder):
        if e.is_dir() and e.name.lower() == name.lower():
            return Path(e.path)
    return None


def _is_original(folder: Path) -> bool:
    try:
        names = {e.name.upper() for e in entries(folder) if e.is_dir()}
    except OSError:
        return False
    return folder.name.lower() == "originalimg" and bool(names & set(SPECTRA))


def _canonical(values: Iterable[str], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    lookup = {a.lower(): a for a in allowed}
    out = []
    for v in values:
        if str(v).lower() not in lookup:
            raise FerbenchError(f"oulu: unknown {what} {v!r}; expected one of {', '.join(allowed)}")
        out.append(lookup[str(v).lower()])
    if not out:
        raise FerbenchError(f"oulu: no {what} selected")
    return tuple(dict.fromkeys(out))


class OuluReader(Reader):
    name = "oulu"
    kind = "sequence"
    task = "classification"
    has_landmarks = False
    default_protocol = {"kind": "kfold", "folds": 10, "classes": 6,
                        "selection": "peak", "task": "classification"}
    class_sets = {6: BASIC_SIX, 7: SIX_AND_NEUTRAL}

    def __init__(self, spectra: Iterable[str] = ("VL",), illuminations: Iterable[str] = ("Strong",)) -> None:
        if isinstance(spectra, str):
            spectra = (spectra,)
        if isinstance(illuminations, str):
            illuminations = (illuminations,)
        self.spectra = _canonical(spectra, SPECTRA, "spectrum")
        self.illuminations = _canonical(illuminations, ILLUMINATIONS, "illumination")

    def recognise(self, root: Path) -> str | None:
        root = require_root(root, self.name)
        if not find_dirs(root, _is_original):
            raise FerbenchError(
                f"{root}: not an Oulu-CASIA layout; expected OriginalImg/{{NI,VL}}/{{Dark,Strong,Weak}}/"
                "P###/<Emotion>/###.jpeg within three levels")
        return "OriginalImg"

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        log = SkipLog(strict)
        found = find_dirs(root, _is_original)
        if not found:
            raise FerbenchError(
                f"{root}: not an Oulu-CASIA layout; expected OriginalImg/{{NI,VL}}/{{Dark,Strong,Weak}}/"
                "P###/<Emotion>/###.jpeg within three levels"
            )
        if len(found) > 1:
            raise FerbenchError(
                f"{root}: more than one OriginalImg folder ({', '.join(map(str, found))}); point the root at one"
            )
        original = found[0]
        rows: list[dict[str, Any]] = []
        for spectrum in self.spectra:
            for light in self.illuminations:
                spectrum_dir = _child(original, spectrum)
                folder = _child(spectrum_dir, light) if spectrum_dir else None
                if folder is None:
                    raise FerbenchError(
                        f"{original / spectrum / light}: missing; Oulu-CASIA condition {spectrum}/{light} "
                        f"was requested (spectra={self.spectra}, illuminations={self.illuminations})"
                    )
                rows.extend(self._read_condition(root, folder, spectrum, light, log))
        return ReadResult(make_table(rows, self.name), log.counts, "original", precropped=False)

    def _read_condition(self, root: Path, folder: Path, spectrum: str, light: str, log: SkipLog) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for subj in entries(folder):
            if not (subj.is_dir() and _SUBJECT.match(subj.name)):
                log.skip("unexpected entry in an Oulu-CASIA condition folder (not a P### folder)", subj.path)
                continue
            subject = subj.name.upper()
            for emo in entries(Path(subj.path)):
                emotion = EMOTION_FOLDERS.get(emo.name.lower())
                if not emo.is_dir():
                    log.skip("unexpected file in an Oulu-CASIA subject folder", emo.path)
                    continue
                if emotion is None:
                    for f in entries(Path(emo.path)):
                        log.skip("unknown Oulu-CASIA emotion folder", f.path)
                    continue
                sequence = f"{spectrum}_{light}_{subject}_{emo.name.capitalize()}"
                frames: list[tuple[int, Path]] = []
                for f in entries(Path(emo.path)):
                    path = Path(f.path)
                    if not (f.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and _FRAME.match(path.stem)):
                        log.skip("unexpected file in an Oulu-CASIA sequence folder (not ###.jpeg)", path)
                        continue
                    frames.append((int(path.stem), path))
                frames.sort()
                for number, path in frames:
                    rows.append({
                        "sample_id": f"{sequence}_{path.stem}",
                        "subject": subject,
                        "sequence": sequence,
                        "frame": number,
                        "path": rel(path, root),
                        "emotion": emotion,
                        "apex": number == frames[-1][0],
                    })
        return rows

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        return open_image(Path(root) / row["path"])
