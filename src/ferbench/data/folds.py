"""One fold of one dataset, as a training job sees it, and fast batch gathering.

Images come from the face cache (``faces_{size}.npy``, uint8 [N, C, S, S], memory-mapped);
labels from the folds table (one row per cached sample). Everything a method indexes is a
*position*: a row number of the folds table. ``cache_row[pos]`` is the image row.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import torch

from ferbench import provenance
from ferbench.data import cache_content, protocols
from ferbench.errors import FerbenchError


@dataclasses.dataclass
class FoldData:
    """A fold: images (memmap), the folds table, index sets, masks and lookups.

    images        uint8 [N, C, S, S] memmap, indexed by cache row
    folds         the folds DataFrame (all frames of the dataset)
    meta          folds.json
    fold          the test fold
    indices       {"train", "val", "test"}: int64 positions of protocol samples
    subject_mask  bool per position: rows (any frame, labelled or not) the fold may train on
    cache_row     int64 per position
    label         int64 per position (-1 when not a protocol sample)
    va            float32 [n, 2] per position (NaN where unknown)
    landmarks     float32 [N, P, 2] per cache row (landmarks.npy, memmap): landmark points in
                  crop fractions (at size S, pixel f * S - 0.5), NaN where a row has none;
                  None when the cache has none (a reader without points, or an older cache)
    """

    images: np.ndarray
    folds: pd.DataFrame
    meta: dict[str, Any]
    fold: int
    indices: dict[str, np.ndarray]
    subject_mask: np.ndarray
    cache_row: np.ndarray
    label: np.ndarray
    va: np.ndarray
    landmarks: np.ndarray | None = None
    _all_sequences: "SequenceTable | None" = dataclasses.field(default=None, init=False, repr=False)

    @property
    def task(self) -> str:
        return self.meta.get("task", "classification")

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def landmarks_at(self, positions: np.ndarray) -> np.ndarray | None:
        """float32 [*positions.shape, P, 2] landmark fractions of folds positions (NaN: none),
        or None when the cache has no landmarks."""
        if self.landmarks is None:
            return None
        positions = np.asarray(positions, dtype=np.int64)
        return np.asarray(self.landmarks[self.cache_row[positions.reshape(-1)]]).reshape(
            positions.shape + self.landmarks.shape[1:])

    # -- sequences (one table, built once per mask; stills are left out) --------------------
    def sequence_table(self, mask: np.ndarray | None = None, until_apex: bool = False) -> "SequenceTable":
        """The sequences of the rows in ``mask`` (default: every row of the folds table)."""
        if mask is None:
            if self._all_sequences is None:
                self._all_sequences = build_sequence_table(self.folds, np.ones(len(self.folds), bool),
                                                           until_apex=False)
            if not until_apex:
                return self._all_sequences
            mask = np.ones(len(self.folds), bool)
        return build_sequence_table(self.folds, mask, until_apex=until_apex)

    def sequences(self, mask: np.ndarray | None = None) -> list[np.ndarray]:
        """Positions of each sequence with 2+ frames (frame order), restricted to ``mask``
        (default: the training-subject mask)."""
        table = self.sequence_table(self.subject_mask if mask is None else mask, until_apex=False)
        return table.sequences(min_frames=2)


@dataclasses.dataclass(frozen=True)
class SequenceTable:
    """The sequences (rows sharing a ``sequence`` id) among a row mask, as flat arrays: S
    sequences over a folds table of n rows. Frames are in time order (frame number, unnumbered
    frames first, then row order); rows without a sequence id (stills) belong to none."""

    order: np.ndarray      # int64: kept positions, grouped by sequence, frame order within
    start: np.ndarray      # int64 [S]: offset of each sequence in ``order``
    length: np.ndarray     # int64 [S]: frames kept
    subject: np.ndarray    # int64 [S]: subject code
    emotion: np.ndarray    # int64 [S]: code into ``emotions``; -1 unlabelled
    emotions: tuple[str, ...]
    seq_of: np.ndarray     # int64 [n]: sequence of each folds position; -1 when not kept
    rank_of: np.ndarray    # int64 [n]: rank of the position within its sequence; -1

    @property
    def n_sequences(self) -> int:
        return len(self.start)

    @property
    def first(self) -> np.ndarray:
        """int64 [S]: position of each sequence's first frame (the neutral onset in lab data)."""
        return self.order[self.start]

    def position(self, seq: np.ndarray, rank: np.ndarray) -> np.ndarray:
        return self.order[self.start[seq] + rank]

    def first_of(self, positions: np.ndarray) -> np.ndarray:
        """The first frame of each position's sequence; a position in no sequence maps to itself."""
        positions = np.asarray(positions, dtype=np.int64)
        seq = self.seq_of[positions]
        return np.where(seq >= 0, self.first[np.maximum(seq, 0)] if self.n_sequences else positions, positions)

    def sequences(self, min_frames: int = 1) -> list[np.ndarray]:
        """Positions of each sequence with at least ``min_frames`` frames, in time order."""
        return [self.order[s:s + n] for s, n in zip(self.start, self.length) if n >= min_frames]


