"""Hand-built sample tables and a table-backed fake reader for the prepare/folds/inspect tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferbench.datasets.base import Reader, ReadResult, make_table, open_image

CKPLUS_FOLDS = [33, 39, 40, 35, 30, 37, 29, 29, 33, 22]
CKPLUS_CLASSES = {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25,
                  "happiness": 69, "sadness": 28, "surprise": 83}


def ckplus_like_rows(frames: int = 5) -> list[dict]:
    """123 subjects with non-contiguous IDs (S005, S010, ...), 118 of them labelled.

    Labelled-sequence counts per subject are arranged so that the sorted-ID rank-mod-10 rule
    yields CKPLUS_FOLDS, and emotions so that the class totals are CKPLUS_CLASSES with no fear
    in the last fold (as in the real CK+).
    """
    rng = np.random.default_rng(7)
    numbers = sorted(int(n) for n in rng.choice(np.arange(5, 1000), size=123, replace=False))
    ids = [f"S{n:03d}" for n in numbers]
    unlabelled = {ids[i] for i in (2, 31, 64, 90, 122)}
    labelled = [s for s in ids if s not in unlabelled]
    assert len(labelled) == 118
    per_fold = {f: labelled[f::10] for f in range(10)}
    seq_counts: dict[str, int] = {}
    for f, subjects in per_fold.items():
        q, r = divmod(CKPLUS_FOLDS[f], len(subjects))
        for i, s in enumerate(subjects):
            seq_counts[s] = q + (1 if i < r else 0)
    # emotions in fold order, fear first: the 25 fear sequences all land in fold 0
    emotions = [e for e in ("fear", "anger", "contempt", "disgust", "happiness", "sadness", "surprise")
                for _ in range(CKPLUS_CLASSES[e])]
    order = [s for f in range(10) for s in per_fold[f]]
    seq_emotion: dict[tuple[str, int], str] = {}
    k = 0
    for s in order:
        for q in range(seq_counts[s]):
            seq_emotion[(s, q + 1)] = emotions[k]
            k += 1
    assert k == 327
    rows = []
    for s in ids:
        n_lab = seq_counts.get(s, 0)
        for q in range(1, n_lab + 2):  # every subject also has one unlabelled sequence
            emotion = seq_emotion.get((s, q))
            seq = f"{s}_{q:03d}"
            apex_frame = frames if (q % 4) else frames - 1  # some apexes before the last frame
            for fr in range(1, frames + 1):
                rows.append({
                    "sample_id": f"{seq}_{fr:08d}", "subject": s, "sequence": seq, "frame": fr,
                    "path": f"cohn-kanade-images/{s}/{q:03d}/{seq}_{fr:08d}.png",
                    "emotion": emotion, "apex": emotion is not None and fr == apex_frame,
                })
    return rows


def ckplus_like_table(frames: int = 5):
    return make_table(ckplus_like_rows(frames), "ckplus")


class TableReader(Reader):
    """Returns a fixed ReadResult; decodes ``root/path`` with PIL (the base iter_images)."""

    kind = "sequence"
    task = "classification"

    def __init__(self, name: str, result: ReadResult) -> None:
        self.name = name
        self.result = result

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        return self.result

    def load_image(self, root: Path, row) -> np.ndarray:
        return open_image(Path(root) / row["path"])
