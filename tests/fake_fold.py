"""Tiny fake face caches and folds files in the formats the engine reads (for tests only).

Each subject has one sequence per class; frames go from plain noise (the neutral onset) to a
bright horizontal bar whose height in the image encodes the class (classification) or, with
its brightness, valence/arousal (va). The apex frame is the protocol sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

CLASSES = ["anger", "happiness", "sadness", "surprise"]
#: class -> vertical position of the bright bar (horizontally centred: flips keep the class)
BANDS = [0.06, 0.3, 0.54, 0.78]


def make_fold_files(root: Path, *, size: int = 32, subjects: int = 6, frames: int = 3,
                    task: str = "classification", kind: str = "kfold", n_folds: int = 3,
                    channels: int = 3, seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/cache`` (faces_{size}.npy, samples.parquet, report.json) and
    ``root/folds.parquet`` + ``root/folds.json``; return (cache dir, folds path)."""
    rng = np.random.default_rng(seed)
    rows, images = [], []
    for s in range(subjects):
        for c, cy in enumerate(BANDS):
            seq = f"S{s:02d}_{c}"
            v = 0.8 if c in (1, 3) else -0.6
            a = 0.7 if c in (0, 3) else -0.5
            for f in range(frames):
                level = f / max(frames - 1, 1)
                img = rng.integers(60, 110, size=(channels, size, size)).astype(np.float32)
                y0, x0, h, w = int(cy * size), int(0.2 * size), int(0.16 * size), int(0.6 * size)
                img[:, y0:y0 + h, x0:x0 + w] += 140 * level
                images.append(np.clip(img, 0, 255).astype(np.uint8))
                apex = f == frames - 1
                split = None
                if kind == "official":
                    split = "train" if s < subjects - 2 else ("val" if s == subjects - 2 else "test")
                rows.append({
                    "sample_id": f"{seq}_{f:03d}", "cache_row": len(rows), "subject": f"S{s:02d}",
                    "sequence": seq, "frame": f, "emotion": CLASSES[c],
                    "valence": v * level if task == "va" else np.nan,
                    "arousal": a * level if task == "va" else np.nan,
                    "split": split, "apex": apex,
                })
    table = pd.DataFrame(rows)
    cache = root / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / f"faces_{size}.npy", np.stack(images))
    table.to_parquet(cache / "samples.parquet", index=False)
    (cache / "report.json").write_text(json.dumps({"n": len(table)}))

    folds = table.copy()
    folds["frame"] = folds["frame"].astype("Int64")
    sample = folds["apex"].to_numpy(bool) if task == "classification" else np.ones(len(folds), bool)
    folds["protocol_sample"] = sample
    folds["target"] = [e if p and task == "classification" else None for e, p in zip(folds["emotion"], sample)]
    folds["label"] = np.array([CLASSES.index(e) if p and task == "classification" else -1
                               for e, p in zip(folds["emotion"], sample)], dtype=np.int64)
    subj_idx = folds["subject"].str[1:].astype(int).to_numpy()
    folds["fold"] = (subj_idx % n_folds).astype(np.int64) if kind != "official" else np.int64(-1)
    meta = {"dataset": "fake", "kind": kind, "n_folds": n_folds if kind != "official" else 1,
            "classes": CLASSES if task == "classification" else [], "task": task,
            "protocol": {"kind": kind}, "counts": {}}
    folds_path = root / "folds.parquet"
    folds.to_parquet(folds_path, index=False)
    (root / "folds.json").write_text(json.dumps(meta))
    return cache, folds_path


def write_config(root: Path, *, size: int = 32, epochs: int = 2, batch_size: int = 8,
                 backbone: str = "smallcnn", checkpoint_every: int = 5, lr: float = 0.002,
                 methods: dict | None = None, legacy: bool = False, task: str = "classification") -> Path:
    """A params.yaml with one budget and the given method blocks."""
    config = {
        "budget": "tiny",
        "run": {"datasets": ["fake"], "methods": list((methods or {"supervised": {}})), "seeds": [0]},
        "datasets": {"fake": {"root": str(root), "protocol": {"kind": "kfold", "folds": 3}}},
        "budgets": {"tiny": {"folds": None, "backbone": backbone, "image_size": size, "epochs": epochs,
                             "batch_size": batch_size, "optimizer": "adam", "lr": lr,
                             "weight_decay": 0.0, "checkpoint_every": checkpoint_every,
                             "eval_batch_size": 16}},
        "methods": methods or {"supervised": {"finetune": "full"}},
        "metrics": {"legacy": legacy},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
