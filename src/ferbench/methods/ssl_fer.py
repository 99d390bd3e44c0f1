"""Seed 001 (Shu, Gu, Yang, Lo): SimCLR pretraining on face clips with the paper's strategies as
switches that compose, then fine-tuning (or a linear probe) on the target.

* ``time_aug`` (TimeAug): the positive of an anchor frame is another frame of its clip
  ``time_offsets`` = [2, 6] frames away, nearer offsets likelier, random direction;
* ``hard_neg`` (HardNeg): each sample adds a second anchor from the same clip at least
  ``hard_neg_interval`` = 12 frames away, with its own positive, so the same identity is in the
  batch as a negative;
* ``cutmix`` (row c, in place of FaceSwap; *inferred*: the paper gives no details): with this
  probability a positive view gets a random rectangle (area ``cutmix_area``) pasted from the
  positive view of another sample of the batch.

Not implemented: FaceSwap and MaskFN (they need landmark-aligned part pasting and a frozen
eye/mouth patch encoder; the loss for MaskFN is ready: ``ssl_losses.nt_xent``'s
``false_negative`` / ``false_negative_weight``).

The offsets and interval are in frames of the authors' VoxCeleb frames (25/6 fps); for the
benchmark's short synthetic clips scale them down (params.yaml does). Clip frames are in time
order (the SequenceTable sorts them; the authors' code did not). Frames of clips too short for
the offset or the interval are counted and skipped (one log line, ``extra_metrics``); only when
no frame is usable is it an error. Samplers: :mod:`ferbench.clip_sampling`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ferbench.augment import Augmenter
from ferbench.clip_sampling import ClipSampler
from ferbench.data import build_sequence_table
from ferbench.errors import FerbenchError
from ferbench.methods.base import Batch, TaskInfo
from ferbench.methods.simclr import SimCLR

log = logging.getLogger(__name__)


class SSLFER(SimCLR):
    name = "ssl_fer"
    defaults = {
        "time_aug": True,
        "hard_neg": False,
        "time_offsets": [2, 6],        # TimeAug: min and max frame offset of the positive
        "hard_neg_interval": 12,       # HardNeg: min frames between the two anchors of a clip
        "cutmix": 0.0,                 # probability of CutMix on a positive view (row c: 0.8, inferred)
        "cutmix_area": [0.2, 0.5],     # area fraction of the pasted rectangle (inferred)
    }

    def __init__(self, settings: Any, task: TaskInfo) -> None:
        super().__init__(settings, task)
        where, hp = f"methods.{self.run_name}", self.hp
        offsets = hp["time_offsets"]
        if (not isinstance(offsets, (list, tuple)) or len(offsets) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in offsets)
                or not 1 <= offsets[0] <= offsets[1]):
            raise FerbenchError(f"{where}.time_offsets: need [min, max] integers, 1 <= min <= max, got {offsets!r}")
        self.check_positive_ints("hard_neg_interval")
        if hp["time_aug"] and hp["hard_neg"] and hp["hard_neg_interval"] < offsets[0]:
            raise FerbenchError(f"{where}.hard_neg_interval: must be >= time_offsets[0] ({offsets[0]}), "
                                f"got {hp['hard_neg_interval']}")
        if not 0.0 <= float(hp["cutmix"]) <= 1.0:
            raise FerbenchError(f"{where}.cutmix: must be in [0, 1], got {hp['cutmix']!r}")
        lo, hi = (float(v) for v in hp["cutmix_area"])
        if not 0.0 < lo <= hi < 1.0:
            raise FerbenchError(f"{where}.cutmix_area: need 0 < low <= high < 1, got {hp['cutmix_area']!r}")
        self.sampler: ClipSampler | None = None

    # -- data --------------------------------------------------------------------------------
    def setup_pretraining(self, data: Any) -> None:
        table = build_sequence_table(data.folds, data.subject_mask, until_apex=False)
        where = f"{self.settings.get('dataset', '?')} fold {getattr(data, 'fold', '?')} (methods.{self.run_name})"
        if not table.n_sequences:
            raise FerbenchError(f"{where}: no clips among the training subjects; pretrain on a sequence "
                                f"dataset with methods.{self.run_name}.pretrain_dataset (e.g. ckplus)")
        lo, hi = self.hp["time_offsets"]
        self.sampler = ClipSampler(table, time_aug=bool(self.hp["time_aug"]), hard_neg=bool(self.hp["hard_neg"]),
                                   min_offset=int(lo), max_offset=int(hi),
                                   interval=int(self.hp["hard_neg_interval"]), where=where)
        u = self.sampler.usability
        (log.info if u.complete else log.warning)(f"{where}: {u.line()}")

    def sampling_units(self) -> np.ndarray:
        """Pretraining: every frame that can anchor (one sample per anchor frame and epoch)."""
        if self.stage == "pretrain" and self.sampler is not None:
            return self.sampler.anchors
        return super().sampling_units()

    def epoch_batches(self, generator: torch.Generator, epoch: int) -> list[np.ndarray]:
        if self.stage != "pretrain":
            return super().epoch_batches(generator, epoch)
        units = self.sampling_units()
        order = units[torch.randperm(len(units), generator=generator).numpy()]
        bs, nb = min(self.batch_size(), len(units)), self.num_batches()
        rows = self.sampler.draw(order[:nb * bs], generator)
        return [rows[i * bs:(i + 1) * bs] for i in range(nb)]

    # -- views ---------------------------------------------------------------------------------
    def transform(self, batch: Batch, augmenter: Augmenter, train: bool) -> list[torch.Tensor]:
        views = super().transform(batch, augmenter, train)
        p = float(self.hp["cutmix"])
        if not (train and self.stage == "pretrain" and p > 0):
            return views
        for j in range(1, len(views), 2):      # the positives: columns 1 (and 3 with HardNeg)
            views[j] = cutmix(views[j], p, tuple(float(v) for v in self.hp["cutmix_area"]), augmenter.generator)
        return views

    def extra_metrics(self) -> dict[str, Any]:
        if self.sampler is None:
            return {}
        u = self.sampler.usability
        return {"clips": u.clips, "usable_clips": u.usable_clips, "anchor_frames": u.usable_frames}


def cutmix(x: torch.Tensor, p: float, area: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """CutMix between the images of a batch [B, C, H, W]: with probability ``p`` an image gets a
    rectangle of ``area`` (fraction, uniform in the range; aspect 1) from the next image of a
    random cyclic shift of the batch (never itself when B > 1), at a uniform position."""
    b, _, h, w = x.shape
    draws = torch.rand(b, 4, generator=generator)
    shift = 1 + int(torch.randint(max(b - 1, 1), (1,), generator=generator))
    donor = x.roll(shifts=shift, dims=0) if b > 1 else x
    side = torch.sqrt(area[0] + (area[1] - area[0]) * draws[:, 1])
    ch, cw = (side * h).long().clamp(1, h), (side * w).long().clamp(1, w)
    y0 = (draws[:, 2] * (h - ch + 1)).long()
    x0 = (draws[:, 3] * (w - cw + 1)).long()
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + ch).view(-1, 1, 1))
              & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + cw).view(-1, 1, 1)))
    mask = (inside & (draws[:, 0] < p).view(-1, 1, 1)).unsqueeze(1).to(x.device)
    return torch.where(mask, donor, x)
