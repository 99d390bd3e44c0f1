"""Seed 002 (Kim & Song): contrastive adversarial learning for valence/arousal, CAF.

The paper (a poster) gives the recipe; the authors' code (kdhht2334/Contrastive-Adversarial-
Learning-FER, src/main.py, models.py, utils.py) gives the numbers. What differs from
:class:`~ferbench.methods.supervised.Supervised` (backbone + tanh head trained with L_AV):

* **Emotion grouping**, per batch, on the labels (host side, no device sync;
  ``losses.emotion_groups``): ``grouping: otsu`` (the paper) splits the AV intensity
  ||(v, a)|| by Otsu's threshold (``otsu_bins``-bin histogram) into a high-intensity ("hard")
  and a weak group; ``legacy`` is the code's cumulative-sum rule (its threshold on v^2 + a^2,
  then fixed cut-offs 0.65 / 0.3 when a group is empty). Both groups are cut to one even size
  n, keeping the first ones of the shuffled batch, as the code does.
* **Critic D** (``critic``): the code's ``Disc2_light`` on the encoder's convolutional map
  (``backbone.body``): average-pool to ``critic_pool`` x ``critic_pool`` (6: AlexNet's
  avgpool), Linear -> 64, Linear -> 32, dropout ``critic_dropout`` (0.2), ReLU, Linear ->
  ``critic_dim`` (16). Pairs as in the code's loop: positive (h_i, h_{n-1-i}), negative
  (h_i, w_{n-1-i}); D^2 = squared distance of the critic outputs.
* **Critic objective**: the paper's pointwise hinge f_cont = -xi max(0, xi (D^2 - alpha)) (xi = +1
  positive, -1 negative pairs) in the Fisher-GAN augmented Lagrangian
  L = E_P f - E_Q f + lambda c - rho/2 c^2, c = 1 - (E_P f^2 + E_Q f^2) / 2; the critic ascends L
  (its own Adam), lambda (a buffer, checkpointed) steps lambda <- lambda - rho c (rho 1e-6,
  the code's value for both). Deviation: the code minimises E_P f + E_Q f + lambda c - rho/2 c^2
  with lambda <- lambda + rho c, which is the same objective with lambda's sign flipped except
  for the penalty, whose sign there rewards violating the constraint; here it is Fisher GAN's
  (at rho = 1e-6 the two are numerically indistinguishable). The code's positive pairs use
  margin 0 (relu(D^2)); here both pair kinds use alpha, as the paper's f_cont does.
* **Adaptive margin** (``adaptive_margin: true``): alpha_hat = -1/2 log(1 - eta^2) +
  log(N/c)/(2K), per pair, eta = Pearson correlation over the critic dimensions of the negative
  pair (h_i, w_{n-1-i}): the inputs of the code's MI estimate, whose Gaussian MI is exactly the
  first term (clamped to [0, ``mi_max``] = [0, 2.5] as the code clamps its MI); N = the batch
  size. c and K are not given anywhere: ``margin_c`` 4 and ``margin_k`` 4 make the confidence
  term 0.52 at the code's batch of 256, inside the range of the code's stand-in for it (the
  adaptive-kNN confidences 0.7/sqrt(k), 0.22-0.70). The margin is a value, not a loss: it is
  computed without gradient (the code backpropagates through its MI estimate).
  ``adaptive_margin: false`` uses the fixed ``margin`` (0.5); run name ``caf_fixed_margin``.
* **Adversarial encoder step**: ``adversarial: pairs`` (default) is the Fisher-GAN generator
  step of the same objective: the encoder (the critic frozen) maximises E_Q f_cont over the
  negative pairs, the hard side held as data (detached), i.e. it draws weak-group features to
  within the margin of hard-group ones; ``legacy`` is the code's -mean D(E(x_weak)), an
  unbounded WGAN-style term. Weight ``lambda_adv`` 0.1 (the code's factor).
* **Passes**: (1) one encoder forward of the whole batch; (2) the critic step on its detached
  map; (3) one encoder + head step on L_AV + lambda_adv L_adv. Deviation: the code steps the
  encoder twice per iteration (L_AV first, then the critic, then the adversarial term) and runs
  it four times (the batch; each group for the critic; the weak group again for the
  adversarial term, so BN sees each group alone); one forward and one step on the summed loss
  cost a quarter of the encoder forwards and keep BN statistics of whole batches.
* **Optimisers**: three named Adams ``encoder``, ``head``, ``critic`` at the stage's lr with
  betas ``adam_betas`` (0.5, 0.9), each decayed x``lr_gamma`` (0.9) every ``lr_step`` (5000)
  iterations (StepLR; a schedule's own ``lr_schedule`` other than constant replaces it). The
  paper budget's lr is the code's 1e-4; params.yaml turns weight decay off, as in the code.
  The rest of the ``paper`` budget's recipe is not published (the poster gives none): ResNet-18
  (the poster's R18 row) at 224 px, batch 128 and 256 epochs, AVCE's R18 recipe on AFEW-VA
  (same authors), where the code's batch 256 is for AlexNet (tests/test_paper_recipes.py).
* **Head**: the baseline's linear tanh head on the backbone's vector. Deviation: the code's
  AlexNet regressor (avg-pool, 9216 -> 64 -> 8 -> 2, no tanh) becomes the backbone's own
  pooling part (``alexnet_reduced``: 9216 -> 32) + this head, as for every other method.
* **Bad batches**: fewer than 2 samples per group after equalising, or non-finite critic
  outputs (NaN/inf features of a grouped sample, or a critic overflow), skip the critic step and
  the adversarial term (the batch still trains L_AV: a NaN there is the engine's to stop); the logged
  ``skipped_groups`` / ``skipped_nonfinite`` are the fraction of such steps per log row, their
  totals go to metrics.json ``extra``. A skipped step logs 0 for ``critic``, ``adv``,
  ``margin`` and ``constraint``, never NaN. The code instead replaces NaN critic outputs by
  ones/zeros and, with an empty hard group, uses the weak group as both.
* Legacy metrics: the code's evaluation (``sagr_variant: caf``, ``legacy_rmse: batch_mse``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ferbench.errors import FerbenchError
from ferbench.methods.losses import (CAF_GROUPINGS, adaptive_margin, av_loss, caf_pair_distances,
                             contrastive_hinge, emotion_groups, fisher_critic_loss, pcc_torch)
from ferbench.methods.base import Batch, GpuCheck, ParamGroup, RecipeRow, TaskInfo
from ferbench.methods.supervised import Supervised

ADVERSARIAL = ("pairs", "legacy")
#: the logged terms of every step (a skipped step logs 0 for the critic's)
_CRITIC_TERMS = ("critic", "adv", "margin", "constraint")


class CAF(Supervised):
    name = "caf"
    #: {paper row label: run names} of report/published.py's tables that these runs fill
    published_rows = {
        'CAF (ResNet18)': ('caf',),
        'CAF (AlexNet, tuned)': ('caf',),
        'CAF with a fixed margin (benchmark ablation, not in the paper)': ('caf_fixed_margin',),
        'CAF (R18)': ('caf',),
        'CAF (AL)': ('caf',),
    }
    gpu_check = GpuCheck("caf", "train", "afewva")
    #: the paper budget's recipe, each value with its source (tests/test_paper_recipes.py)
    paper_recipe = (
        RecipeRow('train', 'backbone', 'resnet18', source='poster table: the ResNet18 row'),
        RecipeRow('train', 'optimizer', 'adam', source='code: Adam'),
        RecipeRow('train', 'lr', 0.0001, source='code: 1e-4'),
        RecipeRow('train', 'adam_betas', [0.5, 0.9], source='code: betas (0.5, 0.9)'),
        RecipeRow('train', 'lr_step', 5000, source='code: x0.9 every 5k iterations'),
        RecipeRow('train', 'lr_gamma', 0.9, source='code'),
        RecipeRow('train', 'weight_decay', 0.0, source='code: no weight decay'),
        RecipeRow('train', 'batch_size', 128, paper=256,
                  source="code: 256 with AlexNet; R18 not given (AVCE's 128)", readme='batch 128'),
        RecipeRow('train', 'image_size', 224, source="not given: AVCE's 224 (same authors)"),
        RecipeRow('train', 'epochs', 22, paper='not given',
                  source="not given: AVCE's 50K iterations, on AffectNet", readme='22 epochs'),
    )
    tasks = ("va",)
    manual_optimization = True
    legacy_metric_options = {"sagr_variant": "caf", "legacy_rmse": "batch_mse"}
    defaults = {
        "grouping": "otsu",          # otsu (paper) | legacy (the code's cumulative-sum rule)
        "otsu_bins": 256,
        "adaptive_margin": True,     # alpha_hat; false: the fixed `margin`
        "margin": 0.5,               # alpha when adaptive_margin is false
        "margin_c": 4.0,             # c of alpha_hat's confidence term log(N/c)/(2K)
        "margin_k": 4.0,             # K
        "mi_max": 2.5,               # clamp of the MI term (the code's)
        "rho": 1.0e-6,               # Fisher GAN penalty and lambda step
        "lambda_adv": 0.1,           # weight of the encoder's adversarial term
        "adversarial": "pairs",      # pairs (Fisher generator step) | legacy (-mean D(E(x_weak)))
        "critic_pool": 6,
        "critic_dim": 16,
        "critic_dropout": 0.2,
        "adam_betas": [0.5, 0.9],
        "lr_step": 5000,             # StepLR every this many iterations ...
        "lr_gamma": 0.9,             # ... by this factor
    }

    def __init__(self, settings: Mapping[str, Any], task: TaskInfo) -> None:
        super().__init__(settings, task)
        hp, where = self.hp, f"methods.{self.run_name}"
        if hp["finetune"] != "full":
            raise FerbenchError(f"{where}.finetune: CAF trains its encoder adversarially; only 'full'")
        for key, choices in (("grouping", CAF_GROUPINGS), ("adversarial", ADVERSARIAL)):
            if hp[key] not in choices:
                raise FerbenchError(f"{where}.{key}: {hp[key]!r} (choose from {', '.join(choices)})")
        if not isinstance(hp["adaptive_margin"], bool):
            raise FerbenchError(f"{where}.adaptive_margin: must be true or false")
        if len(hp["adam_betas"]) != 2 or int(hp["otsu_bins"]) < 2:
            raise FerbenchError(f"{where}: adam_betas needs two values and otsu_bins at least 2")
        for key in ("margin_c", "margin_k", "lr_step", "critic_pool", "critic_dim"):
            if not float(hp[key]) > 0:
                raise FerbenchError(f"{where}.{key}: must be > 0, got {hp[key]!r}")
        for key in ("margin", "mi_max", "rho", "lambda_adv", "lr_gamma", "critic_dropout"):
            if not float(hp[key]) >= 0:
                raise FerbenchError(f"{where}.{key}: must be >= 0, got {hp[key]!r}")
        was = self.backbone.training
        with torch.no_grad():
            channels = self.backbone.eval().body(torch.zeros(1, self.in_channels, task.image_size,
                                                             task.image_size)).shape[1]
        self.backbone.train(was)
        pool = int(hp["critic_pool"])
        self.critic = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(channels * pool * pool, 64),
            nn.Linear(64, 32), nn.Dropout(float(hp["critic_dropout"])), nn.ReLU(),
            nn.Linear(32, int(hp["critic_dim"])))
        self.register_buffer("fisher_lambda", torch.zeros(()))
        self.register_buffer("skipped_groups_total", torch.zeros((), dtype=torch.int64))
        self.register_buffer("skipped_nonfinite_total", torch.zeros((), dtype=torch.int64))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))

    # -- optimisation ------------------------------------------------------------------------
    def param_groups(self) -> list[ParamGroup]:
        return [ParamGroup("encoder", [self.backbone], optimizer="encoder"),
                ParamGroup("head", [self.head], optimizer="head"),
                ParamGroup("critic", [self.critic], optimizer="critic")]

    def optimizer_settings(self) -> dict[str, dict[str, Any]]:
        if str(self.schedule.get("optimizer", "adam")).lower() not in ("adam", "adamw"):
            return {}
        betas = tuple(float(b) for b in self.hp["adam_betas"])
        return {name: {"betas": betas} for name in ("encoder", "head", "critic")}

    def lr_schedulers(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> list[Any]:
        """The code's step decay, unless the schedule names another policy (``lr_schedule``)."""
        other = super().lr_schedulers(optimizers)
        if other:
            return other
        step, gamma = int(self.hp["lr_step"]), float(self.hp["lr_gamma"])
        return [torch.optim.lr_scheduler.StepLR(opt, step_size=step, gamma=gamma)
                for opt in optimizers.values()]

    # -- the critic's terms ------------------------------------------------------------------
    def margins(self, d_hard: torch.Tensor, d_weak: torch.Tensor, batch_size: int) -> torch.Tensor:
        """alpha per pair [n]: alpha_hat of the negative pair's correlation, or the fixed one."""
        hp = self.hp
        if not hp["adaptive_margin"]:
            return torch.full((len(d_hard),), float(hp["margin"]), device=d_hard.device)
        with torch.no_grad():
            eta = pcc_torch(d_hard.float(), d_weak.float().flip(0), dim=1)
            return adaptive_margin(eta, batch_size, float(hp["margin_c"]), float(hp["margin_k"]),
                                   float(hp["mi_max"]))

    def critic_pass(self, maps: torch.Tensor, hard: torch.Tensor, weak: torch.Tensor, batch_size: int,
                    optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor] | None:
        """One step of the critic on the detached maps of the two groups, then lambda's step;
        None (nothing stepped) when the critic's outputs are not all finite."""
        with self.autocast():
            d = self.critic(torch.cat([maps[hard], maps[weak]]).detach()).float()
        if not bool(torch.isfinite(d).all()):   # the one host sync of a step
            return None
        d_hard, d_weak = d.chunk(2)
        alpha = self.margins(d_hard, d_weak, batch_size)
        d2_pos, d2_neg = caf_pair_distances(d_hard, d_weak)
        loss, constraint = fisher_critic_loss(contrastive_hinge(d2_pos, 1.0, alpha),
                                              contrastive_hinge(d2_neg, -1.0, alpha),
                                              self.fisher_lambda, float(self.hp["rho"]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lam = self.fisher_lambda.clone()
        self.fisher_lambda.sub_(float(self.hp["rho"]) * constraint.detach())
        return {"critic": loss.detach(), "margin": alpha.mean(), "constraint": constraint.detach(),
                "lambda": lam, "alpha": alpha}

    def adversarial_loss(self, maps: torch.Tensor, hard: torch.Tensor, weak: torch.Tensor,
                         alpha: torch.Tensor) -> torch.Tensor:
        """The encoder's term against the (frozen) critic."""
        self.critic.requires_grad_(False)
        try:
            with self.autocast():
                if self.hp["adversarial"] == "legacy":
                    return -self.critic(maps[weak]).float().mean()
                d = self.critic(torch.cat([maps[hard].detach(), maps[weak]])).float()
            d_hard, d_weak = d.chunk(2)
            _, d2_neg = caf_pair_distances(d_hard, d_weak)
            return -contrastive_hinge(d2_neg, -1.0, alpha).mean()
        finally:
            self.critic.requires_grad_(True)

    # -- one iteration -----------------------------------------------------------------------
    def batch_groups(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The equalised (hard, weak) indices, from the host copy of the labels when there is one."""
        va = (torch.from_numpy(self.data.va[batch.positions[:, 0]]) if self.data is not None
              else batch.va.cpu())
        return emotion_groups(va, self.hp["grouping"], int(self.hp["otsu_bins"]))

    def training_step(self, batch: Batch, optimizers: Mapping[str, torch.optim.Optimizer] | None = None
                      ) -> dict[str, torch.Tensor]:
        if optimizers is None:
            raise FerbenchError(f"{self.run_name}: CAF steps its own optimisers (manual optimisation)")
        hard, weak = self.batch_groups(batch)
        with self.autocast():
            maps = self.backbone.body(batch.x)
            out = self.head(self.backbone.pool(maps))
        av = av_loss(out.float(), batch.va)
        device = av.device
        zero = torch.zeros((), device=device)
        logs = {"av": av.detach(), **{k: zero for k in _CRITIC_TERMS}, "lambda": self.fisher_lambda.clone(),
                "skipped_groups": zero, "skipped_nonfinite": zero}
        loss = av
        terms = None
        if len(hard) < 2:
            logs["skipped_groups"] = torch.ones((), device=device)
            self.skipped_groups_total += 1
        else:
            hard, weak = hard.to(device, non_blocking=True), weak.to(device, non_blocking=True)
            terms = self.critic_pass(maps, hard, weak, len(batch), optimizers["critic"])
            if terms is None:   # NaN/inf features of a grouped sample, or a diverged critic
                logs["skipped_nonfinite"] = torch.ones((), device=device)
                self.skipped_nonfinite_total += 1
        if terms is not None:
            alpha = terms.pop("alpha")
            adv = self.adversarial_loss(maps, hard, weak, alpha)
            logs.update(terms, adv=adv.detach())
            loss = av + float(self.hp["lambda_adv"]) * adv
        for name in ("encoder", "head"):
            optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in ("encoder", "head"):
            optimizers[name].step()
        self.steps_done += 1
        return logs

    # -- artefacts ---------------------------------------------------------------------------
    def extra_metrics(self) -> dict[str, Any]:
        return {"caf_steps": int(self.steps_done), "caf_skipped_groups": int(self.skipped_groups_total),
                "caf_skipped_nonfinite": int(self.skipped_nonfinite_total),
                "caf_fisher_lambda": float(self.fisher_lambda)}