def build_sequence_table(folds: pd.DataFrame, mask: np.ndarray, until_apex: bool = True) -> SequenceTable:
    """Sequences of the rows where ``mask`` is True. With ``until_apex`` a sequence ends at its
    last row marked ``apex`` (MMI's offset phase, intensity falling again, is cut off). A
    sequence's label is its rows' most frequent ``emotion`` (ties: the first name in sorted
    order; unlabelled when none has one); a sequence without a subject is its own subject."""
    n = len(folds)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"mask of shape {mask.shape} for a folds table of {n} rows")
    keep = mask & folds["sequence"].notna().to_numpy(bool)
    pos = np.flatnonzero(keep).astype(np.int64)
    codes = pd.factorize(folds["sequence"].to_numpy(object)[pos])[0].astype(np.int64)
    # unnumbered frames sort first
    frame = folds["frame"].astype("Float64").to_numpy(dtype=np.float64, na_value=-np.inf)[pos]
    o = np.lexsort((pos, frame, codes))
    pos, codes, frame = pos[o], codes[o], frame[o]
    if until_apex and "apex" in folds.columns and len(pos):
        apex = folds["apex"].astype("boolean").fillna(False).to_numpy(bool)[pos]
        marked = np.full(codes.max() + 1, -np.inf)
        np.maximum.at(marked, codes[apex], frame[apex])
        limit = np.where(np.isneginf(marked), np.inf, marked)  # no apex marked: whole sequence
        inside = frame <= limit[codes]
        pos, codes = pos[inside], codes[inside]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.zeros(0, np.int64)
    length = np.diff(np.r_[starts, len(codes)]).astype(np.int64)
    seq_index = np.repeat(np.arange(len(starts)), length)

    subj = folds["subject"].to_numpy(object)[pos[starts]]
    seq_names = folds["sequence"].to_numpy(object)[pos[starts]]
    subj = np.where(pd.isna(subj), "?" + seq_names.astype(str), subj.astype(str))
    subject = pd.factorize(subj)[0].astype(np.int64)

    emotion = np.full(len(starts), -1, dtype=np.int64)
    names: tuple[str, ...] = ()
    if "emotion" in folds.columns and len(pos):
        emo = folds["emotion"].to_numpy(object)[pos]
        labelled = pd.notna(emo)
        if labelled.any():
            votes = pd.DataFrame({"seq": seq_index[labelled], "emo": emo[labelled].astype(str)})
            counts = votes.groupby(["seq", "emo"]).size().reset_index(name="n")
            counts = counts.sort_values(["seq", "n", "emo"], ascending=[True, False, True])
            top = counts.drop_duplicates("seq")
            names = tuple(sorted(top["emo"].unique()))
            emotion[top["seq"].to_numpy()] = [names.index(e) for e in top["emo"]]

    seq_of = np.full(n, -1, dtype=np.int64)
    rank_of = np.full(n, -1, dtype=np.int64)
    seq_of[pos] = seq_index
    rank_of[pos] = np.arange(len(pos)) - starts[seq_index]
    return SequenceTable(order=pos, start=starts.astype(np.int64), length=length, subject=subject,
                         emotion=emotion, emotions=names, seq_of=seq_of, rank_of=rank_of)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FerbenchError(f"{path}: {what} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{path}: {what} is not valid JSON ({err})") from None


