"""Training losses: pure functions of tensors, each tested against its formula.

One section per family; append new families below the last section.
"""

from __future__ import annotations

import torch

# =============================================================================================
# Valence/arousal regression: L_AV (CAF, AVCE) and its correlation terms
# =============================================================================================
# Batch-level, differentiable, population moments (ddof=0) as in the textbook metrics of
# ferbench.metrics. ``eps`` only keeps a constant batch (or a perfect fit, for the square
# root) from producing NaN/inf; it is negligible unless a batch's variance is tiny.


def pcc_torch(x: torch.Tensor, y: torch.Tensor, dim: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation along ``dim``: cov / sqrt(var x * var y + eps)."""
    xc = x - x.mean(dim=dim, keepdim=True)
    yc = y - y.mean(dim=dim, keepdim=True)
    cov = (xc * yc).mean(dim=dim)
    var_x = (xc * xc).mean(dim=dim)
    var_y = (yc * yc).mean(dim=dim)
    return cov / torch.sqrt(var_x * var_y + eps)


def ccc_torch(x: torch.Tensor, y: torch.Tensor, dim: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Lin's concordance correlation along ``dim``: 2 cov / (var x + var y + (mx - my)^2 + eps)."""
    mx = x.mean(dim=dim, keepdim=True)
    my = y.mean(dim=dim, keepdim=True)
    xc, yc = x - mx, y - my
    cov = (xc * yc).mean(dim=dim)
    var_x = (xc * xc).mean(dim=dim)
    var_y = (yc * yc).mean(dim=dim)
    mean_gap = (mx - my).squeeze(dim) ** 2
    return 2.0 * cov / (var_x + var_y + mean_gap + eps)


def av_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    rmse_reduction: str = "mean",
    eps: float = 1e-12,
) -> torch.Tensor:
    """L_AV = RMSE term + ((1 - mean PCC) + (1 - mean CCC)) / 2 for [N, 2] (valence, arousal).

    RMSE term: per-dimension RMSE over the batch, sqrt(mean_n (p - t)^2 + eps), then the
    **mean** of the valence and arousal RMSEs (``rmse_reduction="mean"``, default) or their sum
    (``"sum"``). "mean PCC/CCC" is the mean over the two dimensions, as in AVCE's
    L_C(/P)CC = 1 - (C(/P)CC_a + C(/P)CC_v) / 2. A perfect prediction gives ~0.
    Computed in float32 at least, so it is safe under bf16 autocast.
    """
    if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != 2:
        raise ValueError(f"av_loss expects two [N, 2] tensors, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if rmse_reduction not in ("mean", "sum"):
        raise ValueError(f"rmse_reduction must be 'mean' or 'sum', got {rmse_reduction!r}")
    dtype = torch.promote_types(pred.dtype, torch.float32)
    p, t = pred.to(dtype), target.to(dtype)
    rmse = torch.sqrt(((p - t) ** 2).mean(dim=0) + eps)
    rmse_term = rmse.mean() if rmse_reduction == "mean" else rmse.sum()
    pcc_term = 1.0 - pcc_torch(p, t, dim=0).mean()
    ccc_term = 1.0 - ccc_torch(p, t, dim=0).mean()
    return rmse_term + (pcc_term + ccc_term) / 2.0


# =============================================================================================
# Triplet loss (seed 000, FaceNet form) and online semi-hard negative selection
# =============================================================================================
# Distances are SQUARED Euclidean, as in L = [||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + alpha]_+.
# Selection (which negative each anchor uses) is a discrete choice made without gradient; the
# loss is then the plain triplet loss on the chosen negatives, so one formula serves both.


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 0.2, reduction: str = "mean") -> torch.Tensor:
    """[||a - p||^2 - ||a - n||^2 + margin]_+ per row of three [N, D] tensors.

    ``reduction``: "mean" (over all N triplets, easy ones counting as 0), "sum" or "none" ([N]).
    """
    if not anchor.shape == positive.shape == negative.shape or anchor.ndim != 2:
        raise ValueError(f"triplet_loss expects three [N, D] tensors of one shape, got "
                         f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}")
    d_ap = (anchor - positive).pow(2).sum(dim=1)
    d_an = (anchor - negative).pow(2).sum(dim=1)
    losses = torch.relu(d_ap - d_an + margin)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[N, C] matrix of ||x_i - y_j||^2 for [N, D] and [C, D] (clamped at 0 against rounding)."""
    d = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return d.clamp_min(0.0)


def semi_hard_negatives(d_ap: torch.Tensor, d_an: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Index of the negative each anchor uses, FaceNet's online semi-hard rule.

    d_ap [N]: anchor-positive squared distances; d_an [N, C]: anchor-candidate squared
    distances; valid [N, C] bool: which candidates may serve as row i's negative (each row
    needs one; the caller guarantees it, e.g. a triplet's own negative is always valid).
    Row i takes the CLOSEST valid candidate that is FARTHER than its positive (d_an > d_ap:
    semi-hard when within the margin, else the least easy); when every valid candidate is
    closer than the positive (only hard ones), the FARTHEST of them, so the hardest
    negatives, which drive triplet training to collapse early on, are avoided.
    """
    if d_an.ndim != 2 or d_ap.shape != d_an.shape[:1] or valid.shape != d_an.shape:
        raise ValueError(f"semi_hard_negatives: shapes {tuple(d_ap.shape)}, {tuple(d_an.shape)}, "
                         f"{tuple(valid.shape)} do not fit [N], [N, C], [N, C]")
    valid = valid.to(torch.bool)  # no emptiness check here: it would sync the device each step
    big = torch.finfo(d_an.dtype).max
    farther = valid & (d_an > d_ap[:, None])
    closest_farther = torch.where(farther, d_an, torch.full_like(d_an, big)).argmin(dim=1)
    farthest = torch.where(valid, d_an, torch.full_like(d_an, -big)).argmax(dim=1)
    return torch.where(farther.any(dim=1), closest_farther, farthest)


