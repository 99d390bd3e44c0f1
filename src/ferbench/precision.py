"""How a job computes: numeric precision and memory format, detected for the machine it runs on.

Two schedule keys choose (budgets.<name>, or any layer that overrides it):

``precision: auto | fp32 | bf16``
    bf16 autocast around the forward passes; the weights, the optimiser state, every loss and
    every metric stay float32. ``auto``: bf16 on CUDA, and on a CPU only where it computes bf16
    natively (AVX512-BF16 or AMX on x86, the BF16 extension on Arm); elsewhere float32, because
    emulated bf16 is several times *slower* than float32 (bench_cpu_path measures it).
``memory_format: auto | contiguous | channels_last``
    The layout of the 4-D image batches and the convolution weights. ``auto``: channels_last on
    CUDA, and on a CPU where PyTorch has oneDNN (mkldnn), whose convolutions run faster in it.

A key that is absent means ``auto``. The job's run.log and metrics.json record what ``auto``
resolved to, so two results can be told apart by how they were computed.

Losses run in float32 whatever the autocast: :func:`float32_loss` turns autocast off inside a
loss and lifts half-precision inputs to float32 (under autocast a matmul inside a loss, e.g. a
similarity matrix, would otherwise run in bf16).
"""

from __future__ import annotations

import contextlib
import functools
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import torch

from ferbench.errors import FerbenchError

PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
#: /proc/cpuinfo flags that mean native bf16 arithmetic on x86
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _torch_cpu_query(name: str) -> bool | None:
    """One of torch.cpu's capability queries (private in torch; None where this torch lacks it)."""
    query = getattr(torch.cpu, name, None)
    if query is None:
        return None
    try:
        return bool(query())
    except RuntimeError:
        return None


def proc_cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The first processor's flags from /proc/cpuinfo (Linux; empty elsewhere)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):   # x86, Arm
            return set(value.split())
    return set()


def cpu_report() -> dict[str, Any]:
    """What this machine's CPU offers, as torch and the kernel report it."""
    flags = proc_cpu_flags()
    report = {
        "machine": platform.machine(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),   # e.g. AVX2, AVX512
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "avx512": _torch_cpu_query("_is_avx512_supported"),
        "avx512_bf16": _torch_cpu_query("_is_avx512_bf16_supported"),
        "amx": _torch_cpu_query("_is_amx_tile_supported"),
        "flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "bf16", "sve", "asimd"))),
    }
    report["native_bf16"] = native_bf16(report, flags)
    return report


def native_bf16(report: Mapping[str, Any] | None = None, flags: set[str] | None = None) -> bool:
    """True where the CPU computes bf16 in hardware: torch's AVX512-BF16 / AMX queries (the
    kernel's flags where this torch has no query), or an Arm CPU with the BF16 extension."""
    flags = proc_cpu_flags() if flags is None else flags
    if report is None:
        report = {"avx512_bf16": _torch_cpu_query("_is_avx512_bf16_supported"),
                  "amx": _torch_cpu_query("_is_amx_tile_supported"), "machine": platform.machine()}
    if report.get("avx512_bf16") or report.get("amx"):
        return True
    if report.get("avx512_bf16") is None and report.get("amx") is None:
        if any(f in flags for f in NATIVE_BF16_FLAGS):
            return True
    return str(report.get("machine", "")).lower() in ("aarch64", "arm64") and "bf16" in flags


@dataclass(frozen=True)
class ComputePath:
    """The resolved precision and memory format of one job on one device."""

    device_type: str
    precision: str        # fp32 | bf16
    memory_format: str    # contiguous | channels_last
    requested: tuple[str, str] = ("auto", "auto")

    @property
    def torch_memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.memory_format == "channels_last" else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def format_batch(self, x: torch.Tensor) -> torch.Tensor:
        """A 4-D image batch in this path's layout (other tensors unchanged)."""
        return x.contiguous(memory_format=self.torch_memory_format) if x.dim() == 4 else x

    def format_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Convolution weights in this path's layout (``Module.to`` touches 4-D tensors only)."""
        if self.memory_format == "channels_last":
            model.to(memory_format=torch.channels_last)
        return model

    def record(self) -> dict[str, str]:
        """What metrics.json and run.log say about it."""
        return {"precision": self.precision, "memory_format": self.memory_format}

    def describe(self) -> str:
        asked = [f"{k} {a}" for k, a in zip(("precision", "memory_format"), self.requested) if a == "auto"]
        return (f"{self.precision}, {self.memory_format}"
                + (f" ({' and '.join(asked)} resolved on this {self.device_type})" if asked else ""))


def resolve(schedule: Mapping[str, Any], device: torch.device | str) -> ComputePath:
    """The compute path a schedule asks for on ``device`` (``auto`` decided by detection)."""
    device_type = torch.device(device).type
    precision = str(schedule.get("precision") or "auto")
    memory_format = str(schedule.get("memory_format") or "auto")
    if precision not in PRECISIONS:
        raise FerbenchError(f"precision: {precision!r} (choose from {', '.join(PRECISIONS)})")
    if memory_format not in MEMORY_FORMATS:
        raise FerbenchError(f"memory_format: {memory_format!r} (choose from {', '.join(MEMORY_FORMATS)})")
    cuda = device_type == "cuda"
    resolved_precision = precision
    if precision == "auto":
        resolved_precision = "bf16" if (cuda or (device_type == "cpu" and native_bf16())) else "fp32"
    resolved_format = memory_format
    if memory_format == "auto":
        resolved_format = ("channels_last" if cuda or (device_type == "cpu" and torch.backends.mkldnn.is_available())
                           else "contiguous")
    return ComputePath(device_type, resolved_precision, resolved_format, (precision, memory_format))


F = TypeVar("F", bound=Callable[..., Any])


def _lift(value: Any) -> Any:
    if torch.is_tensor(value) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    return value


def float32_loss(fn: F) -> F:
    """Run a loss with autocast off and bf16/fp16 tensor arguments lifted to float32 (float64
    ones stay float64): every loss of every method is computed in float32 at least."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with contextlib.ExitStack() as stack:
            for device_type in ("cpu", "cuda"):
                if torch.is_autocast_enabled(device_type):
                    stack.enter_context(torch.autocast(device_type, enabled=False))
            return fn(*(_lift(a) for a in args), **{k: _lift(v) for k, v in kwargs.items()})
    return wrapper  # type: ignore[return-value]