def open_landmarks(cache: str | Path, n_images: int) -> np.ndarray | None:
    """Memory-map ``landmarks.npy`` (cache format 2): None when absent (an older cache) or when
    the cache holds no points (P = 0)."""
    path = Path(cache) / "landmarks.npy"
    if not path.is_file():
        return None
    try:
        marks = np.load(path, mmap_mode="r") if path.stat().st_size else None
    except (ValueError, OSError) as err:
        raise FerbenchError(f"{path}: unreadable landmarks ({err}); rerun prepare") from None
    if marks is None or marks.ndim != 3 or marks.shape[2] != 2 or len(marks) != n_images:
        raise FerbenchError(f"{path}: expected float [{n_images}, P, 2] landmarks; rerun prepare")
    return marks if marks.shape[1] else None


def open_images(cache: str | Path, size: int) -> np.ndarray:
    """Memory-map ``faces_{size}.npy``; a missing size names the sizes that exist."""
    cache = Path(cache)
    path = cache / f"faces_{size}.npy"
    if not path.is_file():
        have = sorted(p.name for p in cache.glob("faces_*.npy")) if cache.is_dir() else []
        hint = f"cached: {', '.join(have)}" if have else "no faces_*.npy there"
        raise FerbenchError(f"{path}: no face cache of size {size} ({hint}; "
                            f"run `ferbench prepare --size {size}`)")
    try:
        images = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise FerbenchError(f"{path}: unreadable face cache ({err})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) \
            or images.shape[2] != size or images.shape[3] != size:
        raise FerbenchError(f"{path}: expected uint8 [N, 1|3, {size}, {size}], "
                            f"got {images.dtype} {list(images.shape)}")
    return images


def load_fold(cache: str | Path, folds_path: str | Path, fold: int, image_size: int,
              dataset: str | None = None, need_labels: bool = True) -> FoldData:
    """Open the cache and the folds file, check them against each other, select the fold.

    The cache must be complete (report.json) and the folds table built from its sample table
    (ferbench.provenance: recorded fingerprints, and every row's sample id at its cache row).

    ``need_labels=False`` (pretraining): a fold without protocol samples is allowed, since
    pretraining reads frames through ``subject_mask`` only (e.g. an unlabelled sequence set)."""
    folds_path = Path(folds_path)
    if not folds_path.is_file():
        raise FerbenchError(f"{folds_path}: folds file does not exist (run `ferbench folds`)")
    meta_path = folds_path.with_suffix(".json")
    meta = _read_json(meta_path, "folds metadata")
    try:
        folds = pd.read_parquet(folds_path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise FerbenchError(f"{folds_path}: unreadable folds table ({err})") from None
    needed = {"cache_row", "label", "fold", "protocol_sample", "split", "subject", "sequence",
              "frame", "valence", "arousal", "sample_id"}
    missing = sorted(needed - set(folds.columns))
    if missing:
        raise FerbenchError(f"{folds_path}: missing column {missing[0]!r}")
    for key in ("kind", "n_folds", "task"):
        if key not in meta:
            raise FerbenchError(f"{meta_path}: missing key {key!r}")
    if dataset is not None and meta.get("dataset") not in (None, dataset):
        raise FerbenchError(f"{meta_path}: folds of dataset {meta['dataset']!r}, not {dataset!r}")
    report = provenance.read_report(cache)  # the completion marker: a killed prepare leaves none
    images = open_images(cache, image_size)
    cache_content.check_faces(cache, image_size, report)  # pixels as prepare wrote them
    cache_row = folds["cache_row"].to_numpy(np.int64)
    if len(cache_row) and (cache_row.min() < 0 or cache_row.max() >= len(images)):
        raise FerbenchError(f"{folds_path}: cache_row out of range for {Path(cache) / f'faces_{image_size}.npy'} "
                            f"({len(images)} rows)")
    provenance.check_folds_source(cache, folds_path, meta, folds, len(images))
    mask = protocols.training_subject_mask(folds, meta, fold)  # fold range errors name the fold
    try:
        indices = protocols.fold_indices(folds, meta, fold)  # so do empty train/test sets
    except FerbenchError:
        if need_labels:
            raise
        indices = {name: np.zeros(0, dtype=np.int64) for name in ("train", "val", "test")}
    if not mask.any():
        raise FerbenchError(f"{folds_path}: fold {fold} leaves no rows to train on")
    va = np.stack([folds["valence"].to_numpy(np.float32, na_value=np.nan),
                   folds["arousal"].to_numpy(np.float32, na_value=np.nan)], axis=1)
    data = FoldData(images=images, folds=folds, meta=meta, fold=int(fold), indices=indices,
                    subject_mask=np.asarray(mask, bool), cache_row=cache_row,
                    label=folds["label"].to_numpy(np.int64), va=va,
                    landmarks=open_landmarks(cache, len(images)))
    if data.task == "classification" and data.num_classes < 2:
        raise FerbenchError(f"{meta_path}: classification folds need at least 2 classes")
    if data.task == "va":
        bad = ~np.isfinite(va[indices["train"]]).all(axis=1)
        if bad.any():
            raise FerbenchError(f"{folds_path}: {int(bad.sum())} training samples lack valence/arousal")
    return data


# -- batch gathering --------------------------------------------------------------------------
@dataclasses.dataclass
class HostBatch:
    """A batch gathered on the host: unique images (sorted rows) and how to expand them."""

    positions: np.ndarray      # int64 [B, k] folds positions
    images: torch.Tensor       # uint8 [U, C, S, S], U unique cache rows in ascending order
    inverse: torch.Tensor      # int64 [B * k] index into ``images``


def gather(data: FoldData, positions: np.ndarray, pin: bool = False) -> HostBatch:
    """Read the images of ``positions`` [B, k] with ONE sorted fancy index into the memmap
    (sequential reads; duplicates read once)."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.ndim == 1:
        positions = positions[:, None]
    rows = data.cache_row[positions.reshape(-1)]
    uniq, inverse = np.unique(rows, return_inverse=True)
    images = torch.from_numpy(np.ascontiguousarray(data.images[uniq]))
    if pin:
        images = images.pin_memory()
    return HostBatch(positions, images, torch.from_numpy(inverse.astype(np.int64)))


class Prefetcher:
    """Gathers the next batches in a background thread while the device trains on this one.

    numpy's fancy indexing and the pinned copy release the GIL, so this overlaps with compute.
    The order is fixed before the thread starts, so prefetching never changes the results.
    """

    def __init__(self, data: FoldData, batches: Iterable[np.ndarray], pin: bool = False,
                 depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(data, list(batches), pin),
                                        daemon=True, name="ferbench-prefetch")
        self._thread.start()

    def _work(self, data: FoldData, batches: list[np.ndarray], pin: bool) -> None:
        try:
            for positions in batches:
                if self._stop.is_set():
                    return
                self._put(gather(data, positions, pin))
        except BaseException as err:  # re-raised in the consumer
            self._put(err)
            return
        self._put(None)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[HostBatch]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
