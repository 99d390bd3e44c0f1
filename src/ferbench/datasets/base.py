"""The common sample table every reader produces, and the reader interface.

A reader only finds and labels: it never decodes pixels for training and never resizes.
One on-disk layout, one reader; a reader detects which variant of its dataset it was given.

Sample table columns (one row per image/frame), in this order:

==========  =========  ===============================================================
sample_id   str        unique within the dataset (e.g. ``S005_001_00000011``)
dataset     str        registry name (``ckplus``, ``affectnet`` ...)
subject     str|None   identity; None where the dataset has none (FER-2013, AffectNet)
sequence    str|None   sequence/video id, unique across subjects; None for stills
frame       Int64      frame number within the sequence (as in the file name); <NA> for stills
path        str        file relative to the root; ``file#key`` for images inside a container
                       (``fer2013.csv#17`` = CSV data row 17, ``001.avi#35`` = video frame 35)
emotion     str|None   canonical name (EMOTIONS). For sequence datasets it is the sequence's
                       label on every frame of a labelled sequence; None when unlabelled/dropped
valence     float      in [-1, 1]; NaN when the dataset has none
arousal     float      in [-1, 1]; NaN when the dataset has none
split       str|None   "train" / "val" / "test" for datasets with an official split, else None
apex        bool       True on the frame the sequence label names (CK+ label file frame,
                       last frame for Oulu, annotated apex for MMI); False for stills
box         object     [x, y, w, h] in original pixels, or None
landmarks   object     flat [x0, y0, x1, y1, ...] in original pixels, or None
==========  =========  ===============================================================
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np
import pandas as pd

from ferbench.errors import FerbenchError

EMOTIONS: tuple[str, ...] = (
    "neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise",
)

COLUMNS: tuple[str, ...] = (
    "sample_id", "dataset", "subject", "sequence", "frame", "path", "emotion",
    "valence", "arousal", "split", "apex", "box", "landmarks",
)

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Building blocks of the readers' class sets (members; class_list orders them as EMOTIONS).
BASIC_SIX: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
SIX_AND_NEUTRAL: tuple[str, ...] = ("neutral",) + BASIC_SIX

#: Registered readers by name: every concrete Reader of this package that sets its own ``name``.
READERS: dict[str, type[Reader]] = {}


@dataclasses.dataclass
class ReadResult:
    """What a reader found: the sample table, what it had to skip (reason -> count), the variant."""

    table: pd.DataFrame
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    variant: str = ""
    #: True when the images are already face crops (CK+48, FER-2013, Aff-Wild2 cropped_aligned):
    #: ``prepare`` then resizes the whole image instead of detecting a face.
    precropped: bool = False


class SkipLog:
    """Counts skipped samples by reason; in strict mode the first skip is an error naming the file."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.counts: collections.Counter = collections.Counter()

    def skip(self, reason: str, where: str | Path) -> None:
        if self.strict:
            raise FerbenchError(f"{where}: {reason} (--strict)")
        self.counts[reason] += 1


def file_line(row: int, header: bool = True) -> int:
    """The 1-based file line of 0-based data row ``row`` of a CSV or label file: the one line
    convention of every reader's messages (with a header on line 1, data row 0 is line 2)."""
    return row + (2 if header else 1)


def csv_line(path: str | Path, row: int, header: bool = True) -> int:
    """file_line for a CSV read by pandas, which skips blank (and whitespace-only) lines: the
    line of data row ``row`` counted past any of them. Reads the file once, at its first message."""
    lines = _data_lines(str(path), os.stat(path).st_mtime_ns, header)
    return lines[row] if 0 <= row < len(lines) else file_line(row, header)


@functools.lru_cache(maxsize=4)
def _data_lines(path: str, mtime_ns: int, header: bool) -> tuple[int, ...]:
    with open(path, "rb") as handle:
        lines = [number for number, line in enumerate(handle, 1) if line.strip()]
    return tuple(lines[1:] if header else lines)


