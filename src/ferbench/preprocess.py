"""`ferbench prepare`: crop, align and resize every face once into memory-mappable arrays.

Writes into the dataset's cache folder::

    faces_{size}.npy   uint8 [N, C, size, size] (C = 3: RGB, grey replicated; or C = 1: grey),
                       one per requested size; open with np.load(path, mmap_mode="r")
    samples.parquet    the reader's sample table for the N cached rows, in reader order,
                       plus int64 ``cache_row`` (the row in every faces_*.npy)
    landmarks.npy      float32 [N, P, 2]: each row's landmark points (x, y) in crop coordinates
                       as fractions of the crop's side, size-free: at size S the point is at
                       pixel f * S - 0.5 (pixel centres at integers); NaN for a row without
                       points (or with another count than the dataset's P); P = 0 when the
                       reader gave none. Cache format 2 (``settings.cache_format``): an older
                       cache has no file and reads as "no landmarks".
    report.json        {dataset, variant, images, skipped: {reason: n}, sizes, channels,
                        margin, crop: {method: n}}

Where the face is (first that applies; precropped datasets skip straight to ``whole``):
  landmarks  bounding box of the row's landmark points
  box        the row's [x, y, w, h]
  detector   OpenCV's bundled Haar cascade (frontal face, default), largest face
  center     the detector found nothing: the centred square of side min(H, W) (counted)
  whole      precropped images: the whole image, zero-padded to a square
The crop is a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the face box. Along an
axis where the square fits inside the image it is shifted inside (no artificial border);
where it does not fit it stays centred and the outside is zero-padded.

--threads N: file readers decode+crop chunks of CHUNK_ROWS rows in N worker processes (PIL
holds the GIL; below PROCESS_MIN_ROWS images, in this process); container readers (overridden iter_images) keep their one decoding pass and
crop on N threads. Results are written in table order, so the output does not depend on N.

Every file is first written under a temporary name and renamed at the end (ferbench.io), so a
failure leaves no partial file; the temporary files a SIGKILL left are removed when prepare starts
again, and free space is checked before the face arrays are sized (a memory map over a full disk
would die of SIGBUS). report.json is the completion marker: an older cache loses it before the
work starts and the new one is renamed into place last; consumers refuse a cache without it.
report.json records fingerprints (ferbench.provenance): ``samples_fingerprint`` of the cached
sample table, ``settings`` (dataset, sizes, channels, margin, crop_per, precropped) and
``content`` (ferbench.cache_content: a sha256 of each face array's pixels, hashed while writing,
with its size, time and sampled blocks for the quick re-check before training) and
``fingerprint`` of all three. Unreadable images are counted
under skipped "unreadable image" and left out of samples.parquet; with --strict the first one
is an error naming the file.

Split check (datasets with official splits; ferbench.split_check): before any face is cached,
a seeded sample of each split is decoded and its image statistics (size, channels, contrast,
sharpness) compared. Their per-split medians are printed and recorded in report.json
(``split_statistics``, ``split_warnings``); a split that differs far beyond sampling (a blurred
training split beside sharp test splits) is a ``warning:`` line naming the splits and the
statistic. ``--split-check error`` (or --strict, or ``datasets.<name>.split_check: error`` in
params.yaml) makes it an error before anything is written; ``off`` skips the check.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import sys
import threading
from io import BytesIO
import multiprocessing as mp
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ferbench import cache_content, io, provenance
from ferbench.datasets import get_reader
from ferbench.datasets.base import Reader, ReadResult
from ferbench.errors import FerbenchError
from ferbench.split_check import check_splits, format_summary, report_problems, summary_dict

CROP_METHODS = ("landmarks", "box", "detector", "center", "whole")
#: cache layout version (in report.json's settings): 2 added landmarks.npy
CACHE_FORMAT = 2
UNREADABLE = "unreadable image"
#: Rows per work item: large enough to amortise scheduling, small enough to balance threads.
CHUNK_ROWS = 32
#: Below this many images a worker process costs more to start (~1 CPU-second of imports)
#: than it saves: decode in this process.
PROCESS_MIN_ROWS = 1000
#: --split-check modes: a finding is a warning, an error, or the check is not run
SPLIT_CHECK_MODES = ("warn", "error", "off")
#: Images are shrunk to at most this side before running the Haar cascade (speed; faces in
#: these datasets are large).
DETECT_MAX_SIDE = 480

Box = tuple[float, float, float, float]


# -- geometry ---------------------------------------------------------------------------------
def _finite_box(box: Any) -> Box | None:
    if box is None:
        return None
    try:
        values = np.asarray(box, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if values.size != 4 or not np.all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        return None
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def landmark_box(landmarks: Any) -> Box | None:
    """Flat [x0, y0, x1, y1, ...] -> the points' bounding box (x, y, w, h); None if unusable."""
    if landmarks is None:
        return None
    try:
        pts = np.asarray(landmarks, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if pts.size < 4 or pts.size % 2:
        return None
    pts = pts.reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 2:
        return None
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return _finite_box((x0, y0, x1 - x0, y1 - y0))


def _overlaps(box: Box, shape: tuple[int, ...]) -> bool:
    x, y, w, h = box
    return x < shape[1] and y < shape[0] and x + w > 0 and y + h > 0


def square_region(box: Box, margin: float, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Face box -> integer square (x0, y0, side) in image coordinates (may extend outside)."""
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * (1.0 + 2.0 * margin))))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    height, width = shape[:2]
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def crop_square(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side], zero-padded where the square leaves the image."""
    height, width = image.shape[:2]
    if 0 <= x0 and 0 <= y0 and x0 + side <= width and y0 + side <= height:
        return image[y0:y0 + side, x0:x0 + side]
    canvas = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return canvas


def resize_square(crop: np.ndarray, size: int) -> np.ndarray:
    side = crop.shape[0]
    if side == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


# -- detection --------------------------------------------------------------------------------
class HaarDetector:
    """OpenCV's bundled frontal-face cascade, one classifier per thread (it is not thread-safe)."""

    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")

    def __init__(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict:  # sent to worker processes: each loads its own cascade
        return {}

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(self.path)
            if cascade.empty():
                raise FerbenchError(f"{self.path}: OpenCV's Haar face cascade could not be loaded")
            self._local.cascade = cascade
        return cascade

    def __call__(self, grey: np.ndarray) -> Box | None:
        """Largest detected face (x, y, w, h) in ``grey``'s coordinates, or None."""
        scale = min(1.0, DETECT_MAX_SIDE / max(grey.shape[:2]))
        small = grey if scale == 1.0 else cv2.resize(
            grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
            interpolation=cv2.INTER_AREA)
        small = cv2.equalizeHist(small)
        min_side = max(24, min(small.shape[:2]) // 8)
        faces = self._cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5,
                                                 minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
        return (x / scale, y / scale, w / scale, h / scale)


# -- one image --------------------------------------------------------------------------------
def _normalise(image: np.ndarray, channels: int, where: str) -> np.ndarray:
    """Reader pixels -> uint8 HxW (grey) or HxWx3 (RGB; only when channels == 3 and colour)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise FerbenchError(f"{where}: reader returned {image.dtype} pixels, expected uint8")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise FerbenchError(f"{where}: reader returned pixels of shape {image.shape}, expected HxW or HxWx3")
    if image.ndim == 3 and channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def locate_face(
    image: np.ndarray,
    landmarks: Any = None,
    box: Any = None,
    *,
    precropped: bool = False,
    detector: Callable[[np.ndarray], Box | None] | None = None,
) -> tuple[Box, str]:
    """The face box and how it was found (one of CROP_METHODS)."""
    height, width = image.shape[:2]
    if precropped:
        return (0.0, 0.0, float(width), float(height)), "whole"
    found = landmark_box(landmarks)
    if found is not None and _overlaps(found, image.shape):
        return found, "landmarks"
    found = _finite_box(box)
    if found is not None and _overlaps(found, image.shape):
        return found, "box"
    if detector is not None:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        found = detector(grey)
        if found is not None:
            return found, "detector"
    side = float(min(height, width))
    return ((width - side) / 2.0, (height - side) / 2.0, side, side), "center"


def crop_face(image: np.ndarray, sizes: Sequence[int], **options: Any) -> tuple[list[np.ndarray], str]:
    """One image -> ([uint8 C x size x size per size], crop method). Crops once, resizes per size."""
    faces, method, _ = crop_face_region(image, sizes, **options)
    return faces, method


def crop_face_region(
    image: np.ndarray,
    sizes: Sequence[int],
    *,
    landmarks: Any = None,
    box: Any = None,
    channels: int = 3,
    margin: float = 0.2,
    precropped: bool = False,
    detector: Callable[[np.ndarray], Box | None] | None = None,
    where: str = "image",
) -> tuple[list[np.ndarray], str, tuple[int, int, int]]:
    """crop_face, plus the square (x0, y0, side) it cut from the image (for ``points_to_crop``)."""
    image = _normalise(image, channels, where)
    face, method = locate_face(image, landmarks, box, precropped=precropped, detector=detector)
    # precropped and centre fallbacks are exact squares/whole images: no margin around them
    m = margin if method in ("landmarks", "box", "detector") else 0.0
    x0, y0, side = square_region(face, m, image.shape)
    crop = crop_square(image, x0, y0, side)
    out = []
    for size in sizes:
        face_px = resize_square(crop, size)
        if face_px.ndim == 2:
            face_px = face_px[None] if channels == 1 else np.broadcast_to(face_px, (3,) + face_px.shape)
        else:
            face_px = face_px.transpose(2, 0, 1)
        out.append(np.ascontiguousarray(face_px))
    return out, method, (x0, y0, side)


def points_to_crop(landmarks: Any, region: tuple[int, int, int], points: int) -> np.ndarray:
    """Flat image landmarks [x0, y0, x1, y1, ...] -> float32 [points, 2] fractions of the crop
    square ``region`` = (x0, y0, side): (x - x0 + 0.5) / side, pixel centres at integers as in
    the image (the resize maps centres to centres). NaN when there are no points or another
    number of them."""
    out = np.full((points, 2), np.nan, dtype=np.float32)
    if landmarks is None or points == 0:
        return out
    try:
        pts = np.asarray(landmarks, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return out
    if pts.size != 2 * points:
        return out
    x0, y0, side = region
    pts = pts.reshape(points, 2)
    out[:] = (pts - np.array([x0, y0], dtype=np.float64) + 0.5) / side
    return out


def landmark_count(table: pd.DataFrame) -> int:
    """The number of points most rows with landmarks have (0: none has any)."""
    counts = collections.Counter()
    for marks in table["landmarks"].tolist() if "landmarks" in table.columns else ():
        if marks is None:
            continue
        try:
            size = np.asarray(marks, dtype=np.float64).size
        except (TypeError, ValueError):
            continue
        if size >= 2 and size % 2 == 0:
            counts[size // 2] += 1
    return counts.most_common(1)[0][0] if counts else 0


# -- the whole table --------------------------------------------------------------------------
_Result = tuple[list[np.ndarray], str, tuple[int, int, int]] | FerbenchError


def _crop_rows(items: Iterable[tuple[Any, Any, Any, np.ndarray | FerbenchError]], spec: dict) -> list[_Result]:
    out: list[_Result] = []
    for where, landmarks, box, image in items:
        if isinstance(image, FerbenchError):
            out.append(image)
            continue
        if image is None or np.asarray(image).size == 0:
            out.append(FerbenchError(f"{where}: unreadable image (no pixels)"))
            continue
        out.append(crop_face_region(image, landmarks=landmarks, box=box, where=where, **spec))
    return out


def _row_items(table: pd.DataFrame, images: Iterable) -> Iterable[tuple]:
    return zip(table["path"].astype(str).tolist(), table["landmarks"].tolist(), table["box"].tolist(), images)


def sequence_boxes(table: pd.DataFrame) -> pd.DataFrame:
    """Replace each landmarked frame's points by the corners of its sequence's landmark box.

    With a fixed camera the union box over a sequence frames the face the same way in every
    frame, so an apex crop lines up with its neutral first frame (a per-frame box grows with a
    dropped jaw and shifts the face). Rows without landmarks or sequence keep theirs.
    """
    boxes = [landmark_box(marks) for marks in table["landmarks"].tolist()]
    frame = pd.DataFrame({"sequence": table["sequence"].to_numpy()}, index=table.index)
    has = np.array([b is not None for b in boxes]) & table["sequence"].notna().to_numpy()
    if not has.any():
        return table
    xyxy = np.array([(b[0], b[1], b[0] + b[2], b[1] + b[3]) if b is not None else (np.nan,) * 4
                     for b in boxes])
    frame[["x0", "y0", "x1", "y1"]] = xyxy
    union = frame[has].groupby("sequence").agg(x0=("x0", "min"), y0=("y0", "min"),
                                               x1=("x1", "max"), y1=("y1", "max"))
    corners = union.reindex(frame["sequence"]).to_numpy()
    out = table.copy()
    out["landmarks"] = [list(c) if ok else marks
                        for c, ok, marks in zip(corners, has, table["landmarks"].tolist())]
    return out


def _decode_chunk(reader: Reader, root: Path, table: pd.DataFrame, spec: dict) -> list[_Result]:
    """Decode (reader.iter_images) and crop the rows of ``table``, a slice of the sample table."""
    images = list(reader.iter_images(root, table))
    if len(images) != len(table):
        raise FerbenchError(f"{table['path'].iloc[0]}: reader yielded {len(images)} images for {len(table)} samples")
    return _crop_rows(_row_items(table, images), spec)


_WORKER: dict[str, Any] = {}
_MISSING = object()


def _init_worker(reader: Reader, root: Path, spec: dict) -> None:
    cv2.setNumThreads(1)
    _WORKER.update(reader=reader, root=root, spec=spec)


def _worker_chunk(table: pd.DataFrame) -> list[_Result]:
    # the slice travels with the task: no worker ever holds (or unpickles) the whole table
    return _decode_chunk(_WORKER["reader"], _WORKER["root"], table, _WORKER["spec"])


def _results(
    reader: Reader, root: Path, table: pd.DataFrame, spec: dict, threads: int
) -> Iterator[list[_Result]]:
    """Per-chunk results in table order, decoded and cropped by ``threads`` workers.

    File readers (the base iter_images) decode chunk by chunk in worker *processes*: PIL holds
    the GIL while decoding, so threads would not scale. Container readers (CSV, video) override
    iter_images to decode in one pass: that pass stays whole in this process and the cropping
    (OpenCV, which releases the GIL) runs on threads.
    """
    n = len(table)
    bounds = [(start, min(start + CHUNK_ROWS, n)) for start in range(0, n, CHUNK_ROWS)]
    one_pass = type(reader).iter_images is not Reader.iter_images

    def one_pass_chunks() -> Iterator[list]:
        images = iter(reader.iter_images(root, table))
        for start, stop in bounds:
            chunk = [next(images, _MISSING) for _ in range(start, stop)]
            if chunk[-1] is _MISSING:
                raise FerbenchError(f"{getattr(reader, 'name', 'reader')}: iter_images ended before sample {stop}")
            yield list(_row_items(table.iloc[start:stop], chunk))
        if next(images, _MISSING) is not _MISSING:
            raise FerbenchError(f"{getattr(reader, 'name', 'reader')}: iter_images yielded more than {n} images")

    serial = threads <= 1 or len(bounds) <= 1 or (not one_pass and n < PROCESS_MIN_ROWS)
    if serial:
        if one_pass:
            for rows in one_pass_chunks():
                yield _crop_rows(rows, spec)
        else:
            for start, stop in bounds:
                yield _decode_chunk(reader, root, table.iloc[start:stop], spec)
        return

    if one_pass:
        pool: Executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prepare")
        jobs: Iterator[tuple] = ((_crop_rows, rows, spec) for rows in one_pass_chunks())
    else:
        # spawn: safe whatever threads the parent runs, and the same on every platform
        pool = ProcessPoolExecutor(max_workers=min(threads, len(bounds)), mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker, initargs=(reader, root, spec))
        jobs = ((_worker_chunk, table.iloc[start:stop]) for start, stop in bounds)
    pending: collections.deque[Future] = collections.deque()
    try:
        for fn, *job_args in jobs:
            pending.append(pool.submit(fn, *job_args))
            if len(pending) >= 2 * threads:  # bounded: memory stays flat on large datasets
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _shrink_npy(path: Path, rows: int) -> None:
    """Cut an .npy file to its first ``rows`` rows: rewrite the header in place, or copy."""
    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    writers = {(1, 0): fmt.write_array_header_1_0, (2, 0): fmt.write_array_header_2_0}
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        if version in readers:
            shape, fortran, dtype = readers[version](f)
            offset = f.tell()
    if version in writers and not fortran:
        buf = BytesIO()
        header = {"descr": fmt.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows,) + tuple(shape[1:])}
        writers[version](buf, header)
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        if len(buf.getvalue()) == offset:  # numpy leaves room so that axis 0 can change in place
            with open(path, "r+b") as f:
                f.write(buf.getvalue())
                f.truncate(offset + rows * row_bytes)
            return
    src = np.load(path, mmap_mode="r")
    tmp = path.with_name(path.name + ".shrink")
    io.require_space(path.parent, rows * int(np.prod(src.shape[1:], dtype=np.int64)), f"{path.name} cut to {rows} rows")
    try:
        dst = io.open_memmap(tmp, (rows,) + src.shape[1:], src.dtype)
        for start in range(0, rows, 4096):
            dst[start:start + 4096] = src[start:min(start + 4096, rows)]
        dst.flush()
        del dst, src
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def prepare_cache(
    reader: Reader,
    root: str | Path,
    out: str | Path,
    *,
    sizes: Sequence[int] = (64,),
    channels: int = 3,
    margin: float = 0.2,
    strict: bool = False,
    threads: int = 1,
    result: ReadResult | None = None,
    progress: bool = True,
    crop_per: str = "auto",
    split_check: str = "warn",
) -> dict[str, Any]:
    """Read (unless ``result`` is given), crop and cache a dataset into ``out``; returns the report.

    ``split_check``: warn, error or off (see the module doc); ``strict`` makes it error."""
    root, out = Path(root), Path(out)
    sizes = list(dict.fromkeys(int(s) for s in sizes))
    if not sizes or any(s < 1 for s in sizes):
        raise FerbenchError(f"--size must be positive integers, got {sizes}")
    if channels not in (1, 3):
        raise FerbenchError(f"--channels must be 1 or 3, got {channels}")
    if not margin >= 0:
        raise FerbenchError(f"--margin must be >= 0, got {margin}")
    if int(threads) < 1:
        raise FerbenchError(f"--threads must be at least 1, got {threads}")
    threads = int(threads)
    if result is None:
        result = reader.read(root, strict=strict)
    table = result.table.reset_index(drop=True)
    name = getattr(reader, "name", "dataset")
    if table.empty:
        raise FerbenchError(f"{root}: the {name} reader found no samples")
    if crop_per not in ("auto", "frame", "sequence"):
        raise FerbenchError(f"--crop-per must be auto, frame or sequence, got {crop_per!r}")
    per_sequence = crop_per == "sequence" or (crop_per == "auto" and getattr(reader, "fixed_camera", False))
    crop_table = sequence_boxes(table) if per_sequence else table
    if split_check not in SPLIT_CHECK_MODES:
        raise FerbenchError(f"--split-check must be one of {', '.join(SPLIT_CHECK_MODES)}, got {split_check!r}")
    split_report: dict[str, Any] = {}
    if split_check != "off":
        # before the long pass: a damaged copy fails (error mode) before anything is written
        stats, problems = check_splits(reader, root, table)
        if stats is not None:
            split_report = {"split_statistics": summary_dict(stats), "split_warnings": problems}
            report_problems(problems, f"{root}: the {name} splits", strict or split_check == "error",
                            "--strict" if strict else "--split-check error")

    spec = {
        "sizes": sizes, "channels": channels, "margin": float(margin),
        "precropped": bool(result.precropped), "detector": None if result.precropped else HaarDetector(),
    }
    skipped: collections.Counter = collections.Counter(result.skipped)
    crops: collections.Counter = collections.Counter()
    n = len(table)
    kept = np.zeros(n, dtype=bool)

    # Report last: a cache is complete when report.json exists, so drop the old one first.
    report_path = out / "report.json"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise (io.disk_error(out, err) or err) from None
    io.remove_temporaries(out, _is_cache_file)  # what a killed run left
    with contextlib.suppress(FileNotFoundError):
        report_path.unlink()
    io.require_space(out, sum(n * channels * s * s + 4096 for s in sizes), f"{n} faces at {sizes} px")
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallelism comes from our pool, within the job's --threads
    try:
        with contextlib.ExitStack() as stack:
            report_tmp = stack.enter_context(io.atomic_path(report_path))
            samples_tmp = stack.enter_context(io.atomic_path(out / "samples.parquet", suffix=".parquet"))
            faces_tmp = [stack.enter_context(io.atomic_path(out / f"faces_{s}.npy", suffix=".npy")) for s in sizes]
            arrays = [io.open_memmap(p, (n, channels, s, s), np.uint8)
                      for p, s in zip(faces_tmp, sizes)]
            hashers = [cache_content.PixelHasher() for _ in sizes]  # hashed as written
            # landmark points of the original table (not crop_table's sequence corners)
            marks_tmp = stack.enter_context(io.atomic_path(out / "landmarks.npy", suffix=".npy"))
            points = landmark_count(table)
            raw_marks = table["landmarks"].tolist() if "landmarks" in table.columns else [None] * n
            marks = np.full((n, points, 2), np.nan, dtype=np.float32)
            bar = tqdm(total=n, desc=f"prepare {name}", unit="img", file=sys.stderr,
                       disable=None if progress else True, mininterval=1.0)
            row, pos = 0, 0
            with bar:
                for chunk in stack.enter_context(contextlib.closing(_results(reader, root, crop_table, spec, threads))):
                    for res in chunk:
                        if isinstance(res, FerbenchError):
                            if strict:
                                raise FerbenchError(f"{res} (--strict)")
                            # an unsupported pixel format is counted under its mode
                            skipped[getattr(res, "reason", UNREADABLE)] += 1
                        else:
                            faces, method, region = res
                            for array, hasher, face in zip(arrays, hashers, faces):
                                array[row] = face
                                hasher.update(face)
                            marks[row] = points_to_crop(raw_marks[pos], region, points)
                            crops[method] += 1
                            kept[pos] = True
                            row += 1
                        pos += 1
                    bar.update(len(chunk))
            if pos != n:
                raise FerbenchError(f"{name}: reader yielded {pos} images for {n} samples")
            if row == 0:
                raise FerbenchError(f"{root}: none of the {n} {name} images could be read")
            for array in arrays:
                array.flush()
            del arrays
            if row < n:
                for path in faces_tmp:
                    _shrink_npy(path, row)
            # after the last change to each file: its size and time are what the quick check compares
            content = {f"faces_{s}.npy": cache_content.record(p, h.hexdigest())
                       for s, p, h in zip(sizes, faces_tmp, hashers)}
            samples = table[kept].reset_index(drop=True)
            samples["cache_row"] = np.arange(row, dtype=np.int64)
            io.write_parquet(samples_tmp, samples)
            marks = marks[:row]
            with open(marks_tmp, "wb") as f:
                np.save(f, marks)
            settings = {"dataset": name, "sizes": sizes, "channels": channels, "margin": float(margin),
                        "crop_per": "sequence" if per_sequence else "frame",
                        "precropped": bool(result.precropped), "cache_format": CACHE_FORMAT}
            # from the file as written: what every later reader of samples.parquet recomputes
            samples_fp = provenance.samples_fingerprint(pd.read_parquet(
                samples_tmp, columns=[c for c in provenance.SAMPLE_COLUMNS if c in samples.columns]))
            report = {
                "dataset": name,
                "variant": result.variant,
                "images": int(row),
                "skipped": {k: int(v) for k, v in sorted(skipped.items())},
                "sizes": sizes,
                "channels": channels,
                "margin": float(margin),
                "crop": {m: int(crops.get(m, 0)) for m in CROP_METHODS},
                "landmarks": {"points": int(points),
                              "rows": int(np.isfinite(marks).all(axis=(1, 2)).sum()) if points else 0},
                "settings": settings,
                "samples_fingerprint": samples_fp,
                "content": content,
                "fingerprint": provenance.cache_fingerprint(samples_fp, settings, content),
                **split_report,
            }
            io.write_json(report_tmp, report)
        _remove_stale_sizes(out, sizes)
    finally:
        cv2.setNumThreads(cv_threads)
    return report


def _is_cache_file(name: str) -> bool:
    return (name in ("report.json", "samples.parquet", "landmarks.npy")
            or re.fullmatch(r"faces_\d+\.npy", name) is not None)


def _remove_stale_sizes(out: Path, sizes: Sequence[int]) -> None:
    # faces of sizes not requested this time no longer match samples.parquet row for row
    keep = {f"faces_{s}.npy" for s in sizes}
    for path in out.glob("faces_*.npy"):
        if path.name not in keep:
            path.unlink()


def open_cache(cache: str | Path, size: int) -> tuple[np.ndarray, pd.DataFrame]:
    """(memory-mapped faces [N, C, size, size], samples table) of a prepared cache."""
    cache = Path(cache)
    path = cache / f"faces_{size}.npy"
    if not (cache / "report.json").is_file():
        raise FerbenchError(f"{cache}: no complete cache here (run `ferbench prepare`)")
    if not path.is_file():
        raise FerbenchError(f"{path}: no faces cached at size {size} (prepare with --size {size})")
    faces = np.load(path, mmap_mode="r")
    samples = pd.read_parquet(cache / "samples.parquet")
    if len(samples) != len(faces):
        raise FerbenchError(f"{cache}: samples.parquet has {len(samples)} rows but {path.name} {len(faces)}")
    return faces, samples


def main(args: argparse.Namespace) -> int:
    reader = get_reader(args.dataset)
    report = prepare_cache(
        reader, Path(args.root), Path(args.out), sizes=args.size, channels=args.channels,
        margin=args.margin, strict=args.strict, threads=args.threads, crop_per=args.crop_per,
        split_check=getattr(args, "split_check", "warn"),
    )
    skipped = ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()) or "none"
    crops = ", ".join(f"{k} {v}" for k, v in report["crop"].items() if v)
    print(f"{report['dataset']}: cached {report['images']} faces at {report['sizes']} px, "
          f"{report['channels']} channel(s) -> {args.out}")
    print(f"  crop: {crops}; skipped: {skipped}")
    if report.get("split_statistics"):
        print("  split statistics (medians)")
        print("\n".join(format_summary(report["split_statistics"])))
        if report["split_warnings"]:
            print(f"  split warnings: {len(report['split_warnings'])} (see the warning lines)")
    return 0
