"""Self-supervised losses and the momentum (EMA) update, pure functions of tensors.

Written from the published formulas (no pytorch-metric-learning / lightly):

* :func:`nt_xent`: SimCLR's NT-Xent (InfoNCE over a batch of 2N projections, Chen et al. 2020),
  each anchor against its positive and every other projection of the batch but itself:

      l_i = -log( exp(s_ip / t) / (exp(s_ip / t) + sum_{k in N_i} exp(s_ik / t)) ),
      s = cosine similarity,  N_i = {k != i, k != p_i}

  with an optional *false negative* f_i per anchor (seed 001's MaskFN): f_i leaves N_i and, with
  weight w > 0, is a second positive against the same negatives:

      l_i = -log( e^{s_ip/t} / (e^{s_ip/t} + S_i) ) + w * -log( e^{s_if/t} / (e^{s_if/t} + S_i) ),
      S_i = sum_{k in N_i \\ {f_i}} e^{s_ik/t}

  (w = 0 only removes f_i from the negatives);
* :func:`byol_loss`: BYOL's normalised MSE ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z);
* :func:`moco_loss`: MoCo's InfoNCE of queries against their keys and a queue of old keys, and
  :func:`enqueue` (the FIFO queue update);
* :func:`momentum_update` (target <- tau target + (1 - tau) online) and
  :func:`cosine_momentum` (BYOL's schedule of tau from its base value to 1).

Every loss is computed in float32 whatever the autocast dtype (precision.float32_loss).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ferbench.precision import float32_loss


def pair_positives(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Positive index of each row of ``cat([left, right])`` with ``left[i]`` paired to ``right[i]``
    (n rows each): i <-> i + n."""
    idx = torch.arange(2 * n, device=device)
    return (idx + n) % (2 * n)


@float32_loss
def nt_xent(z: torch.Tensor, positive: torch.Tensor, temperature: float,
            false_negative: torch.Tensor | None = None, false_negative_weight: float = 0.0,
            reduction: str = "mean") -> torch.Tensor:
    """NT-Xent over projections ``z`` [M, D] (normalised here), ``positive`` [M] the index of each
    row's positive. ``false_negative`` [M] (-1: none) is removed from that row's negatives and,
    when ``false_negative_weight`` > 0, added as a second positive of that weight. Returns the
    mean over rows (``reduction="none"``: [M])."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    m = z.shape[0]
    z = F.normalize(z.float(), dim=1)
    logits = z @ z.t() / temperature
    rows = torch.arange(m, device=z.device)
    positive = positive.to(z.device)
    if (positive == rows).any():
        raise ValueError("nt_xent: a row is its own positive")
    negative = ~torch.eye(m, dtype=torch.bool, device=z.device)
    negative[rows, positive] = False
    has_fn = None
    if false_negative is not None:
        false_negative = false_negative.to(z.device)
        has_fn = false_negative >= 0
        fn = false_negative.clamp(min=0)
        if (has_fn & ((fn == rows) | (fn == positive))).any():
            raise ValueError("nt_xent: a false negative is the row itself or its positive")
        negative[rows[has_fn], fn[has_fn]] = False
    neg_lse = logits.masked_fill(~negative, float("-inf")).logsumexp(dim=1)   # -inf: no negative

    def term(pos_logit: torch.Tensor) -> torch.Tensor:
        return torch.logaddexp(pos_logit, neg_lse) - pos_logit

    loss = term(logits[rows, positive])
    if has_fn is not None and false_negative_weight > 0:
        extra = term(logits[rows, false_negative.clamp(min=0)])
        loss = loss + float(false_negative_weight) * torch.where(has_fn, extra, torch.zeros_like(extra))
    if reduction == "none":
        return loss
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    return loss.mean()


@float32_loss
def nt_xent_pairs(left: torch.Tensor, right: torch.Tensor, temperature: float,
                  false_negative: torch.Tensor | None = None, false_negative_weight: float = 0.0
                  ) -> torch.Tensor:
    """NT-Xent of the pairs ``(left[i], right[i])``: SimCLR's loss of two views [N, D] each."""
    if left.shape != right.shape:
        raise ValueError(f"nt_xent_pairs: shapes {tuple(left.shape)} and {tuple(right.shape)}")
    z = torch.cat([left, right])
    return nt_xent(z, pair_positives(len(left), z.device), temperature, false_negative,
                   false_negative_weight)


@float32_loss
def byol_loss(p: torch.Tensor, z: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BYOL's regression loss ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z); ``z`` is the target
    projection (no gradient flows into it)."""
    cos = (F.normalize(p.float(), dim=1) * F.normalize(z.detach().float(), dim=1)).sum(dim=1)
    loss = 2 - 2 * cos
    return loss if reduction == "none" else loss.mean()


@float32_loss
def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: each query q [B, D] against its key k [B, D] (positive, no gradient) and
    the queue [K, D] of earlier keys (negatives): CE over [q.k, q.queue^T] / t, label 0."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    queue = F.normalize(queue.detach().float(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([pos, q @ queue.t()], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """FIFO update in place: ``keys`` [B, D] replace the oldest rows of ``queue`` [K, D] from row
    ``ptr`` (a 0-d int64 tensor, advanced by B modulo K), wrapping around the end."""
    k, b = queue.shape[0], keys.shape[0]
    if b > k:
        keys, b = keys[-k:], k
    rows = (int(ptr) + torch.arange(b, device=queue.device)) % k
    queue[rows] = keys.detach().to(queue.dtype)
    ptr.fill_((int(ptr) + b) % k)


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's schedule: tau = final - (final - base) (cos(pi step / total) + 1) / 2, from
    ``base`` at step 0 to ``final`` at the last step."""
    if total_steps <= 0:
        return float(base)
    progress = min(max(step / total_steps, 0.0), 1.0)
    return float(final - (final - base) * (math.cos(math.pi * progress) + 1) / 2)


@torch.no_grad()
def momentum_update(online: nn.Module | Iterable[torch.Tensor], target: nn.Module | Iterable[torch.Tensor],
                    tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter (in place)."""
    on = list(online.parameters()) if isinstance(online, nn.Module) else list(online)
    tg = list(target.parameters()) if isinstance(target, nn.Module) else list(target)
    if len(on) != len(tg):
        raise ValueError(f"momentum_update: {len(on)} online and {len(tg)} target parameters")
    for o, t in zip(on, tg):
        t.mul_(tau).add_(o.detach().to(t.dtype), alpha=1 - tau)


@float32_loss
@torch.no_grad()
def most_similar_negative(features: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """MaskFN's false negative of each row: the index of the row most similar (cosine) to it
    among its negatives (every row but itself and its ``positive``); -1 when it has none."""
    f = F.normalize(features.float(), dim=1)
    sim = f @ f.t()
    m = len(f)
    rows = torch.arange(m, device=f.device)
    excluded = torch.eye(m, dtype=torch.bool, device=f.device)
    excluded[rows, positive.to(f.device)] = True
    best = sim.masked_fill(excluded, float("-inf")).argmax(dim=1)
    return torch.where(excluded.all(dim=1), torch.full_like(best, -1), best)
