"""Training throughput of every backbone at the input sizes the budgets use, on this machine,
and from it the `cpu` budget's wall time for CK+ 10-fold and FER-2013.

bare train:  images/s of forward + backward + AdamW step of backbone + linear head (7 classes,
             cross-entropy) on batches already on the device (the same as bench_engine's
             "bare", per backbone);
eval:        images/s of the forward pass alone (no_grad, eval mode);
engine:      images/s of the full ``ferbench train`` step (cache gathering, augmentation,
             logging; bench_engine.time_engine) for the `cpu` budget's supervised backbone and
             size, and its ratio to bare, which scales the estimates.

Every configuration is timed ``--repeats`` times, the repeats interleaved (all configurations,
then all again). On a machine shared with other jobs a two-thread step waits for whichever
thread another job delayed, so repeats of one configuration can differ several-fold: the best
repeat (timeit's rule: the slower ones measure the other jobs) is printed with the median
beside it, and the load average at start and end. The estimates use the best repeats.
``--threads 1 --clock cpu`` reads the process's CPU time instead of the wall clock: with one
thread that is the core's own rate, which other jobs barely move (bench_sparsemax's rule), and
``--jobs 2`` then estimates the workflow's way of running the `cpu` budget on 2 cores: two
one-thread jobs side by side (``resources.train.threads: 1``).

The estimates (stated assumptions, printed with them):
  CK+ 7-class, 10-fold: 327 labelled sequences x 3 peak frames = 981 images (the CK+48
  re-pack's count; the original distribution's 593 sequences include 266 unlabelled ones the
  protocol drops); fold sizes [33, 39, 40, 35, 30, 37, 29, 29, 33, 22] sequences (DATASETS.md),
  so a fold trains on (327 - its sequences) x 3 images and tests the rest;
  FER-2013: 28,709 Training images per epoch, PublicTest (3,589) evaluated after every epoch
  for selection, PrivateTest (3,589) once;
  test-time flipping doubles the evaluation images; the face cache (`prepare`) is not counted.
Runs whose training step is not one backbone step (GCNet, triplets, ...) are listed without
an estimate: their cost is the method's, measure it with bench_engine --method.

    python benchmarks/bench_backbones.py                    # 2 threads, every backbone
    python benchmarks/bench_backbones.py --backbones smallcnn cnn3 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine  # noqa: E402  (the engine's timing, for the engine/bare ratio)

from ferbench.train.trainer import set_threads  # noqa: E402
from ferbench.config import stage_settings  # noqa: E402
from ferbench.methods import get_method  # noqa: E402
from ferbench.models.backbones import BACKBONES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = ("demo", "cpu", "paper")
CLASSES = 7
#: CK+ 7-class, 10-fold subject-independent: labelled sequences per test fold (DATASETS.md)
CKPLUS_FOLD_SEQUENCES = (33, 39, 40, 35, 30, 37, 29, 29, 33, 22)
CKPLUS_PEAK_FRAMES = 3
FER2013 = {"train": 28709, "val": 3589, "test": 3589}


def budget_uses(config: dict, budgets=BUDGETS) -> dict[tuple[str, int, int], set[str]]:
    """(backbone, image_size, channels) -> {"<budget>:<run>[/pretrain]"} over every run of every
    dataset it runs on, both stages."""
    uses: dict[tuple[str, int, int], set[str]] = {}
    for budget in budgets:
        cfg = copy.deepcopy(config)
        cfg["budget"] = budget
        for dataset, block in cfg["datasets"].items():
            runs = [m for m in cfg["run"]["methods"] if m in (block.get("methods") or cfg["run"]["methods"])]
            if dataset not in cfg["run"]["datasets"]:
                continue
            for run in runs:
                for stage in ("train", "pretrain"):
                    s = stage_settings(cfg, dataset, run, stage)
                    cls = get_method(s["method"].get("class") or run)
                    if stage == "pretrain" and not cls.pretrain:
                        continue
                    channels = int(s["method"].get("channels", cls.all_defaults()["channels"]))
                    key = (s["train"]["backbone"], int(s["train"]["image_size"]), channels)
                    uses.setdefault(key, set()).add(f"{budget}:{run}" + ("/pretrain" if stage == "pretrain" else ""))
    return uses


def build(backbone: str, size: int, channels: int) -> nn.Module:
    body = BACKBONES[backbone](channels, size)
    return nn.Sequential(body, nn.Linear(body.feature_dim, CLASSES))


CLOCK = time.perf_counter   # --clock cpu: time.process_time


def time_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int,
               max_seconds: float) -> float:
    """Images/s of forward + backward + AdamW step: ``warmup`` steps, then at least two and at
    most ``steps`` timed steps, stopping early once ``max_seconds`` have passed."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    done, t0 = 0, CLOCK()
    while done < steps and (done < 2 or CLOCK() - t0 < max_seconds):
        step()
        done += 1
    return done * len(x) / (CLOCK() - t0)


