"""Cost of the cache's pixel hashes (ferbench.data.cache_content): at prepare, at train start, in doctor.

    .venv/bin/python benchmarks/bench_cache_check.py [--rows 10000] [--size 64] [--repeat 5]

Writes a face array of ``rows`` x 3 x size x size random uint8 pixels into a temp dir, row by
row through a memory map as ``prepare`` does, once without and once with the sha256 fed as it
writes; then times, on the finished file:
  quick   the check ``train``/``pretrain`` run at start (size, time, 16 sampled 64 KiB blocks)
  full    the whole-array re-hash (``doctor --deep``, or the quick check after the file's time
          changed, e.g. a copy without its times)
  open    np.load(mmap_mode="r") of the same file, what load_fold already did at start
and prints the times and their ratios, taken in one run. The page cache is warm for full (the
file was just written): a cold disk adds its read time to full, not to quick.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ferbench import io
from ferbench.data import cache_content


def write(path: Path, rows: int, size: int, hash_it: bool) -> tuple[float, str | None]:
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, size=(256, 3, size, size), dtype=np.uint8)
    start = time.perf_counter()
    array = io.open_memmap(path, (rows, 3, size, size), np.uint8)
    hasher = cache_content.PixelHasher() if hash_it else None
    for row in range(rows):
        face = block[row % len(block)]
        array[row] = face
        if hasher is not None:
            hasher.update(face)
    array.flush()
    del array
    return time.perf_counter() - start, hasher.hexdigest() if hasher else None


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000, help="faces (CK+ has about 10k frames)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        plain, hashed = Path(tmp) / "plain.npy", Path(tmp) / "faces.npy"
        t_plain, _ = write(plain, args.rows, args.size, hash_it=False)
        t_hashed, digest = write(hashed, args.rows, args.size, hash_it=True)
        rec = cache_content.record(hashed, digest)
        assert cache_content.problem(hashed, rec) is None
        t_quick = timed(lambda: cache_content.problem(hashed, rec), args.repeat)
        t_full = timed(lambda: cache_content.problem(hashed, rec, deep=True), args.repeat)
        t_open = timed(lambda: np.load(hashed, mmap_mode="r"), args.repeat)
        mib = os.path.getsize(hashed) / 2**20

    print(f"face array: {args.rows} x 3 x {args.size} x {args.size} uint8 = {mib:.1f} MiB")
    print(f"prepare's writes      {t_plain * 1e3:9.1f} ms plain, {t_hashed * 1e3:9.1f} ms hashing as written "
          f"(x{t_hashed / t_plain:.2f})")
    print(f"quick check (train)   {t_quick * 1e3:9.2f} ms")
    print(f"full check (--deep)   {t_full * 1e3:9.1f} ms  ({mib / t_full:.0f} MiB/s; x{t_full / t_quick:.0f} the quick check)")
    print(f"np.load mmap open     {t_open * 1e3:9.2f} ms  (quick check = x{t_quick / t_open:.1f} of it)")


if __name__ == "__main__":
    main()
