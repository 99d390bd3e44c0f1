"""AffectNet: the legacy CSV release (boxes on full images) and the current npy release (crops).

Legacy: ``Manually_Annotated_Images/<folder>/<name>.<ext>`` with ``training.csv`` (-> train) and
``validation.csv`` (-> test: the official validation set is the benchmark's test set).
Current: ``{train_set,val_set}/{images,annotations}`` with per-image 0-d unicode ``.npy`` labels.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ferbench.datasets.base import (
    EMOTIONS, SIX_AND_NEUTRAL, Reader, ReadResult, SkipLog, csv_line, make_table, open_image,
    require_root,
)
from ferbench.errors import FerbenchError

log = logging.getLogger(__name__)

#: AffectNet expression codes 0-7; 8 none, 9 uncertain, 10 non-face carry no class.
CODES: dict[int, str] = {
    0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise",
    4: "fear", 5: "disgust", 6: "anger", 7: "contempt",
}
NO_CLASS_CODES = (8, 9, 10)
VA_MARKER = -2.0  # uncertain / non-face
CSV_COLUMNS = (
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
    "facial_landmarks", "expression", "valence", "arousal",
)
IMAGE_DIR = "Manually_Annotated_Images"
LIST_DIR = "Manually_Annotated_file_lists"
CSV_SPLITS = (("training.csv", "train"), ("validation.csv", "test"))
NPY_SPLITS = (("train_set", "train"), ("val_set", "test"))
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
N_LANDMARKS = 136

R_EXPRESSION = "expression missing or not a code 0-10"
R_VA_NAN = "valence/arousal missing or not a number"
R_VA_RANGE = "valence/arousal outside [-1, 1] and not the -2 marker"
R_NO_CLASS = "expression none/uncertain/non-face (8-10) without valid valence/arousal"
R_DUPLICATE = "row repeats an image already listed"
R_MISSING = "image file missing"
R_ANN_MISSING = "annotation file missing"
R_ANN_BAD = "annotation file unreadable"
R_NO_IMAGE = "annotation without image"


class AffectNet(Reader):
    name = "affectnet"
    kind = "image"
    task = "both"
    has_landmarks = True
    # the official validation set is the test set (test labels are withheld)
    default_protocol = {"kind": "official", "classes": 8,
                        "selection": "all", "task": "classification"}
    class_sets = {7: SIX_AND_NEUTRAL, 8: EMOTIONS}

    def recognise(self, root: Path) -> str | None:
        root = require_root(root, self.name)
        if _find_npy_base(root) is not None:
            return "npy"
        if _find_image_dir(root) is not None:
            return "csv"
        raise FerbenchError(f"{root}: not an AffectNet layout: expected {IMAGE_DIR}/ with "
                            f"training.csv/validation.csv, or train_set/ and val_set/ with "
                            f"images/ and annotations/")

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        skips = SkipLog(strict)
        npy_base = _find_npy_base(root)
        if npy_base is not None:
            rows, notes = _read_npy(root, npy_base, skips)
            variant, precropped = "npy", True
        else:
            images = _find_image_dir(root)
            if images is None:
                raise FerbenchError(
                    f"{root}: not an AffectNet layout: expected {IMAGE_DIR}/ with training.csv/"
                    f"validation.csv, or train_set/ and val_set/ with images/ and annotations/"
                )
            rows, notes = _read_csv_release(root, images, skips)
            variant, precropped = "csv", False
        table = make_table(rows, self.name)
        table.attrs["notes"] = notes
        for note in notes:
            log.info("affectnet: %s", note)
        return ReadResult(table=table, skipped=skips.counts, variant=variant, precropped=precropped)

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        return open_image(Path(root) / row["path"])


def _skip(skips: SkipLog, reason: str, where: str | Path) -> None:
    # Codes 8-10 without V/A are the dataset's own "no label", not damage: counted, never an
    # error under --strict.
    if reason == R_NO_CLASS:
        skips.counts[reason] += 1
    else:
        skips.skip(reason, where)


# --------------------------------------------------------------------------- layout detection

def _subdirs(path: Path) -> list[Path]:
    with os.scandir(path) as it:
        return sorted(Path(e.path) for e in it if e.is_dir() and not e.name.startswith("."))


def _find_npy_base(root: Path) -> Path | None:
    # The archive unpacks either straight into root or into one folder below it.
    for base in (root, *_subdirs(root)):
        if any((base / name / "images").is_dir() and (base / name / "annotations").is_dir()
               for name, _ in NPY_SPLITS):
            return base
    return None


def _find_image_dir(root: Path) -> Path | None:
    if root.name == IMAGE_DIR:
        return root
    for base in (root, *_subdirs(root)):
        if (base / IMAGE_DIR).is_dir():
            return base / IMAGE_DIR
    return None


def _find_csv(root: Path, images: Path, name: str) -> Path | None:
    for folder in (images.parent / LIST_DIR, root / LIST_DIR, images, images.parent, root):
        if (folder / name).is_file():
            return folder / name
    return None


# --------------------------------------------------------------------------- legacy CSV release

def _read_csv_release(root: Path, images: Path, skips: SkipLog) -> tuple[list[dict], list[str]]:
    found = [(_find_csv(root, images, name), name, split) for name, split in CSV_SPLITS]
    if all(path is None for path, _, _ in found):
        raise FerbenchError(
            f"{root}: found {IMAGE_DIR}/ but neither training.csv nor validation.csv "
            f"(looked in {LIST_DIR}/, beside the images and at the root)"
        )
    notes = [f"{name} not found: no {split} split" for path, name, split in found if path is None]
    prefix = images.relative_to(root).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    listing = _FolderListing(images)
    rows: list[dict] = []
    seen: set[str] = set()
    for csv_path, _, split in found:
        if csv_path is not None:
            rows.extend(_csv_rows(csv_path, split, prefix, listing, seen, skips, notes))
    return rows, notes


def _has_header(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline()
    field = first.split(",")[0].strip().strip('"').lstrip("#").strip()
    if field.lower() == CSV_COLUMNS[0].lower():
        return True
    # A header-less file starts with the first image's relative path.
    if "/" in field or Path(field).suffix.lower() in IMAGE_EXTS:
        return False
    raise FerbenchError(
        f"{path} line 1: neither the header {','.join(CSV_COLUMNS)} nor a data row "
        f"(first field {field!r})"
    )


def _load_csv(path: Path) -> tuple[pd.DataFrame, bool]:
    """The CSV as strings with canonical column names, and whether it has a header row."""
    header = _has_header(path)
    try:
        frame = pd.read_csv(
            path, header=0 if header else None, dtype=str, keep_default_na=False,
            skipinitialspace=True, encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise FerbenchError(f"{path}: malformed CSV ({err})") from err
    if header:
        frame.columns = [str(c).strip().lstrip("#").strip() for c in frame.columns]
        lower = {c.lower(): c for c in frame.columns}
        lacking = [c for c in CSV_COLUMNS if c.lower() not in lower]
        if lacking:
            raise FerbenchError(
                f"{path} line 1: header lacks column(s) {', '.join(lacking)} "
                f"(expected {','.join(CSV_COLUMNS)})"
            )
        frame = frame.rename(columns={lower[c.lower()]: c for c in CSV_COLUMNS})
    elif frame.shape[1] != len(CSV_COLUMNS):
        raise FerbenchError(
            f"{path}: header-less file has {frame.shape[1]} columns, expected {len(CSV_COLUMNS)} "
            f"({','.join(CSV_COLUMNS)})"
        )
    else:
        frame.columns = list(CSV_COLUMNS)
    return frame, header


def _csv_rows(path: Path, split: str, prefix: str, listing: "_FolderListing", seen: set[str],
              skips: SkipLog, notes: list[str]) -> list[dict]:
    frame, header = _load_csv(path)
    n = len(frame)
    rel = (frame["subDirectory_filePath"].str.strip().str.replace("\\", "/", regex=False)
           .str.lstrip("./"))
    rel = rel.where(~rel.str.startswith(IMAGE_DIR + "/"), rel.str.slice(len(IMAGE_DIR) + 1))

    code = pd.to_numeric(frame["expression"].str.strip(), errors="coerce")
    code_ok = code.notna() & (code == code.round()) & (code >= 0) & (code <= 10)
    va = {k: pd.to_numeric(frame[k].str.strip(), errors="coerce") for k in ("valence", "arousal")}
    in_range = {k: (v >= -1) & (v <= 1) for k, v in va.items()}
    marker = {k: v == VA_MARKER for k, v in va.items()}
    va_nan = va["valence"].isna() | va["arousal"].isna()
    va_bad = ~(in_range["valence"] | marker["valence"]) | ~(in_range["arousal"] | marker["arousal"])
    no_class = code_ok & code.isin(NO_CLASS_CODES)
    both_va = in_range["valence"] & in_range["arousal"]

    # Later assignments win, so the first applicable reason is assigned last.
    reasons = np.full(n, None, dtype=object)
    reasons[(no_class & ~both_va).to_numpy()] = R_NO_CLASS
    reasons[va_bad.to_numpy()] = R_VA_RANGE
    reasons[va_nan.to_numpy()] = R_VA_NAN
    reasons[~code_ok.to_numpy()] = R_EXPRESSION
    paths = rel.to_numpy(dtype=object)
    dup = rel.duplicated().to_numpy().copy()
    if seen:  # rows already taken from the other CSV
        dup |= np.fromiter((p in seen for p in paths), bool, count=n)
    reasons[dup & (reasons == None)] = R_DUPLICATE  # noqa: E711 (element-wise)

    boxes = _parse_boxes(frame)
    landmarks, n_bad_lnd = _parse_landmarks(frame["facial_landmarks"])
    if n_bad_lnd:
        notes.append(f"{path.name}: {n_bad_lnd} row(s) with malformed landmarks kept without them")

    valence = va["valence"].where(in_range["valence"]).to_numpy()
    arousal = va["arousal"].where(in_range["arousal"]).to_numpy()
    codes = code.to_numpy()
    rows = []
    for i in range(n):
        if reasons[i] is not None:
            _skip(skips, reasons[i], f"{path} line {csv_line(path, i, header)}")
            continue
        on_disk = listing.resolve(paths[i])
        if on_disk is None:
            skips.skip(R_MISSING, f"{path} line {csv_line(path, i, header)} ({prefix}{paths[i]})")
            continue
        seen.add(paths[i])
        folder, _, filename = on_disk.rpartition("/")
        sample_id = f"{folder}_{filename.rsplit('.', 1)[0]}".lstrip("_")
        if sample_id in listing.used_ids:  # same stem, other extension: keep both apart
            sample_id = f"{folder}_{filename}".lstrip("_")
        listing.used_ids.add(sample_id)
        rows.append({
            "sample_id": sample_id,
            "path": f"{prefix}{on_disk}",
            "emotion": CODES.get(int(codes[i])),
            "valence": valence[i],
            "arousal": arousal[i],
            "split": split,
            "box": boxes[i],
            "landmarks": landmarks[i],
        })
    return rows


def _parse_boxes(frame: pd.DataFrame) -> list:
    cols = ["face_x", "face_y", "face_width", "face_height"]
    arr = np.column_stack([pd.to_numeric(frame[c].str.strip(), errors="coerce").to_numpy(float)
                           for c in cols]) if len(frame) else np.zeros((0, 4))
    ok = np.isfinite(arr).all(axis=1) & (arr[:, 2] > 0) & (arr[:, 3] > 0)
    listed = arr.tolist()
    return [box if good else None for box, good in zip(listed, ok)]


def _parse_landmarks(column: pd.Series) -> tuple[list, int]:
    """136 ``;``-separated numbers per row -> float32 arrays (None where malformed), bad count.

    Split and cast in Arrow: 290k rows x 136 numbers is too many for per-row Python.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim(pc.replace_substring(pa.Array.from_pandas(column), " ", ""), ";")
    parts = pc.split_pattern(text, ";")
    full = pc.list_value_length(parts).to_numpy(zero_copy_only=False) == N_LANDMARKS
    tokens = pc.list_flatten(pc.filter(parts, pa.array(full)))
    try:
        values = pc.cast(tokens, pa.float32()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Some token is not a number: mark it NaN so that only its row loses its landmarks.
        number = pc.match_substring_regex(
            tokens, r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(nan|inf)$",
            ignore_case=True)
        values = pc.cast(pc.if_else(number, tokens, "nan"), pa.float32()).to_numpy(
            zero_copy_only=False)
    block = values.reshape(-1, N_LANDMARKS)
    good = np.isfinite(block).all(axis=1)
    out: list = [None] * len(column)
    for row, arr, ok in zip(np.flatnonzero(full), block, good):
        if ok:
            out[row] = arr
    empty = pc.equal(text, "").to_numpy(zero_copy_only=False) if len(column) else np.zeros(0)
    bad = int(len(column) - sum(v is not None for v in out) - empty.sum())
    return out, bad


class _FolderListing:
    """File names per image folder, listed once; tolerates extension case differences."""

    def __init__(self, images: Path) -> None:
        self.images = images
        self.cache: dict[str, tuple[set[str], dict[str, str]]] = {}
        self.used_ids: set[str] = set()

    def resolve(self, rel: str) -> str | None:
        folder, _, name = rel.rpartition("/")
        if folder not in self.cache:
            try:
                with os.scandir(self.images / folder) as it:
                    names = {e.name for e in it if not e.is_dir()}
            except (FileNotFoundError, NotADirectoryError):
                names = set()
            self.cache[folder] = (names, {n.lower(): n for n in names})
        names, lower = self.cache[folder]
        if name in names:
            return rel
        actual = lower.get(name.lower())
        if actual is None:
            return None
        return f"{folder}/{actual}" if folder else actual


# --------------------------------------------------------------------------- current npy release

_DESCR = re.compile(r"'descr':\s*'([^']+)'")
_SHAPE = re.compile(r"'shape':\s*\(([^)]*)\)")
_FORTRAN = re.compile(r"'fortran_order':\s*True")


def _load_npy(path: str) -> np.ndarray:
    """np.load for tiny files, without its per-call header evaluation (290k x 4 files)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:6] == b"\x93NUMPY" and len(data) > 10:
        size, start = ((int.from_bytes(data[8:10], "little"), 10) if data[6] == 1
                       else (int.from_bytes(data[8:12], "little"), 12))
        header = data[start:start + size].decode("latin1")
        descr, shape = _DESCR.search(header), _SHAPE.search(header)
        if descr and shape and not _FORTRAN.search(header) and "O" not in descr.group(1):
            dims = tuple(int(d) for d in shape.group(1).replace(" ", "").split(",") if d)
            dtype = np.dtype(descr.group(1))
            count = int(np.prod(dims)) if dims else 1
            body = data[start + size:]
            if len(body) == count * dtype.itemsize:
                return np.frombuffer(body, dtype=dtype, count=count).reshape(dims)
    import io
    return np.load(io.BytesIO(data), allow_pickle=False)


def _scalar(ann: str, name: str) -> float:
    try:
        return float(str(_load_npy(f"{ann}/{name}")[()]))
    except (OSError, ValueError, IndexError, TypeError) as err:
        raise ValueError(f"{name}: {err}") from err


def _npy_labels(ann: str, sid: str) -> tuple[int, float, float, np.ndarray | None]:
    # 0-d unicode arrays: np.array('3') -> int('3'); tolerate '3.0'.
    code = int(_scalar(ann, f"{sid}_exp.npy"))
    valence = _scalar(ann, f"{sid}_val.npy")
    arousal = _scalar(ann, f"{sid}_aro.npy")
    landmarks = None
    try:
        arr = np.asarray(_load_npy(f"{ann}/{sid}_lnd.npy")).astype(np.float32).reshape(-1)
        if arr.size == N_LANDMARKS and np.isfinite(arr).all():
            landmarks = arr
    except (OSError, ValueError):
        pass  # landmarks are optional; the sample keeps its labels
    return code, valence, arousal, landmarks


def _npy_batch(ann: str, ids: list[str]) -> list:
    out = []
    for sid in ids:
        try:
            out.append(_npy_labels(ann, sid))
        except (OSError, ValueError, OverflowError, IndexError, TypeError) as err:
            out.append(err)
    return out


def _read_npy(root: Path, base: Path, skips: SkipLog) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    notes: list[str] = []
    for set_name, split in NPY_SPLITS:
        images, ann = base / set_name / "images", base / set_name / "annotations"
        if not images.is_dir() or not ann.is_dir():
            notes.append(f"{set_name}/ not found: no {split} split")
            continue
        with os.scandir(images) as it:
            files = sorted(e.name for e in it
                           if not e.is_dir() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTS)
        with os.scandir(ann) as it:
            ann_names = {e.name for e in it}
        by_id = {os.path.splitext(f)[0]: f for f in files}
        for name in sorted(ann_names):
            if name.endswith("_exp.npy") and name[: -len("_exp.npy")] not in by_id:
                skips.skip(R_NO_IMAGE, ann / name)
        present = []
        for sid in by_id:
            missing = [f"{sid}{s}.npy" for s in ("_exp", "_val", "_aro")
                       if f"{sid}{s}.npy" not in ann_names]
            if missing:
                skips.skip(R_ANN_MISSING, f"{ann / missing[0]} (image {by_id[sid]})")
            else:
                present.append(sid)

        # Batches keep thread overhead low on a warm cache; threads overlap cold-disk reads.
        batches = [present[i:i + 1024] for i in range(0, len(present), 1024)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            labels = [r for batch in pool.map(lambda b: _npy_batch(str(ann), b), batches)
                      for r in batch]
        rel = (images.relative_to(root)).as_posix()
        for sid, result in zip(present, labels):
            where = ann / f"{sid}_*.npy"
            if isinstance(result, Exception):
                skips.skip(R_ANN_BAD, f"{ann} ({result})")
                continue
            code, valence, arousal, landmarks = result
            reason = _npy_reason(code, valence, arousal)
            if reason:
                _skip(skips, reason, where)
                continue
            rows.append({
                "sample_id": f"{split}_{sid}",
                "path": f"{rel}/{by_id[sid]}",
                "emotion": CODES.get(code),
                "valence": valence if -1 <= valence <= 1 else None,
                "arousal": arousal if -1 <= arousal <= 1 else None,
                "split": split,
                "landmarks": landmarks,
            })
    return rows, notes


def _npy_reason(code: int, valence: float, arousal: float) -> str | None:
    if not 0 <= code <= 10:
        return R_EXPRESSION
    if np.isnan(valence) or np.isnan(arousal):
        return R_VA_NAN
    if any(not (-1 <= v <= 1 or v == VA_MARKER) for v in (valence, arousal)):
        return R_VA_RANGE
    if code in NO_CLASS_CODES and not (-1 <= valence <= 1 and -1 <= arousal <= 1):
        return R_NO_CLASS
    return None
