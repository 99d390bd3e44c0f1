"""GPU check: one short job of each method family on CUDA, the way `ferbench train` runs it.

Each family trains its distinctive stage under the `paper` budget's resolved settings (input
size, batch size, backbone; the method block of params.yaml) on synthetic CK+ (classification,
sequences) or AFEW-VA (valence/arousal) faces written and prepared in a temporary folder:

  supervised   train     ckplus    (backbone + linear head)
  triplet      pretrain  ckplus    (triplet_m12_full_ft: Method 1/2 triplets)
  gcnet        train     ckplus    (gcnet_s1r1: generator + En2 + decoders)
  caf          train     afewva    (three optimisers, critic)
  avce         train     afewva    (two passes per iteration)
  simclr       pretrain  ckplus    (SSL reference)
  ssl_fer      pretrain  ckplus    (ssl_all: TimeAug, HardNeg, FaceSwap, MaskFN)

The engine does on CUDA what the design asks: bf16 autocast, channels_last, batches gathered
into pinned memory and copied non-blocking; the check asserts each (the autocast dtype, the
memory format of the model and the views, a pinned host batch) before timing. Per family it
prints engine images/s (``--steps`` steps after ``--warmup``, full data path) and bare images/s
(the same train step on batches already augmented on the device), and their ratio.

Exit status: 0 when every family ran; 1 when any raised (a CUDA error included: the line names
the family and the error; the others still run); 2, with one line, when no CUDA device is
present. Figures: docs/budgets.md, "GPU check" (they come from a GPU machine, not from CI).

    bash benchmarks/gpu_check.sh                  # every family
    python benchmarks/gpu_check.py --families gcnet avce --steps 50
"""

from __future__ import annotations

import argparse
import copy
import math
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine  # noqa: E402  (its timed engine loop)

from ferbench.methods.base import GpuCheck  # noqa: E402
from ferbench.methods.registry import declared, get_method, method_names  # noqa: E402

#: family (a method class) -> (run name in params.yaml, stage, dataset): each class's own
#: ``gpu_check`` declaration (methods/<name>.py)
FAMILIES = {name: (check.run, check.stage, check.dataset) for name in method_names()
            if isinstance(check := declared(get_method(name), "gpu_check"), GpuCheck)}
#: registered method classes whose step is another family's (BYOL's and MoCo's are SimCLR's)
COVERED_BY = {name: check for name in method_names()
              if isinstance(check := declared(get_method(name), "gpu_check"), str)}
NO_CUDA = "gpu_check: no CUDA device (torch.cuda.is_available() is False): nothing checked"


def ferbench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ferbench.cli", *args], check=True, stdout=subprocess.DEVNULL)


def prepare_data(root: Path, datasets: set[str], sizes: set[int], subjects: int) -> dict[str, tuple[Path, Path]]:
    """Synthetic layouts -> face caches at ``sizes`` -> folds: {dataset: (cache, folds)}."""
    ferbench("synthesize", "--out", str(root / "data"), "--layouts", ",".join(sorted(datasets)),
             "--subjects", str(subjects), "--frames", "8", "--size", "96", "--seed", "0")
    out = {}
    for dataset in sorted(datasets):
        cache = root / "cache" / dataset
        ferbench("prepare", dataset, str(root / "data" / dataset), "--out", str(cache),
                 "--size", *map(str, sorted(sizes)), "--threads", "4")
        ferbench("folds", dataset, "--cache", str(cache), "--out", str(cache / "folds.parquet"))
        out[dataset] = (cache, cache / "folds.parquet")
    return out


def job_settings(config: dict, run: str, stage: str, dataset: str) -> dict:
    from ferbench.config import stage_settings
    from ferbench.methods import get_method

    cfg = copy.deepcopy(config)
    cfg["budget"] = "paper"
    settings = stage_settings(cfg, dataset, run, stage)
    if "pretrain_dataset" in settings["method"]:
        settings["method"]["pretrain_dataset"] = None   # pretrain on the synthetic fold itself
    cls = get_method(settings["method"].get("class") or run)
    if "mask_fn_encoder" in cls.all_defaults():
        # a run's encoder.pt exists only inside the workflow; a random frozen patch encoder
        # costs the same
        settings["method"]["mask_fn_encoder"] = "random"
    settings["train"]["checkpoint_every"] = 10**9
    return settings


