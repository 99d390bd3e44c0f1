"""Training throughput with subnormal weights, with and without ferbench's flush, in one run.

Long CPU runs drive some weights and Adam moments toward zero until they become subnormal
floats, and x86 arithmetic on subnormals takes a slow path: a training step slows many-fold.
The engine zeroes them every ``FLUSH_DENORMALS_EVERY`` steps (``ferbench.train.trainer.flush_denormals``).

This script trains one network from three starts and prints images/s and the ratios:
  fresh      freshly initialised weights
  subnormal  the same weights with a share of weights and Adam moments made subnormal
  flushed    the subnormal start after ``flush_denormals`` (what the engine does)
Target: flushed within 10% of fresh.

    python benchmarks/bench_denormals.py [--backbone smallcnn] [--size 48] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from ferbench.train.trainer import flush_denormals, set_threads
from ferbench.methods import TaskInfo
from ferbench.methods.supervised import Supervised


def images_per_second(method: Supervised, optimizers, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = optimizers["main"]
    for _ in range(2):  # warm-up
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(method.predict(x), y).backward()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(method.predict(x), y).backward()
        # the update itself, without moving the weights out of the subnormal range
        with torch.no_grad():
            for group in opt.param_groups:
                for p in group["params"]:
                    state = opt.state[p]
                    if p.grad is not None and "exp_avg" in state:
                        state["exp_avg"].mul_(0.9).add_(p.grad, alpha=0.1)
                        state["exp_avg_sq"].mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
    return steps * len(x) / (time.perf_counter() - start)


def make_subnormal(method: Supervised, optimizers, share: float, generator: torch.Generator) -> int:
    tiny = torch.finfo(torch.float32).tiny
    count = 0
    with torch.no_grad():
        tensors = list(method.parameters())
        for state in optimizers["main"].state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v) and v.dim()]
        for t in tensors:
            pick = torch.rand(t.shape, generator=generator) < share
            t[pick] = tiny * 0.25 * torch.sign(t[pick] + 1e-30)
            count += int(pick.sum())
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="smallcnn")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--share", type=float, default=0.3, help="share of values made subnormal")
    args = ap.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    task = TaskInfo("classification", tuple("abcdefg"), args.size)
    settings = {"method_name": "bench", "method": {},
                "train": {"backbone": args.backbone, "image_size": args.size, "lr": 1e-3, "optimizer": "adam"}}
    fresh = Supervised(settings, task)
    fresh_opts, _ = fresh.configure_optimizers()
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 7, (args.batch,))
    fresh_opts["main"].zero_grad()
    F.cross_entropy(fresh.predict(x), y).backward()
    fresh_opts["main"].step()  # Adam state exists

    sub = copy.deepcopy(fresh)
    sub_opts, _ = sub.configure_optimizers()
    sub_opts["main"].load_state_dict(fresh_opts["main"].state_dict())
    n = make_subnormal(sub, sub_opts, args.share, torch.Generator().manual_seed(0))
    flushed = copy.deepcopy(sub)
    flushed_opts, _ = flushed.configure_optimizers()
    flushed_opts["main"].load_state_dict(sub_opts["main"].state_dict())
    flush_denormals(flushed, flushed_opts)

    rates = {name: images_per_second(m, o, x, y, args.steps)
             for name, m, o in (("fresh", fresh, fresh_opts), ("subnormal", sub, sub_opts),
                                ("flushed", flushed, flushed_opts))}
    print(f"{args.backbone} {args.size}px batch {args.batch}, {args.threads} thread(s); "
          f"{n} values made subnormal ({args.share:.0%})")
    for name, rate in rates.items():
        print(f"  {name:10s} {rate:8.1f} images/s   {rate / rates['fresh']:.2f} x fresh")


if __name__ == "__main__":
    main()
