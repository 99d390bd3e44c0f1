"""Seed 001 pretraining throughput with each strategy on and off, measured in one run.

Runs: simclr (two augmentations of a frame), +timeaug (the positive another frame of the clip),
+hardneg (a second anchor of the clip with its own positive: 2 pairs per sample), +faceswap
(p 0.8), +maskfn (frozen patch encoder, randomly initialised: weights do not change the cost),
all (TimeAug + HardNeg + FaceSwap + MaskFN). Each step is what `ferbench pretrain` does per
iteration: gather from the uint8 frames, copy to the device, FaceSwap, augment, forward,
loss, backward, optimiser step (the engine's Trainer.prepare and train_step).

Printed per run: pairs/s (anchor-positive pairs per second; the median of ``--repeats`` timed
blocks, runs interleaved so that a machine whose load changes affects all alike), the ratio to
simclr, and the share of the step spent in FaceSwap (landmark boxes, Procrustes warp, masked
paste) and MaskFN patch work (landmark boxes, patch crops, frozen encoder, most similar
negative), target <= 30%. Frames are random pixels with jittered 68-point landmarks, in clips.

    python benchmarks/bench_ssl.py --device cpu --image-size 32 --batch-size 64
    python benchmarks/bench_ssl.py --device cuda --backbone resnet18 --image-size 112 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from ferbench.train.trainer import Trainer, seed_everything
from ferbench.data.folds import FoldData, gather
from ferbench.methods import TaskInfo, get_method

RUNS: dict[str, dict[str, Any]] = {
    "simclr": {"class": "simclr"},
    "+timeaug": {"class": "ssl_fer"},
    "+hardneg": {"class": "ssl_fer", "hard_neg": True},
    "+faceswap": {"class": "ssl_fer", "face_swap": 0.8},
    "+maskfn": {"class": "ssl_fer", "mask_fn": True},
    "all": {"class": "ssl_fer", "hard_neg": True, "face_swap": 0.8, "mask_fn": True},
}
#: the wrapped methods whose time counts as patch work
PATCH_WORK = ("swap_positives", "part_descriptors", "region_boxes")


def template() -> np.ndarray:
    """68 iBUG points (crop fractions) of a schematic frontal face."""
    pts = np.zeros((68, 2))
    pts[0:17] = np.c_[np.linspace(0.15, 0.85, 17), 0.5 + 0.35 * np.sin(np.linspace(0, np.pi, 17))]
    pts[17:27] = np.c_[np.r_[np.linspace(0.25, 0.45, 5), np.linspace(0.55, 0.75, 5)], np.full(10, 0.30)]
    pts[27:36] = np.c_[np.full(9, 0.5), np.linspace(0.40, 0.60, 9)]
    pts[36:48] = np.c_[np.r_[np.linspace(0.28, 0.42, 6), np.linspace(0.58, 0.72, 6)], np.full(12, 0.38)]
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts[48:68] = np.c_[0.5 + 0.12 * np.cos(a), 0.75 + 0.04 * np.sin(a)]
    return pts


def clip_data(subjects: int, clips: int, frames: int, size: int, seed: int = 0) -> FoldData:
    """An in-memory fold of clips: every subject trains; landmarks jittered per frame."""
    rng = np.random.default_rng(seed)
    n = subjects * clips * frames
    subject = np.repeat(np.arange(subjects), clips * frames)
    sequence = np.repeat(np.arange(subjects * clips), frames)
    folds = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)], "cache_row": np.arange(n, dtype=np.int64),
        "subject": [f"S{s:03d}" for s in subject], "sequence": [f"Q{q:04d}" for q in sequence],
        "frame": pd.array(np.tile(np.arange(frames), subjects * clips), "Int64"),
        "emotion": None, "label": np.full(n, -1, np.int64), "fold": np.zeros(n, np.int64),
    })
    marks = template()[None] + rng.normal(0, 0.01, (n, 68, 2)) + rng.normal(0, 0.03, (n, 1, 2))
    return FoldData(images=rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), folds=folds,
                    meta={"task": "classification", "classes": ["a", "b"]}, fold=1,
                    indices={k: np.zeros(0, np.int64) for k in ("train", "val", "test")},
                    subject_mask=np.ones(n, bool), cache_row=np.arange(n, dtype=np.int64),
                    label=folds["label"].to_numpy(), va=np.full((n, 2), np.nan, np.float32),
                    landmarks=marks.astype(np.float32))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Run:
    """One method's trainer and a timer around its patch work."""

    def __init__(self, name: str, block: dict[str, Any], args: argparse.Namespace, data: FoldData) -> None:
        settings = {
            "dataset": "bench", "method_name": name, "stage": "pretrain", "metrics": {},
            "train": {"backbone": args.backbone, "image_size": args.image_size, "epochs": 1000,
                      "batch_size": args.batch_size, "optimizer": "adam", "lr": 3e-4, "weight_decay": 0.0,
                      "checkpoint_every": 10**9, "eval_batch_size": args.batch_size},
            "method": {**block, "time_offsets": [1, 3], "hard_neg_interval": 6, "mask_fn_encoder": "random"}
            if block["class"] == "ssl_fer" else dict(block),
        }
        seed_everything(0)
        self.method = get_method(block["class"])(settings, TaskInfo("classification", ("a", "b"), args.image_size))
        self.method.setup(data, "pretrain")
        self.trainer = Trainer(self.method, data, settings, args.device_obj, 0, out=None)
        self.device = args.device_obj
        self.batches = self.method.epoch_batches(self.trainer.gen_data, 0)
        self.patch_s = 0.0
        self.pairs_per_sample = self.method.pretrain_views // 2 if block["class"] == "simclr" else \
            (2 if block.get("hard_neg") else 1)
        for attr in PATCH_WORK:
            if hasattr(self.method, attr):
                setattr(self.method, attr, self.timed(getattr(self.method, attr)))

    def timed(self, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            sync(self.device)
            self.patch_s += time.perf_counter() - t0
            return out
        return wrapper

    def block(self, steps: int, start: int) -> tuple[float, float]:
        """(pairs/s, patch-work share) over ``steps`` steps."""
        self.method.train()
        self.patch_s = 0.0
        sync(self.device)
        t0 = time.perf_counter()
        pairs = 0
        for i in range(start, start + steps):
            positions = self.batches[i % len(self.batches)]
            batch = self.trainer.prepare(gather(self.trainer.data, positions), train=True)
            self.trainer.train_step(batch)
            pairs += len(positions) * self.pairs_per_sample
        sync(self.device)
        seconds = time.perf_counter() - t0
        return pairs / seconds, self.patch_s / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="smallcnn")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="steps per timed block")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.device_obj = torch.device(args.device)
    data = clip_data(args.subjects, clips=4, frames=24, size=args.image_size)
    runs = {name: Run(name, block, args, data) for name, block in RUNS.items()}
    for run in runs.values():
        run.block(args.warmup, 0)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for r in range(args.repeats):   # interleaved: load changes hit every run alike
        for name, run in runs.items():
            results[name].append(run.block(args.steps, args.warmup + r * args.steps))
    base = statistics.median(v for v, _ in results["simclr"])
    print(f"ssl pretraining on {args.device}: {args.backbone} {args.image_size}px, batch {args.batch_size}, "
          f"{args.threads} thread(s); medians of {args.repeats} blocks of {args.steps} steps")
    print(f"{'run':<11} {'pairs/s':>9} {'x simclr':>9} {'patch work':>11}")
    table = {}
    for name, values in results.items():
        rate = statistics.median(v for v, _ in values)
        share = statistics.median(s for _, s in values)
        table[name] = {"pairs_per_s": round(rate, 1), "ratio": round(rate / base, 3), "patch_share": round(share, 3)}
        print(f"{name:<11} {rate:>9.1f} {rate / base:>9.2f} {100 * share:>10.1f}%")
    worst = max(v["patch_share"] for v in table.values())
    print(f"largest FaceSwap/MaskFN share of the step: {100 * worst:.1f}% (target <= 30%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "device_obj"}, "runs": table}, f, indent=1)


if __name__ == "__main__":
    main()
