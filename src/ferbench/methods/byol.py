"""BYOL (Grill et al. 2020), seed 001's reference: an online network (backbone, projector,
predictor) regresses the momentum target's projection of the other view, symmetrised:
L = ||q(z1)^ - z2'^||^2 + ||q(z2)^ - z1'^||^2 (normalised MSE). Projector and predictor
4096 -> 256 as in BYOL; tau 0.996 -> 1 on the cosine schedule. Then fine-tuning or a linear
probe (see :mod:`ferbench.methods.ssl_base`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ferbench.methods.base import Batch, TaskInfo
from ferbench.methods.ssl_base import MomentumSSLMethod
from ferbench.models import mlp
from ferbench.methods.ssl_losses import byol_loss


class BYOL(MomentumSSLMethod):
    name = "byol"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        'BYOL (VoxCeleb1)': ('byol',),
    }
    gpu_check = "simclr"   # its step is SimCLR's with a momentum target
    defaults = {"proj_hidden_dim": 4096, "proj_dim": 256, "pred_hidden_dim": 4096,
                "momentum_base": 0.996, "momentum_final": 1.0}

    def __init__(self, settings: Any, task: TaskInfo) -> None:
        super().__init__(settings, task)
        self.check_positive_ints("pred_hidden_dim")
        self.predictor = mlp(int(self.hp["proj_dim"]), int(self.hp["pred_hidden_dim"]), int(self.hp["proj_dim"]))

    def ssl_modules(self) -> list[nn.Module]:
        return super().ssl_modules() + [self.predictor]

    def pretraining_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        v1, v2 = batch.views[:2]
        p1, p2 = self.predictor(self.project(torch.cat([v1, v2]))).chunk(2)
        t1, t2 = self.momentum_project([v1, v2])
        return {"loss": byol_loss(p1, t2) + byol_loss(p2, t1)}