@torch.no_grad()
def time_eval(model: nn.Module, x: torch.Tensor, max_seconds: float) -> float:
    model.eval()
    model(x)
    done, t0 = 0, CLOCK()
    while done < 2 or CLOCK() - t0 < max_seconds:
        model(x)
        done += 1
    return done * len(x) / (CLOCK() - t0)


def engine_ratio(args: argparse.Namespace, backbone: str, size: int, batch: int) -> tuple[float, float]:
    """(engine images/s, bare images/s) of bench_engine for one configuration."""
    ns = argparse.Namespace(method="supervised", stage="train", backbone=backbone, image_size=size, batch_size=batch,
                            steps=args.engine_steps, warmup=3, device_obj=torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        cache, folds = bench_engine.write_fake_cache(Path(tmp), 1024, size)
        return bench_engine.time_engine(ns, cache, folds), bench_engine.time_bare(ns, cache, folds)


def fmt_time(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def job_threads(config: dict, dataset: str) -> int:
    """The threads of a `cpu` train job on ``dataset``: its `budgets.cpu.resources`, else
    `resources.train` (the workflow's rule, workflow/rules/resources.smk)."""
    own = ((config["datasets"][dataset].get("budgets") or {}).get("cpu") or {}).get("resources") or {}
    return int((own.get("train") or {}).get("threads") or
               (config.get("resources") or {}).get("train", {}).get("threads", 1))


def estimates(config: dict, train_rate, eval_rate, ratio: float, jobs: int = 1,
              threads: int = 1) -> list[str]:
    """Lines: the `cpu` budget's estimated wall time per CK+ and FER-2013 run, its jobs (folds)
    run ``jobs`` at a time, each at the measured rates (measured with ``threads`` threads; a
    dataset whose jobs run with another count says so)."""
    cfg = copy.deepcopy(config)
    cfg["budget"] = "cpu"
    ck_total = sum(CKPLUS_FOLD_SEQUENCES) * CKPLUS_PEAK_FRAMES
    ck_train = [ck_total - n * CKPLUS_PEAK_FRAMES for n in CKPLUS_FOLD_SEQUENCES]
    lines = []
    for dataset in ("ckplus", "fer2013"):
        block = cfg["datasets"][dataset]
        for run in block.get("methods") or cfg["run"]["methods"]:
            s = stage_settings(cfg, dataset, run, "train")
            cls = get_method(s["method"].get("class") or run)
            t = s["train"]
            channels = int(s["method"].get("channels", cls.all_defaults()["channels"]))
            key = (t["backbone"], int(t["image_size"]), channels)
            label = f"  {dataset:<8} {run:<22} {key[0]} {key[1]}px {channels}ch, {t['epochs']} epochs"
            if cls.name != "supervised" or key not in train_rate:
                lines.append(f"{label}: not estimated ({cls.name}: its step is not one backbone step)")
                continue
            tta = 2 if t.get("tta") == "flip" else 1
            tr, ev = train_rate[key] * ratio, eval_rate[key]
            if dataset == "ckplus":
                folds = t.get("folds") or cfg["budgets"]["cpu"].get("folds")
                fold_ids = range(10) if folds is None else [f for f in folds if f < 10]
                seconds = sum(ck_train[f] * t["epochs"] / tr + (ck_total - ck_train[f]) * tta / ev
                              for f in fold_ids)
                what = f"{len(list(fold_ids))} folds, {sum(ck_train[f] for f in fold_ids)} training images per epoch in all"
            else:
                seconds = (FER2013["train"] * t["epochs"] / tr + FER2013["val"] * t["epochs"] * tta / ev
                           + FER2013["test"] * tta / ev)
                what = f"{FER2013['train']} training images per epoch, PublicTest every epoch"
            if dataset == "ckplus":
                seconds /= min(jobs, len(list(fold_ids)))
            runs_with = job_threads(cfg, dataset)
            other = (f"; its jobs run with {runs_with} threads: measure with --threads {runs_with}"
                     if runs_with != threads else "")
            lines.append(f"{label}: {fmt_time(seconds)} ({what}; {tr:.0f} train img/s per job{other})")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "params.yaml"))
    p.add_argument("--backbones", nargs="+", default=sorted(BACKBONES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=32,
                   help="batch size cap: CPU images/s barely depends on it (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.5, help="timed seconds per configuration and repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engine-steps", type=int, default=20)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or the process's CPU time (use with --threads 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="estimates: training jobs side by side (the workflow runs 1-thread jobs, two on "
                        "2 cores: measure with --threads 1 --jobs 2)")
    args = p.parse_args()
    global CLOCK
    if args.clock == "cpu":
        CLOCK = bench_engine.CLOCK = time.process_time
    set_threads(args.threads)   # also flushes denormals in every intra-op thread
    config = yaml.safe_load(Path(args.config).read_text())

    uses = budget_uses(config)
    sizes = sorted({size for _, size, _ in uses})
    configs = []
    for backbone in args.backbones:
        for size in sizes:
            used = [key for key in uses if key[0] == backbone and key[1] == size]
            configs.extend(used or [(backbone, size, 3)])
    torch.manual_seed(0)
    data = {}
    for backbone, size, channels in configs:
        batch = args.max_batch
        data[backbone, size, channels] = (torch.rand(batch, channels, size, size),
                                          torch.randint(0, CLASSES, (batch,)))
    cpu = config["budgets"]["cpu"]
    load0 = os.getloadavg()
    train: dict = {k: [] for k in configs}
    evals: dict = {k: [] for k in configs}
    eng, bare = [], []
    for _ in range(args.repeats):
        for key in configs:
            model = build(*key)
            x, y = data[key]
            train[key].append(time_train(model, x, y, args.steps, args.warmup, args.seconds))
            evals[key].append(time_eval(model, x, args.seconds / 2))
        e, b = engine_ratio(args, cpu["backbone"], int(cpu["image_size"]), int(cpu["batch_size"]))
        eng.append(e)
        bare.append(b)
    load1 = os.getloadavg()
    train_rate = {k: max(v) for k, v in train.items()}
    eval_rate = {k: max(v) for k, v in evals.items()}
    best = max(range(len(eng)), key=lambda i: eng[i] + bare[i])   # the least disturbed repeat
    ratio = eng[best] / bare[best]

    print(f"cpu, {args.threads} thread(s), {args.clock} clock, torch {torch.__version__}; batch {args.max_batch}; best (median) of "
          f"{args.repeats} interleaved repeats; load average {load0[0]:.1f} at start, {load1[0]:.1f} at end "
          f"({os.cpu_count()} CPUs)")
    print(f"{'backbone':<16}{'size':>5}{'ch':>4}{'train img/s':>20}{'eval img/s':>20}  used by")
    for key in configs:
        backbone, size, channels = key
        used = sorted(uses.get(key, ()))
        shown = ", ".join(used[:4]) + (f" (+{len(used) - 4})" if len(used) > 4 else "") if used else "-"
        tr = f"{train_rate[key]:.1f} ({statistics.median(train[key]):.1f})"
        ev = f"{eval_rate[key]:.1f} ({statistics.median(evals[key]):.1f})"
        print(f"{backbone:<16}{size:>5}{channels:>4}{tr:>20}{ev:>20}  {shown}")
    runs = ", ".join(f"{e:.0f}/{b:.0f}" for e, b in zip(eng, bare))
    print(f"engine/bare ({cpu['backbone']} {cpu['image_size']}px, batch {cpu['batch_size']}, "
          f"bench_engine, the repeat with the highest rates): {ratio:.3f} (repeats engine/bare img/s: {runs})")
    print(f"cpu budget, estimated wall time, {args.jobs} job(s) of {args.threads} thread(s) at a time "
          f"(training at bare x engine/bare; evaluation at the eval rate; prepare not counted):")
    for line in estimates(config, train_rate, eval_rate, ratio, args.jobs, args.threads):
        print(line)


if __name__ == "__main__":
    main()
