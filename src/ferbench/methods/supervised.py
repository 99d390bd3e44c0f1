"""The supervised baseline: backbone + linear head, trained end to end (from scratch, or from
the weights the schedule's ``backbone_weights`` names).

Classification: cross-entropy, with the schedule's ``label_smoothing`` and, with
``class_weighting: balanced``, each class weighted by n / (k n_c) over the fold's training
samples (small lab datasets are unbalanced: CK+ has 18 contempt sequences against 83
surprise). Valence/arousal: a 2-d tanh head trained with L_AV (``losses.av_loss``). ``finetune: head`` freezes the backbone (kept in eval mode, so its BN
statistics do not move either): a linear probe, the "FC-only" rows of seed 000.
Every other method subclasses this one and overrides only what differs.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from ferbench.errors import FerbenchError
from ferbench.methods.losses import av_loss
from ferbench.methods.base import Batch, GpuCheck, Method, RecipeRow, TaskInfo
from ferbench.models import LinearHead, build_backbone, load_backbone_weights

FINETUNE = ("full", "head")
CLASS_WEIGHTING = ("none", "balanced")


def balanced_class_weights(labels: Any, num_classes: int) -> torch.Tensor:
    """n / (k n_c) per class (scikit-learn's "balanced"); a class absent from the training
    samples gets weight 0 (it never appears as a target anyway)."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.int64), minlength=num_classes).double()
    present = counts > 0
    weight = torch.zeros(num_classes, dtype=torch.float64)
    weight[present] = counts.sum() / (int(present.sum()) * counts[present])
    return weight.float()


class Supervised(Method):
    name = "supervised"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        'InceptionV1-full_FT (no contrastive pretraining)': ('supervised',),
        'Supervised (ImageNet)': ('supervised', 'supervised_va'),
        'Supervised baseline (benchmark row, not in the paper)': ('supervised', 'supervised_va'),
        'CNN (baseline)': ('cnn_baseline', 'supervised'),
    }
    gpu_check = GpuCheck("supervised", "train", "ckplus")
    #: the paper budget's recipe, each value with its source (tests/test_paper_recipes.py)
    paper_recipe = (
        RecipeRow('train', 'backbone', 'resnet18',
                  source='budget default', runs='supervised supervised_va'),
        RecipeRow('train', 'image_size', 224,
                  source='budget default', runs='supervised supervised_va'),
        RecipeRow('train', 'backbone_weights', None, paper='imagenet',
                  source='seed 001 table: Supervised (ImageNet)', readme='`backbone_weights: imagenet`', runs='supervised supervised_va'),
    )
    defaults = {
        "finetune": "full",       # full | head (frozen backbone: linear probe)
        "head_dropout": 0.0,      # dropout before the linear head
        "backbone_options": {},   # keyword options of the backbone builder (e.g. width)
    }
    train_only_hparams = ("finetune", "head_dropout")

    def __init__(self, settings: Mapping[str, Any], task: TaskInfo) -> None:
        super().__init__(settings, task)
        if self.hp["finetune"] not in FINETUNE:
            raise FerbenchError(f"methods.{self.run_name}.finetune: {self.hp['finetune']!r} "
                                f"(choose from {', '.join(FINETUNE)})")
        self.backbone, self.feature_dim = build_backbone(
            self.schedule["backbone"], self.in_channels, task.image_size,
            **dict(self.hp["backbone_options"] or {}))
        self.head = LinearHead(self.feature_dim, task.num_outputs, tanh=task.task == "va",
                               dropout=float(self.hp["head_dropout"]))
        load_backbone_weights(self.backbone, self.schedule.get("backbone_weights"),
                              self.schedule["backbone"], self.in_channels, task.image_size)
        self.class_weight: torch.Tensor | None = None   # set in setup (class_weighting: balanced)

    # -- what differs between full fine-tuning and the linear probe ------------------------
    @property
    def frozen_backbone(self) -> bool:
        return self.stage == "train" and self.hp["finetune"] == "head"

    def setup(self, data: Any, stage: str) -> None:
        super().setup(data, stage)
        self.backbone.requires_grad_(not self.frozen_backbone)
        weighting = self.schedule.get("class_weighting", "none")
        if weighting not in CLASS_WEIGHTING:
            raise FerbenchError(f"class_weighting: {weighting!r} (choose from {', '.join(CLASS_WEIGHTING)})")
        if stage == "train" and weighting == "balanced" and self.task.task == "classification":
            self.class_weight = balanced_class_weights(data.label[data.indices["train"]], self.task.num_outputs)

    def train(self, mode: bool = True) -> "Supervised":
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def encoder_modules(self) -> dict[str, torch.nn.Module]:
        return {"backbone": self.backbone}

    # -- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features [B, D]."""
        if self.frozen_backbone:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads: ``forward`` (subclasses change the representation there)."""
        return self(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def predict_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return self.head(z), z

    def supervised_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.task.task == "va":
            return av_loss(out.float(), batch.va)
        return self.classification_loss(out, batch.labels)

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the schedule's label smoothing and class weights."""
        weight = None if self.class_weight is None else self.class_weight.to(logits.device)
        return F.cross_entropy(logits.float(), labels, weight=weight,
                               label_smoothing=float(self.schedule.get("label_smoothing", 0.0)))

    def training_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        loss = self.supervised_loss(self.predict(batch.x), batch)
        return {"loss": loss}
