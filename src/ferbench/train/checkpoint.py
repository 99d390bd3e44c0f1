"""Checkpoint files of a training job: what one holds, and every RNG state it must restore.

A checkpoint is one ``torch.save`` of plain tensors and containers (loadable with
``weights_only=True``), written atomically; the Trainer fills it (model, optimisers, schedulers,
batch order, log so far) and checks its fingerprint before resuming.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferbench import io
from ferbench.errors import FerbenchError

CHECKPOINT = "checkpoint_last.pt"
CHECKPOINT_FORMAT = 1


def rng_state(device: torch.device, gens: dict[str, torch.Generator]) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in gens.items()},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device, gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    random.setstate(_tuplify(state["python"]))
    for name, g in gens.items():
        g.set_state(state["generators"][name])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _tuplify(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_tuplify(v) for v in value)
    return value


def load_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load(weights_only=True); any failure is a FerbenchError naming the file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise FerbenchError(f"{path}: corrupt or unreadable checkpoint ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}); delete it to start afresh") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise FerbenchError(f"{path}: not a ferbench checkpoint (format {CHECKPOINT_FORMAT}); "
                            f"delete it to start afresh")
    return payload


def save_torch(path: Path, obj: Any) -> None:
    """torch.save atomically; refused (one line) when a tensor in ``obj`` is NaN or inf."""
    from ferbench.train.divergence import require_finite

    require_finite(obj, path, path.name)
    with io.atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)
