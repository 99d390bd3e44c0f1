"""ferbench.precision: what `auto` resolves to, the CPU detection it rests on, and losses that
stay float32 under bf16 autocast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ferbench import precision
from ferbench.methods import losses, ssl_losses
from ferbench.errors import FerbenchError


# -- detection -------------------------------------------------------------------------------
def test_cpuinfo_flags_are_read_from_the_first_processor(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx avx2 avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert precision.proc_cpu_flags(info) == {"fpu", "avx", "avx2", "avx512_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 sve\n")
    assert "bf16" in precision.proc_cpu_flags(arm)
    assert precision.proc_cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("report, flags, native", [
    ({"avx512_bf16": True, "amx": False, "machine": "x86_64"}, set(), True),
    ({"avx512_bf16": False, "amx": True, "machine": "x86_64"}, set(), True),
    # torch's own answer wins over the kernel's flags where torch has the query
    ({"avx512_bf16": False, "amx": False, "machine": "x86_64"}, {"avx512_bf16"}, False),
    ({"avx512_bf16": None, "amx": None, "machine": "x86_64"}, {"avx2", "amx_bf16"}, True),
    ({"avx512_bf16": None, "amx": None, "machine": "x86_64"}, {"avx2", "avx512f"}, False),
    ({"avx512_bf16": None, "amx": None, "machine": "aarch64"}, {"asimd", "bf16"}, True),
    ({"avx512_bf16": None, "amx": None, "machine": "aarch64"}, {"asimd"}, False),
])
def test_native_bf16_from_torch_queries_then_flags(report, flags, native) -> None:
    assert precision.native_bf16(report, flags) is native


def test_this_machine_report_agrees_with_torch() -> None:
    report = precision.cpu_report()
    assert report["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["mkldnn"] == torch.backends.mkldnn.is_available()
    assert report["native_bf16"] == precision.native_bf16()


# -- resolution ------------------------------------------------------------------------------
def test_auto_follows_detection_on_the_cpu(monkeypatch) -> None:
    for native in (False, True):
        monkeypatch.setattr(precision, "native_bf16", lambda *a, native=native: native)
        path = precision.resolve({}, "cpu")
        assert path.precision == ("bf16" if native else "fp32")
        assert path.memory_format == ("channels_last" if torch.backends.mkldnn.is_available() else "contiguous")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert precision.resolve({"memory_format": "auto"}, "cpu").memory_format == "contiguous"


def test_auto_on_cuda_and_explicit_values(monkeypatch) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda *a: False)
    assert precision.resolve({}, "cuda").record() == {"precision": "bf16", "memory_format": "channels_last"}
    # explicit keys win everywhere, bf16 on a CPU without native bf16 included (the user asked)
    path = precision.resolve({"precision": "bf16", "memory_format": "contiguous"}, "cpu")
    assert path.record() == {"precision": "bf16", "memory_format": "contiguous"}
    assert "resolved" not in path.describe()
    assert precision.resolve({"precision": "fp32"}, "cuda").precision == "fp32"


@pytest.mark.parametrize("key, value", [("precision", "fp16"), ("memory_format", "nhwc")])
def test_an_unknown_value_is_one_line_naming_the_key(key, value) -> None:
    with pytest.raises(FerbenchError, match=rf"^{key}: '{value}' \(choose from auto, "):
        precision.resolve({key: value}, "cpu")


def test_the_path_formats_batches_and_models_and_autocasts() -> None:
    fast = precision.ComputePath("cpu", "bf16", "channels_last")
    plain = precision.ComputePath("cpu", "fp32", "contiguous")
    x = torch.randn(2, 3, 8, 8)
    assert fast.format_batch(x).is_contiguous(memory_format=torch.channels_last)
    assert not fast.format_batch(x).is_contiguous()
    assert plain.format_batch(x).is_contiguous()
    assert fast.format_batch(torch.randn(2, 5)).shape == (2, 5)
    conv = fast.format_model(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()))
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert conv[0].weight.dtype == torch.float32        # master weights stay float32
    a = torch.randn(4, 4)
    with fast.autocast():
        assert (a @ a).dtype == torch.bfloat16
    with plain.autocast():
        assert (a @ a).dtype == torch.float32


# -- losses in float32 under autocast ----------------------------------------------------------
def _inputs(seed: int, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


def _cases():
    a, b = _inputs(0, (16, 32), (16, 32))
    (queue,) = _inputs(1, (64, 32))
    v, va, vn = _inputs(2, (16, 8), (16, 8), (16, 8))
    x, y = _inputs(3, (16, 2), (16, 2))
    return {
        "nt_xent_pairs": lambda: ssl_losses.nt_xent_pairs(a, b, 0.1),
        "moco_loss": lambda: ssl_losses.moco_loss(a, b, queue, 0.2),
        "byol_loss": lambda: ssl_losses.byol_loss(a, b),
        "squared_distances": lambda: losses.squared_distances(a, b),
        "barlow_twins_loss": lambda: losses.barlow_twins_loss(a, b),
        "avce_discriminative_loss": lambda: losses.avce_discriminative_loss(v, va, vn)[0],
        "avce_infonce_loss": lambda: losses.avce_infonce_loss(x, y, y.flip(0), losses.avce_similarity),
        "sparsemax": lambda: losses.sparsemax(v),
        "av_loss": lambda: losses.av_loss(torch.tanh(x), torch.tanh(y)),
        "half_squared_error": lambda: losses.half_squared_error(v, va),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_losses_are_float32_under_bf16_autocast(name: str) -> None:
    case = _cases()[name]
    plain = case()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = case()
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=0, atol=0)


def test_without_the_guard_a_similarity_matrix_would_be_bf16() -> None:
    """What float32_loss prevents: autocast runs a loss's matmul in bf16 (the values move)."""
    (z,) = _inputs(0, (32, 32))
    raw, positive = ssl_losses.nt_xent.__wrapped__, ssl_losses.pair_positives(16)
    plain = raw(z, positive, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = raw(z, positive, 0.1)
    assert (under - plain).abs().item() > 1e-4


def test_bf16_inputs_are_lifted_and_float64_kept() -> None:
    a, b = _inputs(0, (16, 32), (16, 32))
    assert ssl_losses.byol_loss(a.bfloat16(), b.bfloat16()).dtype == torch.float32
    assert losses.sparsemax(a.double()).dtype == torch.float64
