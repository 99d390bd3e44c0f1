"""Frame sampling in clips for seed 001 (Shu et al.): TimeAug positives and HardNeg anchors, pure
functions of a :class:`~ferbench.data.folds.SequenceTable` (the training subjects' clips, frames in
time order), drawing with a ``torch.Generator``.

* TimeAug: the positive of an anchor frame is another frame of the same clip ``d`` frames away,
  ``d`` in [``min_offset``, ``max_offset``] (authors' code: 2..6), nearer offsets likelier
  (weights max - d + 1: the code's linearly decreasing distribution), direction random when both
  fit. Offsets that fit in neither direction for this anchor are left out and the weights of the
  others renormalised (the code instead skipped the anchor when the drawn offset did not fit).
* HardNeg: a second anchor from the same clip at least ``interval`` frames away (code: 12),
  uniform over those frames, with its own TimeAug positive; the two anchors are of one
  identity, so that identity is a negative of itself.

:class:`ClipSampler` rows are int64 [n, 2] (anchor, positive) or, with HardNeg, [n, 4] (anchor,
positive, hard negative, its positive); without TimeAug a positive is its anchor (two
augmentations of one frame, SimCLR). Frames that cannot serve (clips shorter than the offset
or the interval) are counted and skipped, reported by ``usability.line()``; only when no frame
is usable is it an error.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ferbench.data.folds import SequenceTable
from ferbench.errors import FerbenchError
from ferbench.methods.triplet_sampling import uniform_index


def offset_weights(min_offset: int, max_offset: int) -> np.ndarray:
    """Probabilities of the offsets min..max, linearly decreasing (nearer likelier)."""
    if not 1 <= min_offset <= max_offset:
        raise ValueError(f"offsets: need 1 <= min <= max, got {min_offset}..{max_offset}")
    w = np.arange(max_offset - min_offset + 1, 0, -1, dtype=np.float64)
    return w / w.sum()


def frame_ranks(table: SequenceTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every kept frame's (position, rank in its clip, clip length), in table order."""
    seq = np.repeat(np.arange(table.n_sequences), table.length)
    return table.order, table.rank_of[table.order], table.length[seq]


