"""JAFFE: 213 stills in one folder, named ``<subject>.<expression><repeat>.<id>.tiff``::

    <root>/.../KA.AN1.39.tiff        subject KA, anger, first repeat, image id 39

The folder may sit up to two levels below ``root`` (``jaffedbase/``, ``jaffe/``). Non-image
files (README) are not samples; an image whose name does not follow the pattern is skipped with
a reason. Some files are palette TIFFs: ``base.to_uint8_image`` turns a grey palette into HxW
grey (a colour palette would become RGB).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferbench.datasets._lab import IMAGE_SUFFIXES, entries, find_dirs, rel
from ferbench.datasets.base import (
    BASIC_SIX, SIX_AND_NEUTRAL, Reader, ReadResult, SkipLog, make_table, open_image, require_root,
)
from ferbench.errors import FerbenchError

EXPRESSIONS: dict[str, str] = {
    "AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness", "NE": "neutral",
    "SA": "sadness", "SU": "surprise",
}

_NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)$", re.IGNORECASE)


def _holds_jaffe(folder: Path) -> bool:
    try:
        return any(
            e.is_file() and Path(e.name).suffix.lower() in {".tif", ".tiff"} and _NAME.match(Path(e.name).stem)
            for e in entries(folder)
        )
    except OSError:
        return False


class JaffeReader(Reader):
    name = "jaffe"
    kind = "image"
    task = "classification"
    has_landmarks = False
    default_protocol = {"kind": "kfold", "folds": 10, "classes": 7,
                        "selection": "all", "task": "classification"}
    class_sets = {6: BASIC_SIX, 7: SIX_AND_NEUTRAL}

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        log = SkipLog(strict)
        found = find_dirs(root, _holds_jaffe, max_depth=2)
        if not found:
            raise FerbenchError(
                f"{root}: not a JAFFE layout; expected images named like KA.AN1.39.tiff "
                "(subject.expression+repeat.id) in this folder or up to two levels below"
            )
        if len(found) > 1:
            raise FerbenchError(f"{root}: JAFFE images found in several folders ({', '.join(map(str, found))})")
        rows: list[dict[str, Any]] = []
        for f in entries(found[0]):
            path = Path(f.path)
            if not f.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue  # README and the like: not samples
            m = _NAME.match(path.stem)
            if not m:
                log.skip("JAFFE file name is not SUBJECT.EXPn.ID.tiff", path)
                continue
            emotion = EXPRESSIONS.get(m[2].upper())
            if emotion is None:
                log.skip(f"unknown JAFFE expression code {m[2]!r}", path)
                continue
            rows.append({
                "sample_id": path.stem,
                "subject": m[1].upper(),
                "path": rel(path, root),
                "emotion": emotion,
            })
        return ReadResult(make_table(rows, self.name), log.counts, "original", precropped=False)

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        return open_image(Path(root) / row["path"])
