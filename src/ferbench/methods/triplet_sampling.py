"""Triplet samplers over expression sequences (seed 000, Garg et al.), pure functions of a
:class:`~ferbench.data.folds.SequenceTable` (the training subjects' sequences, cut at their apex so
that MMI's offset phase never reads as "more intense"), drawing with a ``torch.Generator``.
Frame number stands for intensity: CK+/Oulu/MMI/synthetic sequences go from a neutral onset to
the apex.

* :class:`Method1Sampler`: anchor and positive are two distinct frames of one labelled sequence,
  the anchor the earlier; the negative is a frame of a sequence of the SAME subject with ANOTHER
  emotion (uniform over those sequences, then over their frames).
* :class:`Method2Sampler`: three distinct frames of one sequence (labelled or not), sorted:
  anchor the earliest, positive the middle, negative the latest (most intense).

Each draw picks anchor sequences in shuffled passes over the usable ones (every sequence is
drawn equally often, +-1), optionally ``group_size`` triplets per pick, consecutive, so that a
batch holds several valid negatives for each anchor (what in-batch semi-hard mining needs).
Outputs are int64 [n, 3] folds positions (anchor, positive, negative).

Sequences that cannot give a triplet are counted, not silently dropped: ``usability.line()``
says how many subjects and sequences are usable and why the others are not; a sampler with
nothing usable raises FerbenchError with that line.
"""

from __future__ import annotations

import abc

import dataclasses
import math
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ferbench.data.folds import SequenceTable
from ferbench.errors import FerbenchError


