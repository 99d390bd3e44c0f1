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

Where the face is and how it is cropped: ferbench.data.faces.

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
``content`` (ferbench.data.cache_content: a sha256 of each face array's pixels, hashed while writing,
with its size, time and sampled blocks for the quick re-check before training) and
``fingerprint`` of all three. Unreadable images are counted
under skipped "unreadable image" and left out of samples.parquet; with --strict the first one
is an error naming the file.

Split check (datasets with official splits; ferbench.data.split_check): before any face is cached,
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
from io import BytesIO
import multiprocessing as mp
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ferbench import io, provenance
from ferbench.data import cache_content
from ferbench.data.faces import CROP_METHODS, HaarDetector, crop_face_region, landmark_box, points_to_crop
from ferbench.data.split_check import check_splits, format_summary, report_problems, summary_dict
from ferbench.datasets import get_reader
from ferbench.datasets.base import Reader, ReadResult
from ferbench.errors import FerbenchError

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