def time_offset_feasible(rank: np.ndarray, length: np.ndarray, min_offset: int, max_offset: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """bool [n, D] each: offset ``min_offset + j`` fits forward / backward from each frame."""
    d = np.arange(min_offset, max_offset + 1)[None, :]
    rank, length = np.asarray(rank)[:, None], np.asarray(length)[:, None]
    return rank + d <= length - 1, rank - d >= 0


def time_positive_ranks(rank: np.ndarray, length: np.ndarray, min_offset: int, max_offset: int,
                        generator: torch.Generator) -> np.ndarray:
    """TimeAug: the rank of each anchor's positive (each anchor needs a feasible offset)."""
    fwd, bwd = time_offset_feasible(rank, length, min_offset, max_offset)
    w = offset_weights(min_offset, max_offset)[None, :] * (fwd | bwd)
    total = w.sum(axis=1)
    if (total <= 0).any():
        raise ValueError("time_positive_ranks: an anchor without a feasible offset")
    cdf = np.cumsum(w / total[:, None], axis=1)
    u = torch.rand(len(rank), 2, dtype=torch.float64, generator=generator).numpy()
    j = np.minimum((u[:, :1] > cdf).sum(axis=1), w.shape[1] - 1)
    rows = np.arange(len(rank))
    f, b = fwd[rows, j], bwd[rows, j]
    forward = np.where(f & b, u[:, 1] < 0.5, f)
    d = min_offset + j
    return np.where(forward, rank + d, rank - d).astype(np.int64)


def far_frame_counts(rank: np.ndarray, length: np.ndarray, interval: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames at least ``interval`` away: how many before and after each frame."""
    before = np.maximum(np.asarray(rank) - interval + 1, 0)
    after = np.maximum(np.asarray(length) - np.asarray(rank) - interval, 0)
    return before, after


def hard_negative_ranks(rank: np.ndarray, length: np.ndarray, interval: int,
                        generator: torch.Generator) -> np.ndarray:
    """HardNeg: the rank of a frame of the same clip at least ``interval`` away, uniform over them."""
    before, after = far_frame_counts(rank, length, interval)
    k = uniform_index(before + after, generator)   # raises nothing; counts must be >= 1
    return np.where(k < before, k, rank + interval + (k - before)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class ClipUsability:
    clips: int
    usable_clips: int
    frames: int
    usable_frames: int
    reasons: dict[str, int]   # why clips give no anchor -> count

    def line(self) -> str:
        why = ", ".join(f"{n} {r}" for r, n in self.reasons.items() if n)
        return (f"ssl clips: {self.usable_clips} of {self.clips} clips usable{f' ({why})' if why else ''}; "
                f"{self.usable_frames} of {self.frames} frames can anchor")

    @property
    def complete(self) -> bool:
        return self.usable_clips == self.clips


class ClipSampler:
    """Anchors with their TimeAug positives and HardNeg pairs from one SequenceTable."""

    def __init__(self, table: SequenceTable, *, time_aug: bool = True, hard_neg: bool = False,
                 min_offset: int = 2, max_offset: int = 6, interval: int = 12,
                 where: str = "ssl pretraining") -> None:
        offset_weights(min_offset, max_offset)  # validates
        if interval < 1 or (time_aug and hard_neg and interval < min_offset):
            # interval >= min_offset: the hard negative's own positive always fits (toward the anchor)
            raise ValueError(f"interval must be >= 1 and, with TimeAug, >= the offset {min_offset}; "
                             f"got {interval}")
        if not isinstance(time_aug, bool) or not isinstance(hard_neg, bool):
            # never bool() a setting: bool("false") is True
            raise ValueError(f"time_aug and hard_neg must be booleans, got {time_aug!r} and {hard_neg!r}")
        self.table = table
        self.time_aug, self.hard_neg = time_aug, hard_neg
        self.min_offset, self.max_offset, self.interval = int(min_offset), int(max_offset), int(interval)
        pos, rank, length = frame_ranks(table)
        ok = np.ones(len(pos), dtype=bool)
        reasons: dict[str, int] = {}
        if self.time_aug:
            fwd, bwd = time_offset_feasible(rank, length, self.min_offset, self.max_offset)
            ok &= (fwd | bwd).any(axis=1)
        if self.hard_neg:
            before, after = far_frame_counts(rank, length, self.interval)
            ok &= (before + after) > 0
        usable_clip = np.zeros(table.n_sequences, dtype=bool)
        seq = table.seq_of[pos]
        usable_clip[seq[ok]] = True
        short_t = (table.length <= self.min_offset) if self.time_aug else np.zeros(table.n_sequences, bool)
        if self.time_aug:
            reasons[f"shorter than {self.min_offset + 1} frames (TimeAug offset {self.min_offset})"] = \
                int(short_t.sum())
        if self.hard_neg:
            reasons[f"shorter than {self.interval + 1} frames (HardNeg interval {self.interval})"] = \
                int(((table.length <= self.interval) & ~short_t).sum())
        self.anchors = pos[ok]
        self.usability = ClipUsability(table.n_sequences, int(usable_clip.sum()), len(pos),
                                       int(ok.sum()), reasons)
        self._usable_clips = np.flatnonzero(usable_clip)
        if not len(self.anchors):
            raise FerbenchError(f"{where}: no usable clip frame: {self.usability.line()}")

    @property
    def views(self) -> int:
        return 4 if self.hard_neg else 2

    def positions_used(self) -> np.ndarray:
        """Every position a draw can return (frames of the usable clips, sorted)."""
        t = self.table
        return np.sort(np.concatenate([t.order[t.start[s]:t.start[s] + t.length[s]] for s in self._usable_clips]))

    def _positive(self, seq: np.ndarray, rank: np.ndarray, generator: torch.Generator) -> np.ndarray:
        if not self.time_aug:
            return rank
        return time_positive_ranks(rank, self.table.length[seq], self.min_offset, self.max_offset, generator)

    def draw(self, anchors: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """int64 [n, views] positions for the given anchor positions (from ``self.anchors``)."""
        t = self.table
        anchors = np.asarray(anchors, dtype=np.int64)
        seq, rank = t.seq_of[anchors], t.rank_of[anchors]
        if (seq < 0).any():
            raise ValueError("ClipSampler.draw: an anchor outside the clip table")
        cols = [rank, self._positive(seq, rank, generator)]
        if self.hard_neg:
            neg = hard_negative_ranks(rank, t.length[seq], self.interval, generator)
            cols += [neg, self._positive(seq, neg, generator)]
        return np.stack([t.position(seq, c) for c in cols], axis=1).astype(np.int64)
