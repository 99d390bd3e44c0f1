"""FER-2013: 48x48 grey faces as CSV pixel rows, or the common image-folder re-pack.

Variants, first found wins: ``fer2013.csv`` (emotion, pixels, Usage); Kaggle's
``icml_face_data.csv`` (same, with leading spaces in column names); torchvision's
``train.csv`` (emotion, pixels -> train) / ``test.csv`` (pixels, emotion optional -> test);
``{train,test}/<class>/{Training,PublicTest,PrivateTest}_<n>.jpg`` (split from the prefix).
A CSV sample's path is ``<csv>#<r>`` with r the 0-based data row (header excluded).
Exact duplicate images exist in the data: they are kept and counted in ``table.attrs["notes"]``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ferbench.datasets.base import (
    BASIC_SIX, SIX_AND_NEUTRAL, Reader, ReadResult, SkipLog, csv_line, make_table, open_image,
    require_root,
)
from ferbench.errors import FerbenchError

log = logging.getLogger(__name__)

SIDE = 48
N_PIXELS = SIDE * SIDE
CODES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
FOLDER_CLASSES = {
    "angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
    "neutral": "neutral", "sad": "sadness", "surprise": "surprise",
}
FOLDER_CLASSES.update({name: name for name in CODES})  # re-packs that use canonical names
TOP_SPLITS = {"train": "train", "training": "train", "val": "val", "validation": "val",
              "test": "test", "testing": "test"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
_PREFIX = re.compile(r"(Training|PublicTest|PrivateTest)_", re.IGNORECASE)

R_PIXELS = f"pixels are not {N_PIXELS} integers 0-255"
R_EMOTION = "emotion code missing or not 0-6"
R_USAGE = "Usage is not Training/PublicTest/PrivateTest"
R_CLASS = "image in an unknown class folder"


class Fer2013(Reader):
    name = "fer2013"
    kind = "image"
    task = "classification"
    has_landmarks = False
    default_protocol = {"kind": "official", "classes": 7,
                        "selection": "all", "task": "classification"}
    class_sets = {6: BASIC_SIX, 7: SIX_AND_NEUTRAL}

    def __init__(self) -> None:
        # Parsed pixel arrays by (file, mtime, size): read() validates, iter_images() reuses.
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def recognise(self, root: Path) -> str | None:
        root = require_root(root, self.name)
        found = _detect(root)
        if found is None:
            raise FerbenchError(f"{root}: not a FER-2013 layout: expected fer2013.csv, "
                                f"icml_face_data.csv, train.csv/test.csv (also under fer2013/), "
                                f"or train/ and test/ class folders")
        return found[0]

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        skips = SkipLog(strict)
        self._cache = {}
        found = _detect(root)
        if found is None:
            raise FerbenchError(
                f"{root}: not a FER-2013 layout: expected fer2013.csv, icml_face_data.csv, "
                f"train.csv/test.csv (also under fer2013/), or train/ and test/ class folders"
            )
        variant, base = found
        notes: list[str] = []
        if variant == "image-folder":
            rows = _folder_rows(root, base, skips)
            notes.append("duplicate images not counted for the image-folder variant (kept)")
        else:
            rows = []
            files = ([(base / variant, None)] if variant != "torchvision" else
                     [(base / "train.csv", "train"), (base / "test.csv", "test")])
            for csv_path, split in files:
                if csv_path.is_file():
                    rows.extend(self._csv_rows(root, csv_path, split, skips, notes))
                else:
                    notes.append(f"{csv_path.name} not found: no {split} split")
        table = make_table(rows, self.name)
        table.attrs["notes"] = notes
        for note in notes:
            log.info("fer2013: %s", note)
        return ReadResult(table=table, skipped=skips.counts, variant=variant, precropped=True)

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        file, sep, key = str(row["path"]).partition("#")
        if not sep:
            return open_image(Path(root) / file)
        csv_path = Path(root) / file
        return _row_image(csv_path, key, *self._pixels(csv_path, None))

    def iter_images(self, root: Path, table: pd.DataFrame) -> Iterator[np.ndarray | FerbenchError]:
        # Every CSV is parsed once (or taken from read()'s cache), whatever the row order.
        parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for path in table["path"]:
            file, sep, key = str(path).partition("#")
            try:
                if not sep:
                    yield open_image(Path(root) / file)
                    continue
                if file not in parsed:
                    parsed[file] = self._pixels(Path(root) / file, None)
                yield _row_image(Path(root) / file, key, *parsed[file])
            except FerbenchError as err:
                yield err

    # ----------------------------------------------------------------------- CSV variants

    def _pixels(self, csv_path: Path, frame: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        try:
            stat = csv_path.stat()
        except OSError as err:
            raise FerbenchError(f"{csv_path}: cannot read pixel file ({err})") from err
        key = (str(csv_path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in self._cache:
            if frame is None:
                frame = _load_csv(csv_path, pixels_only=True)[0]
            self._cache[key] = _parse_pixels(frame["pixels"].to_numpy())
        return self._cache[key]

    def _csv_rows(self, root: Path, csv_path: Path, split: str | None, skips: SkipLog,
                  notes: list[str]) -> list[dict]:
        frame, has_emotion = _load_csv(csv_path, pixels_only=False, need_usage=split is None,
                                       need_emotion=split != "test")
        pixels, ok = self._pixels(csv_path, frame)

        # Later assignments win, so the first applicable reason is assigned last.
        reasons = np.full(len(frame), None, dtype=object)
        if split is None:
            splits = frame["usage"].str.strip().str.lower().map(USAGE)
            reasons[splits.isna().to_numpy()] = R_USAGE
            split_values = splits.to_numpy(dtype=object)
        else:
            split_values = np.full(len(frame), split, dtype=object)
        if has_emotion:
            code = pd.to_numeric(frame["emotion"].str.strip(), errors="coerce")
            code_ok = code.notna() & (code == code.round()) & (code >= 0) & (code <= 6)
            reasons[~code_ok.to_numpy()] = R_EMOTION
            codes = code.where(code_ok, 0).astype(int).to_numpy()
        else:
            codes = None
            notes.append(f"{csv_path.name}: no emotion column, {len(frame)} rows kept unlabelled")
        reasons[~ok] = R_PIXELS

        rel = csv_path.relative_to(root).as_posix()
        stem = csv_path.stem
        rows = []
        kept = []
        for i in range(len(frame)):
            if reasons[i] is not None:
                skips.skip(reasons[i], f"{csv_path} line {csv_line(csv_path, i)}")
                continue
            kept.append(i)
            rows.append({
                "sample_id": f"{stem}_{i}",
                "path": f"{rel}#{i}",
                "emotion": CODES[codes[i]] if codes is not None else None,
                "split": split_values[i],
            })
        if kept:
            flat = np.ascontiguousarray(pixels[kept]).view(np.dtype((np.void, N_PIXELS))).ravel()
            dupes = len(flat) - len(np.unique(flat))
            if dupes:
                notes.append(
                    f"{csv_path.name}: {dupes} row(s) repeat an earlier image exactly (kept)")
        return rows


def _row_image(csv_path: Path, key: str, pixels: np.ndarray, ok: np.ndarray) -> np.ndarray:
    try:
        index = int(key)
    except ValueError:
        raise FerbenchError(f"{csv_path}#{key}: row key is not a number") from None
    if not 0 <= index < len(ok):
        raise FerbenchError(f"{csv_path}#{key}: no such data row (file has {len(ok)})")
    if not ok[index]:
        raise FerbenchError(f"{csv_path} line {csv_line(csv_path, index)} (#{index}): {R_PIXELS}")
    return pixels[index].reshape(SIDE, SIDE).copy()


def _detect(root: Path) -> tuple[str, Path] | None:
    bases = [root]
    with os.scandir(root) as it:
        subdirs = sorted(Path(e.path) for e in it if e.is_dir() and not e.name.startswith("."))
    # torchvision looks under <root>/fer2013; archives also unpack one folder down.
    bases += sorted(subdirs, key=lambda p: p.name.lower() != "fer2013")
    for variant in ("fer2013.csv", "icml_face_data.csv"):
        for base in bases:
            if (base / variant).is_file():
                return variant, base
    for base in bases:
        if (base / "train.csv").is_file() or (base / "test.csv").is_file():
            return "torchvision", base
    for base in bases:
        for top in _top_folders(base):
            with os.scandir(top) as it:
                if any(e.is_dir() and e.name.lower() in FOLDER_CLASSES for e in it):
                    return "image-folder", base
    return None


def _top_folders(base: Path) -> list[Path]:
    with os.scandir(base) as it:
        return sorted(Path(e.path) for e in it if e.is_dir() and e.name.lower() in TOP_SPLITS)


def _load_csv(path: Path, pixels_only: bool, need_usage: bool = False,
              need_emotion: bool = False) -> tuple[pd.DataFrame, bool]:
    """The CSV as strings with stripped, lower-cased column names; whether it has emotion."""
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{path}: malformed CSV ({err})") from err
    names = {str(c).strip().lower(): c for c in header}
    wanted = ["pixels"] + ([] if pixels_only else
                           [c for c in ("emotion", "usage") if c in names])
    needed = {"pixels": True, "emotion": need_emotion, "usage": need_usage and not pixels_only}
    lacking = [c for c, need in needed.items() if need and c not in names]
    if lacking:
        expected = ", ".join(name for key, name in HEADER if needed[key] or key in names)
        if any(_DATA_FIELD.fullmatch(str(c).strip()) for c in header):
            # a header-less file: its first data row (2,304 pixel values) is no help to show
            raise FerbenchError(f"{path} line 1: no header row; expected one naming {expected} "
                                f"(line 1 holds data)")
        has = ", ".join(repr(_shorten(str(c))) for c in header)
        raise FerbenchError(
            f"{path} line 1: header lacks column(s) {', '.join(lacking)} "
            f"(expected {expected}; has {has})"
        )
    try:
        frame = pd.read_csv(path, usecols=[names[c] for c in wanted], dtype=str,
                            keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise FerbenchError(f"{path}: malformed CSV ({err})") from err
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame, "emotion" in frame.columns


#: (key, name as the dataset's CSVs spell it) of every column the reader takes
HEADER = (("emotion", "emotion"), ("pixels", "pixels"), ("usage", "Usage"))
#: a header field that is a value: an emotion code, a row of pixels
_DATA_FIELD = re.compile(r"[-+0-9. ]+")


def _shorten(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_pixels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Space-separated pixel strings -> (n, 2304) uint8 and a mask of well-formed rows."""
    out = np.zeros((len(values), N_PIXELS), dtype=np.uint8)
    ok = np.zeros(len(values), dtype=bool)
    for i, text in enumerate(values):
        try:
            # One C call per row; any non-integer token stops the parse (ValueError).
            row = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, TypeError):
            continue
        if row.size == N_PIXELS and row.min() >= 0 and row.max() <= 255:
            out[i] = row
            ok[i] = True
    return out, ok


# --------------------------------------------------------------------------- image-folder re-pack

def _folder_rows(root: Path, base: Path, skips: SkipLog) -> list[dict]:
    rows = []
    for top in _top_folders(base):
        top_split = TOP_SPLITS[top.name.lower()]
        with os.scandir(top) as it:
            classes = sorted((e.name, Path(e.path)) for e in it
                             if e.is_dir() and not e.name.startswith("."))
        for cls, folder in classes:
            emotion = FOLDER_CLASSES.get(cls.lower())
            with os.scandir(folder) as it:
                files = sorted(e.name for e in it if not e.is_dir()
                               and os.path.splitext(e.name)[1].lower() in IMAGE_EXTS)
            for name in files:
                if emotion is None:
                    skips.skip(R_CLASS, folder / name)
                    continue
                stem = os.path.splitext(name)[0]
                match = _PREFIX.match(stem)
                # The prefix is the original Usage; the top folder is the fallback.
                split = USAGE[match.group(1).lower()] if match else top_split
                rows.append({
                    "sample_id": f"{top.name}_{cls}_{stem}",
                    "path": (folder / name).relative_to(root).as_posix(),
                    "emotion": emotion,
                    "split": split,
                })
    return rows