def build_trainer(settings: dict, stage: str, cache: Path, folds: Path, device: torch.device, epochs: int):
    from ferbench.train.trainer import Trainer, seed_everything
    from ferbench.data.folds import load_fold
    from ferbench.methods import TaskInfo, get_method

    settings = copy.deepcopy(settings)
    settings["train"]["epochs"] = epochs
    size = int(settings["train"]["image_size"])
    data = load_fold(cache, folds, 0, size, need_labels=stage == "train")
    cls = get_method(settings["method"].get("class") or settings["method_name"])
    seed_everything(0)
    method = cls(settings, TaskInfo(data.task, tuple(data.classes), size))
    method.setup(data, stage)
    return Trainer(method, data, settings, device, 0, out=None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_gpu_path(trainer) -> None:
    """bf16 autocast, channels_last model and views, pinned host batches: what the engine
    promises on CUDA."""
    from ferbench.data.folds import gather

    with trainer.autocast():
        probe = torch.ones(2, 2, device=trainer.device) @ torch.ones(2, 2, device=trainer.device)
    assert probe.dtype == torch.bfloat16, f"autocast gives {probe.dtype}, not bfloat16"
    assert trainer.compute.memory_format == "channels_last", "the engine does not use channels_last on CUDA"
    conv = next((m for m in trainer.method.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is not None:
        assert conv.weight.is_contiguous(memory_format=torch.channels_last), "conv weights not channels_last"
    positions = trainer.method.epoch_batches(trainer.gen_data, 0)[0]
    host = gather(trainer.data, positions, pin=True)   # as the engine's prefetcher does on CUDA
    assert host.images.is_pinned(), "host batch not in pinned memory"
    batch = trainer.prepare(host, train=True)
    view = batch.views[0]
    if view.ndim == 4 and view.shape[1] > 1:
        assert view.is_contiguous(memory_format=torch.channels_last), "batch views not channels_last"


def time_engine(settings, stage, cache, folds, device, warmup: int, steps: int) -> float:
    probe = build_trainer(settings, stage, cache, folds, device, epochs=1)
    if device.type == "cuda":
        check_gpu_path(probe)
    epochs = math.ceil((warmup + steps) / probe.steps_per_epoch)
    trainer = build_trainer(settings, stage, cache, folds, device, epochs=epochs)
    seconds = bench_engine.timed_fit(trainer, warmup, steps, device)
    return steps * int(settings["train"]["batch_size"]) / seconds


def time_bare(settings, stage, cache, folds, device, warmup: int, steps: int) -> float:
    from ferbench.data.folds import gather

    trainer = build_trainer(settings, stage, cache, folds, device, epochs=10**6)
    order = trainer.method.epoch_batches(trainer.gen_data, 0)
    pin = device.type == "cuda"
    batches = [trainer.prepare(gather(trainer.data, p, pin=pin), train=True) for p in order[:4]]
    trainer.method.train()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        trainer.train_step(batches[i % len(batches)])
    sync(device)
    return steps * len(batches[0]) / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--config", default=str(ROOT / "params.yaml"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--subjects", type=int, default=24,
                   help="synthetic subjects per dataset (at least 10: CK+'s 10 folds)")
    p.add_argument("--image-size", type=int, help="override every family's input size")
    p.add_argument("--batch-size", type=int, help="override every family's batch size")
    p.add_argument("--cpu-plumbing", action="store_true",
                   help="run the jobs on the CPU (no GPU checks, no figures): tests the script itself")
    args = p.parse_args()
    if args.subjects < 10:
        p.error("--subjects must be at least 10 (CK+ has 10 subject-independent folds)")
    if args.cpu_plumbing:
        args.device = "cpu"
    elif not torch.cuda.is_available():
        print(NO_CUDA)
        return 2
    from ferbench.train.trainer import resolve_device, set_threads

    device = resolve_device(args.device)
    if device.type == "cpu":
        set_threads(2)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    config = yaml.safe_load(Path(args.config).read_text())
    jobs = {f: FAMILIES[f] for f in args.families}
    settings = {f: job_settings(config, *jobs[f]) for f in jobs}
    for s in settings.values():
        for key, value in (("image_size", args.image_size), ("batch_size", args.batch_size)):
            if value:
                s["train"][key] = value
    sizes = {int(s["train"]["image_size"]) for s in settings.values()}
    failures = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (plumbing only)"
    path = ("bf16 autocast, channels_last, pinned non-blocking copies" if device.type == "cuda"
            else "fp32, no GPU checks, figures meaningless")
    print(f"gpu_check: {name}, torch {torch.__version__}, {path}; {args.steps} timed steps")
    print(f"{'family':<11}{'run':<22}{'stage':<9}{'backbone':<13}{'size':>5}{'batch':>6}"
          f"{'engine img/s':>14}{'bare img/s':>12}{'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            data = prepare_data(Path(tmp), {d for _, _, d in jobs.values()}, sizes, args.subjects)
        except subprocess.CalledProcessError as err:
            print(f"gpu_check: preparing the synthetic data failed: `{' '.join(err.cmd[2:])}` exited {err.returncode}")
            return 1
        for family, (run, stage, dataset) in jobs.items():
            s = settings[family]
            cache, folds = data[dataset]
            head = (f"{family:<11}{run:<22}{stage:<9}{s['train']['backbone']:<13}"
                    f"{s['train']['image_size']:>5}{s['train']['batch_size']:>6}")
            try:
                e = time_engine(s, stage, cache, folds, device, args.warmup, args.steps)
                b = time_bare(s, stage, cache, folds, device, args.warmup, args.steps)
                sync(device)   # an asynchronous CUDA error surfaces here at the latest
                print(f"{head}{e:>14.0f}{b:>12.0f}{e / b:>7.2f}", flush=True)
            except Exception as err:  # noqa: BLE001 - every failure is reported, the rest still run
                line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                print(f"{head}  FAILED: {type(err).__name__}: {line}", flush=True)
                traceback.print_exc(file=sys.stderr)
                failures.append(family)
    if failures:
        print(f"gpu_check: {len(failures)} of {len(jobs)} families failed: {', '.join(failures)}")
        return 1
    print(f"gpu_check: all {len(jobs)} families ran on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
