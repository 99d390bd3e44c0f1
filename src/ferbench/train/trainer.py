"""The training loop of one job: a :class:`Trainer` over one method and one fold, and the
device and thread setup around it.

Batches are gathered from the memory-mapped cache by a background thread (one sorted fancy
index each), copied to the device (pinned, non-blocking on CUDA), augmented there per sample;
precision and memory format as the schedule's ``precision`` / ``memory_format`` ask (see
ferbench.precision); no host sync in the loop except every ``LOG_EVERY`` steps. Checkpoints
(ferbench.train.checkpoint) every ``checkpoint_every`` steps; a rerun resumes from the last one
and reaches the same result as an uninterrupted run (bitwise on CPU). The job around it (inputs,
artefacts): ferbench.train.jobs; evaluation of a trained method: ferbench.train.evaluation.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ferbench import io
from ferbench.data.augment import Augmenter
from ferbench.data.folds import FoldData, HostBatch, Prefetcher
from ferbench.errors import FerbenchError
from ferbench.methods.base import Batch, Method
from ferbench.precision import resolve as resolve_compute_path
from ferbench.train.checkpoint import (CHECKPOINT, CHECKPOINT_FORMAT, load_checkpoint, rng_state, save_torch,
                                       set_rng_state)
from ferbench.train.divergence import DivergenceWatch, require_finite
from ferbench.train.evaluation import evaluate

#: on the CPU, subnormal floats in the weights and optimiser state are zeroed this often
#: (steps), at the same steps in a resumed run as in an uninterrupted one
FLUSH_DENORMALS_EVERY = 25
#: training losses are averaged on the device and read back every LOG_EVERY steps (and at
#: each epoch's end, where validation runs)
LOG_EVERY = 10


# -- job setup --------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    name = (name or "auto").strip()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")  # the first device SLURM/CUDA_VISIBLE_DEVICES gives us
        assigned = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if assigned not in ("", "-1"):
            warnings.warn(f"CUDA_VISIBLE_DEVICES={assigned} assigns a GPU, but CUDA is not "
                          "available here: training on the CPU", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FerbenchError(f"--device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FerbenchError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FerbenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise FerbenchError(f"--device: {name!r} is not supported (auto, cpu, cuda, cuda:N)")
    return device


def set_threads(threads: int) -> None:
    if int(threads) < 1:  # never raised silently: a 0 from a script is a mistake to report
        raise FerbenchError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(int(threads))
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(int(threads))
    # flushes denormals in this thread only; the intra-op worker threads keep their own flag,
    # which is why flush_denormals() also zeroes them in the weights and optimiser state
    torch.set_flush_denormal(True)


@torch.no_grad()
def flush_denormals(method: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Zero every subnormal float in the parameters, buffers and optimiser state. On x86 CPUs
    arithmetic on subnormals is ~10-100x slower, and weights and Adam moments that decay toward
    zero end up there in long runs: a training step slowed about tenfold. Zero is within
    2^-126 of the value, far below any learning rate's resolution, so results do not move."""
    tensors = [t for t in (*method.parameters(), *method.buffers()) if t.is_floating_point()]
    for opt in optimizers.values():
        for state in opt.state.values():
            tensors.extend(v for v in state.values() if torch.is_tensor(v) and v.is_floating_point()
                           and v.dim() > 0)
    for t in tensors:
        if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
            t.masked_fill_(t.abs() < torch.finfo(t.dtype).tiny, 0.0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- the training loop ------------------------------------------------------------------------
class Trainer:
    """Drives one method through one stage on one fold. Used by the CLI and the benchmark."""

    def __init__(self, method: Method, data: FoldData, settings: dict[str, Any], device: torch.device,
                 seed: int, out: Path | None, progress: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.method = method
        self.data = data
        self.settings = settings
        self.schedule = settings["train"]
        self.device = device
        self.cuda = device.type == "cuda"
        self.out = out
        self.progress = progress
        self.log = log or (lambda line: None)
        self.seed = seed
        self.gen_data = torch.Generator().manual_seed(seed * 2 + 1)
        self.gen_aug = torch.Generator().manual_seed(seed * 2 + 2)
        self.augmenter = Augmenter(method.augment_config(), method.in_channels, self.gen_aug)
        self.compute = resolve_compute_path(self.schedule, device)
        self.method.autocast = self.autocast
        # called with the step number after each step and its checkpoint (benchmarks time
        # steps with them; the tests stop a run there, as a kill between two steps would)
        self.step_callbacks: list[Callable[[int], None]] = []
        self.log_rows: list[dict[str, Any]] = []
        self.step = 0
        self.epoch = 0
        self.index = 0                               # next batch within the epoch
        self.batches: list[np.ndarray] | None = None  # this epoch's order (None: draw it)
        self.acc_sums: dict[str, torch.Tensor] = {}
        self.acc_count = 0
        self.epoch_sums: dict[str, torch.Tensor] = {}  # loss terms summed over the epoch so far
        self.epoch_count = 0
        self.epoch_images = 0
        self.epoch_start = time.perf_counter()
        self.attempt_start_step = 0
        self.loop_start = time.perf_counter()
        self.wall_before = 0.0
        self.train_seconds = 0.0
        self.images_seen = 0
        self.last_losses: dict[str, float] = {}
        self.checkpoint_step = 0                     # step of the checkpoint on disk (0: none)
        self.tb: Any = None
        self.probes: dict[str, dict[str, Any]] = {}   # encoder probes before fine-tuning (train --pretrained)
        self.probe_p = float("nan")                   # p of "pretrained probe beats random" (paired)
        self.t_start = time.perf_counter()
        self.divergence = DivergenceWatch(self.log)

        self.compute.format_model(method.to(device))
        self.epochs = int(self.schedule["epochs"])
        self.steps_per_epoch = method.num_batches()
        self.total_steps = self.epochs * self.steps_per_epoch
        method.steps_per_epoch, method.total_steps = self.steps_per_epoch, self.total_steps
        self.optimizers, self.schedulers = method.configure_optimizers()
        self.checkpoint_every = max(1, int(self.schedule.get("checkpoint_every") or self.total_steps))

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.compute.autocast()

    # -- batches -----------------------------------------------------------------------------
    def to_batch(self, host: HostBatch) -> Batch:
        """Host batch -> device Batch (uint8 images expanded to [B, k, ...]; labels)."""
        pos = host.positions
        b, k = pos.shape
        images = host.images.to(self.device, non_blocking=True)
        inverse = host.inverse.to(self.device, non_blocking=True)
        images = images.index_select(0, inverse).view(b, k, *images.shape[1:])
        first = pos[:, 0]
        labels = torch.from_numpy(self.data.label[first]).to(self.device, non_blocking=True)
        va = torch.from_numpy(self.data.va[first]).to(self.device, non_blocking=True)
        return Batch(positions=pos, images=images, labels=labels, va=va)

    def prepare(self, host: HostBatch, train: bool) -> Batch:
        batch = self.to_batch(host)
        views = self.method.transform(batch, self.augmenter, train=train)
        batch.views = [self.compute.format_batch(v) for v in views]
        return batch

    # -- one iteration -----------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        m = self.method
        if m.manual_optimization:
            out = m.step(batch, self.optimizers)
        else:
            with self.autocast():
                out = m.step(batch)
            if "loss" not in out:
                raise RuntimeError(f"{type(m).__name__}.step returned no 'loss'")
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            for opt in self.optimizers.values():
                opt.step()
        for sched in self.schedulers:
            sched.step()
        return out

    def accumulate(self, out: dict[str, torch.Tensor]) -> None:
        for key, value in out.items():
            if not torch.is_tensor(value):
                continue
            v = value.detach().float().mean()
            for sums in (self.acc_sums, self.epoch_sums):
                if key in sums:
                    sums[key] += v
                else:
                    sums[key] = v.clone()
        self.acc_count += 1
        self.epoch_count += 1

    def learning_rates(self) -> dict[str, float]:
        """``lr``: the first parameter group's rate; with several groups also ``lr_<group>``
        for each (groups are named by the method's ``param_groups``)."""
        groups = [g for opt in self.optimizers.values() for g in opt.param_groups]
        row = {"lr": float(groups[0]["lr"])} if groups else {}
        if len(groups) > 1:
            row.update({f"lr_{g.get('name', i)}": float(g["lr"]) for i, g in enumerate(groups)})
        return row

    def check_finite(self) -> None:
        """Stop on a non-finite value in anything the method returned (every loss term, whatever
        its name): training on would burn the budget and report garbage. Called before each
        checkpoint too, so the checkpoint on disk is always the last good one."""
        if not self.acc_count:
            return
        keys = sorted(self.acc_sums)
        values = torch.stack([self.acc_sums[k] for k in keys]).cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            key = keys[int(bad[0])]
            kept = (f"last good checkpoint (step {self.checkpoint_step}) kept" if self.checkpoint_step
                    else "no checkpoint written yet")
            raise FerbenchError(
                f"{self.settings.get('method_name')}: training {key!r} is {float(values[int(bad[0])])} "
                f"within steps {self.step - self.acc_count + 1}-{self.step} (lower lr or check the data); "
                f"{kept}")

    def flush_log(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch}
        row.update(self.learning_rates())
        if self.acc_count:
            self.check_finite()
            keys = sorted(self.acc_sums)
            means = (torch.stack([self.acc_sums[k] for k in keys]) / self.acc_count).tolist()
            row.update(zip(keys, means))
            self.last_losses = dict(zip(keys, means))
        row.update(extra or {})
        self.acc_sums, self.acc_count = {}, 0
        self.log_rows.append(row)
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(key, value, self.step)
        return row

    # -- checkpointing -----------------------------------------------------------------------
    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed (not how often it is written)."""
        keep = {k: self.settings.get(k)
                for k in ("dataset", "method_name", "method", "stage", "all_subjects")}
        keep["train"] = {k: v for k, v in self.schedule.items()
                         if k not in ("checkpoint_every", "eval_batch_size")}
        return json.dumps({**keep, "seed": self.seed, "fold": self.data.fold}, sort_keys=True, default=str)

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint(),
            "step": self.step, "epoch": self.epoch, "index": self.index,
            "batches": None if self.batches is None else [torch.from_numpy(b) for b in self.batches],
            "model": self.method.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers.values()],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "rng": rng_state(self.device, {"data": self.gen_data, "aug": self.gen_aug}),
            "acc": {"sums": {k: v.cpu() for k, v in self.acc_sums.items()}, "count": self.acc_count},
            "epoch_acc": {"sums": {k: v.cpu() for k, v in self.epoch_sums.items()},
                          "count": self.epoch_count},
            "log_rows": copy.deepcopy(self.log_rows),
            "last_losses": dict(self.last_losses),
            "wall_s": self.wall_before + (time.perf_counter() - self.t_start),
        }

    def save_checkpoint(self) -> None:
        if self.out is None:
            return
        self.check_finite()
        state = self.checkpoint_state()
        require_finite(state, self.out / CHECKPOINT, f"checkpoint of step {self.step}",
                       f"; last finite checkpoint (step {self.checkpoint_step}) kept" if self.checkpoint_step else "")
        save_torch(self.out / CHECKPOINT, state)
        self.checkpoint_step = self.step
        self.write_log_csv()
        if hasattr(self.log, "save"):
            self.log.save()
        if self.tb is not None:
            self.tb.flush()

    def restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state.get("fingerprint") != self.fingerprint():
            raise FerbenchError(f"{path}: checkpoint of a different job or configuration; "
                                f"delete it to start afresh")
        try:
            self.method.load_state_dict(state["model"])
            for opt, s in zip(self.optimizers.values(), state["optimizers"], strict=True):
                opt.load_state_dict(s)
            for sched, s in zip(self.schedulers, state["schedulers"], strict=True):
                sched.load_state_dict(s)
            set_rng_state(state["rng"], self.device, {"data": self.gen_data, "aug": self.gen_aug})
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise FerbenchError(f"{path}: checkpoint does not fit this job ({type(err).__name__}: "
                                f"{str(err).splitlines()[0]}); delete it to start afresh") from None
        self.step, self.epoch, self.index = int(state["step"]), int(state["epoch"]), int(state["index"])
        self.batches = None if state["batches"] is None else [b.numpy() for b in state["batches"]]
        self.acc_sums = {k: v.to(self.device) for k, v in state["acc"]["sums"].items()}
        self.acc_count = int(state["acc"]["count"])
        # the epoch's loss means span the resume; its images/s counts this attempt's images only
        epoch_acc = state.get("epoch_acc") or {"sums": {}, "count": 0}
        self.epoch_sums = {k: v.to(self.device) for k, v in epoch_acc["sums"].items()}
        self.epoch_count, self.epoch_images = int(epoch_acc["count"]), 0
        self.log_rows = list(state["log_rows"])
        self.last_losses = dict(state.get("last_losses") or {})
        self.wall_before = float(state["wall_s"])
        self.checkpoint_step = self.step

    def write_log_csv(self) -> None:
        if self.out is not None:
            io.write_text(self.out / "train_log.csv", pd.DataFrame(self.log_rows).to_csv(index=False))

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = True) -> None:
        self.t_start = time.perf_counter()
        ckpt = None if self.out is None else self.out / CHECKPOINT
        resumed = False
        if resume and ckpt is not None and ckpt.exists():
            if load_checkpoint(ckpt).get("fingerprint") == self.fingerprint():
                self.restore(ckpt)
                resumed = True
                self.log(f"resumed from {ckpt} at step {self.step}/{self.total_steps}")
            else:
                # an interrupted attempt under another config: the rerun means the new one
                self.log(f"{ckpt}: left by a different configuration of this job; starting afresh")
                ckpt.unlink()
        self.tb = None
        if self.out is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tb"), purge_step=self.step if resumed else None)
        loop_start = time.perf_counter()
        self.loop_start, self.attempt_start_step = loop_start, self.step
        self.epoch_start = loop_start
        self.method.train()
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress,
                   desc=f"{self.settings['stage']} {self.settings['method_name']}", unit="step",
                   dynamic_ncols=True, leave=False)
        try:
            while self.epoch < self.epochs:
                if self.batches is None:
                    self.batches = self.method.epoch_batches(self.gen_data, self.epoch)
                    if len(self.batches) != self.steps_per_epoch:
                        raise RuntimeError(f"{type(self.method).__name__}.epoch_batches gave "
                                           f"{len(self.batches)} batches, num_batches() says {self.steps_per_epoch}")
                with Prefetcher(self.data, self.batches[self.index:], pin=self.cuda) as feed:
                    for host in feed:
                        batch = self.prepare(host, train=True)
                        out = self.train_step(batch)
                        if self.step == 0:
                            self.divergence.first_step(out)
                        self.method.on_step_end(self.step + 1)
                        self.accumulate(out)
                        self.step += 1
                        if not self.cuda and self.step % FLUSH_DENORMALS_EVERY == 0:
                            flush_denormals(self.method, self.optimizers)
                        self.index += 1
                        self.images_seen += len(batch)
                        self.epoch_images += len(batch)
                        epoch_end = self.index == len(self.batches)
                        if epoch_end:
                            self.end_epoch()
                        elif self.step % LOG_EVERY == 0:
                            row = self.flush_log()
                            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                                             if k not in ("step", "epoch", "lr") and isinstance(v, float)})
                        if self.step % self.checkpoint_every == 0 or self.step == self.total_steps:
                            self.save_checkpoint()
                        bar.update(1)
                        for callback in self.step_callbacks:
                            callback(self.step)
        finally:
            self.train_seconds += time.perf_counter() - loop_start
            bar.close()
            if self.tb is not None:
                self.tb.close()

    def end_epoch(self) -> None:
        now = time.perf_counter()
        epoch_seconds = now - self.epoch_start
        extra: dict[str, Any] = {}
        if self.method.stage == "train" and len(self.data.indices.get("val", [])):
            scores, _, _ = evaluate(self, self.data.indices["val"], features=False)
            extra = {f"val_{k}": v for k, v in scores["metrics"].items()}
        self.method.on_epoch_end(self.epoch)
        row = self.flush_log(extra)
        if self.epoch == 0:
            self.divergence.end_of_first_epoch(row, self.learning_rates().get("lr"))
        self.log(self.epoch_line(epoch_seconds, extra))
        self.epoch += 1
        self.index = 0
        self.batches = None
        self.epoch_sums, self.epoch_count, self.epoch_images = {}, 0, 0
        self.epoch_start = time.perf_counter()

    def epoch_line(self, epoch_seconds: float, extra: dict[str, Any]) -> str:
        """One run.log line per epoch: stage, epoch/total, the epoch's mean loss terms,
        training images/s (validation excluded), elapsed time and the ETA at this attempt's
        pace. A resumed epoch's means cover the whole epoch (kept in the checkpoint), its
        images/s this attempt's share."""
        losses = {}
        if self.epoch_count:
            keys = sorted(self.epoch_sums)
            means = (torch.stack([self.epoch_sums[k] for k in keys]) / self.epoch_count).tolist()
            losses = dict(zip(keys, means))
        done = self.step - self.attempt_start_step
        spent = time.perf_counter() - self.loop_start
        eta = spent / done * (self.total_steps - self.step) if done else math.nan
        parts = [f"{self.settings['stage']} epoch {self.epoch + 1}/{self.epochs}: "
                 + (", ".join(f"{k} {v:.4g}" for k, v in losses.items()) or "no loss terms"),
                 f"{self.epoch_images / max(epoch_seconds, 1e-9):.0f} images/s",
                 f"elapsed {format_duration(self.wall_s)}", f"ETA {format_duration(eta)}"]
        if extra:
            parts.append(", ".join(f"{k} {v:.4f}" for k, v in extra.items()))
        return "; ".join(parts)

    @property
    def wall_s(self) -> float:
        return self.wall_before + (time.perf_counter() - self.t_start)

    def speed_record(self) -> dict[str, Any]:
        """metrics.json's record of how and how fast this job computed (beside wall_s)."""
        return {**self.compute.record(),
                "train_images_per_s": round(self.images_seen / max(self.train_seconds, 1e-9), 1)}


def format_duration(seconds: float) -> str:
    """1h02m03s / 4m05s / 6s; ? when unknown."""
    if not math.isfinite(seconds):
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
