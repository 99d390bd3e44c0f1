"""Training losses: pure functions of tensors, each tested against its formula.

One section per family; append new families below the last section.
"""

from __future__ import annotations

import torch

from ferbench.precision import float32_loss

# =============================================================================================
# Valence/arousal regression: L_AV (CAF, AVCE) and its correlation terms
# =============================================================================================
# Batch-level, differentiable, population moments (ddof=0) as in the textbook metrics of
# ferbench.train.metrics. ``eps`` only keeps a constant batch (or a perfect fit, for the square
# root) from producing NaN/inf; it is negligible unless a batch's variance is tiny.


@float32_loss
def pcc_torch(x: torch.Tensor, y: torch.Tensor, dim: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation along ``dim``: cov / sqrt(var x * var y + eps)."""
    xc = x - x.mean(dim=dim, keepdim=True)
    yc = y - y.mean(dim=dim, keepdim=True)
    cov = (xc * yc).mean(dim=dim)
    var_x = (xc * xc).mean(dim=dim)
    var_y = (yc * yc).mean(dim=dim)
    return cov / torch.sqrt(var_x * var_y + eps)


@float32_loss
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


@float32_loss
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
    Computed in float32 at least (float32_loss), so it is safe under bf16 autocast.
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


@float32_loss
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


@float32_loss
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


@float32_loss
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


@float32_loss
def half_squared_error(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1/2 ||target - pred||_2^2 per sample (summed over every non-batch dimension), GCNet
    eq. 7-10; "mean" averages over the batch (Caffe's EuclideanLoss)."""
    if pred.shape != target.shape or pred.ndim < 2:
        raise ValueError(f"half_squared_error expects two [N, ...] tensors of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    return _reduce(0.5 * (target - pred).pow(2).flatten(1).sum(dim=1), reduction)


@float32_loss
def gcnet_reconstruction_loss(x: torch.Tensor, x_ref: torch.Tensor, generated: torch.Tensor,
                              recon_ref: torch.Tensor | None = None, recon_input: torch.Tensor | None = None,
                              lambda_gen: float = 1.0, lambda_recon_ref: float = 0.25,
                              lambda_recon_input: float = 0.25,
                              has_ref: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GCNet eq. 6: L_Recon = lambda_G,r L_Gen,r + lambda_R,r L_Recon,r + lambda_R,i L_Recon,i.

    L_Gen,r = 1/2 ||X_r - Generator(X)||^2 (``generated``), L_Recon,r = 1/2 ||X_r - De2,r(...)||^2
    (``recon_ref``), L_Recon,i = 1/2 ||X - De2,i(...)||^2 (``recon_input``). A reconstruction
    passed as None leaves its term out (the R0 variants). ``has_ref`` (bool [B]) marks the
    samples that have a reference face: the two X_r terms average over those only (0 when none
    has one); L_Recon,i over the whole batch. Returns (L_Recon, the unweighted terms by name:
    "gen", "recon_r", "recon_i").
    """
    def ref_term(pred: torch.Tensor) -> torch.Tensor:
        if has_ref is None:
            return half_squared_error(pred, x_ref)
        w = has_ref.to(pred.dtype)
        return (w * half_squared_error(pred, x_ref, reduction="none")).sum() / w.sum().clamp(min=1.0)

    terms = {"gen": ref_term(generated)}
    total = lambda_gen * terms["gen"]
    if recon_ref is not None:
        terms["recon_r"] = ref_term(recon_ref)
        total = total + lambda_recon_ref * terms["recon_r"]
    if recon_input is not None:
        terms["recon_i"] = half_squared_error(recon_input, x)
        total = total + lambda_recon_input * terms["recon_i"]
    return total, terms


# =============================================================================================
# CAF (seed 002): emotion grouping, the pointwise contrastive hinge, the Fisher critic
# objective and the adaptive margin
# =============================================================================================
# Grouping reads a batch's labels and returns index tensors on the CPU (the method calls it on
# the host copy of the labels, so it costs no device sync). Pairs are formed as in the authors'
# loop: of two equal groups of n critic outputs, positive pairs (hard_i, hard_{n-1-i}) and
# negative pairs (hard_i, weak_{n-1-i}), i = 0..n-1.

CAF_GROUPINGS = ("otsu", "legacy")


def _otsu_split(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, int, float, float]:
    """(bin index of each value, last bin k of the lower class, lo, bin width)."""
    v = values.reshape(-1).to(torch.float64)
    lo, hi = float(v.min()), float(v.max())
    width = (hi - lo) / bins
    if not width > 0:  # constant input: one class
        return torch.zeros(len(v), dtype=torch.long), bins - 1, lo, 0.0
    idx = ((v - lo) / width).floor().long().clamp_(0, bins - 1)
    p = torch.bincount(idx, minlength=bins).to(torch.float64) / len(v)
    centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * width
    w0 = p.cumsum(0)[:-1]
    m0 = (p * centres).cumsum(0)[:-1]
    w1 = 1.0 - w0
    tiny = torch.finfo(torch.float64).tiny
    mu0 = m0 / w0.clamp_min(tiny)
    mu1 = ((p * centres).sum() - m0) / w1.clamp_min(tiny)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return idx, int(between.argmax()), lo, width


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of 1-d ``values`` on a ``bins``-bin histogram over [min, max].

    The split after bin k maximising the between-class variance w0 w1 (mu0 - mu1)^2 (bins
    stand for their centres; the first maximum wins a tie, so a gap between two modes is cut
    at its lower end); returns the upper edge of bin k: values of higher bins form the upper
    class. A constant input returns its value (no upper class)."""
    if values.numel() == 0:
        raise ValueError("otsu_threshold: no values")
    _, k, lo, width = _otsu_split(values, bins)
    return lo + (k + 1) * width if width else lo


def between_class_variance(values: torch.Tensor, upper: torch.Tensor) -> float:
    """w0 w1 (mu0 - mu1)^2 of the split of ``values`` into ~upper / upper (0 if one is empty)."""
    v = values.reshape(-1).to(torch.float64)
    upper = upper.reshape(-1).to(torch.bool)
    n1 = int(upper.sum())
    if n1 in (0, len(v)):
        return 0.0
    w1 = n1 / len(v)
    return float((1 - w1) * w1 * (v[~upper].mean() - v[upper].mean()) ** 2)


def legacy_cumulative_threshold(d: torch.Tensor) -> torch.Tensor:
    """The authors' ``cumulative_thresholding(d, 0.75, 0.95)`` of one AV dimension, batch order.

    Its stopping test (w_l >= 0.75 w or w_l < 0.95 w) holds for every w_l, so it returns at
    once sum(d[:m + 1]) / sum(d), m = (argmin d + argmax d) // 2 (first occurrences); a
    signed ratio, inf or NaN when sum(d) = 0."""
    d = d.reshape(-1).to(torch.float64)
    m = (int(d.argmin()) + int(d.argmax())) // 2
    return d[:m + 1].sum() / d.sum()


def equalise_groups(hard: torch.Tensor, weak: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both index groups cut to one even size 2 floor(min(|hard|, |weak|) / 2), in their order
    (the authors keep the first ones of a shuffled batch; even, so no sample pairs itself)."""
    n = min(len(hard), len(weak)) // 2 * 2
    return hard[:n], weak[:n]


def emotion_groups(va: torch.Tensor, grouping: str = "otsu", bins: int = 256
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(hard, weak): indices of the high- and low-intensity samples of a [N, 2] (valence,
    arousal) batch, equalised (``equalise_groups``; empty when a group is).

    otsu: intensity r = ||(v, a)||_2, split by ``otsu_threshold`` (upper class: hard).
    legacy: the authors' rule on s = v^2 + a^2: t = sqrt(th_v^2 + th_a^2) + 0.25 with th from
    ``legacy_cumulative_threshold``; hard s > t, weak s < t; if either is empty, hard s > 0.65
    and weak s < 0.3 instead. Samples with a non-finite label are in neither group."""
    if va.ndim != 2 or va.shape[1] != 2:
        raise ValueError(f"emotion_groups expects [N, 2] labels, got {tuple(va.shape)}")
    if grouping not in CAF_GROUPINGS:
        raise ValueError(f"grouping must be one of {CAF_GROUPINGS}, got {grouping!r}")
    va = va.detach().to("cpu", torch.float64)
    finite = torch.isfinite(va).all(dim=1)
    rows = finite.nonzero().squeeze(1)
    empty = torch.zeros(0, dtype=torch.long)
    if not len(rows):
        return empty, empty
    va = va[rows]
    if grouping == "otsu":
        idx, k, _, _ = _otsu_split(va.norm(dim=1), bins)
        hard, weak = idx > k, idx <= k
    else:
        s = va.pow(2).sum(dim=1)
        t = torch.sqrt(legacy_cumulative_threshold(va[:, 0]) ** 2
                       + legacy_cumulative_threshold(va[:, 1]) ** 2) + 0.25
        hard, weak = s > t, s < t
        if not (hard.any() and weak.any()):
            hard, weak = s > 0.65, s < 0.3
    return equalise_groups(rows[hard], rows[weak])


@float32_loss
def caf_pair_distances(hard: torch.Tensor, weak: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances [n] of the positive pairs (hard_i, hard_{n-1-i}) and the negative
    pairs (hard_i, weak_{n-1-i}) of two [n, D] critic outputs."""
    if hard.shape != weak.shape or hard.ndim != 2:
        raise ValueError(f"caf_pair_distances expects two [n, D] tensors, got {tuple(hard.shape)} "
                         f"and {tuple(weak.shape)}")
    return (hard - hard.flip(0)).pow(2).sum(1), (hard - weak.flip(0)).pow(2).sum(1)


@float32_loss
def contrastive_hinge(d2: torch.Tensor, xi: float | torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """CAF's pointwise hinge f_cont = -xi max(0, xi (D^2 - alpha)): xi = +1 for a pair of one
    group (-(D^2 - alpha)_+, <= 0), -1 for a pair across groups ((alpha - D^2)_+, >= 0)."""
    return -xi * torch.relu(xi * (d2 - alpha))


@float32_loss
def fisher_critic_loss(f_p: torch.Tensor, f_q: torch.Tensor, lam: torch.Tensor | float, rho: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(critic loss, constraint) of the Fisher-GAN augmented Lagrangian (Mroueh & Sercu):
    L = E_P f - E_Q f + lam c - rho/2 c^2, c = 1 - (E_P f^2 / 2 + E_Q f^2 / 2). The critic
    maximises L, so the loss is -L; lam then steps by gradient descent on L, i.e. ascent on
    the loss: lam <- lam - rho c."""
    c = 1.0 - (0.5 * f_p.pow(2).mean() + 0.5 * f_q.pow(2).mean())
    objective = f_p.mean() - f_q.mean() + lam * c - 0.5 * rho * c.pow(2)
    return -objective, c


@float32_loss
def adaptive_margin(eta: torch.Tensor, n: int, c: float, k: float, mi_max: float = 2.5) -> torch.Tensor:
    """CAF's alpha_hat = -1/2 log(1 - eta^2) + log((n / c)^(1 / (2 k))): the Gaussian mutual
    information of inputs with correlation ``eta`` (clamped to [0, mi_max], as the authors clamp
    their MI estimate; eta = +-1 gives mi_max) plus the confidence term log(n / c) / (2 k)."""
    mi = (-0.5 * torch.log1p(-eta.clamp(-1.0, 1.0).pow(2))).clamp(0.0, mi_max)
    return mi + torch.log(torch.as_tensor(n / c, dtype=mi.dtype)) / (2.0 * k)


# =============================================================================================
# AVCE (seed 004): sparsemax, the AV-space similarities, L_AVCE, L_dis and the ablation terms
# =============================================================================================
# x, y are [N, 2] points of the AV space (column 0 valence). Every function returns per-sample
# values or a batch MEAN (``reduction="sum"`` where the authors' code sums); the method decides
# signs and weights (L_AVCE is an objective to maximise).

#: similarity functions of AVCE Sec. 3.4: f (eq. 4), f1 (dot product), f2 (eq. 5)
AVCE_SIMILARITIES = ("f", "f1", "f2")


@float32_loss
def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean projection of each slice along ``dim`` onto the probability simplex (Martins &
    Astudillo 2016), closed form: sort z descending, support size k(z) = max{k : 1 + k z_(k) >
    sum_{j<=k} z_(j)}, threshold tau = (sum of the support - 1) / k(z), output max(z - tau, 0).
    Batched over every other dimension; autograd through sort/cumsum/gather gives the exact
    Jacobian (diag(s) - s s^T / |S| on the support s) almost everywhere."""
    z = z.transpose(dim, -1)
    ranked = z.sort(dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    excess = ranked.cumsum(dim=-1) - 1.0                      # sum_{j<=k} z_(j) - 1
    size = (k * ranked > excess).sum(dim=-1, keepdim=True)    # >= 1: k = 1 always qualifies
    tau = excess.gather(-1, size - 1) / size.to(z.dtype)
    return (z - tau).clamp_min(0.0).transpose(dim, -1)


def _check_av_points(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"AVCE similarities take two [N, 2] tensors, got {tuple(x.shape)} and {tuple(y.shape)}")


@float32_loss
def avce_similarity(x: torch.Tensor, y: torch.Tensor, kind: str = "f", mu: float = 0.75,
                    polarity: float | None = None, cos_scale: float = 1.0, angle_scale: float = 1.0,
                    eps: float = 1e-6) -> torch.Tensor:
    """Per-row similarity [N] of two [N, 2] sets of AV points.

    f  = clip(1 - angle_scale theta / pi, eps, 1) + mu (1 - | ||x|| - ||y|| |)   (eq. 4)
    f1 = ||x|| ||y|| cos(theta) = x . y
    f2 = f - polarity when the valence signs (torch.sign of column 0) differ (eq. 5: 0.5)
    theta is the angle between x and y (atan2 of |cross| and dot: exact and with finite
    gradients at 0 and pi). ``polarity`` (None: 0.5 for f2, 0 for f) also applies to f when
    given. ``cos_scale`` != 1 takes theta = arccos(cos_scale cos(theta)) instead (the authors'
    code: 0.5, with ``angle_scale`` 0.25 and the clip lower bound 1e-6).
    """
    _check_av_points(x, y)
    if kind not in AVCE_SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(AVCE_SIMILARITIES)}, got {kind!r}")
    if kind == "f1":
        return (x * y).sum(dim=1)
    dot = (x * y).sum(dim=1)
    nx, ny = torch.linalg.vector_norm(x, dim=1), torch.linalg.vector_norm(y, dim=1)
    if cos_scale == 1.0:
        theta = torch.atan2((x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0]).abs(), dot)
    else:
        theta = torch.acos((cos_scale * dot / ((nx + 1e-8) * (ny + 1e-8))).clamp(-1.0, 1.0))
    angular = (1.0 - angle_scale * theta / torch.pi).clamp(eps, 1.0)
    sim = angular + mu * (1.0 - (nx - ny).abs())
    penalty = (0.5 if kind == "f2" else 0.0) if polarity is None else float(polarity)
    if penalty:
        sim = sim - penalty * (torch.sign(x[:, 0]) != torch.sign(y[:, 0])).to(sim.dtype)
    return sim


@float32_loss
def avce_objective(f_pos: torch.Tensor, f_neg: torch.Tensor, alpha: float = 0.5, beta: float = 0.005,
                   gamma: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    """L_AVCE (eq. 2), to MAXIMISE: E_pos f - alpha E_neg f - beta/2 E_pos f^2 - gamma/2 E_neg f^2
    over [N] positive and negative similarities (expectations: batch means). ``"sum"``: the
    authors' code adds the per-sample terms over the batch, i.e. N times the mean form."""
    if f_pos.ndim != 1 or f_pos.shape != f_neg.shape:
        raise ValueError(f"avce_objective expects two [N] tensors, got {tuple(f_pos.shape)} and {tuple(f_neg.shape)}")
    value = (f_pos.mean() - alpha * f_neg.mean() - 0.5 * beta * f_pos.pow(2).mean()
             - 0.5 * gamma * f_neg.pow(2).mean())
    if reduction == "mean":
        return value
    if reduction == "sum":
        return value * f_pos.shape[0]
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


@float32_loss
def avce_discriminative_loss(v: torch.Tensor, v_a: torch.Tensor, v_n: torch.Tensor, delta1: float = 1.0,
                             delta2: float = 0.8, hold_weight: float = 1.0
                             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_dis (eq. 8) on [N, D] H1 outputs of z, z_a, z_n, averaged over the batch:
    push [delta1 - ||v_a - v_n||^2]_+ plus ``hold_weight`` x hold, hold = (||vbar_a|| - delta2) +
    (||vbar_n|| - delta2), vbar_* = v_*/||v_*|| - v/||v||. The hold terms are linear: delta2 only
    shifts the value, never the gradient. Returns (L_dis, {"push", "hold"})."""
    if not v.shape == v_a.shape == v_n.shape or v.ndim != 2:
        raise ValueError(f"avce_discriminative_loss expects three [N, D] tensors of one shape, got "
                         f"{tuple(v.shape)}, {tuple(v_a.shape)}, {tuple(v_n.shape)}")
    push = torch.relu(delta1 - (v_a - v_n).pow(2).sum(dim=1)).mean()
    unit = torch.nn.functional.normalize(v, dim=1)
    hold = sum((torch.linalg.vector_norm(torch.nn.functional.normalize(w, dim=1) - unit, dim=1) - delta2).mean()
               for w in (v_a, v_n))
    return push + hold_weight * hold, {"push": push, "hold": hold}


@float32_loss
def avce_infonce_loss(x: torch.Tensor, y_pos: torch.Tensor, y_neg: torch.Tensor,
                      similarity, temperature: float = 1.0) -> torch.Tensor:
    """InfoNCE (AVCE eq. 1) with an AV-space similarity as the critic, as a loss to minimise:
    row i scores its positive (x_i, y_pos_i) against the negatives (x_i, y_neg_j) for every j;
    -mean_i log softmax_i[positive] (eq. 1's log N dropped). ``similarity`` maps two [M, 2]
    tensors to [M]."""
    _check_av_points(x, y_pos)
    _check_av_points(x, y_neg)
    n = x.shape[0]
    neg = similarity(x[:, None, :].expand(n, n, 2).reshape(-1, 2),
                     y_neg[None, :, :].expand(n, n, 2).reshape(-1, 2)).view(n, n)
    logits = torch.cat([similarity(x, y_pos)[:, None], neg], dim=1) / temperature
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


@float32_loss
def barlow_twins_loss(a: torch.Tensor, b: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021) on [N, D] embeddings of two views: each dimension
    standardised over the batch (population std + eps), C = a^T b / N, loss
    sum_i (1 - C_ii)^2 + lambd sum_{i != j} C_ij^2."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"barlow_twins_loss expects two [N, D] tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    an = (a - a.mean(0)) / (a.std(0, unbiased=False) + eps)
    bn = (b - b.mean(0)) / (b.std(0, unbiased=False) + eps)
    c = an.T @ bn / a.shape[0]
    diag = torch.diagonal(c)
    return (1.0 - diag).pow(2).sum() + lambd * (c.pow(2).sum() - diag.pow(2).sum())
