"""Base classes of the self-supervised pretraining methods (seed 001's references SimCLR, BYOL,
MoCo-v2 and its own strategies), solo-learn style: a concrete method sets ``name`` and
overrides ``pretraining_step`` (and, for another data sampler, ``sampling_units`` /
``epoch_batches``). Neither class here has a ``name``, so neither is registered.

:class:`SSLMethod` (on :class:`~ferbench.methods.supervised.Supervised`):

* a projector MLP backbone features -> ``proj_hidden_dim`` -> ``proj_dim`` (128: SimCLR,
  MoCo-v2, seed 001), used in pretraining only;
* pretrain stage: contrastive pretraining on ``pretrain_views`` = 2 strongly augmented views of
  each frame (``pretrain_augment``: the seed authors' SimCLR-style list, see below; a random
  greyscale with probability ``grayscale``). Frames come from the pretraining dataset:
  ``pretrain_dataset`` (null: the target itself, per fold, training-fold subjects only; another
  dataset: all its subjects, one job serving every fold), as in seed 000's triplet;
* train stage: the supervised baseline from the pretrained backbone: ``finetune: full``
  (fine-tuning) or ``finetune: head`` (linear probe on the frozen backbone). The projector is
  frozen there; ``encoder.pt`` carries the backbone only.

:class:`MomentumSSLMethod` adds a momentum (EMA) copy of the backbone and projector (solo-learn's
BaseMomentumMethod), frozen for the optimiser and updated after every pretraining step by
``tau`` rising from ``momentum_base`` to ``momentum_final`` on BYOL's cosine schedule.

Pretraining augmentation, as the seed 001 authors' list (ColorJitter(0.4, 0.4, 0.4, 0.2) with
p 0.8, GaussianBlur(3) with p 0.5, greyscale p 0.2): random resized crop (scale 0.2-1; theirs is
a 112 crop of a 128 resize), flip, brightness/contrast/saturation 0.4 and hue 0.2 jitter on 80%
of the views, a 3-wide Gaussian blur (sigma 0.1-2) on half of them, greyscale p 0.2. Hue and
saturation need colour inputs: with ``channels: 1`` they are skipped (one log line).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from ferbench.data.augment import GREY_WEIGHTS, Augmenter
from ferbench.errors import FerbenchError
from ferbench.methods.base import Batch, RecipeRow, TaskInfo
from ferbench.methods.supervised import Supervised
from ferbench.models import mlp
from ferbench.methods.ssl_losses import cosine_momentum, momentum_update


class SSLMethod(Supervised):
    #: the paper budget's recipe, each value with its source (tests/test_paper_recipes.py)
    paper_recipe = (
        RecipeRow('pretrain', 'optimizer', 'adam', source='code: Adam'),
        RecipeRow('pretrain', 'lr', 0.0003, source='code: lr 3e-4'),
        RecipeRow('pretrain', 'weight_decay', 0.0001, source='code: weight decay 1e-4'),
        RecipeRow('pretrain', 'epochs', 300, source='code: 300-500 epochs (VoxCeleb1)'),
        RecipeRow('pretrain', 'backbone', 'resnet50', source='code: ResNet-50'),
        RecipeRow('train', 'backbone', 'resnet50',
                  source='code: ResNet-50 (the pretrained encoder, fine-tuned)'),
        RecipeRow('train', 'image_size', 224, source="AffectNet fine-tuning at ResNet's 224"),
    )
    pretrain = True
    pretrain_views = 2
    hparam_types = {"pretrain_dataset": (str, type(None))}
    defaults = {
        "proj_hidden_dim": 2048,     # projector hidden width
        "proj_dim": 128,             # projector output (seed 001: 128-d)
        "grayscale": 0.2,            # pretraining: probability of a greyscale view
        "pretrain_dataset": None,    # dataset whose frames pretrain the encoder (null: the target)
        "pretrain_augment": {"scale": [0.2, 1.0], "ratio": [0.75, 1.3333], "rotate": 0.0,
                             "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2,
                             "jitter_p": 0.8, "blur": 0.5, "blur_sigma": [0.1, 2.0], "blur_kernel": 3},
    }
    train_only_hparams: ClassVar[tuple[str, ...]] = ("finetune", "head_dropout")

    def __init__(self, settings: Mapping[str, Any], task: TaskInfo) -> None:
        super().__init__(settings, task)
        self.check_positive_ints("proj_hidden_dim", "proj_dim")
        if not 0.0 <= float(self.hp["grayscale"]) <= 1.0:
            raise FerbenchError(f"methods.{self.run_name}.grayscale: must be in [0, 1], "
                                f"got {self.hp['grayscale']!r}")
        self.projector = self.make_projector()

    def check_positive_ints(self, *keys: str) -> None:
        for key in keys:
            value = self.hp[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FerbenchError(f"methods.{self.run_name}.{key}: must be a positive integer, got {value!r}")

    def make_projector(self) -> nn.Module:
        return mlp(self.feature_dim, int(self.hp["proj_hidden_dim"]), int(self.hp["proj_dim"]))

    # -- what the workflow/engine ask before any job runs -----------------------------------
    @classmethod
    def pretrain_source(cls, settings: Mapping[str, Any]) -> str:
        """The dataset whose frames pretrain the encoder, for settings naming the TARGET."""
        given = (settings.get("method") or {}).get("pretrain_dataset")
        return str(given or settings["dataset"])

    @classmethod
    def pretrain_identity(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The pretraining dataset is its own entry of the identity: leave the key out of hp."""
        identity = super().pretrain_identity(settings)
        identity["hp"].pop("pretrain_dataset", None)
        return identity

    # -- stages ------------------------------------------------------------------------------
    def ssl_modules(self) -> list[nn.Module]:
        """Networks trained in pretraining only (frozen when fine-tuning)."""
        return [self.projector]

    def setup(self, data: Any, stage: str) -> None:
        super().setup(data, stage)
        pretraining = stage == "pretrain"
        self.head.requires_grad_(not pretraining)
        for module in self.ssl_modules():
            module.requires_grad_(pretraining)
        if pretraining:
            dataset = self.settings.get("dataset", "?")
            wanted = self.hp["pretrain_dataset"]
            if wanted and wanted != dataset:
                raise FerbenchError(f"methods.{self.run_name}.pretrain_dataset is {wanted!r}: its "
                                    f"pretraining reads {wanted} (ferbench pretrain --dataset {wanted}), "
                                    f"not {dataset}")
            self.setup_pretraining(data)

    def setup_pretraining(self, data: Any) -> None:
        """Build pretraining samplers (default: none, every training-subject frame is a unit)."""

    # -- views ---------------------------------------------------------------------------------
    def transform(self, batch: Batch, augmenter: Augmenter, train: bool) -> list[torch.Tensor]:
        views = super().transform(batch, augmenter, train)
        p = float(self.hp["grayscale"])
        if not (train and self.stage == "pretrain" and p > 0 and self.in_channels == 3):
            return views
        out = []
        for v in views:   # normalisation is the same per channel, so luma commutes with it
            grey = torch.rand(v.shape[0], generator=augmenter.generator) < p
            luma = (v * v.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
            out.append(torch.where(grey.to(v.device).view(-1, 1, 1, 1), luma.expand_as(v), v))
        return out

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Projections [B, proj_dim] of images."""
        return self.projector(self.backbone(x))

    def project_views(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """One forward pass over all views (BN sees them together), split back per view."""
        return list(self.project(torch.cat(views)).chunk(len(views)))


class MomentumSSLMethod(SSLMethod):
    """SSL with a momentum (EMA) target: ``momentum_backbone`` and ``momentum_projector``."""

    defaults = {
        "momentum_base": 0.99,   # tau at the first step (BYOL 0.996, MoCo 0.999)
        "momentum_final": 1.0,   # tau at the last step (cosine schedule)
    }

    def __init__(self, settings: Mapping[str, Any], task: TaskInfo) -> None:
        super().__init__(settings, task)
        base, final = float(self.hp["momentum_base"]), float(self.hp["momentum_final"])
        if not 0.0 <= base <= final <= 1.0:
            raise FerbenchError(f"methods.{self.run_name}: need 0 <= momentum_base <= momentum_final <= 1, "
                                f"got {base} and {final}")
        self.momentum_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.momentum_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.momentum_backbone), (self.projector, self.momentum_projector)]

    def momentum(self, step: int) -> float:
        return cosine_momentum(step, self.total_steps, float(self.hp["momentum_base"]),
                               float(self.hp["momentum_final"]))

    def on_step_end(self, step: int) -> None:
        if self.stage != "pretrain":
            return
        tau = self.momentum(step)
        for online, target in self.momentum_pairs():
            momentum_update(online, target, tau)

    @torch.no_grad()
    def momentum_project(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Target projections of the views (no gradient), one pass."""
        z = self.momentum_projector(self.momentum_backbone(torch.cat(views)))
        return list(z.chunk(len(views)))
