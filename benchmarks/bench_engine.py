"""Engine throughput vs the bare model's, measured in one run.

engine: the full training step as ``ferbench train`` runs it (batch order, gathering from a
        memory-mapped uint8 cache in the background thread, host->device copy, per-sample
        augmentation on the device, forward, backward, optimiser step, on-device loss
        accumulation and periodic logging);
bare:   forward + backward + optimiser step of the same method on the same batch size, with
        batches already augmented and resident on the device.

The ratio engine/bare says how much the engine's data path costs (target >= 0.90). Both are
timed alternately ``--repeats`` times and the medians compared, so a machine whose load
changes during the run affects both alike.

    python benchmarks/bench_engine.py --device cpu --backbone smallcnn --image-size 48
    python benchmarks/bench_engine.py --device cuda --backbone resnet18 --image-size 112 --batch-size 256
    python benchmarks/bench_engine.py --method gcnet --backbone cnn3 --image-size 64 --stage pretrain
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

from ferbench.train.trainer import Trainer, resolve_device, seed_everything, set_threads
from ferbench.data.folds import load_fold
from ferbench.methods import TaskInfo, get_method

CLASSES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
#: the clock the timings read: wall time; bench_backbones --clock cpu sets time.process_time
CLOCK = time.perf_counter


def write_fake_cache(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Random faces + a 2-fold folds table: the formats `prepare` and `folds` write."""
    rng = np.random.default_rng(seed)
    cache = root / "cache"
    cache.mkdir(parents=True)
    faces = np.lib.format.open_memmap(cache / f"faces_{size}.npy", mode="w+", dtype=np.uint8,
                                      shape=(n, 3, size, size))
    for start in range(0, n, 1024):
        stop = min(n, start + 1024)
        faces[start:stop] = rng.integers(0, 256, size=(stop - start, 3, size, size), dtype=np.uint8)
    faces.flush()
    del faces
    # 8-frame sequences, one label each (onset frame 0, the last three the apex), so methods
    # that read sequences (GCNet's reference face, triplet and clip sampling) train here too
    sequence = np.arange(n) // 8
    frame = np.arange(n) % 8
    subject = sequence % 40
    label = rng.integers(0, len(CLASSES), sequence[-1] + 1)[sequence]
    folds = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)], "cache_row": np.arange(n, dtype=np.int64),
        "subject": [f"S{s:03d}" for s in subject], "sequence": [f"q{q}" for q in sequence],
        "frame": pd.array(frame, "Int64"), "emotion": np.array(CLASSES)[label], "valence": np.nan, "arousal": np.nan,
        "split": None, "apex": frame >= 5, "target": None, "label": label.astype(np.int64),
        # fold 1 is a small test fold so nearly all rows train
        "fold": np.where(subject == 0, 1, 0).astype(np.int64), "protocol_sample": True,
    })
    path = root / "folds.parquet"
    folds.to_parquet(path, index=False)
    # what `prepare` writes beside the faces: the sample table and its completion marker
    folds[["sample_id", "cache_row"]].to_parquet(cache / "samples.parquet", index=False)
    (cache / "report.json").write_text(json.dumps({"n": n}))
    meta = {"dataset": "bench", "kind": "kfold", "n_folds": 2, "classes": CLASSES,
            "task": "classification", "protocol": {}, "counts": {}}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return cache, path


def build(args: argparse.Namespace, cache: Path, folds: Path, epochs: int):
    settings = {
        "dataset": "bench", "method_name": args.method, "stage": args.stage, "metrics": {},
        "train": {"backbone": args.backbone, "image_size": args.image_size, "epochs": epochs,
                  "batch_size": args.batch_size, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                  "checkpoint_every": 10**9, "eval_batch_size": args.batch_size},
        "method": {},
    }
    data = load_fold(cache, folds, 1, args.image_size)
    seed_everything(0)
    cls = get_method(args.method)
    method = cls(settings, TaskInfo("classification", tuple(CLASSES), args.image_size))
    method.setup(data, args.stage)
    return Trainer(method, data, settings, args.device_obj, 0, out=None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_fit(trainer: Trainer, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds the engine's loop takes for ``steps`` steps after ``warmup`` (the trainer must
    have epochs enough for warmup + steps)."""
    marks: dict[int, float] = {}

    def mark(step: int) -> None:
        if step in (warmup, warmup + steps):
            sync(device)
            marks[step] = CLOCK()
        if step == warmup + steps:
            raise StopIteration  # enough; leave the loop

    trainer.step_callbacks.append(mark)
    try:
        trainer.fit(resume=False)
    except StopIteration:
        pass
    return marks[warmup + steps] - marks[warmup]


def time_engine(args: argparse.Namespace, cache: Path, folds: Path) -> float:
    """Images/s of the engine over ``--steps`` steps after ``--warmup``."""
    probe = build(args, cache, folds, epochs=1)
    per_epoch = probe.steps_per_epoch
    epochs = -(-(args.warmup + args.steps) // per_epoch)
    trainer = build(args, cache, folds, epochs=epochs)
    seconds = timed_fit(trainer, args.warmup, args.steps, args.device_obj)
    return args.steps * args.batch_size / seconds


def time_bare(args: argparse.Namespace, cache: Path, folds: Path) -> float:
    """Images/s of forward + backward + step on batches already augmented on the device."""
    trainer = build(args, cache, folds, epochs=1)
    method, device = trainer.method, args.device_obj
    batches = []
    order = trainer.method.epoch_batches(trainer.gen_data, 0)
    from ferbench.data.folds import gather

    for positions in order[:4]:  # a few distinct batches, cycled
        batches.append(trainer.prepare(gather(trainer.data, positions), train=True))
    sync(device)
    method.train()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync(device)
            t0 = CLOCK()
        batch = batches[i % len(batches)]
        with trainer.autocast():
            loss = (method.pretraining_step if method.stage == "pretrain" else method.training_step)(batch)["loss"]
        for opt in trainer.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in trainer.optimizers.values():
            opt.step()
    sync(device)
    return args.steps * args.batch_size / (CLOCK() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="smallcnn")
    p.add_argument("--method", default="supervised")
    p.add_argument("--stage", choices=("train", "pretrain"), default="train",
                   help="pretrain: the method's pretraining step (GCNet, triplets, SSL)")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-images", type=int, default=4096, help="images in the fake cache")
    args = p.parse_args()
    args.device_obj = resolve_device(args.device)
    set_threads(args.threads)
    if args.device_obj.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        cache, folds = write_fake_cache(Path(tmp), args.cache_images, args.image_size)
        eng, bare = [], []
        for _ in range(args.repeats):
            bare.append(time_bare(args, cache, folds))
            eng.append(time_engine(args, cache, folds))
    e, b = statistics.median(eng), statistics.median(bare)
    name = torch.cuda.get_device_name(args.device_obj) if args.device_obj.type == "cuda" else "cpu"
    print(f"device {args.device_obj} ({name}), {args.threads} thread(s); {args.method} {args.backbone} "
          f"{args.image_size}px, batch {args.batch_size}, {args.steps} timed steps x {args.repeats}")
    print(f"engine: {e:10.1f} images/s   (runs: {', '.join(f'{v:.1f}' for v in eng)})")
    print(f"bare:   {b:10.1f} images/s   (runs: {', '.join(f'{v:.1f}' for v in bare)})")
    print(f"ratio engine/bare: {e / b:.3f}")


if __name__ == "__main__":
    main()
