"""MoCo-v2 (Chen, Fan, Girshick, He 2020), seed 001's reference: the query (online backbone +
MLP projector to 128-d) of one view against its key (the momentum encoder's projection of the
other view) and a FIFO queue of ``queue_size`` earlier keys as negatives, InfoNCE at temperature
0.2; momentum 0.999 (constant: ``momentum_final`` equal to ``momentum_base``). The queue and
its pointer are buffers, so checkpoints restore them. Then fine-tuning or a linear probe (see
:mod:`ferbench.methods.ssl_base`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ferbench.errors import FerbenchError
from ferbench.methods.base import Batch, TaskInfo
from ferbench.methods.ssl_base import MomentumSSLMethod
from ferbench.methods.ssl_losses import enqueue, moco_loss


class MoCoV2(MomentumSSLMethod):
    name = "mocov2"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        'MoCo-v2 (VoxCeleb1)': ('mocov2',),
    }
    gpu_check = "simclr"   # its step is SimCLR's with a momentum target
    defaults = {"queue_size": 65536, "temperature": 0.2, "momentum_base": 0.999, "momentum_final": 0.999}

    def __init__(self, settings: Any, task: TaskInfo) -> None:
        super().__init__(settings, task)
        self.check_positive_ints("queue_size")
        if not float(self.hp["temperature"]) > 0:
            raise FerbenchError(f"methods.{self.run_name}.temperature: must be > 0, got {self.hp['temperature']!r}")
        queue = F.normalize(torch.randn(int(self.hp["queue_size"]), int(self.hp["proj_dim"])), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))

    def pretraining_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        v1, v2 = batch.views[:2]
        q = self.project(v1)
        (k,) = self.momentum_project([v2])
        # the loss keeps the queue for backward: compare against a copy, then enqueue in place
        loss = moco_loss(q, k, self.queue.clone(), float(self.hp["temperature"]))
        enqueue(self.queue, self.queue_ptr, F.normalize(k.float(), dim=1))
        return {"loss": loss}
