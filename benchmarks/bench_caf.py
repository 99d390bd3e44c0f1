"""CAF training throughput relative to the supervised baseline on the same backbone, one run.

Both train through the engine (``Trainer.fit``: batch order, gathering, augmentation, the
method's step, logging) on the same fake valence/arousal cache, timed alternately
``--repeats`` times over ``--steps`` steps after ``--warmup``; the medians are compared, so a
load change during the run affects both alike. CAF's step = one encoder forward, the critic's
step on the detached map, the critic's forward for the encoder's adversarial term, and one
backward/step of encoder + head (plus the per-batch grouping on the host and one device sync for
the finiteness check). The time inside the critic's step and the adversarial forward is also
reported (device-synchronised around each, so on CUDA it slightly inflates CAF's total).

    python benchmarks/bench_caf.py --device cpu --backbone smallcnn --image-size 48
    python benchmarks/bench_caf.py --device cuda --backbone resnet18 --image-size 112 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_engine import sync, write_fake_cache   # this folder is on sys.path when run as a script

from ferbench.train.trainer import Trainer, resolve_device, seed_everything, set_threads
from ferbench.data.folds import load_fold
from ferbench.methods import TaskInfo, get_method


def to_va(cache: Path, folds: Path, seed: int = 0) -> None:
    """Turn bench_engine's classification folds into valence/arousal ones (uniform labels);
    add the sample table and completion marker ``prepare`` writes, if it lacks them."""
    table = pd.read_parquet(folds)
    rng = np.random.default_rng(seed)
    table["valence"], table["arousal"] = rng.uniform(-1, 1, (2, len(table)))
    table["label"], table["target"] = np.int64(-1), None
    table.to_parquet(folds, index=False)
    meta = json.loads(folds.with_suffix(".json").read_text())
    meta.update(task="va", classes=[])
    folds.with_suffix(".json").write_text(json.dumps(meta))
    if not (cache / "report.json").exists():   # what `prepare` writes beside the faces
        table[["sample_id", "cache_row"]].to_parquet(cache / "samples.parquet", index=False)
        (cache / "report.json").write_text(json.dumps({"n": len(table)}))


def trainer_for(method: str, args: argparse.Namespace, cache: Path, folds: Path, epochs: int) -> Trainer:
    settings = {
        "dataset": "bench", "method_name": method, "stage": "train", "metrics": {}, "method": {},
        "train": {"backbone": args.backbone, "image_size": args.image_size, "epochs": epochs,
                  "batch_size": args.batch_size, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
                  "checkpoint_every": 10**9, "eval_batch_size": args.batch_size},
    }
    data = load_fold(cache, folds, 1, args.image_size)
    seed_everything(0)
    m = get_method(method)(settings, TaskInfo("va", (), args.image_size))
    m.setup(data, "train")
    return Trainer(m, data, settings, args.device_obj, 0, out=None)


def timed(fn, totals: dict[str, float], key: str, device: torch.device):
    """``fn`` wrapped to add its synchronised wall time to ``totals[key]``."""
    def wrapper(*a, **k):
        sync(device)
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            sync(device)
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - t0
    return wrapper


def seconds_per_step(method: str, args: argparse.Namespace, cache: Path, folds: Path,
                     parts: dict[str, float] | None = None) -> float:
    """Mean wall seconds of one engine step over ``--steps`` steps after ``--warmup``;
    ``parts`` (CAF) collects the seconds spent in its critic step and adversarial forward."""
    per_epoch = trainer_for(method, args, cache, folds, 1).steps_per_epoch
    trainer = trainer_for(method, args, cache, folds, -(-(args.warmup + args.steps) // per_epoch))
    counting: dict[str, float] = {}
    if parts is not None:
        m = trainer.method
        m.critic_pass = timed(m.critic_pass, counting, "critic step", args.device_obj)
        m.adversarial_loss = timed(m.adversarial_loss, counting, "adversarial forward", args.device_obj)
    marks: dict[int, float] = {}

    def mark(step: int) -> None:
        if step == args.warmup:
            counting.clear()
        if step in (args.warmup, args.warmup + args.steps):
            sync(args.device_obj)
            marks[step] = time.perf_counter()
        if step == args.warmup + args.steps:
            raise StopIteration

    trainer.step_callbacks.append(mark)
    try:
        trainer.fit(resume=False)
    except StopIteration:
        pass
    if parts is not None:
        for key, value in counting.items():
            parts.setdefault(key, []).append(value / args.steps)
    return (marks[args.warmup + args.steps] - marks[args.warmup]) / args.steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="smallcnn")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-images", type=int, default=2048, help="images in the fake cache")
    args = p.parse_args()
    args.device_obj = resolve_device(args.device)
    set_threads(args.threads)
    if args.device_obj.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sup, caf, caf_timed = [], [], []
    parts: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache, folds = write_fake_cache(Path(tmp), args.cache_images, args.image_size)
        to_va(cache, folds)
        for _ in range(args.repeats):
            sup.append(seconds_per_step("supervised", args, cache, folds))
            caf.append(seconds_per_step("caf", args, cache, folds))
            caf_timed.append(seconds_per_step("caf", args, cache, folds, parts))
    s, c = statistics.median(sup), statistics.median(caf)
    name = torch.cuda.get_device_name(args.device_obj) if args.device_obj.type == "cuda" else "cpu"
    print(f"device {args.device_obj} ({name}), {args.threads} thread(s); {args.backbone} {args.image_size}px, "
          f"batch {args.batch_size}, {args.steps} timed steps x {args.repeats}")
    for label, runs in (("supervised", sup), ("caf", caf)):
        med = statistics.median(runs)
        print(f"{label:11s} {args.batch_size / med:10.1f} images/s  {1e3 * med:8.2f} ms/step   "
              f"(runs: {', '.join(f'{1e3 * v:.2f}' for v in runs)} ms)")
    print(f"ratio caf/supervised throughput: {s / c:.3f}   (extra per step: {1e3 * (c - s):.2f} ms)")
    for key, values in parts.items():
        print(f"  of which {key:20s} {1e3 * statistics.median(values):8.2f} ms/step (synchronised)")
    rest = (c - s) - sum(statistics.median(v) for v in parts.values())
    print(f"  the rest (grouping, host sync, critic backward into the encoder; a difference of "
          f"separate runs, so noise when small or negative) {1e3 * rest:.2f} ms/step")


if __name__ == "__main__":
    main()
