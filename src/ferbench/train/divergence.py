"""Two guards against training that has gone wrong numerically.

``nonfinite_tensors`` lists the NaN/inf tensors of anything about to be saved: a checkpoint, a
model.pt or an encoder.pt is written only when every tensor is finite (a resumed run must not
start from NaN weights whose loss had not shown it yet).

``DivergenceWatch`` warns once when the loss at the end of the first epoch is orders of
magnitude above the loss of the first step (a learning rate far too high: Adam at ``lr: 1e12``
ends at chance with a loss of 1e11, and no step's loss is NaN for ``check_finite`` to stop on).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from ferbench.errors import FerbenchError

#: end-of-first-epoch loss / first-step loss above which the loss is called diverging
DIVERGING_RATIO = 100.0


def nonfinite_tensors(obj: Any, name: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in ``obj`` (nested dicts, lists, tuples) that
    hold a NaN or an infinity."""
    if torch.is_tensor(obj):
        if obj.is_floating_point() or obj.is_complex():
            return [] if bool(torch.isfinite(obj).all()) else [name or "(tensor)"]
        return []
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return []
    found: list[str] = []
    for key, value in items:
        found.extend(nonfinite_tensors(value, f"{name}.{key}" if name else str(key)))
    return found


def require_finite(obj: Any, path: Any, what: str, kept: str = "") -> None:
    """Refuse to write ``obj`` to ``path`` when a tensor in it is not finite (one line)."""
    bad = nonfinite_tensors(obj)
    if bad:
        raise FerbenchError(f"{path}: {what} not written: {len(bad)} tensor(s) hold NaN or inf "
                            f"(first: {bad[0]}); training diverged, lower lr{kept}")


class DivergenceWatch:
    """Remembers the first step's loss; at the end of the first epoch, warns once through ``log``
    when the epoch's last logged loss has grown by DIVERGING_RATIO or more."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.first: torch.Tensor | None = None
        self.warned = False

    def first_step(self, out: Mapping[str, Any]) -> None:
        loss = out.get("loss")
        if self.first is None and torch.is_tensor(loss):
            self.first = loss.detach().float().mean()  # read back at the epoch's end: no sync now

    def end_of_first_epoch(self, row: Mapping[str, Any], lr: float | None) -> bool:
        if self.warned or self.first is None or not isinstance(row.get("loss"), float):
            return False
        first, last = abs(float(self.first)), abs(row["loss"])
        if not (math.isfinite(first) and math.isfinite(last)) or first == 0.0 or last < DIVERGING_RATIO * first:
            return False
        self.warned = True
        self.log(f"warning: loss diverging: {first:.4g} at the first step, {row['loss']:.4g} at the end "
                 f"of the first epoch (x{last / first:.3g}); lower lr (now {lr:g})")
        return True