# =============================================================================================
# GCNet (seed 003): Hadsell contrastive loss and the generation/reconstruction losses
# =============================================================================================
# Per-sample terms are reduced like Caffe's ContrastiveLoss and EuclideanLoss layers the
# authors used: 1/2 (...)^2 per pair / per image (image errors SUMMED over pixels and
# channels), then AVERAGED over the batch.


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def hadsell_contrastive_loss(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor,
                             margin: float = 1.0, reduction: str = "mean",
                             eps: float = 1e-12) -> torch.Tensor:
    """Contrastive loss of Hadsell, Chopra & LeCun (GCNet eq. 4-5) for [N, D] pairs.

    d = ||a - b||_2; a pair with the same label costs 1/2 d^2, a pair with different labels
    1/2 max(0, margin - d)^2. ``same``: bool [N]. ``eps`` inside the square root only keeps
    the gradient finite where a == b (different-label pairs).
    """
    if a.shape != b.shape or a.ndim != 2 or same.shape != a.shape[:1]:
        raise ValueError(f"hadsell_contrastive_loss expects two [N, D] tensors and [N] labels, got "
                         f"{tuple(a.shape)}, {tuple(b.shape)}, {tuple(same.shape)}")
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    sq = (a - b).pow(2).sum(dim=1)
    pull = 0.5 * sq
    push = 0.5 * torch.relu(margin - torch.sqrt(sq + eps)).pow(2)
    return _reduce(torch.where(same.to(torch.bool), pull, push), reduction)


def half_squared_error(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1/2 ||target - pred||_2^2 per sample (summed over every non-batch dimension), GCNet
    eq. 7-10; "mean" averages over the batch (Caffe's EuclideanLoss)."""
    if pred.shape != target.shape or pred.ndim < 2:
        raise ValueError(f"half_squared_error expects two [N, ...] tensors of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    return _reduce(0.5 * (target - pred).pow(2).flatten(1).sum(dim=1), reduction)


def gcnet_reconstruction_loss(x: torch.Tensor, x_ref: torch.Tensor, generated: torch.Tensor,
                              recon_ref: torch.Tensor | None = None, recon_input: torch.Tensor | None = None,
                              lambda_gen: float = 1.0, lambda_recon_ref: float = 0.25,
                              lambda_recon_input: float = 0.25) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GCNet eq. 6: L_Recon = lambda_G,r L_Gen,r + lambda_R,r L_Recon,r + lambda_R,i L_Recon,i.

    L_Gen,r = 1/2 ||X_r - Generator(X)||^2 (``generated``), L_Recon,r = 1/2 ||X_r - De2,r(...)||^2
    (``recon_ref``), L_Recon,i = 1/2 ||X - De2,i(...)||^2 (``recon_input``). A reconstruction
    passed as None leaves its term out (the R0 variants). Returns (L_Recon, the unweighted terms
    by name: "gen", "recon_r", "recon_i").
    """
    terms = {"gen": half_squared_error(generated, x_ref)}
    total = lambda_gen * terms["gen"]
    if recon_ref is not None:
        terms["recon_r"] = half_squared_error(recon_ref, x_ref)
        total = total + lambda_recon_ref * terms["recon_r"]
    if recon_input is not None:
        terms["recon_i"] = half_squared_error(recon_input, x)
        total = total + lambda_recon_input * terms["recon_i"]
    return total, terms
