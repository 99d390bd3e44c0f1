"""Seed 001 (Shu, Gu, Yang, Lo): SimCLR pretraining on face clips with the paper's strategies as
switches that compose, then fine-tuning (or a linear probe) on the target.

* ``time_aug`` (TimeAug): the positive of an anchor frame is another frame of its clip
  ``time_offsets`` = [2, 6] frames away, nearer offsets likelier, random direction;
* ``hard_neg`` (HardNeg): each sample adds a second anchor from the same clip at least
  ``hard_neg_interval`` = 12 frames away, with its own positive, so the same identity is in the
  batch as a negative;
* ``face_swap`` (FaceSwap, probability 0.8 in the paper): a positive's eyes, brows, nose and
  mouth are pasted onto the anchor frame of another subject of the batch (feathered mask,
  colour correction), so the positive keeps the expression but not the identity;
* ``mask_fn`` (MaskFN): a frozen encoder describes each image by its eye and mouth patches
  (un-augmented); for each row the most similar negative is removed from the negatives and
  added as a second positive of weight ``mask_fn_weight`` = 0.8. The paper's encoder is an
  ImageNet ResNet-18; here ``mask_fn_encoder`` names it: a run name (default ``simclr``: our
  own SimCLR pretraining on the same data and fold; the workflow makes that pretraining an
  input of this one and hands its encoder.pt path to the job), an encoder.pt path, or
  ``random`` (a frozen randomly initialised backbone, said so in the log). It has this job's
  backbone (under ``paper`` the authors' ResNet-50, as simclr's) and its feature size. A loaded encoder
  must have seen no subject this pretraining does not see (its provenance), so this encoder's
  own provenance still covers everything it depends on. Patches are encoded at
  ``mask_fn_patch`` = 0.5 of the view's side (the authors: 64 px patches of 112 px faces),
  eyes and mouth in one pass;
* ``cutmix`` (row c, in place of FaceSwap; *inferred*: the paper gives no details): with this
  probability a positive view gets a random rectangle (area ``cutmix_area``) pasted from the
  positive view of another sample of the batch.

FaceSwap's parts and MaskFN's patches come from each frame's 68 landmarks (the face cache's
landmarks.npy, :mod:`ferbench.methods.face_regions`): boxes around the parts' points (the authors used
their convex hulls), and FaceSwap warps the expression's face onto the identity's by the
similarity transform of their landmarks (Procrustes, as the authors). A frame without landmarks
(a reader without points, an older cache) uses the canonical boxes of the aligned crop
(``face_regions``) and no warp; they are counted, in one log line and ``extra_metrics``.

The offsets and interval are in frames of the authors' VoxCeleb frames (25/6 fps); for the
benchmark's short synthetic clips scale them down (params.yaml does). Clip frames are in time
order (the SequenceTable sorts them; the authors' code did not). Frames of clips too short for
the offset or the interval are counted and skipped (one log line, ``extra_metrics``); only when
no frame is usable is it an error. Samplers: :mod:`ferbench.methods.clip_sampling`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ferbench.data.augment import Augmenter
from ferbench.io import load_torch_file
from ferbench.methods.clip_sampling import ClipSampler
from ferbench.data.folds import build_sequence_table
from ferbench.errors import FerbenchError
from ferbench.methods.face_regions import (DEFAULT_REGIONS, IBUG, box_masks, boxes_or_default, check_box, crop_boxes,
                                   face_swap, landmark_boxes, similarity_theta, warp)
from ferbench.methods.base import Batch, GpuCheck, TaskInfo
from ferbench.methods.simclr import SimCLR
from ferbench.models import build_backbone
from ferbench.methods.ssl_losses import most_similar_negative, nt_xent_pairs, pair_positives

log = logging.getLogger(__name__)


class SSLFER(SimCLR):
    name = "ssl_fer"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        '(a) TimeAug': ('ssl_timeaug',),
        '(b) TimeAug + HardNeg': ('ssl_timeaug_hardneg',),
        '(c) TimeAug + HardNeg + CutMix': ('ssl_timeaug_hardneg_cutmix',),
        '(d) TimeAug + FaceSwap + MaskFN': ('ssl_timeaug_faceswap_maskfn',),
        '(e) TimeAug + HardNeg + FaceSwap': ('ssl_timeaug_hardneg_faceswap',),
        '(f) TimeAug + HardNeg + MaskFN': ('ssl_timeaug_hardneg_maskfn',),
        '(g) TimeAug + HardNeg + FaceSwap + MaskFN': ('ssl_all', 'ssl_timeaug_hardneg_faceswap_maskfn'),
    }
    gpu_check = GpuCheck("ssl_all", "pretrain", "ckplus")
    defaults = {
        "time_aug": True,
        "hard_neg": False,
        "time_offsets": [2, 6],        # TimeAug: min and max frame offset of the positive
        "hard_neg_interval": 12,       # HardNeg: min frames between the two anchors of a clip
        "cutmix": 0.0,                 # probability of CutMix on a positive view (row c: 0.8, inferred)
        "cutmix_area": [0.2, 0.5],     # area fraction of the pasted rectangle (inferred)
        "face_swap": 0.0,              # probability of FaceSwap on a positive (paper: 0.8 when on)
        "face_swap_feather": 0.03,     # mask feathering: Gaussian sigma / crop size (inferred)
        "mask_fn": False,
        "mask_fn_weight": 0.8,         # weight of the false negative as a second positive
        "mask_fn_encoder": "simclr",   # frozen patch encoder: run name, encoder.pt path or "random"
        "mask_fn_patch": 0.5,          # patch side / view side (the authors: 64 px patches of 112 px faces)
        "face_regions": {},            # overrides of face_regions.DEFAULT_REGIONS ([y0, y1, x0, x1])
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
        for key in ("face_swap", "face_swap_feather"):
            if not 0.0 <= float(hp[key]) <= 1.0:
                raise FerbenchError(f"{where}.{key}: must be in [0, 1], got {hp[key]!r}")
        if not 0.0 < float(hp["mask_fn_patch"]) <= 1.0:
            raise FerbenchError(f"{where}.mask_fn_patch: must be in (0, 1], got {hp['mask_fn_patch']!r}")
        if not float(hp["mask_fn_weight"]) >= 0:
            raise FerbenchError(f"{where}.mask_fn_weight: must be >= 0, got {hp['mask_fn_weight']!r}")
        unknown = sorted(set(hp["face_regions"] or {}) - set(DEFAULT_REGIONS))
        if unknown:
            raise FerbenchError(f"{where}.face_regions: unknown region {unknown[0]!r} "
                                f"(known: {', '.join(DEFAULT_REGIONS)})")
        self.regions = {**DEFAULT_REGIONS, **dict(hp["face_regions"] or {})}
        for name, box in self.regions.items():
            try:
                check_box(box)
            except (ValueError, TypeError) as err:
                raise FerbenchError(f"{where}.face_regions.{name}: {err}") from None
        self.mask_encoder: nn.Module | None = None
        if hp["mask_fn"]:
            value = hp["mask_fn_encoder"]
            if not isinstance(value, str) or not value.strip():
                raise FerbenchError(f"{where}.mask_fn_encoder: need a run name (e.g. simclr), an "
                                    f"encoder.pt path or 'random', got {value!r}")
            self.mask_encoder = self.frozen_patch_encoder(task)
        self.sampler: ClipSampler | None = None
        self._subject = np.zeros(0, dtype=np.int64)
        self._landmark_frames: tuple[int, int] | None = None   # (with landmarks, frames) seen by parts

    @classmethod
    def encoder_inputs(cls, settings: Any) -> dict[str, str]:
        """MaskFN's ``mask_fn_encoder`` when it names a run (see ``Method.encoder_inputs``)."""
        hp = {**cls.all_defaults(), **dict(settings.get("method") or {})}
        value = hp.get("mask_fn_encoder")
        if hp.get("mask_fn") and mask_encoder_kind(value) == "run":
            return {"mask_fn_encoder": str(value)}
        return {}

    def frozen_patch_encoder(self, task: TaskInfo) -> nn.Module:
        """MaskFN's frozen descriptor network: the budget's backbone (its weights are loaded, or
        left random, in ``load_patch_encoder`` when pretraining starts)."""
        encoder, _ = build_backbone(self.schedule["backbone"], self.in_channels, task.image_size,
                                    **dict(self.hp["backbone_options"] or {}))
        return encoder.requires_grad_(False).eval()

    def load_patch_encoder(self, data: Any) -> None:
        """Load the frozen patch encoder named by ``mask_fn_encoder``: an encoder.pt (a run
        name must have been resolved to one by the workflow) whose provenance lies within this
        pretraining's subjects, or ``random`` (kept as initialised, one log line)."""
        where = f"methods.{self.run_name}.mask_fn_encoder"
        value = str(self.hp["mask_fn_encoder"])
        kind = mask_encoder_kind(value)
        if kind == "random":
            log.warning(f"{where}: random: MaskFN's patch encoder is a frozen randomly initialised "
                        f"{self.schedule['backbone']} (no pretrained weights)")
            return
        if kind == "run":
            raise FerbenchError(f"{where}: {value!r} names a run; the workflow resolves it to that run's "
                                f"encoder.pt on the same data and fold; outside it give the encoder.pt "
                                f"path (or 'random')")
        path = Path(value)
        payload = load_torch_file(path, "MaskFN patch encoder")
        if not isinstance(payload, dict) or "state" not in payload:
            raise FerbenchError(f"{path}: not a ferbench encoder (no 'state'), named by {where}")
        if payload.get("backbone") != self.schedule["backbone"]:
            raise FerbenchError(f"{path}: encoder has backbone {payload.get('backbone')!r}, {where} needs "
                                f"{self.schedule['backbone']!r} (this job's backbone)")
        check_patch_encoder_subjects(path, payload, str(self.settings.get("dataset", "?")),
                                     data.folds, data.subject_mask)
        state = {k[len("backbone."):]: v for k, v in payload["state"].items() if k.startswith("backbone.")}
        try:
            self.mask_encoder.load_state_dict(state)
        except RuntimeError as err:
            raise FerbenchError(f"{path}: encoder does not fit {where} ({str(err).splitlines()[0]})") from None
        log.info(f"{where}: frozen patch encoder loaded from {path} "
                 f"(pretrained by {payload.get('method', '?')} on {payload['provenance'].get('dataset')})")

    def train(self, mode: bool = True) -> "SSLFER":
        super().train(mode)
        if self.mask_encoder is not None:
            self.mask_encoder.eval()     # frozen: its BN statistics stay as loaded
        return self

    # -- data --------------------------------------------------------------------------------
    def setup_pretraining(self, data: Any) -> None:
        table = build_sequence_table(data.folds, data.subject_mask, until_apex=False)
        where = f"{self.settings.get('dataset', '?')} fold {getattr(data, 'fold', '?')} (methods.{self.run_name})"
        if not table.n_sequences:
            raise FerbenchError(f"{where}: no clips among the training subjects; pretrain on a sequence "
                                f"dataset with methods.{self.run_name}.pretrain_dataset (e.g. ckplus)")
        lo, hi = self.hp["time_offsets"]
        self._subject = pd.factorize(data.folds["subject"].astype(str))[0].astype(np.int64)
        self.sampler = ClipSampler(table, time_aug=self.hp["time_aug"], hard_neg=self.hp["hard_neg"],
                                   min_offset=int(lo), max_offset=int(hi),
                                   interval=int(self.hp["hard_neg_interval"]), where=where)
        u = self.sampler.usability
        (log.info if u.complete else log.warning)(f"{where}: {u.line()}")
        if self.mask_encoder is not None:
            self.load_patch_encoder(data)
        if self.mask_encoder is not None or float(self.hp["face_swap"]) > 0:
            self.count_landmarks(data, where)

    def count_landmarks(self, data: Any, where: str) -> None:
        """One log line: how many pretraining frames lack landmarks (their FaceSwap/MaskFN
        regions are the canonical boxes of the aligned crop)."""
        frames = np.unique(self.sampler.positions_used())
        marks = data.landmarks_at(frames) if hasattr(data, "landmarks_at") else None
        have = 0 if marks is None or marks.shape[1] != 68 else int(np.isfinite(marks).all(axis=(1, 2)).sum())
        self._landmark_frames = (have, len(frames))
        if have < len(frames):
            why = "the cache has no 68-point landmarks" if not have else f"{len(frames) - have} have no landmarks"
            log.warning(f"{where}: FaceSwap/MaskFN regions: {why} ({have} of {len(frames)} frames with "
                        f"landmarks); the others use the fixed regions of the aligned crop (face_regions)")

    def batch_landmarks(self, batch: Batch) -> torch.Tensor | None:
        """float [B, k, 68, 2] landmark fractions of the batch's images (NaN: none), or None."""
        data = self.data
        marks = data.landmarks_at(batch.positions) if hasattr(data, "landmarks_at") else None
        if marks is None or marks.shape[-2] != 68:
            return None
        return torch.from_numpy(np.ascontiguousarray(marks, dtype=np.float32)).to(batch.images.device)

    def region_boxes(self, points: torch.Tensor | None, region: str, n: int, device: Any) -> torch.Tensor:
        """[n, 4] boxes of ``region`` from landmarks [n, 68, 2] where usable, else the fixed box."""
        boxes = (landmark_boxes(points, region) if points is not None
                 else torch.full((n, 4), float("nan"), device=device))
        return boxes_or_default(boxes, self.regions[region])[0]

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
        """Pretraining: FaceSwap on the raw positives, the augmented views (CutMix on the
        positives), then with MaskFN the un-augmented views appended for the patch descriptors."""
        pretraining = self.stage == "pretrain"
        if pretraining and train and float(self.hp["face_swap"]) > 0:
            batch.images = self.swap_positives(batch, augmenter.generator)
        views = super().transform(batch, augmenter, train)
        p = float(self.hp["cutmix"])
        if pretraining and train and p > 0:
            for j in range(1, len(views), 2):      # the positives: columns 1 (and 3 with HardNeg)
                views[j] = cutmix(views[j], p, tuple(float(v) for v in self.hp["cutmix_area"]),
                                  augmenter.generator)
        if pretraining and self.mask_encoder is not None:
            b, k = batch.images.shape[:2]
            clean = augmenter(batch.images.flatten(0, 1), train=False)
            views += list(clean.view(b, k, *clean.shape[1:]).unbind(1))
        return views

    def part_boxes(self, batch: Batch) -> dict[str, torch.Tensor]:
        """MaskFN: the patches' boxes ({eyes, mouth}: [k * B, 4]) of the batch's clean views,
        column-major as torch.cat(views) stacks them: from each image's landmarks, else the
        fixed regions."""
        b, k = batch.images.shape[:2]
        points = self.batch_landmarks(batch)
        cols = None if points is None else points.transpose(0, 1).flatten(0, 1)
        return {name: self.region_boxes(cols, name, b * k, batch.images.device) for name in ("eyes", "mouth")}

    def swap_positives(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """uint8 [B, k, C, S, S] with each positive column's images, with probability
        ``face_swap``, pasted onto the anchor frame of a random sample of another subject (of
        any other sample when the batch has one subject only)."""
        images = batch.images
        b, s = images.shape[0], images.shape[-1]
        if b < 2:
            return images
        subject = torch.from_numpy(self._subject[batch.positions[:, 0]])
        score = torch.rand(b, b, generator=generator)
        other = ~torch.eye(b, dtype=torch.bool)
        score = torch.where(other, score, torch.full_like(score, -2.0))
        score = score - 1.0 * (subject[:, None] == subject[None, :]).float()   # other subjects first
        donor = score.argmax(dim=1).to(images.device)
        points = self.batch_landmarks(batch)
        base_points = None if points is None else points[donor, 0]
        # the identity's parts: boxes from its landmarks (or the fixed ones), feathered
        boxes = torch.stack([self.region_boxes(base_points, name, b, images.device)
                             for name in ("eyes_brows", "nose_mouth")], dim=1)
        mask = box_masks(boxes, s, s, float(self.hp["face_swap_feather"]))
        base = images[donor, 0].float() / 255
        parts = [i for part in ("brows", "nose", "eyes", "mouth") for i in IBUG[part]]
        out = images.clone()
        for j in range(1, images.shape[1], 2):
            apply = (torch.rand(b, generator=generator) < float(self.hp["face_swap"])).to(images.device)
            source = images[:, j].float() / 255
            if points is not None:   # the expression's face warped onto the identity's landmarks
                source = warp(source, similarity_theta(points[:, j][:, parts], base_points[:, parts]))
            swapped = face_swap(base, source, mask)
            swapped = (swapped * 255).round().clamp(0, 255).to(torch.uint8)
            out[:, j] = torch.where(apply.view(-1, 1, 1, 1), swapped, images[:, j])
        return out

    @torch.no_grad()
    def part_descriptors(self, views: list[torch.Tensor],
                         boxes: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """MaskFN: [eye features, mouth features] (each L2-normalised) of each view, frozen
        encoder, both patches (``mask_fn_patch`` x the view's side) in one pass; each view's
        patch boxes from ``boxes`` ({eyes, mouth}: [V * B, 4], as :meth:`part_boxes` gives them)
        or the fixed regions."""
        x = torch.cat(views)
        size = max(8, round(float(self.hp["mask_fn_patch"]) * views[0].shape[-1]))
        patches = [crop_boxes(x, (boxes[name] if boxes is not None
                                  else self.region_boxes(None, name, len(x), x.device)).to(x.device), size)
                   for name in ("eyes", "mouth")]
        with self.autocast():
            features = self.mask_encoder(torch.cat(patches)).float()
        eyes, mouth = F.normalize(features, dim=1).chunk(2)
        return list(torch.cat([eyes, mouth], dim=1).chunk(len(views)))

    def pretraining_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        if self.mask_encoder is None:
            return super().pretraining_step(batch, optimizers)
        k = len(batch.views) // 2
        left, right = self.contrastive_pairs(self.project_views(batch.views[:k]))
        d_left, d_right = self.contrastive_pairs(self.part_descriptors(batch.views[k:], self.part_boxes(batch)))
        fn = most_similar_negative(torch.cat([d_left, d_right]), pair_positives(len(d_left)))
        loss = nt_xent_pairs(left, right, float(self.hp["temperature"]), fn, float(self.hp["mask_fn_weight"]))
        return {"loss": loss}

    def extra_metrics(self) -> dict[str, Any]:
        if self.sampler is None:
            return {}
        u = self.sampler.usability
        out = {"clips": u.clips, "usable_clips": u.usable_clips, "anchor_frames": u.usable_frames}
        if self._landmark_frames is not None:
            out["landmark_frames"], out["part_frames"] = self._landmark_frames
        return out


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


def mask_encoder_kind(value: Any) -> str:
    """What ``mask_fn_encoder`` names: "random", "path" (an encoder.pt: has a path separator or
    ends in .pt) or "run" (a run name under ``methods:``)."""
    text = str(value)
    if text == "random":
        return "random"
    if "/" in text or os.sep in text or text.endswith(".pt"):
        return "path"
    return "run"


def check_patch_encoder_subjects(path: Path, payload: Any, dataset: str, folds: pd.DataFrame,
                                 mask: np.ndarray) -> None:
    """Refuse a frozen encoder that saw a subject this pretraining does not see: the
    pretraining's encoder.pt records only its own subjects (ferbench.provenance), so a test
    subject seen by the patch encoder would otherwise pass ``train``'s leak check."""
    prov = payload.get("provenance")
    if not isinstance(prov, dict) or not isinstance(prov.get("subjects"), (list, tuple)):
        raise FerbenchError(f"{path}: encoder records no provenance (subjects seen), so MaskFN cannot "
                            f"check it against this pretraining's subjects; rerun `ferbench pretrain`")
    seen = {(str(d), str(s)) for d, s in prov["subjects"]}
    subjects = folds["subject"].to_numpy(object)[np.asarray(mask, bool)]
    own = {(dataset, str(s)) for s in subjects if s is not None and not pd.isna(s)}
    extra = sorted(seen - own)
    if extra:
        shown = ", ".join(f"{d}/{s}" for d, s in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise FerbenchError(f"{path}: MaskFN's patch encoder saw {len(extra)} subject(s) this pretraining "
                            f"({dataset}) does not: {shown}; pretrain it on the same data and fold")
