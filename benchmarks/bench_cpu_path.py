"""The CPU's compute paths against a bare fp32 step, per backbone the budgets use, in one run.

For every (backbone, image size, channels) a budget trains on (default: the `cpu` budget's),
at that budget's batch size, images/s of

bare fp32 NCHW:        forward + backward + AdamW step of backbone + linear head on a batch
                       already in memory, float32, contiguous (what the engine did on CPUs);
bare fp32 NHWC:        the same in channels_last (batch and weights);
bare bf16 NHWC:        the same under bf16 autocast (loss in float32); on a CPU without native
                       bf16 this is emulated (expect it far slower: why ``auto`` keeps fp32);
engine:                the full ``ferbench train`` step of the budget's supervised run on that
                       backbone (its optimiser, schedule, augmentation; gathering from a
                       memory-mapped cache in the background thread, logging) in the path the
                       budget's ``precision`` / ``memory_format`` resolve to here;

and ``engine_vs_bare_fp32`` = engine / bare fp32 NCHW: what a user gains over the old CPU path,
the engine's own data path included. The configurations are timed in turn, ``--repeats``
times (interleaved: all of them, then all again), and the best repeat is printed with the
median beside it: on a machine shared with other jobs the slower repeats measure the others.
The default clock is the process's CPU time (time.process_time) with one thread: the core's own
rate, which other jobs barely move (with the engine, its background gathering thread's CPU time
counts too). The CPU's flags and what torch reports about it head the output.

    python benchmarks/bench_cpu_path.py                          # cpu budget, 1 thread, CPU clock
    python benchmarks/bench_cpu_path.py --budgets cpu paper --clock wall --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json
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
import bench_engine  # noqa: E402  (the fake cache and the engine's timed loop)

from ferbench import precision  # noqa: E402

from ferbench.train.trainer import Trainer, seed_everything, set_threads
from ferbench.config import stage_settings  # noqa: E402
from ferbench.data.folds import load_fold  # noqa: E402
from ferbench.methods import TaskInfo, get_method  # noqa: E402
from ferbench.models.backbones import BACKBONES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 7
#: the bare paths: (label, memory format, bf16 autocast)
BARE = (("fp32_nchw", "contiguous", False), ("fp32_nhwc", "channels_last", False),
        ("bf16_nhwc", "channels_last", True))
CLOCK = time.process_time


def budget_configs(config: dict, budgets: list[str]) -> dict[tuple[str, int, int], dict]:
    """(backbone, image size, channels) -> {"uses": {"<budget>:<run>[/pretrain]"}, "batch": the
    budget's batch size, "engine": the train schedule of a supervised run on it (or None)}."""
    found: dict[tuple[str, int, int], dict] = {}
    for budget in budgets:
        cfg = copy.deepcopy(config)
        cfg["budget"] = budget
        for dataset in cfg["run"]["datasets"]:
            block = cfg["datasets"][dataset]
            for run in [m for m in cfg["run"]["methods"] if m in (block.get("methods") or cfg["run"]["methods"])]:
                for stage in ("train", "pretrain"):
                    s = stage_settings(cfg, dataset, run, stage)
                    cls = get_method(s["method"].get("class") or run)
                    if stage == "pretrain" and not cls.pretrain:
                        continue
                    channels = int(s["method"].get("channels", cls.all_defaults()["channels"]))
                    key = (s["train"]["backbone"], int(s["train"]["image_size"]), channels)
                    entry = found.setdefault(key, {"uses": set(), "batch": int(s["train"]["batch_size"]),
                                                   "engine": None})
                    entry["uses"].add(f"{budget}:{run}" + ("/pretrain" if stage == "pretrain" else ""))
                    if entry["engine"] is None and cls.name == "supervised" and stage == "train":
                        entry["engine"] = {"run": run, "method": s["method"], "train": s["train"]}
    return found


def bare_rate(key: tuple[str, int, int], batch: int, memory_format: str, bf16: bool, steps: int,
              warmup: int, max_seconds: float) -> float:
    """Images/s of forward + backward + AdamW step on one batch in memory."""
    backbone, size, channels = key
    torch.manual_seed(0)
    body = BACKBONES[backbone](channels, size)
    model = nn.Sequential(body, nn.Linear(body.feature_dim, CLASSES))
    path = precision.ComputePath("cpu", "bf16" if bf16 else "fp32", memory_format)
    path.format_model(model)
    x = path.format_batch(torch.rand(batch, channels, size, size))
    y = torch.randint(0, CLASSES, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    model.train()

    def step() -> None:
        with path.autocast():
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    done, t0 = 0, CLOCK()
    while done < steps and (done < 2 or CLOCK() - t0 < max_seconds):
        step()
        done += 1
    return done * batch / (CLOCK() - t0)


@torch.no_grad()
def eval_rate(key: tuple[str, int, int], memory_format: str, bf16: bool, batch: int, max_seconds: float) -> float:
    """Images/s of the forward pass alone (eval mode), as test-time evaluation runs it."""
    backbone, size, channels = key
    torch.manual_seed(0)
    body = BACKBONES[backbone](channels, size)
    model = nn.Sequential(body, nn.Linear(body.feature_dim, CLASSES)).eval()
    path = precision.ComputePath("cpu", "bf16" if bf16 else "fp32", memory_format)
    path.format_model(model)
    x = path.format_batch(torch.rand(batch, channels, size, size))
    with path.autocast():
        model(x)
        done, t0 = 0, CLOCK()
        while done < 2 or CLOCK() - t0 < max_seconds:
            model(x)
            done += 1
    return done * batch / (CLOCK() - t0)


#: the `cpu` budget's supervised jobs per dataset: (training images per epoch of each job,
#: images evaluated per epoch (validation), images tested once). CK+ 7-class 10-fold: 327
#: labelled sequences x 3 peak frames, fold sizes of DATASETS.md; JAFFE: 213 images of 10
#: subjects, one subject per fold (21-22 images); FER-2013: Training, PublicTest every epoch,
#: PrivateTest; AFEW-VA: about 30,050 frames of 600 clips, 6 actor-grouped folds; AffectNet:
#: 287,651 training images, the 3,999 validation images as the test set.
CKPLUS_FOLD_SEQUENCES = (33, 39, 40, 35, 30, 37, 29, 29, 33, 22)
DATASET_JOBS = {
    "ckplus": [((327 - n) * 3, 0, n * 3) for n in CKPLUS_FOLD_SEQUENCES],
    "jaffe": [(213 - n, 0, n) for n in (22, 22, 21, 21, 21, 21, 21, 21, 21, 22)],
    "fer2013": [(28709, 3589, 3589)],
    "afewva": [(25042, 0, 5009)] * 6,
    "affectnet": [(287651, 0, 3999)],
}


def estimate_seconds(dataset: str, epochs: int, train_rate: float, eval_rate_: float, tta: int, jobs: int) -> float:
    """Wall seconds of a dataset's jobs at these one-thread rates, ``jobs`` side by side."""
    per_job = [n_train * epochs / train_rate + (n_val * epochs + n_test) * tta / eval_rate_
               for n_train, n_val, n_test in DATASET_JOBS[dataset]]
    return sum(per_job) / min(jobs, len(per_job))


def fmt_time(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def engine_rate(key: tuple[str, int, int], entry: dict, cache: Path, folds: Path, steps: int,
                warmup: int) -> tuple[float, str]:
    """(images/s, resolved path) of the engine's training loop for the entry's supervised run."""
    backbone, size, _ = key
    settings = {"dataset": "bench", "method_name": entry["run"], "stage": "train", "metrics": {},
                "method": dict(entry["method"]),
                "train": {**entry["train"], "checkpoint_every": 10**9}}
    data = load_fold(cache, folds, 1, size)
    cls = get_method(entry["method"].get("class") or entry["run"])

    def build(epochs: int) -> Trainer:
        s = copy.deepcopy(settings)
        s["train"]["epochs"] = epochs
        seed_everything(0)
        method = cls(s, TaskInfo("classification", tuple(bench_engine.CLASSES), size))
        method.setup(data, "train")
        return Trainer(method, data, s, torch.device("cpu"), 0, out=None)

    per_epoch = build(1).steps_per_epoch
    trainer = build(-(-(warmup + steps) // per_epoch))
    seconds = bench_engine.timed_fit(trainer, warmup, steps, torch.device("cpu"))
    batch = int(settings["train"]["batch_size"])
    return steps * batch / seconds, f"{trainer.compute.precision}/{trainer.compute.memory_format}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "params.yaml"))
    p.add_argument("--budgets", nargs="+", default=["cpu"])
    p.add_argument("--backbones", nargs="*", help="only these backbones (default: every one used)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration and repeat (at most)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0,
                   help="stop timing a configuration after this many seconds (and 2 steps at least)")
    p.add_argument("--no-bf16", action="store_true", help="skip the bare bf16 step (slow where emulated)")
    p.add_argument("--jobs", type=int, default=2,
                   help="estimates: one-thread jobs side by side (the workflow on 2 cores: 2)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    global CLOCK
    CLOCK = bench_engine.CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    set_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    found = budget_configs(config, args.budgets)
    keys = sorted(k for k in found if not args.backbones or k[0] in args.backbones)
    bare = [b for b in BARE if not (args.no_bf16 and b[2])]
    report = precision.cpu_report()
    rates: dict[tuple, dict[str, list[float]]] = {
        k: {b[0]: [] for b in bare} | {"engine": [], "eval_fp32_nchw": [], "eval_engine": []} for k in keys}
    paths: dict[tuple, str] = {}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        caches = {}
        for key in keys:
            size = key[1]
            if found[key]["engine"] is not None and size not in caches:
                caches[size] = bench_engine.write_fake_cache(Path(tmp) / str(size), 2048, size)
        for _ in range(args.repeats):
            for key in keys:
                batch = found[key]["batch"]
                for label, memory_format, bf16 in bare:
                    steps = max(2, args.steps // 4) if bf16 and not report["native_bf16"] else args.steps
                    rates[key][label].append(bare_rate(key, batch, memory_format, bf16, steps, 1 if bf16 else args.warmup,
                                                       args.seconds))
                if found[key]["engine"] is not None:
                    rate, paths[key] = engine_rate(key, found[key]["engine"], *caches[key[1]], args.steps, args.warmup)
                    rates[key]["engine"].append(rate)
                    eval_batch = int(found[key]["engine"]["train"].get("eval_batch_size") or batch)
                    rates[key]["eval_fp32_nchw"].append(eval_rate(key, "contiguous", False, eval_batch, args.seconds / 2))
                    fmt_, prec_ = paths[key].split("/")[1], paths[key].split("/")[0] == "bf16"
                    rates[key]["eval_engine"].append(eval_rate(key, fmt_, prec_, eval_batch, args.seconds / 2))
    load1 = os.getloadavg()

    print(f"CPU: torch {torch.__version__} capability {report['torch_capability']}, mkldnn {report['mkldnn']}, "
          f"avx512 {report['avx512']}, avx512_bf16 {report['avx512_bf16']}, amx {report['amx']} -> native bf16 "
          f"{report['native_bf16']}; flags: {' '.join(report['flags']) or '(none read)'}")
    print(f"{args.threads} thread(s), {args.clock} clock, best (median) of {args.repeats} interleaved repeats; "
          f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at end ({os.cpu_count()} CPUs); images/s")
    cols = [b[0] for b in bare] + ["engine", "eval_fp32_nchw", "eval_engine"]
    print(f"{'backbone':<14}{'px':>4}{'ch':>3}{'batch':>6}" + "".join(f"{c:>18}" for c in cols)
          + f"{'engine path':>22}{'engine_vs_bare_fp32':>21}{'nhwc_vs_nchw':>14}")
    out = {"cpu": report, "threads": args.threads, "clock": args.clock, "repeats": args.repeats,
           "load": [load0[0], load1[0]], "rows": []}
    for key in keys:
        best = {c: max(v) for c, v in rates[key].items() if v}
        med = {c: statistics.median(v) for c, v in rates[key].items() if v}
        cells = "".join(f"{f'{best[c]:.0f} ({med[c]:.0f})' if c in best else '-':>18}" for c in cols)
        ratio = best["engine"] / best["fp32_nchw"] if "engine" in best else None
        print(f"{key[0]:<14}{key[1]:>4}{key[2]:>3}{found[key]['batch']:>6}{cells}{paths.get(key, '-'):>22}"
              f"{(f'{ratio:.2f}' if ratio else '-'):>21}{best['fp32_nhwc'] / best['fp32_nchw']:>14.2f}")
        out["rows"].append({"backbone": key[0], "image_size": key[1], "channels": key[2],
                            "batch": found[key]["batch"], "uses": sorted(found[key]["uses"]),
                            "engine_path": paths.get(key), "best": best, "median": med,
                            "runs": rates[key], "engine_vs_bare_fp32": ratio})
    for key in keys:
        runs = sorted({use.split(":", 1)[1].split("/")[0] for use in found[key]["uses"]})
        print(f"  {key[0]} {key[1]}px {key[2]}ch: {len(runs)} runs ({', '.join(runs[:6])}{', ...' if len(runs) > 6 else ''})")
    print(f"Estimated wall time of the {args.budgets[0]} budget's supervised runs ({args.jobs} one-thread jobs side "
          "by side where a dataset has several; best rates; training + validation/test with its TTA; "
          "prepare not included): old path (bare fp32 NCHW step) -> this engine's path")
    cfg = copy.deepcopy(config)
    cfg["budget"] = args.budgets[0]
    for dataset in DATASET_JOBS:
        if dataset not in cfg["datasets"]:
            continue
        runs = cfg["datasets"][dataset].get("methods") or cfg["run"]["methods"]
        for run in [r for r in runs if r in ("supervised", "cnn_baseline")]:
            s = stage_settings(cfg, dataset, run, "train")
            channels = int(s["method"].get("channels", get_method(s["method"].get("class") or run).all_defaults()["channels"]))
            key = (s["train"]["backbone"], int(s["train"]["image_size"]), channels)
            if key not in keys or not rates[key]["engine"]:
                continue
            best = {c: max(v) for c, v in rates[key].items() if v}
            tta = 2 if s["train"].get("tta") == "flip" else 1
            epochs = int(s["train"]["epochs"])
            old = estimate_seconds(dataset, epochs, best["fp32_nchw"], best["eval_fp32_nchw"], tta, args.jobs)
            new = estimate_seconds(dataset, epochs, best["engine"], best["eval_engine"], tta, args.jobs)
            print(f"  {dataset:<10}{run:<14}{key[0]} {key[1]}px, {epochs} epochs, {len(DATASET_JOBS[dataset])} job(s): "
                  f"{fmt_time(old)} -> {fmt_time(new)}")
            out.setdefault("estimates", []).append({"dataset": dataset, "run": run, "old_s": old, "new_s": new})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
