"""Seed 000 (Garg, Kim, Ranjan): triplet pretraining on expression sequences, then the
supervised baseline from the pretrained encoder (FC-only = ``finetune: head``, or full FT).

What differs from :class:`~ferbench.methods.supervised.Supervised`:

* an embedding head ``embed``: Linear(feature_dim -> ``embedding_dim`` = 512), its output
  L2-normalised: f(x) on the unit hypersphere ("CT512");
* a pretraining stage on (anchor, positive, negative) frames drawn from the sequences of the
  training-fold subjects by ``ferbench.methods.triplet_sampling``: ``sampling`` m1 (same sequence for
  anchor < positive, the same subject's other-emotion sequence for the negative), m2 (three
  sorted frames of one sequence) or m12 (Method 1 for the first ``m12_switch`` fraction of the
  pretraining epochs, then Method 2: the paper's best, CT512_2);
* the loss ``losses.triplet_loss`` [||f(a)-f(p)||^2 - ||f(a)-f(n)||^2 + margin]_+ (margin 0.2,
  inferred). ``semi_hard`` (the paper's "keep triplets with a positive loss", inferred as
  FaceNet's online semi-hard mining): batches hold ``group_size`` triplets per anchor sequence,
  and each anchor takes, among the batch's negatives that are valid for it under its sampler's
  rule (``triplet_sampling.valid_negatives``), the closest one farther than its positive
  (``losses.semi_hard_negatives``). Off: each triplet keeps its own sampled negative and
  triplets are drawn one per anchor sequence pick;
* train stage: the linear head reads f(x) (``features: embedding``, default: the FC on top of
  the 512-d CT512 embedding, inferred) or the backbone features (``features: backbone``).

Cross-dataset pretraining: ``pretrain_dataset: ckplus`` makes the pretraining read that
dataset's sequences (all its subjects, one job for every fold of the target); default (null)
is the target dataset itself, per fold, training-fold subjects only. The engine/workflow ask
:meth:`Triplet.pretrain_source` and :meth:`Triplet.pretrain_data_depends_on_fold`.

The ``paper`` budget: the paper's InceptionV1 (``backbone: inception_v1``, both stages); it
(a student abstract) gives no schedule, so the budget's defaults apply otherwise (224 px, Adam
1e-4, 40 epochs, batch 128). The VGGFace2-pretrained baseline rows need ``backbone_weights``
pointing at such weights (tests/test_paper_recipes.py).
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ferbench.data.folds import build_sequence_table
from ferbench.errors import FerbenchError
from ferbench.methods.losses import semi_hard_negatives, squared_distances, triplet_loss
from ferbench.methods.base import Batch, GpuCheck, RecipeRow, TaskInfo
from ferbench.methods.supervised import Supervised
from ferbench.models import LinearHead
from ferbench.methods.triplet_sampling import SAMPLERS, Sampler, valid_negatives

log = logging.getLogger(__name__)

SAMPLING = ("m1", "m2", "m12")
FEATURES = ("embedding", "backbone")


class Triplet(Supervised):
    name = "triplet"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        'CT512_1-full_FT (Method 1)': ('triplet_m1_full_ft',),
        'CT512_2-full_FT (Method 1 then 2)': ('triplet_m12_full_ft',),
        'CT512_1-FC_only (Method 1)': ('triplet_m1_fc_only',),
        'CT512_2-FC_only (Method 1 then 2)': ('triplet_m12_fc_only',),
    }
    gpu_check = GpuCheck("triplet_m12_full_ft", "pretrain", "ckplus")
    #: the paper budget's recipe, each value with its source (tests/test_paper_recipes.py)
    paper_recipe = (
        RecipeRow('train', 'embedding_dim', 512, source='Table 1: CT512'),
        RecipeRow('pretrain', 'backbone', 'inception_v1', source='Table 1: InceptionV1'),
        RecipeRow('train', 'backbone', 'inception_v1',
                  source='Table 1: InceptionV1 (the pretrained encoder)'),
        RecipeRow('train', 'image_size', 224, source="InceptionV1's input size"),
    )
    pretrain = True
    pretrain_views = 3
    hparam_types = {"pretrain_dataset": (str, type(None))}
    defaults = {
        "sampling": "m12",          # m1 | m2 | m12 (Method 1 then Method 2)
        "margin": 0.2,              # alpha (inferred)
        "embedding_dim": 512,       # CT512
        "semi_hard": True,          # online semi-hard negative selection within the batch
        "group_size": 4,            # triplets per anchor sequence in a batch (semi_hard only)
        "m12_switch": 0.5,          # m12: fraction of the pretraining epochs on Method 1
        "until_apex": True,         # sequences end at their apex frame (MMI's offset is not "more intense")
        "features": "embedding",    # what the train stage's linear head reads: embedding | backbone
        "pretrain_dataset": None,   # dataset whose sequences pretrain the encoder (null: the target)
    }
    #: keys that only matter after pretraining (runs differing only in these can share an encoder)
    train_only_hparams: ClassVar[tuple[str, ...]] = ("finetune", "head_dropout", "features")

    def __init__(self, settings: Mapping[str, Any], task: TaskInfo) -> None:
        super().__init__(settings, task)
        hp, where = self.hp, f"methods.{self.run_name}"
        if hp["sampling"] not in SAMPLING:
            raise FerbenchError(f"{where}.sampling: {hp['sampling']!r} (choose from {', '.join(SAMPLING)})")
        if hp["features"] not in FEATURES:
            raise FerbenchError(f"{where}.features: {hp['features']!r} (choose from {', '.join(FEATURES)})")
        if not float(hp["margin"]) > 0:
            raise FerbenchError(f"{where}.margin: must be > 0, got {hp['margin']!r}")
        for key in ("embedding_dim", "group_size"):
            if isinstance(hp[key], bool) or not isinstance(hp[key], int) or hp[key] < 1:
                raise FerbenchError(f"{where}.{key}: must be a positive integer, got {hp[key]!r}")
        if not 0.0 <= float(hp["m12_switch"]) <= 1.0:
            raise FerbenchError(f"{where}.m12_switch: must be in [0, 1], got {hp['m12_switch']!r}")
        dim = int(hp["embedding_dim"])
        self.embed = nn.Linear(self.feature_dim, dim)
        if hp["features"] == "embedding":
            self.head = LinearHead(dim, task.num_outputs, tanh=task.task == "va",
                                   dropout=float(hp["head_dropout"]))
        self.samplers: dict[str, Sampler] = {}   # pretraining only (set in setup)
        self.sequences: Any = None
        self._units = np.zeros(0, dtype=np.int64)

    # -- what the workflow/engine ask before any job runs -----------------------------------
    @classmethod
    def pretrain_source(cls, settings: Mapping[str, Any]) -> str:
        """The dataset whose sequences pretrain the encoder, for settings naming the TARGET."""
        given = (settings.get("method") or {}).get("pretrain_dataset", cls.all_defaults()["pretrain_dataset"])
        return str(given or settings["dataset"])

    @classmethod
    def pretrain_data_depends_on_fold(cls, settings: Mapping[str, Any]) -> bool:
        """Per-fold pretraining only on the target itself; another dataset is never tested on."""
        return cls.pretrain_per_fold and cls.pretrain_source(settings) == settings["dataset"]

    @classmethod
    def pretrain_identity(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """What the pretraining result depends on, for pretrain-stage settings: runs with equal
        identities (e.g. triplet_m1_fc_only and triplet_m1_full_ft) can share one encoder; the
        pretraining dataset is its own entry, so ``pretrain_dataset`` itself is left out."""
        identity = super().pretrain_identity(settings)
        identity["hp"].pop("pretrain_dataset", None)
        return identity

    # -- data --------------------------------------------------------------------------------
    def setup(self, data: Any, stage: str) -> None:
        super().setup(data, stage)
        pretraining = stage == "pretrain"
        self.head.requires_grad_(not pretraining)
        uses_embed = self.hp["features"] == "embedding" and not self.frozen_backbone
        self.embed.requires_grad_(pretraining or uses_embed)
        if not pretraining:
            return
        dataset = self.settings.get("dataset", "?")
        wanted = self.hp["pretrain_dataset"]
        if wanted and wanted != dataset:
            raise FerbenchError(f"methods.{self.run_name}.pretrain_dataset is {wanted!r}: its pretraining "
                                f"reads {wanted} (ferbench pretrain --dataset {wanted}), not {dataset}")
        table = build_sequence_table(data.folds, data.subject_mask, until_apex=self.hp["until_apex"])
        where = f"{dataset} fold {getattr(data, 'fold', '?')} (methods.{self.run_name})"
        if not table.n_sequences:
            where += (" has no sequences among its training subjects; pretrain on a sequence dataset "
                      f"with methods.{self.run_name}.pretrain_dataset (e.g. ckplus)")
        self.sequences = table
        self.samplers = {key: SAMPLERS[key](table, where) for key in self._sampler_keys()}
        for sampler in self.samplers.values():
            (log.info if sampler.usability.complete else log.warning)(sampler.usability.line())
        self._units = np.unique(np.concatenate([s.positions_used() for s in self.samplers.values()]))

    def _m1_epochs(self) -> int:
        epochs = int(self.schedule["epochs"])
        return min(epochs, int(math.floor(float(self.hp["m12_switch"]) * epochs + 0.5)))

    def _sampler_keys(self) -> list[str]:
        if self.hp["sampling"] != "m12":
            return [self.hp["sampling"]]
        n1, epochs = self._m1_epochs(), int(self.schedule["epochs"])
        return [key for key, used in (("m1", n1 > 0), ("m2", n1 < epochs)) if used]

    def sampler_for_epoch(self, epoch: int) -> Sampler:
        if self.hp["sampling"] == "m12":
            return self.samplers["m1" if epoch < self._m1_epochs() else "m2"]
        return self.samplers[self.hp["sampling"]]

    def sampling_units(self) -> np.ndarray:
        """Pretraining: every frame a triplet can use (one triplet per frame and epoch)."""
        return self._units if self.stage == "pretrain" else super().sampling_units()

    def epoch_batches(self, generator: torch.Generator, epoch: int) -> list[np.ndarray]:
        if self.stage != "pretrain":
            return super().epoch_batches(generator, epoch)
        nb, bs = self.num_batches(), min(self.batch_size(), len(self._units))
        group = int(self.hp["group_size"]) if self.hp["semi_hard"] else 1
        triplets = self.sampler_for_epoch(epoch).draw(nb * bs, generator, group)
        return [triplets[i * bs:(i + 1) * bs] for i in range(nb)]

    # -- forward -----------------------------------------------------------------------------
    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): the L2-normalised embedding [B, embedding_dim] (float32)."""
        return F.normalize(self.embed(self.backbone(x)).float(), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hp["features"] == "backbone":
            return super().forward(x)
        if self.frozen_backbone:
            with torch.no_grad():
                return self.embedding(x)
        return self.embedding(x)

    def pretraining_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        a, p, n = batch.views[:3]
        za, zp, zn = self.embedding(torch.cat([a, p, n])).chunk(3)  # one pass: BN sees all three
        d_ap = (za - zp).pow(2).sum(1).detach()
        if self.hp["semi_hard"]:
            valid = torch.from_numpy(valid_negatives(self.sequences, batch.positions)).to(za.device)
            # selection in float32: autocast would run the distance matmul in bf16
            with torch.no_grad(), torch.autocast(za.device.type, enabled=False):
                zn = zn[semi_hard_negatives(d_ap, squared_distances(za, zn), valid)]
        losses = triplet_loss(za, zp, zn, float(self.hp["margin"]), reduction="none")
        return {"loss": losses.mean(), "active": (losses > 0).float().mean(), "d_ap": d_ap.mean(),
                "d_an": (za - zn).pow(2).sum(1).mean().detach()}

    # -- artefacts ---------------------------------------------------------------------------
    def extra_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in self.samplers.values():
            u = s.usability
            out.update({f"{s.name}_subjects": u.subjects, f"{s.name}_usable_subjects": u.usable_subjects,
                        f"{s.name}_sequences": u.sequences, f"{s.name}_usable_sequences": u.usable_sequences})
        return out

    def encoder_modules(self) -> dict[str, nn.Module]:
        """The backbone and, when the head reads f(x), the embedding layer (pretraining always
        exports it: ``features`` is a train-only key)."""
        if self.hp["features"] == "embedding":
            return {"backbone": self.backbone, "embed": self.embed}
        return {"backbone": self.backbone}