def make_table(rows: Iterable[dict[str, Any]], dataset: str) -> pd.DataFrame:
    """Build a sample table with the canonical columns and dtypes from row dicts.

    Missing keys get their null (None / NaN / False). Raises if sample_id is not unique or an
    emotion is not canonical, so a reader bug cannot reach training.
    """
    records = []
    for row in rows:
        rec = {c: row.get(c) for c in COLUMNS}
        rec["dataset"] = dataset
        rec["apex"] = bool(row.get("apex", False))
        for key in ("valence", "arousal"):
            value = row.get(key)
            rec[key] = math.nan if value is None else float(value)
        records.append(rec)
    table = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    table["frame"] = table["frame"].astype("Int64")
    for key in ("valence", "arousal"):
        table[key] = table[key].astype("float64")
    table["apex"] = table["apex"].astype(bool)
    for key in ("sample_id", "dataset", "subject", "sequence", "path", "emotion", "split"):
        table[key] = table[key].astype(object).where(table[key].notna(), None)
    dupes = table["sample_id"][table["sample_id"].duplicated()]
    if len(dupes):
        raise FerbenchError(f"{dataset}: duplicate sample_id {dupes.iloc[0]!r}")
    bad = set(table["emotion"].dropna()) - set(EMOTIONS)
    if bad:
        raise FerbenchError(f"{dataset}: non-canonical emotion {sorted(bad)[0]!r}")
    bad_split = set(table["split"].dropna()) - set(SPLITS)
    if bad_split:
        raise FerbenchError(f"{dataset}: unknown split {sorted(bad_split)[0]!r}")
    return table


