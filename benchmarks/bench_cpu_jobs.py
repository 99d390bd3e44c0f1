"""Two cores, one job or two: the `cpu` budget's training step as one two-thread job against
two one-thread jobs side by side, wall clock, on a FER-2013-sized cache, in one run.

A two-thread step waits for whichever of its threads another process delayed, so on a machine
that is not idle one two-thread job can fall far below two one-thread jobs (which is how the
workflow runs CK+'s folds: `resources.train.threads: 1`, two at a time). Each mode runs
``--steps`` timed steps of the engine (the budget's supervised run, its compute path as
resolved here) after ``--warmup``, in fresh processes; the modes alternate ``--repeats`` times.
Printed per repeat: training images/s of all jobs together (images over the span from the first
job's first timed step to the last job's last) and the load average around it.

``--busy N`` keeps N other processes busy (one core each, a float32 matrix product in a loop,
as another user's job would) while each mode runs: the "shared machine" case.

    python benchmarks/bench_cpu_jobs.py                     # FER-2013-sized, cpu budget
    python benchmarks/bench_cpu_jobs.py --steps 200 --repeats 3
    python benchmarks/bench_cpu_jobs.py --busy 1            # with one other busy process
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
FER2013_TRAIN = 28709


def worker(args: argparse.Namespace) -> None:
    """One job: time the engine, print {"start", "end", "images"} (wall clock, absolute)."""
    import bench_cpu_path
    import bench_engine
    import torch

    from ferbench.train.trainer import set_threads

    set_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    found = bench_cpu_path.budget_configs(config, [args.budget])
    key = next(k for k in found if k[0] == args.backbone and found[k]["engine"])
    marks: dict[str, float] = {}
    clock = time.time   # absolute, to line the jobs up

    class Clock:
        def __call__(self) -> float:
            now = clock()
            marks.setdefault("start", now)
            marks["end"] = now
            return now

    bench_engine.CLOCK = Clock()
    _, path = bench_cpu_path.engine_rate(key, found[key]["engine"], Path(args.cache), Path(args.folds),
                                         args.steps, args.warmup)
    batch = int(found[key]["engine"]["train"]["batch_size"])
    print(json.dumps({"start": marks["start"], "end": marks["end"], "images": args.steps * batch,
                      "path": path, "threads": torch.get_num_threads()}))


BUSY_LOOP = ("import os; os.environ['OMP_NUM_THREADS'] = '1'; import numpy as np; "
             "a = np.ones((256, 256), np.float32)\nwhile True: a = (a @ a) * np.float32(1e-3)")


def run_mode(args: argparse.Namespace, cache: Path, folds: Path, jobs: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--cache", str(cache),
           "--folds", str(folds), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--config", args.config, "--budget", args.budget, "--backbone", args.backbone]
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env={**os.environ, "OMP_NUM_THREADS": "1"})
            for _ in range(args.busy)]
    try:
        load0 = os.getloadavg()[0]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"worker failed ({proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    per_job = [r["images"] / (r["end"] - r["start"]) for r in results]
    return {"jobs": jobs, "threads": threads, "images_per_s": sum(r["images"] for r in results) / span,
            "per_job": per_job, "path": results[0]["path"], "load": [load0, os.getloadavg()[0]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "params.yaml"))
    p.add_argument("--budget", default="cpu")
    p.add_argument("--backbone", default="smallcnn")
    p.add_argument("--images", type=int, default=FER2013_TRAIN, help="images in the fake cache")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--busy", type=int, default=0, help="other busy one-core processes during each mode")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--folds", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    import bench_cpu_path
    import bench_engine

    config = yaml.safe_load(Path(args.config).read_text())
    found = bench_cpu_path.budget_configs(config, [args.budget])
    size = next(k[1] for k in found if k[0] == args.backbone and found[k]["engine"])
    with tempfile.TemporaryDirectory() as tmp:
        cache, folds = bench_engine.write_fake_cache(Path(tmp), args.images, size)
        rows = []
        for rep in range(args.repeats):
            for jobs, threads in ((1, 2), (2, 1)):
                row = run_mode(args, cache, folds, jobs, threads)
                rows.append(row)
                print(f"repeat {rep + 1}: {jobs} job(s) x {threads} thread(s): {row['images_per_s']:7.1f} images/s "
                      f"together (per job {', '.join(f'{v:.1f}' for v in row['per_job'])}; {row['path']}; "
                      f"load average {row['load'][0]:.1f} -> {row['load'][1]:.1f})", flush=True)
    for jobs, threads in ((1, 2), (2, 1)):
        rates = [r["images_per_s"] for r in rows if r["jobs"] == jobs]
        print(f"{jobs} job(s) x {threads} thread(s): best {max(rates):.1f}, worst {min(rates):.1f} images/s "
              f"({args.images} cached images at {size} px, {args.steps} timed steps per job, wall clock, "
              f"{os.cpu_count()} CPUs, {args.busy} other busy process(es))")


if __name__ == "__main__":
    main()
