"""Seed 003 (Kim, Yoo, Kwak, Choi, Kim): generative-contrastive networks, GCNet.

What differs from :class:`~ferbench.methods.supervised.Supervised`:

* a **generator** En1 + De1,r (paper Table 1; networks in ``ferbench.models.gcnet``): the
  encoder is the body of the ``cnn3`` backbone ((5x5,32), (3x3,64), (3x3,96) conv, each BN,
  ReLU, max-pool of window 5/3/3, stride 2); the decoder mirrors it: max-unpool with the
  encoder's pooling indices, then a transposed conv, BN, ReLU, down to one grey channel (by
  default the last deconvolution is linear and its output is added to X: see
  ``generator_output`` below). It maps an expressive frame X to an estimate of the subject's
  reference (neutral) face; the target X_r is the FIRST frame of X's sequence
  (``SequenceTable.first_of``) when that is the onset (see "Reference faces" below). Table 1 lists the first two deconvolutions as
  (3x3, 32) then (3x3, 64); unpooling with indices needs each unpool to receive the channels of
  the pool it undoes, so the mirror is 96 -> 64 -> 32 -> 1 (Table 1's order is read as a typo).
* **En2** is the backbone (``cnn3`` in the paper: 3 conv + dropout 0.5 + FC 384, the
  (0.5*64)^2*3/2^3 rule), shared (siamese) by X and G(X); the classifier (the baseline's head,
  a linear layer + softmax cross-entropy, L_Cls) reads delta = |En2(X) - En2(G(X))|. Both
  images go through En2 in one batch, so BN trains on the mixture it sees at test time.
  The paper's dropout 0.5 is "before the first fully-connected layer", i.e. inside cnn3.
* **S** (``contrastive``): Hadsell's loss on (En2(X), En2(G(X))) with margin ``margin``
  (not given in the paper: 1.0, Caffe's default). The generated reference is labelled
  *neutral* (it estimates the neutral face), so a pair is "same" exactly when X is labelled
  neutral: never in the 6/7-class protocols, for the neutral samples of CK+ 8-class.
  Deviation (``contrastive_features: normalized``, the default): S compares the L2-normalised
  features. En2's 384-d ReLU features are unnormalised and the classifier, reading their
  difference, drives their distance past 20 within a few hundred steps, after which a margin of
  1 never acts and S1 trains exactly like S0; on the unit sphere (distances in [0, 2]) the
  margin keeps its meaning. ``raw`` is the paper's literal form; ``contr_active`` logs the
  share of pairs the term acts on, in either space.
* **R** (``reconstruction``): De2,r rebuilds X_r from En2(G(X)), De2,i rebuilds X from En2(X)
  (each: FC back to En2's last conv map, then the mirrored unpool/deconv decoder with the
  pooling indices of its own En2 pass; the FC is inferred, the paper only says "decoder").
* L = L_Cls + lambda_S [S] L_Contr + lambda_R L_Recon,
  L_Recon = lambda_G,r L_Gen,r + [R] (lambda_R,r L_Recon,r + lambda_R,i L_Recon,i).
  Reading of Fig. 2: (c) S0R0 already contains the generator (and so L_Gen,r, without which no
  reference is learned), (d) adds "a contrastive metric loss (S)", (e) adds "decoder networks
  with a reconstruction loss (R)" whose outputs are X_hat and X_r_hat: R switches De2,r/De2,i
  and their two terms, never L_Gen,r. With S0 L_Contr is still logged, detached.
  De2,r/De2,i exist only when R is on; they are built last, so same-seed variants start from
  identical generator/En2/classifier weights and differ only in their loss.
* Losses as the authors' Caffe layers reduce them (``losses`` GCNet section): 1/2 squared
  error SUMMED over pixels, AVERAGED over the batch; the contrastive term averaged over pairs.
  Images are in [0, 1] (``augment`` mean 0, std 1: Caffe's 1/255 scaling), which the
  direct generator's final ReLU (Table 1) can reach.
* Pretraining (``ferbench pretrain``, one job per fold shared by the four variants): the paper
  pre-trains En1/De1,r on reconstruction and En2's convolutions on identification, both on
  CASIA-WebFace, which this benchmark does not have. The stand-in uses the fold's training
  subjects only: the generator learns L_Gen,r on EVERY frame of their sequences (not only the
  protocol's peak frames: the onset frames teach it that a neutral face maps to itself) and
  En2 + a linear layer learns to tell the training subjects apart (softmax cross-entropy).
  ``train`` starts from the generator and En2's convolutions (``encoder_state_dict``); En2's FC,
  the classifier and De2,r/De2,i start afresh. Then everything trains jointly; gradients of
  every term reach the generator (the paper: the generated reference "is affected by
  reconstruction and contrastive metric learning").
* Deviation (``generator_output: residual``, the default): G(X) = X + De1,r(En1(X)), the
  decoder's last deconvolution linear (no BN/ReLU) and zero-initialised. The paper's generator
  starts from a CASIA-trained autoencoder, i.e. close to the identity mapping; from scratch,
  Table 1's direct output must first learn to redraw the whole face through three pooling
  stages and stays worse than the identity mapping for thousands of steps (measured:
  docs/methods.md), while the residual form starts AT the identity mapping and learns only the expression change. While G(X) = X exactly, delta is zero and every
  term but L_Gen,r has zero gradient; the pretraining stage moves the generator first (the
  paper's first step, "learning of a reference generator network"). ``direct`` keeps Table 1's
  output.
* Optimisation: decoder layers (De1,r, De2,r, De2,i) learn ``decoder_lr_mult`` (10) times
  faster; ``lr_policy: inv`` is Caffe's lr = base (1 + gamma it)^(-power). The paper's "gamma
  term of 0.75" is read as Caffe's ``power`` (0.75 with ``gamma`` 1e-4 is Caffe's stock "inv"
  setting, the LeNet example; gamma 0.75 itself, with power 0.75, would cut the LR ~85-fold by
  iteration 500 of a 3e5-iteration run).
  The optimiser (paper: Nesterov SGD, lr 1e-3, momentum 0.9, weight decay 1e-4, batch 64) is
  the params block's training keys. From scratch, SGD at these rates diverges on the summed
  image losses (an output bias feels a curvature of ~S*S = 4096 at 64 px; without CASIA
  pretraining the generator's ReLU output dies even at lr 1e-4): use Adam, whose steps do not
  scale with the loss, and set ``decoder_lr_mult: 1`` with it (params.yaml does): with Adam the
  10x decoder rate kept the generator at the identity mapping's error (docs/methods.md).
* The ``paper`` budget (params.yaml ``budgets: {paper: ...}``; tests/test_paper_recipes.py):
  64 px grey, batch 64, lr 1e-3, weight decay 1e-4, the ``inv`` policy, as sec. 4.1; Adam and
  ``decoder_lr_mult`` 1 as above; 300 epochs, where the paper gives only a maximum of 3e5
  iterations (about 21,700 epochs of a CK+ fold's ~880 training images); the pretraining
  stand-in 50 epochs. The ``cnn_baseline`` run (class supervised) shares the optimiser,
  epochs, batch and augmentation, with a constant learning rate (the supervised class has no
  ``inv`` policy).
* Batches carry (frame, its sequence's first frame); ``transform`` draws ONE set of augmentation
  parameters per pair, so the target shares the input's crop, rotation, flip and intensity.
* Test time: a single image, predict(x) = head(|En2(x) - En2(G(x))|).

Reference faces (X_r). The paper's reference is the subject's "neutral-like or less-expressive
face" (sec. 3; footnote 1: the expression change is measured within one subject), which its
datasets provide as the onset frame every CK+, MMI and Oulu-CASIA sequence starts from. Per
training sample, the first that applies:

1. ``onset``: the first frame of its sequence, when that frame is the recording's onset: its
   frame number is at most ``ONSET_MAX_FRAME`` (1; CK+ numbers frames from 1, Oulu-CASIA and
   video frames from 0) and it is not the apex. Unnumbered frames are taken as starting at the
   onset.
2. ``subject_neutral``: otherwise the subject's neutral-labelled image (the first in table
   order), if the dataset has one for that subject (a CK+48 re-pack with a ``neutral`` folder,
   JAFFE's NE images): the same subject's neutral face, the paper's X_r by definition.
3. ``none``: otherwise (the CK+48 re-pack as usually shipped keeps only the last three frames
   of each sequence, all near the apex, and no neutral image) the sample has no reference. It
   still trains L_Cls, S and L_Recon,i, but the two terms whose target is X_r (L_Gen,r and
   L_Recon,r) leave it out (``gcnet_reconstruction_loss(has_ref=...)``), in training and
   pretraining alike; the generator then learns only through the other terms (its output
   G(X) is its own reference), so such numbers are not the paper's method and are not
   comparable with its Table 2. An apex frame is never used as the "neutral" reference.

When any training sequence lacks an onset frame, one warning line says how many and which
fallback each sample got; ``extra_metrics`` carries the counts (``ref_source_*``) and the
generator's test error only over test samples with a reference. Stills and one-frame sequences
without a neutral image of their subject are left out with a logged count; nothing usable is a
FerbenchError. ``extra_metrics`` reports the
generator's error on the test fold, MSE(G(X), X_r), beside the identity mapping's MSE(X, X_r)
(per pixel, [0, 1] grey levels), and the usable counts.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ferbench.data.augment import Augmenter
from ferbench.errors import FerbenchError
from ferbench.methods.losses import gcnet_reconstruction_loss, hadsell_contrastive_loss, half_squared_error
from ferbench.methods.base import Batch, GpuCheck, ParamGroup, RecipeRow, TaskInfo
from ferbench.methods.supervised import Supervised
from ferbench.models.gcnet import Generator, VectorDecoder, check_mirrorable, encode_with_switches

log = logging.getLogger(__name__)

LR_POLICIES = ("inv", "fixed")
GENERATOR_OUTPUTS = ("residual", "direct")
CONTRASTIVE_FEATURES = ("normalized", "raw")
#: how many test images extra_metrics pushes through the generator at once
_METRIC_CHUNK = 256
#: a sequence starts at its onset (neutral) frame when its first frame number is at most this
ONSET_MAX_FRAME = 1
#: where a sample's reference face comes from (module doc, "Reference faces")
REF_SOURCES = ("onset", "subject_neutral", "none")


def reference_faces(folds: Any, table: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per folds position: (reference position, source code into REF_SOURCES, in a sequence of
    2+ frames). ``table`` is the folds' SequenceTable. A position without a reference maps to
    itself (source "none")."""
    n = len(folds)
    in_seq = np.zeros(n, dtype=bool)
    seqs = table.sequences(min_frames=2)
    if seqs:
        in_seq[np.concatenate(seqs)] = True
    first = table.first_of(np.arange(n))
    frame = folds["frame"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    apex = (folds["apex"].astype("boolean").fillna(False).to_numpy(bool) if "apex" in folds.columns
            else np.zeros(n, dtype=bool))
    onset = in_seq & ~(frame[first] > ONSET_MAX_FRAME) & ~apex[first]   # NaN frame: assumed onset
    # the subject's first neutral-labelled image, in table order
    neutral = np.full(n, -1, dtype=np.int64)
    emotion = folds["emotion"].to_numpy(object) if "emotion" in folds.columns else np.full(n, None)
    subject = folds["subject"].to_numpy(object)
    is_neutral = (emotion == "neutral") & pd.notna(subject)
    if is_neutral.any():
        first_neutral = pd.Series(np.flatnonzero(is_neutral)).groupby(subject[is_neutral]).min()
        has_subject = pd.notna(subject)
        neutral[has_subject] = pd.Series(subject[has_subject]).map(first_neutral).fillna(-1).to_numpy(np.int64)
    source = np.where(onset, 0, np.where(neutral >= 0, 1, 2)).astype(np.int64)
    ref = np.where(onset, first, np.where(neutral >= 0, neutral, np.arange(n)))
    return ref.astype(np.int64), source, in_seq


# -- the method -------------------------------------------------------------------------------
class GCNet(Supervised):
    name = "gcnet"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        'GCNet S0R0': ('gcnet_s0r0',),
        'GCNet S1R0': ('gcnet_s1r0',),
        'GCNet S0R1': ('gcnet_s0r1',),
        'GCNet S1R1': ('gcnet_s1r1',),
    }
    gpu_check = GpuCheck("gcnet_s1r1", "train", "ckplus")
    #: the paper budget's recipe, each value with its source (tests/test_paper_recipes.py)
    paper_recipe = (
        RecipeRow('train', 'backbone', 'cnn3',
                  source='Table 1, sec. 4.1: 3 conv + FC (384)', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'image_size', 64,
                  source='sec. 4.1: resized to 66x66, random 64x64 crop', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'channels', 1,
                  source='sec. 4.1: gray level (1 channel)', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'batch_size', 64,
                  source='sec. 4.1: mini-batch size of 64', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'lr', 0.001,
                  source='sec. 4.1: base learning rate 0.001', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'weight_decay', 0.0001,
                  source='sec. 4.1: weight decay 0.0001', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'optimizer', 'adam', paper='nesterov',
                  source="sec. 4.1: 'Nesterov', momentum 0.9", readme='Adam, not Nesterov SGD', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'epochs', 300, paper='3e5 iterations',
                  source='sec. 4.1: maximum iteration 3e5', readme='300 epochs', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'aug.flip', 0.5,
                  source='sec. 4.1: random flipping', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'aug.rotate', 10.0,
                  source='sec. 4.1: affine rotation (angle not given: 10)', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'aug.scale', (0.85, 1.0),
                  source='sec. 4.1: 64 of 66 crop + scaling (range inferred)', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'aug.brightness', 0.2,
                  source='sec. 4.1: intensity multiplication (range inferred)', runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'aug.std', 1.0,
                  source="Caffe's 1/255 scaling: images in [0, 1]", runs='cnn_baseline gcnet_*'),
        RecipeRow('train', 'lr_policy', 'inv', source="sec. 4.1: 'inverse' learning policy"),
        RecipeRow('train', 'inv_power', 0.75, source="sec. 4.1: gamma term 0.75 (Caffe's power)"),
        RecipeRow('train', 'decoder_lr_mult', 1.0, paper=10.0,
                  source='sec. 4.1: decoder learning rate x10', readme='decoder learning rate x1'),
        RecipeRow('pretrain', 'epochs', 50, paper='CASIA-WebFace',
                  source='sec. 4.1: pretrained on CASIA-WebFace', readme='50 epochs on the training subjects'),
    )
    pretrain = True             # the generator and En2, on the training fold (see pretraining_step)
    pretrain_views = 2          # (frame, its sequence's first frame)
    tasks = ("classification",)  # its contrastive pairs need expression labels
    #: the S/R switches and loss weights only act in the train stage: the four variants of a
    #: fold share one pretraining job
    train_only_hparams = ("contrastive", "reconstruction", "margin", "contrastive_features",
                          "lambda_s", "lambda_r", "lambda_gen", "lambda_recon_r", "lambda_recon_i")
    defaults = {
        "channels": 1,                # grey input (paper 4.1)
        "contrastive": True,          # S: Hadsell loss on (En2(X), En2(G(X)))
        "reconstruction": True,       # R: De2,r and De2,i with their reconstruction terms
        "margin": 1.0,                # m (not given; Caffe's ContrastiveLoss default), on the
                                      # unit sphere when contrastive_features is "normalized"
        "contrastive_features": "normalized",  # S on L2-normalised En2 features | "raw"
        "generator_output": "residual",        # G(X) = X + De1,r(En1(X)) | "direct" (Table 1)
        "lambda_s": 1.0,
        "lambda_r": 1.0,
        "lambda_gen": 1.0,            # lambda_G,r
        "lambda_recon_r": 0.25,       # lambda_R,r
        "lambda_recon_i": 0.25,       # lambda_R,i
        "decoder_lr_mult": 10.0,      # decoder layers' LR multiplier
        "lr_policy": "inv",           # inv (Caffe) | fixed
        "inv_gamma": 1.0e-4,          # Caffe inv: lr = base * (1 + gamma * it) ** -power
        "inv_power": 0.75,            # the paper's "gamma term of 0.75"
        # 66 -> random 64 crop plus isotropic scaling, rotation, intensity multiplication, flip;
        # no mean subtraction (Caffe's 1/255 scale): images and targets in [0, 1]
        "augment": {"flip": 0.5, "scale": (0.85, 1.0), "ratio": (1.0, 1.0), "rotate": 10.0,
                    "brightness": 0.2, "contrast": 0.0, "mean": 0.0, "std": 1.0},
    }

    def __init__(self, settings: Mapping[str, Any], task: TaskInfo) -> None:
        super().__init__(settings, task)
        hp, where = self.hp, f"methods.{self.run_name}"
        for key in ("contrastive", "reconstruction"):
            if not isinstance(hp[key], bool):
                raise FerbenchError(f"{where}.{key}: must be true or false, got {hp[key]!r}")
        if not float(hp["margin"]) > 0:
            raise FerbenchError(f"{where}.margin: must be > 0, got {hp['margin']!r}")
        for key in ("lambda_s", "lambda_r", "lambda_gen", "lambda_recon_r", "lambda_recon_i",
                    "inv_gamma", "inv_power"):
            if not float(hp[key]) >= 0:
                raise FerbenchError(f"{where}.{key}: must be >= 0, got {hp[key]!r}")
        if not float(hp["decoder_lr_mult"]) > 0:
            raise FerbenchError(f"{where}.decoder_lr_mult: must be > 0, got {hp['decoder_lr_mult']!r}")
        for key, choices in (("lr_policy", LR_POLICIES), ("generator_output", GENERATOR_OUTPUTS),
                             ("contrastive_features", CONTRASTIVE_FEATURES)):
            if hp[key] not in choices:
                raise FerbenchError(f"{where}.{key}: {hp[key]!r} (choose from {', '.join(choices)})")
        self.neutral = task.classes.index("neutral") if "neutral" in task.classes else -1
        self.generator = Generator(self.in_channels, task.image_size,
                                   residual=hp["generator_output"] == "residual")
        self.de2_r: VectorDecoder | None = None
        self.de2_i: VectorDecoder | None = None
        if hp["reconstruction"]:  # built last: the other networks' initial weights do not depend on R
            body = check_mirrorable(self.backbone.body, f"{where} (backbone {self.schedule['backbone']!r})")
            shape = self._body_output_shape(body, task.image_size)
            self.de2_r = VectorDecoder(body, self.feature_dim, shape, self.in_channels)
            self.de2_i = VectorDecoder(body, self.feature_dim, shape, self.in_channels)
        self._units = np.zeros(0, dtype=np.int64)
        self._ref: np.ndarray = np.zeros(0, dtype=np.int64)     # position -> reference position
        self._has_ref: np.ndarray = np.zeros(0, dtype=bool)
        self._identity_of: np.ndarray = np.zeros(0, dtype=np.int64)  # position -> subject class (pretrain)
        self.identity_head: nn.Linear | None = None                    # built in setup (pretrain)
        self.usability: dict[str, int] = {}

    def _body_output_shape(self, body: nn.Sequential, size: int) -> tuple[int, int, int]:
        was = body.training
        body.eval()  # no BN statistics move
        with torch.no_grad():
            out = body(torch.zeros(1, self.in_channels, size, size))
        body.train(was)
        return tuple(int(v) for v in out.shape[1:])  # type: ignore[return-value]

    # -- data --------------------------------------------------------------------------------
    def setup(self, data: Any, stage: str) -> None:
        super().setup(data, stage)
        pretraining = stage == "pretrain"
        n = len(data.folds)
        self._ref, source, in_seq = reference_faces(data.folds, data.sequence_table())
        self._has_ref = source < 2
        # train: the protocol's training samples; pretrain: every frame of the training subjects
        train = np.flatnonzero(data.subject_mask) if pretraining else data.indices["train"]
        # a frame of a sequence without any reference still trains (without the X_r terms)
        usable = self._has_ref[train] | in_seq[train]
        self._units = train[usable]
        seq = data.folds["sequence"].to_numpy(object)
        train_seqs = {s if s is not None and s == s else ("still", p) for s, p in zip(seq[train], train)}
        self.usability = {
            "ref_train_samples": int(len(train)), "ref_usable_train_samples": int(usable.sum()),
            "ref_train_sequences": len(train_seqs),
            "ref_usable_train_sequences": len(set(seq[self._units])),
            **{f"ref_source_{name}": int((source[self._units] == k).sum()) for k, name in enumerate(REF_SOURCES)},
        }
        u = self.usability
        what = "frames" if pretraining else "samples"
        where = (f"{self.settings.get('dataset', '?')} fold {getattr(data, 'fold', '?')} "
                 f"(methods.{self.run_name}, {stage})")
        no_onset = {s for s in seq[self._units[source[self._units] != 0]] if s is not None and s == s}
        if no_onset:
            log.warning(
                f"{where}: {len(no_onset)} of {u['ref_usable_train_sequences']} training sequences hold no onset "
                f"(neutral) frame (first frame numbered above {ONSET_MAX_FRAME}, as in the CK+48 re-pack's last "
                f"three frames); reference face instead: the subject's neutral-labelled image for "
                f"{u['ref_source_subject_neutral']} {what}, none for {u['ref_source_none']} {what} (L_Gen,r and "
                f"L_Recon,r leave them out), never an apex frame")
        line = (f"{where}: {u['ref_usable_train_sequences']} of {u['ref_train_sequences']} training sequences "
                f"(a still counts as a one-frame sequence) have a reference face or frames to train on; "
                f"{u['ref_train_samples'] - u['ref_usable_train_samples']} of {u['ref_train_samples']} "
                f"training {what} without one are left out")
        if not len(self._units):
            raise FerbenchError(f"{line}: nothing to train on. GCNet needs expression sequences (CK+, MMI, "
                                f"Oulu-CASIA) or a neutral image of each subject, not still images alone")
        (log.info if usable.all() else log.warning)(line)
        for module in (self.head, self.de2_r, self.de2_i):  # not part of the pretraining
            if module is not None:
                module.requires_grad_(not pretraining)
        if pretraining:
            # En2's identification pretraining: one class per training subject
            subjects, classes = np.unique(data.folds["subject"].to_numpy(str)[self._units], return_inverse=True)
            self._identity_of = np.full(n, -1, dtype=np.int64)
            self._identity_of[self._units] = classes
            self.identity_head = nn.Linear(self.feature_dim, len(subjects))
            self.usability["pretrain_subjects"] = int(len(subjects))

    def sampling_units(self) -> np.ndarray:
        return self._units

    def epoch_batches(self, generator: torch.Generator, epoch: int) -> list[np.ndarray]:
        """[B, 2]: (frame, first frame of its sequence)."""
        return [np.stack([b[:, 0], self._ref[b[:, 0]]], axis=1) for b in super().epoch_batches(generator, epoch)]

    def transform(self, batch: Batch, augmenter: Augmenter, train: bool) -> list[torch.Tensor]:
        """One draw of augmentation parameters per pair: the target keeps the input's geometry."""
        if not train or not augmenter.config.enabled or batch.images.shape[1] == 1:
            return super().transform(batch, augmenter, train)
        params = augmenter.sample(len(batch))
        return [augmenter.apply(batch.images[:, j], params) for j in range(batch.images.shape[1])]

    # -- optimisation ------------------------------------------------------------------------
    def decoders(self) -> list[nn.Module]:
        return [m for m in (self.generator.decoder, self.de2_r, self.de2_i) if m is not None]

    def param_groups(self) -> list[ParamGroup]:
        networks = [m for m in (self.backbone, self.head, self.generator.encoder, self.identity_head)
                    if m is not None]
        return [ParamGroup("network", networks),
                ParamGroup("decoders", self.decoders(), lr_mult=float(self.hp["decoder_lr_mult"]))]

    def lr_schedulers(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> list[Any]:
        if self.hp["lr_policy"] == "fixed":
            return []
        gamma, power = float(self.hp["inv_gamma"]), float(self.hp["inv_power"])
        return [torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1.0 + gamma * it) ** -power)
                for opt in optimizers.values()]

    # -- forward -----------------------------------------------------------------------------
    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """G(X) = De1,r(En1(X)): the estimated reference face, [B, C, S, S]."""
        return self.generator(x)

    def encode(self, x: torch.Tensor, switches: bool = False):
        """En2(x) [B, D]; with ``switches`` also the pooling indices De2 needs."""
        if not switches:
            return self.backbone(x)
        y, sw = encode_with_switches(self.backbone.body, x)
        return self.backbone.pool(y), sw

    def pair(self, x: torch.Tensor, switches: bool = False) -> dict[str, Any]:
        """G(x), En2(x), En2(G(x)) from one En2 pass over both (and their switches)."""
        g = self.generate(x)
        both = torch.cat([x, g])
        if switches:
            z, sw = self.encode(both, switches=True)
            out = {"sw_x": [(i[:len(x)], s) for i, s in sw], "sw_g": [(i[len(x):], s) for i, s in sw]}
        else:
            z, out = self.encode(both), {}
        zx, zg = z.chunk(2)
        return {"g": g, "zx": zx, "zg": zg, **out}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The contrastive representation delta = |En2(x) - En2(G(x))| [B, D]."""
        p = self.pair(x)
        return (p["zx"] - p["zg"]).abs()

    def contrastive_space(self, zx: torch.Tensor, zg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features S compares: L2-normalised (distances in [0, 2], so the margin keeps its
        meaning whatever scale En2's features drift to) or En2's raw outputs."""
        if self.hp["contrastive_features"] == "normalized":
            return F.normalize(zx, dim=1), F.normalize(zg, dim=1)
        return zx, zg

    def pair_is_same(self, labels: torch.Tensor) -> torch.Tensor:
        """(X, G(X)) share a label when X is neutral: G(X) estimates the neutral face."""
        return labels == self.neutral if self.neutral >= 0 else torch.zeros_like(labels, dtype=torch.bool)

    def reference_mask(self, batch: Batch, device: torch.device) -> torch.Tensor | None:
        """bool [B]: which samples have a reference face; None when all do (or positions are
        unknown), so the paper's plain batch means apply."""
        pos = batch.positions[:, 0] if batch.positions is not None and len(self._has_ref) else None
        if pos is None or len(pos) == 0 or pos.max() >= len(self._has_ref) or self._has_ref[pos].all():
            return None
        return torch.from_numpy(self._has_ref[pos]).to(device)

    def training_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        hp = self.hp
        x, x_ref = batch.views[0], batch.views[1]
        recon = hp["reconstruction"]  # a boolean: merge_hparams checked its type
        p = self.pair(x, switches=recon)
        zx, zg = p["zx"].float(), p["zg"].float()
        cls = self.classification_loss(self.head((zx - zg).abs()), batch.labels)
        sx, sg = self.contrastive_space(zx, zg)
        contr = hadsell_contrastive_loss(sx, sg, self.pair_is_same(batch.labels), float(hp["margin"]))
        if not hp["contrastive"]:
            contr = contr.detach()  # S0: logged, never trained on
        rec_r = rec_i = None
        if recon:
            rec_r = self.de2_r(p["zg"], p["sw_g"]).float()
            rec_i = self.de2_i(p["zx"], p["sw_x"]).float()
        l_recon, terms = gcnet_reconstruction_loss(
            x.float(), x_ref.float(), p["g"].float(), rec_r, rec_i, float(hp["lambda_gen"]),
            float(hp["lambda_recon_r"]), float(hp["lambda_recon_i"]), self.reference_mask(batch, x.device))
        loss = cls + float(hp["lambda_r"]) * l_recon
        if hp["contrastive"]:
            loss = loss + float(hp["lambda_s"]) * contr
        dist = (sx - sg).detach().pow(2).sum(1).sqrt()   # in the space S measures
        # pairs the contrastive term acts on: every "same" pair, "different" ones inside the margin
        active = (self.pair_is_same(batch.labels) | (dist < float(hp["margin"]))).float().mean()
        return {"loss": loss, "cls": cls.detach(), "contr": contr.detach(),
                **{k: v.detach() for k, v in terms.items()}, "dist": dist.mean(), "contr_active": active}

    def pretraining_step(self, batch: Batch, optimizers: Any = None) -> dict[str, torch.Tensor]:
        """Stand-in for the paper's CASIA-WebFace pretraining, on the training subjects' frames:
        the generator learns the reference (L_Gen,r, every frame -> its sequence's first frame)
        and En2 learns to identify the subject (softmax cross-entropy over training subjects)."""
        x, x_ref = batch.views[0], batch.views[1]
        has_ref = self.reference_mask(batch, x.device)
        if has_ref is None:
            gen = half_squared_error(self.generate(x).float(), x_ref.float())
        else:  # frames without a reference face: L_Gen,r leaves them out
            gen, _ = gcnet_reconstruction_loss(x.float(), x_ref.float(), self.generate(x).float(), has_ref=has_ref)
        subject = torch.from_numpy(self._identity_of[batch.positions[:, 0]]).to(x.device)
        ident = F.cross_entropy(self.identity_head(self.encode(x)).float(), subject)
        return {"loss": gen + ident, "gen": gen.detach(), "identification": ident.detach()}

    def encoder_modules(self) -> dict[str, nn.Module]:
        """The generator (En1 + De1,r) and En2's convolutional layers: what the paper adopts from
        its pretrained networks (En2's FC and the classifier start afresh)."""
        return {"generator": self.generator, "backbone.body": self.backbone.body}

    # -- artefacts ---------------------------------------------------------------------------
    @torch.no_grad()
    def reference_errors(self, positions: np.ndarray) -> dict[str, float]:
        """Per-pixel MSE of G(X) and of X itself against X_r over ``positions`` (eval mode,
        no augmentation), in [0, 1] grey levels."""
        data = self.data
        device = next(self.parameters()).device
        aug = Augmenter(self.augment_config(), self.in_channels, torch.Generator())
        scale = float(aug.config.std) ** 2  # back to [0, 1] grey levels
        was = self.training
        self.eval()
        sums = torch.zeros(2, dtype=torch.float64)
        try:
            for i in range(0, len(positions), _METRIC_CHUNK):
                pos = positions[i:i + _METRIC_CHUNK]
                rows = np.concatenate([data.cache_row[pos], data.cache_row[self._ref[pos]]])
                imgs = torch.from_numpy(np.ascontiguousarray(data.images[rows])).to(device)
                x, x_ref = aug(imgs, train=False).float().chunk(2)
                g = self.generate(x).float()
                sums[0] += (g - x_ref).pow(2).flatten(1).mean(1).sum().item()
                sums[1] += (x - x_ref).pow(2).flatten(1).mean(1).sum().item()
        finally:
            self.train(was)
        n = max(len(positions), 1)
        return {"gen": float(sums[0]) * scale / n, "identity": float(sums[1]) * scale / n}

    def extra_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.usability)
        if self.data is None:
            return out
        test = self.data.indices["test"]
        test = test[self._has_ref[test]]
        out["ref_test_samples"] = int(len(test))
        if len(test):
            err = self.reference_errors(test)
            out["gen_ref_mse_test"] = err["gen"]            # MSE(G(X), X_r)
            out["identity_ref_mse_test"] = err["identity"]  # MSE(X, X_r): G = identity
        return out