# -- drawing helpers (torch.Generator, CPU; vectorised) ----------------------------------------
def uniform_index(counts: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """One uniform draw from range(c) per entry of ``counts`` (all >= 1)."""
    u = torch.rand(len(counts), dtype=torch.float64, generator=generator).numpy()
    counts = np.asarray(counts, dtype=np.int64)
    return np.minimum((u * counts).astype(np.int64), counts - 1)


def sorted_distinct(lengths: np.ndarray, k: int, generator: torch.Generator) -> np.ndarray:
    """k distinct sorted ranks from range(L) per entry of ``lengths`` (uniform over the
    k-subsets): draw without replacement, each new draw skipping the ranks already taken."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and lengths.min() < k:
        raise ValueError(f"sorted_distinct: a length below {k}")
    u = torch.rand(len(lengths), k, dtype=torch.float64, generator=generator).numpy()
    taken = np.zeros((len(lengths), 0), dtype=np.int64)
    for j in range(k):
        r = np.minimum((u[:, j] * (lengths - j)).astype(np.int64), lengths - j - 1)
        for c in range(j):  # ``taken`` is sorted: skipping in ascending order lands on the r-th free rank
            r = r + (r >= taken[:, c])
        taken = np.sort(np.concatenate([taken, r[:, None]], axis=1), axis=1)
    return taken


def balanced_choice(items: np.ndarray, n: int, generator: torch.Generator, group_size: int = 1) -> np.ndarray:
    """``n`` entries of ``items``: shuffled passes over them (each drawn equally often, +-1),
    every pick repeated ``group_size`` times consecutively."""
    groups = math.ceil(n / group_size)
    passes = math.ceil(groups / len(items))
    perm = torch.rand(passes, len(items), generator=generator).argsort(dim=1).flatten()[:groups].numpy()
    return np.repeat(items[perm], group_size)[:n]


# -- usability report --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Usability:
    sampler: str
    subjects: int
    usable_subjects: int
    subject_reasons: dict[str, int]    # why subjects give no triplet -> count
    sequences: int
    usable_sequences: int
    sequence_reasons: dict[str, int]   # why sequences give no anchor -> count

    @staticmethod
    def _why(reasons: dict[str, int]) -> str:
        parts = [f"{n} {why}" for why, n in reasons.items() if n]
        return f" ({', '.join(parts)})" if parts else ""

    def line(self) -> str:
        return (f"{self.sampler}: {self.usable_subjects} of {self.subjects} subjects usable"
                f"{self._why(self.subject_reasons)}; {self.usable_sequences} of {self.sequences} "
                f"sequences usable{self._why(self.sequence_reasons)}")

    @property
    def complete(self) -> bool:
        return self.usable_sequences == self.sequences and self.usable_subjects == self.subjects


# -- samplers ----------------------------------------------------------------------------------
class Sampler(abc.ABC):
    name: ClassVar[str] = ""
    requirement: ClassVar[str] = ""
    table: SequenceTable
    anchors: np.ndarray      # usable anchor sequences
    usability: Usability

    def _check(self, where: str) -> None:
        if not len(self.anchors):
            raise FerbenchError(f"{where}: no usable triplet ({self.requirement}): {self.usability.line()}")

    @abc.abstractmethod
    def positions_used(self) -> np.ndarray:
        """Every folds position a draw can return (sorted)."""

    @abc.abstractmethod
    def draw(self, n: int, generator: torch.Generator, group_size: int = 1) -> np.ndarray:
        """``n`` triplets as int64 [n, 3] folds positions (anchor, positive, negative)."""

    def _subject_counts(self, usable: np.ndarray) -> tuple[int, int, np.ndarray]:
        t = self.table
        subjects = np.unique(t.subject)
        ok = np.zeros(t.subject.max(initial=-1) + 1, dtype=bool)
        ok[t.subject[usable]] = True
        return len(subjects), int(ok[subjects].sum()), subjects[~ok[subjects]]


class Method1Sampler(Sampler):
    """Anchor < positive from one labelled sequence; negative from the same subject's sequence of
    another emotion."""

    name = "triplet_m1"
    requirement = ("Method 1 needs labelled sequences of at least 2 frames from subjects with "
                   "sequences of two emotions or more")

    def __init__(self, table: SequenceTable, where: str = "triplet_m1") -> None:
        self.table = t = table
        labelled = np.flatnonzero(t.emotion >= 0)
        frame = pd.DataFrame({"s": labelled, "subj": t.subject[labelled], "emo": t.emotion[labelled]})
        pairs = frame.merge(frame, on="subj", suffixes=("", "_n"))
        pairs = pairs[pairs["emo"] != pairs["emo_n"]]
        has_negative = np.zeros(t.n_sequences, dtype=bool)
        has_negative[pairs["s"].to_numpy()] = True
        long_enough = t.length >= 2
        usable = (t.emotion >= 0) & long_enough & has_negative
        self.anchors = np.flatnonzero(usable)
        pairs = pairs[usable[pairs["s"].to_numpy()]].sort_values(["s", "s_n"])
        self.neg_seq = pairs["s_n"].to_numpy(np.int64)
        self.neg_count = np.bincount(pairs["s"].to_numpy(np.int64), minlength=t.n_sequences)
        self.neg_start = np.r_[0, np.cumsum(self.neg_count)[:-1]].astype(np.int64)

        n_subj, n_ok, bad_subjects = self._subject_counts(usable)
        lab = t.emotion >= 0
        n_emotions = pd.Series(t.emotion[lab]).groupby(t.subject[lab]).nunique()
        per_subject = n_emotions.reindex(bad_subjects, fill_value=0).to_numpy()
        self.usability = Usability(
            self.name, n_subj, n_ok,
            {"have no labelled sequence": int((per_subject == 0).sum()),
             "have a single emotion": int((per_subject == 1).sum()),
             "have only sequences shorter than 2 frames": int((per_subject >= 2).sum())},
            t.n_sequences, len(self.anchors),
            {"unlabelled": int((~lab).sum()),
             "shorter than 2 frames": int((lab & ~long_enough).sum()),
             "of a subject with a single emotion": int((lab & long_enough & ~has_negative).sum())})
        self._check(where)

    def positions_used(self) -> np.ndarray:
        t = self.table
        seqs = np.unique(np.r_[self.anchors, self.neg_seq])
        return np.sort(np.concatenate([t.order[t.start[s]:t.start[s] + t.length[s]] for s in seqs]))

    def draw(self, n: int, generator: torch.Generator, group_size: int = 1) -> np.ndarray:
        t = self.table
        seq = balanced_choice(self.anchors, n, generator, group_size)
        ap = sorted_distinct(t.length[seq], 2, generator)
        neg = self.neg_seq[self.neg_start[seq] + uniform_index(self.neg_count[seq], generator)]
        frame = uniform_index(t.length[neg], generator)
        return np.stack([t.position(seq, ap[:, 0]), t.position(seq, ap[:, 1]),
                         t.position(neg, frame)], axis=1).astype(np.int64)


class Method2Sampler(Sampler):
    """Three sorted frames of one sequence: anchor earliest, positive middle, negative latest."""

    name = "triplet_m2"
    requirement = "Method 2 needs sequences of at least 3 frames"

    def __init__(self, table: SequenceTable, where: str = "triplet_m2") -> None:
        self.table = t = table
        usable = t.length >= 3
        self.anchors = np.flatnonzero(usable)
        n_subj, n_ok, bad = self._subject_counts(usable)
        self.usability = Usability(
            self.name, n_subj, n_ok, {"have only sequences shorter than 3 frames": len(bad)},
            t.n_sequences, len(self.anchors), {"shorter than 3 frames": int((~usable).sum())})
        self._check(where)

    def positions_used(self) -> np.ndarray:
        t = self.table
        return np.sort(np.concatenate([t.order[t.start[s]:t.start[s] + t.length[s]] for s in self.anchors]))

    def draw(self, n: int, generator: torch.Generator, group_size: int = 1) -> np.ndarray:
        t = self.table
        seq = balanced_choice(self.anchors, n, generator, group_size)
        ranks = sorted_distinct(t.length[seq], 3, generator)
        return np.stack([t.position(seq, ranks[:, j]) for j in range(3)], axis=1).astype(np.int64)


SAMPLERS: dict[str, type[Sampler]] = {"m1": Method1Sampler, "m2": Method2Sampler}


def valid_negatives(table: SequenceTable, positions: np.ndarray) -> np.ndarray:
    """bool [B, B]: may triplet j's negative serve as triplet i's? By the rule of triplet i's
    kind, read from its positions (stateless, so a resumed epoch needs nothing remembered):

    * Method 2 (negative from the anchor's own sequence): candidate from that sequence, later
      than i's positive;
    * Method 1: candidate from the anchor's subject, of another (known) emotion.

    The diagonal (each triplet's own negative) is always valid.
    """
    positions = np.asarray(positions, dtype=np.int64)
    a, p, n = positions[:, 0], positions[:, 1], positions[:, 2]
    sa, sn = table.seq_of[a], table.seq_of[n]
    if (sa < 0).any() or (sn < 0).any():
        raise ValueError("valid_negatives: a position outside the sequence table")
    same_seq = sn[None, :] == sa[:, None]
    later = table.rank_of[n][None, :] > table.rank_of[p][:, None]
    ea, en = table.emotion[sa], table.emotion[sn]
    m1_ok = ((table.subject[sn][None, :] == table.subject[sa][:, None])
             & (en[None, :] != ea[:, None]) & (en[None, :] >= 0))
    kind_m2 = (sn == sa)[:, None]
    return np.where(kind_m2, same_seq & later, m1_ok)