class Reader(abc.ABC):
    """One dataset's on-disk layouts -> the sample table, plus pixel access for ``prepare``.

    A reader class also holds its dataset's facts (as a method class holds its defaults); the
    values on this base class are what a dataset name without a reader gets (see
    :func:`ferbench.datasets.dataset_facts`). A subclass in this package that sets ``name``
    registers itself.
    """

    #: registry key, the dataset's name in params.yaml and on the command line
    name: ClassVar[str]
    #: "sequence" (CK+, MMI, Oulu, AFEW-VA, Aff-Wild2) or "image" (AffectNet, FER-2013, JAFFE)
    kind: ClassVar[str]
    #: kind == "sequence": samples are frames of sequences (derived at class creation)
    has_sequences: ClassVar[bool] = False
    #: "classification", "va" or "both"
    task: ClassVar[str]
    #: some layout of the dataset ships landmark points (``prepare`` crops around them)
    has_landmarks: ClassVar[bool] = False
    #: recorded with a fixed camera and a still head (CK+, MMI): ``prepare`` crops every frame of
    #: a sequence with one box, so frames stay aligned with their neutral first frame
    fixed_camera: ClassVar[bool] = False
    #: the protocol (ferbench.data.protocols: kind, folds, classes, selection, task) that
    #: ``params.yaml`` ``datasets.<name>.protocol`` overrides key by key
    default_protocol: ClassVar[dict[str, Any]] = {
        "kind": "kfold", "folds": 10, "classes": 7, "selection": "all", "task": "classification",
    }
    #: the protocol's ``classes`` values it supports: class count -> member emotions
    class_sets: ClassVar[dict[int, tuple[str, ...]]] = {
        6: BASIC_SIX, 7: SIX_AND_NEUTRAL, 8: EMOTIONS,
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            cls.has_sequences = cls.kind == "sequence"
        # Readers defined elsewhere (test doubles) stay out: the registry is what ferbench ships
        # and what the params schema lists.
        if "name" in cls.__dict__ and cls.__module__.startswith(f"{__package__}."):
            other = READERS.get(cls.name)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise TypeError(f"dataset name {cls.name!r} registered twice ({other} and {cls})")
            READERS[cls.name] = cls

    @abc.abstractmethod
    def read(self, root: Path, strict: bool = False) -> ReadResult:
        """Find and label every sample under ``root``.

        Raises FerbenchError (naming the path) when ``root`` is missing or is not a recognisable
        layout of this dataset, or a label file is malformed in a way that makes the whole
        dataset untrustworthy. Individual bad samples are counted in ``ReadResult.skipped``
        (or raise in strict mode).
        """

    def recognise(self, root: Path) -> str | None:
        """A quick look at ``root`` (folder names and the first files; no label parsed, no
        image decoded), for ``validate-config``: the layout variant found, or FerbenchError
        naming the root when it is none of this reader's. None: this reader has no quick check
        (read() checks the layout when the data are prepared)."""
        require_root(root, self.name)
        return None

    @abc.abstractmethod
    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        """Decode one sample's pixels: uint8, HxW (grey) or HxWx3 (RGB), original size.

        Raises FerbenchError naming the file when it is unreadable or truncated.
        """

    def iter_images(self, root: Path, table: pd.DataFrame) -> Iterator[np.ndarray | FerbenchError]:
        """Pixels for every row of ``table`` in order; a failure is yielded, not raised.

        Readers of container formats (CSV pixels, videos) override this to decode in one pass.
        """
        for _, row in table.iterrows():
            try:
                yield self.load_image(root, row)
            except FerbenchError as err:
                yield err


def require_root(root: Path, dataset: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise FerbenchError(f"{root}: dataset root for {dataset} does not exist")
    if not root.is_dir():
        raise FerbenchError(f"{root}: dataset root for {dataset} is not a directory")
    return root


#: Pillow modes of 16-bit grey (little, big and native byte order): scaled to 8 bits
GREY_16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: every Pillow mode to_uint8_image decodes; any other is skipped, counted under its mode
DECODED_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I",
                 *GREY_16_MODES)
#: the EXIF tag saying how the stored pixels must be turned to stand upright
_ORIENTATION = 0x0112


class UnsupportedImage(FerbenchError):
    """An image in a pixel format ferbench does not decode: ``prepare`` skips it and counts it
    under ``reason`` (the mode named), or stops with --strict."""

    def __init__(self, where: str | Path, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason

    def __reduce__(self) -> tuple:  # prepare's worker processes send it back pickled
        return type(self), (self.where, self.reason)


def to_uint8_image(image: Any, where: str | Path) -> np.ndarray:
    """The one pixel decoder of every reader: a PIL image -> uint8 HxW grey or HxWx3 RGB,
    upright as its EXIF orientation says.

    8-bit grey, 1-bit and grey palettes stay grey; 16-bit grey is scaled to 8 bits
    (round(v * 255 / 65535): the full range, not clipped at 255); colour palettes, YCbCr and
    CMYK become RGB (Pillow's conversions); an alpha channel (RGBA, LA, a palette with a
    transparent entry) is composited over black, the colour ``prepare`` pads crops with.
    Mode ``I`` (32-bit integers, how some tools store 16-bit grey) is read as 16-bit grey when
    every value lies in 0..65535. Any other mode (float ``F``, signed 16-bit, LAB, HSV, ...)
    raises UnsupportedImage naming the mode.
    """
    try:
        image.load()
        if image.mode not in DECODED_MODES:
            raise UnsupportedImage(where, f"unsupported image mode {image.mode}")
        image = _upright(image)
        return np.ascontiguousarray(_pixels(image, where))
    except (OSError, ValueError, SyntaxError) as err:
        raise FerbenchError(f"{where}: unreadable image ({err})") from err


def _upright(image: Any) -> Any:
    """The image turned as its EXIF orientation tag says (most cameras store it sideways and
    tag it rather than turning the pixels); unchanged without a tag."""
    from PIL import ImageOps

    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: the pixels are still fine, read them as stored
        return image
    return ImageOps.exif_transpose(image) if orientation not in (1, None) else image


def _over_black(pixels: np.ndarray) -> np.ndarray:
    """uint8 [..., C + 1] colour plus alpha -> uint8 [..., C]: composited over black, rounded."""
    colour = pixels[..., :-1].astype(np.uint32)
    alpha = pixels[..., -1:].astype(np.uint32)
    return ((colour * alpha + 127) // 255).astype(np.uint8)


def _pixels(image: Any, where: str | Path) -> np.ndarray:
    mode = image.mode
    if mode in ("L", "RGB"):
        return np.asarray(image, dtype=np.uint8)
    if mode in GREY_16_MODES or mode == "I":
        values = np.asarray(image)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise UnsupportedImage(where, "unsupported image mode I (values outside 0..65535)")
        wide = values.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    if mode in ("P", "PA"):
        grey = not _palette_is_colour(image)
        if mode == "PA" or "transparency" in image.info:
            rgb = _over_black(np.asarray(image.convert("RGBA"), dtype=np.uint8))
            return rgb[..., 0] if grey else rgb
        return np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8)
    if mode in ("LA", "La"):
        return _over_black(np.asarray(image.convert("LA"), dtype=np.uint8))[..., 0]
    if mode in ("RGBA", "RGBa"):
        return _over_black(np.asarray(image.convert("RGBA"), dtype=np.uint8))
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)  # RGBX, CMYK, YCbCr


def _palette_is_colour(image: Any) -> bool:
    if image.mode not in ("P", "PA"):
        return False
    palette = image.getpalette() or []
    rgb = np.asarray(palette[: (len(palette) // 3) * 3]).reshape(-1, 3)
    return bool(len(rgb)) and not (np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))


def open_image(path: Path) -> np.ndarray:
    """Decode an image file with PIL into uint8 grey/RGB; one clear error naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return to_uint8_image(image, path)
    except FileNotFoundError as err:
        raise FerbenchError(f"{path}: image file is missing") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise FerbenchError(f"{path}: unreadable image ({err})") from err
