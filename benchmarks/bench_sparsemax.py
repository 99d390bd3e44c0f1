"""AVCE's costs, measured in one run.

sparsemax: a differentiable sparsemax on a 256 x 32 batch, forward and backward, two ways: the
           closed form (``ferbench.methods.losses.sparsemax``, sort-based, one batched call, autograd)
           against the authors' approach, differentiating through a convex solver's optimum
           (per sample: a CVXPY/ECOS solve with the problem compiled once, the KKT Jacobian at
           the optimum by autograd, a linear solve for the backward); their ratio (target
           >= 5000x), the solves alone against the closed form's forward, and the largest
           difference of the two results.
training:  images/s of one training step (forward, backward, optimiser steps; batches already
           augmented and on the device) for the supervised baseline, AVCE without L_dis (one
           pass) and AVCE (two passes), same backbone and batch size; the ratios to the
           baseline, and the share of AVCE's step the second pass takes. Timed alternately
           ``--repeats`` times, medians compared.

On the CPU every time is this process's CPU time (``time.process_time``), so other jobs on a
shared machine do not inflate it; run with ``--threads 1`` there. On CUDA: wall time.

    python benchmarks/bench_sparsemax.py --device cpu --threads 1 --backbone smallcnn --image-size 48
    python benchmarks/bench_sparsemax.py --device cuda --backbone resnet18 --image-size 112 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from ferbench.methods.losses import sparsemax
from ferbench.methods import TaskInfo, get_method
from ferbench.methods.base import Batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(device: torch.device) -> float:
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def _kkt_residual(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """KKT conditions of min ||p - z||^2 s.t. -p <= 0, sum(p) = 1 at y = (p, lambda, nu):
    stationarity, complementary slackness, primal equality (zero at the solution)."""
    d = z.shape[0]
    p, lam, nu = y[:d], y[d:2 * d], y[2 * d:]
    return torch.cat([2 * (p - z) - lam + nu, -lam * p, p.sum(-1, keepdim=True) - 1])


def bench_sparsemax(args: argparse.Namespace) -> dict:
    """Per batch, what a differentiable sparsemax costs each way: the closed form's forward and
    backward, against a solver route that differentiates through the optimum (the authors'
    approach): per sample a CVXPY solve (primal and duals; the problem compiled once with a
    parameter), the KKT system's Jacobian at the optimum by autograd, and for the backward a
    linear solve with it. The solves alone are reported too."""
    import cvxpy as cp

    rng = np.random.default_rng(0)
    z_np = rng.normal(scale=2.0, size=(args.rows, args.dim))
    z = torch.from_numpy(z_np).float().to(args.device_obj)
    grad = torch.from_numpy(rng.normal(size=z_np.shape)).float().to(args.device_obj)
    forward, both = [], []
    for _ in range(args.closed_repeats):
        zz = z.detach().requires_grad_()
        sync(args.device_obj)
        t0 = clock(args.device_obj)
        out = sparsemax(zz)
        sync(args.device_obj)
        t1 = clock(args.device_obj)
        out.backward(grad)
        sync(args.device_obj)
        forward.append(t1 - t0)
        both.append(clock(args.device_obj) - t0)
    closed_fwd = statistics.median(forward[len(forward) // 10:])   # warm-up excluded
    closed = statistics.median(both[len(both) // 10:])

    p, zp = cp.Variable(args.dim), cp.Parameter(args.dim)
    nonneg, simplex = p >= 0, cp.sum(p) == 1
    problem = cp.Problem(cp.Minimize(cp.sum_squares(p - zp)), [nonneg, simplex])
    solver = args.solver if args.solver in cp.installed_solvers() else cp.CLARABEL
    zp.value = z_np[0]
    problem.solve(solver=solver)   # compile once
    solved = np.empty_like(z_np)
    solve_s = jac_s = back_s = 0.0
    for i, row in enumerate(z_np):   # the solver runs on the CPU whatever the device: CPU time
        t0 = time.process_time()
        zp.value = row
        problem.solve(solver=solver)
        solved[i] = p.value
        t1 = time.process_time()
        zr = torch.from_numpy(row)
        y = torch.cat([torch.from_numpy(p.value), torch.from_numpy(np.asarray(nonneg.dual_value)),
                       torch.tensor([float(simplex.dual_value)])])
        jac = torch.autograd.functional.jacobian(lambda v: _kkt_residual(v, zr), y)
        t2 = time.process_time()
        g = torch.cat([grad[i].double().cpu(), torch.zeros(args.dim + 1, dtype=torch.float64)])
        torch.linalg.solve(jac.T, g)   # the implicit-function backward of one sample
        t3 = time.process_time()
        solve_s, jac_s, back_s = solve_s + t1 - t0, jac_s + t2 - t1, back_s + t3 - t2
    route = solve_s + jac_s + back_s
    return {"batch": [args.rows, args.dim], "device": str(args.device_obj), "solver": solver,
            "closed_form_forward_ms": closed_fwd * 1e3,
            "closed_form_forward_backward_ms": closed * 1e3,
            "solver_solves_ms": solve_s * 1e3,
            "solver_route_forward_backward_ms": route * 1e3,
            "ratio_differentiable": route / closed,
            "ratio_solves_vs_closed_forward": solve_s / closed_fwd,
            # float64 closed form: what is left is the solver's tolerance
            "max_abs_diff": float(np.abs(sparsemax(torch.from_numpy(z_np)).numpy() - solved).max()),
            "float32_sum_error": float((out.double().sum(1) - 1).abs().max())}


def build(name: str, hp: dict, args: argparse.Namespace):
    settings = {"method_name": name, "method": hp,
                "train": {"backbone": args.backbone, "image_size": args.image_size, "lr": 1e-4,
                          "batch_size": args.batch_size, "optimizer": "adam", "weight_decay": 0.0}}
    torch.manual_seed(0)
    method = get_method(name)(settings, TaskInfo("va", (), args.image_size)).to(args.device_obj)
    if args.device_obj.type == "cuda":
        method.to(memory_format=torch.channels_last)
        method.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    optimizers, _ = method.configure_optimizers()
    return method, optimizers


def train_step(method, optimizers, batch: Batch) -> None:
    if method.manual_optimization:
        method.training_step(batch, optimizers)
        return
    with method.autocast():
        loss = method.training_step(batch)["loss"]
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers.values():
        opt.step()


def bench_training(args: argparse.Namespace) -> dict:
    device, b, s = args.device_obj, args.batch_size, args.image_size
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    batches = [Batch(positions=np.zeros((b, 1), np.int64), images=torch.zeros(0, dtype=torch.uint8),
                     labels=torch.full((b,), -1, device=device),
                     va=(torch.rand(b, 2, generator=g) * 2 - 1).to(device),
                     views=[torch.randn(b, 3, s, s, generator=g).to(device).contiguous(memory_format=fmt)])
               for _ in range(4)]
    runs = {"supervised": build("supervised", {}, args), "avce_no_dis": build("avce", {"dis": False}, args),
            "avce": build("avce", {}, args)}
    speed: dict[str, list[float]] = {k: [] for k in runs}
    for rep in range(args.repeats + 1):
        for name, (method, optimizers) in runs.items():
            method.train()
            sync(device)
            t0 = clock(device)
            for i in range(args.steps):
                train_step(method, optimizers, batches[i % len(batches)])
            sync(device)
            if rep:   # the first round warms up
                speed[name].append(args.steps * b / (clock(device) - t0))
    med = {k: statistics.median(v) for k, v in speed.items()}
    return {"backbone": args.backbone, "image_size": s, "batch_size": b, "device": str(device),
            "images_per_s": med,
            "avce_vs_supervised": med["avce"] / med["supervised"],
            "avce_no_dis_vs_supervised": med["avce_no_dis"] / med["supervised"],
            # step time = 1 / speed: the share of AVCE's step that L_dis's second pass takes
            "second_pass_share": 1 - med["avce"] / med["avce_no_dis"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--solver", default="ECOS", help="CVXPY solver (the authors': ECOS; CLARABEL if absent)")
    ap.add_argument("--closed-repeats", type=int, default=200)
    ap.add_argument("--backbone", default="smallcnn")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args()
    args.device_obj = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"sparsemax": bench_sparsemax(args)}
    if not args.skip_training:
        result["training"] = bench_training(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
