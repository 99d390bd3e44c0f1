"""Cache benchmark: `prepare` throughput, and batch reads from the cache vs decoding the files.

    .venv/bin/python benchmarks/bench_cache.py [--images 500] [--size 64] [--threads 2]

Generates CK+-like frames (640x490 grey PNG, a drawn face, 68 landmarks) in a temp dir, caches
them with ferbench.data.prepare, then times, for the same random batches of indices:
  cache   faces_{size}.npy memmap[idx] -> torch float tensor [B, 3, size, size] in [0, 1]
  decode  PIL open + RGB + resize of each original file -> the same tensor
and prints both and their ratio, taken in one run (target: cache >= 20x faster).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferbench.datasets.base import Reader, ReadResult, make_table, open_image
from ferbench.data import prepare
from ferbench.data.prepare import prepare_cache


class FolderReader(Reader):
    """The generated table; pixels through the base iter_images like any file-based reader."""

    name = "bench"
    kind = "sequence"
    task = "classification"

    def __init__(self, table):
        self.table = table

    def read(self, root, strict=False):
        return ReadResult(self.table, collections.Counter(), "bench")

    def load_image(self, root, row):
        return open_image(Path(root) / row["path"])


def make_frames(root: Path, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * math.pi, 68, endpoint=False)
    rows = []
    for i in range(n):
        image = rng.integers(0, 40, size=(490, 640), dtype=np.uint8)  # noisy background
        cx, cy = int(rng.integers(220, 420)), int(rng.integers(200, 290))
        ax, ay = int(rng.integers(90, 120)), int(rng.integers(120, 150))
        cv2.ellipse(image, (cx, cy), (ax, ay), 0, 0, 360, int(rng.integers(150, 220)), -1)
        for dx in (-ax // 2, ax // 2):
            cv2.circle(image, (cx + dx, cy - ay // 4), 10, 40, -1)
        cv2.ellipse(image, (cx, cy + ay // 2), (ax // 3, 12), 0, 0, 180, 60, 4)
        subject, seq, frame = f"S{i // 40:03d}", f"{(i // 10) % 4 + 1:03d}", i % 10 + 1
        rel = f"cohn-kanade-images/{subject}/{seq}/{subject}_{seq}_{frame:08d}.png"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        pts = np.stack([cx + ax * np.cos(angles), cy + ay * np.sin(angles)], axis=1)
        rows.append({"sample_id": path.stem, "subject": subject, "sequence": f"{subject}_{seq}",
                     "frame": frame, "path": rel, "emotion": "happiness", "apex": frame == 10,
                     "landmarks": pts.reshape(-1).tolist()})
    return make_table(rows, "bench")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_batches(fn, batches) -> float:
    """Median seconds per batch (after one warm-up call)."""
    fn(batches[0])
    times = []
    for idx in batches:
        start = time.perf_counter()
        fn(idx)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    # imported here: prepare's worker processes re-import this script and need no torch
    import torch

    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="ferbench-bench-") as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "cache"
        t0 = time.perf_counter()
        table = make_frames(root, args.images)
        print(f"generated {len(table)} frames 640x490 in {time.perf_counter() - t0:.1f} s"
              f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        reader = FolderReader(table)

        # measure the worker-process path even on this small set (start-up included)
        prepare.PROCESS_MIN_ROWS = 0
        for threads in sorted({1, args.threads}):
            out = cache / f"t{threads}"
            cpu0, start = _cpu_seconds(), time.perf_counter()
            report = prepare_cache(reader, root, out, sizes=[args.size], threads=threads, progress=False)
            took, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
            rate = report["images"] / took
            # images per CPU-second (this process + its reaped workers): per-core throughput that
            # a busy shared machine does not distort, unlike wall time / threads
            print(f"prepare  threads={threads}: {rate:8.1f} images/s wall, {rate / threads:6.1f} per thread,"
                  f" {report['images'] / cpu:6.1f} images per CPU-second"
                  f"  crop={ {k: v for k, v in report['crop'].items() if v} }")

        faces = np.load(cache / "t1" / f"faces_{args.size}.npy", mmap_mode="r")
        paths = [root / p for p in table["path"]]
        rng = np.random.default_rng(1)
        batches = [rng.choice(len(faces), size=args.batch, replace=False) for _ in range(args.batches)]

        def from_cache(idx):
            return torch.from_numpy(faces[idx]).float().div_(255)

        def from_files(idx):
            arrays = []
            for i in idx:
                with Image.open(paths[i]) as im:
                    im = im.convert("RGB").resize((args.size, args.size), Image.BILINEAR)
                    arrays.append(np.asarray(im).transpose(2, 0, 1))
            return torch.from_numpy(np.stack(arrays)).float().div_(255)

        assert from_cache(batches[0]).shape == from_files(batches[0]).shape
        t_cache = time_batches(from_cache, batches)
        t_files = time_batches(from_files, batches)
        print(f"read     cache : {args.batch / t_cache:10.0f} images/s  ({t_cache * 1e3:.2f} ms per batch of {args.batch})")
        print(f"read     decode: {args.batch / t_files:10.0f} images/s  ({t_files * 1e3:.2f} ms per batch)")
        ratio = t_files / t_cache
        print(f"cache is {ratio:.0f}x faster than decoding (target >= 20x): {'OK' if ratio >= 20 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
