"""SimCLR (Chen et al. 2020), seed 001's reference: two augmentations of each frame, a
projector to 128-d and NT-Xent with temperature 0.07 (the seed authors' code; SimCLR itself
used 0.1-0.5) over the batch's 2N projections. Then fine-tuning or a linear probe (see
:mod:`ferbench.methods.ssl_base`)."""

from __future__ import annotations

from typing import Any

import torch

from ferbench.errors import FerbenchError
from ferbench.methods.base import Batch, GpuCheck, TaskInfo
from ferbench.methods.ssl_base import SSLMethod
from ferbench.methods.ssl_losses import nt_xent_pairs


class SimCLR(SSLMethod):
    name = "simclr"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        'SimCLR (VoxCeleb1)': ('simclr',),
    }
    gpu_check = GpuCheck("simclr", "pretrain", "ckplus")
    defaults = {"temperature": 0.07}

    def __init__(self, settings: Any, task: TaskInfo) -> None:
        super().__init__(settings, task)
        if not float(self.hp["temperature"]) > 0:
            raise FerbenchError(f"methods.{self.run_name}.temperature: must be > 0, got {self.hp['temperature']!r}")

    def contrastive_pairs(self, z: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(left, right) projections paired row by row: views are (anchor, positive) column
        pairs, so columns 0, 2, ... against 1, 3, ..."""
        return torch.cat(z[0::2]), torch.cat(z[1::2])

    def pretraining_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        left, right = self.contrastive_pairs(self.project_views(batch.views))
        return {"loss": nt_xent_pairs(left, right, float(self.hp["temperature"]))}
