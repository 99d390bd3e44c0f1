"""Figures (PNG and PDF, Agg backend, written atomically), each with a caption for the report.

Per table group (dataset): score bars with the individual runs as dots (accuracy; CCC for
valence/arousal), per-fold scores with error bars over seeds, confusion matrices per method
(row-normalised, counts in the cells), training curves per method from each run's
train_log.csv, and for valence/arousal methods predictions against labels (scatter and 2-D
density) from each run's predictions.parquet. Runs without those files are skipped (the caption
says how many runs a figure draws on). For classification, a t-SNE of the test embeddings
(embeddings.parquet) of the baseline beside the best other method, as in GCNet's Figure 5.

Deterministic: the dots' jitter is drawn from a fixed seed (seaborn's stripplot uses NumPy's
global generator; its state is saved and restored around the call), the t-SNE's subsample and
optimisation too (``TSNE_SEED``), and PDFs carry no creation date, so the same runs give
byte-identical files.
"""

from __future__ import annotations

import contextlib
import sys

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ferbench import io  # noqa: E402
from ferbench.report.outputs import Outputs, safe_name  # noqa: E402
from ferbench.report.runs import BASELINES, Run, data_label, variant_order  # noqa: E402

FORMATS = ("png", "pdf")
JITTER_SEED = 0
LOG_NAME = "train_log.csv"
PREDICTIONS = "predictions.parquet"
EMBEDDINGS = "embeddings.parquet"
#: t-SNE: at most this many test samples (a random subsample beyond), this seed for the
#: subsample and the optimisation (measured: about 10 s of CPU for a figure at the cap, two
#: panels of 1,000 points; well under a second for the default run's synthetic test sets)
TSNE_MAX_POINTS = 1000
TSNE_SEED = 0
LOG_INDEX = ("step", "epoch")
#: loss terms whose typical sizes differ by this factor or more get a logarithmic axis
LOG_AXIS_RATIO = 100.0


class Figures:
    """The figures written into one output folder: PNG name -> (group, caption), for the report."""

    def __init__(self, out: Outputs):
        self.out = out
        self.captions: dict[str, tuple[str, str]] = {}
        self.group = ""

    def save(self, fig: plt.Figure, stem: str, caption: str) -> None:
        for fmt in FORMATS:
            path = self.out.path(f"{stem}.{fmt}")
            with io.atomic_path(path, suffix=f".{fmt}") as tmp:
                # no creation date in the PDF: the same runs give the same bytes
                meta = {"CreationDate": None} if fmt == "pdf" else {}
                fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight", metadata=meta)
        plt.close(fig)
        self.captions[f"{stem}.png"] = (self.group, caption)


@contextlib.contextmanager
def seeded(seed: int = JITTER_SEED):
    """NumPy's global generator seeded for the block (seaborn's jitter), restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _bar(figs: Figures, frame: pd.DataFrame, hue: str | None, title: str, ylabel: str,
         stem: str, caption: str) -> None:
    order = variant_order(set(frame["variant"]))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(order) + 1.5), 3.6))
    # Bars: mean over folds x seeds; error bars: sample std; dots: the individual runs.
    sns.barplot(data=frame, x="variant", y="value", hue=hue, order=order, errorbar="sd",
                capsize=0.15, alpha=0.8, ax=ax)
    dots = {"palette": "dark:black"} if hue else {"color": "black"}
    with seeded():
        sns.stripplot(data=frame, x="variant", y="value", hue=hue, order=order,
                      dodge=hue is not None, size=3, legend=False, ax=ax, **dots)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    _rotate(ax)
    figs.save(fig, stem, caption)


def _labels(ax, xlabel: str, ylabel: str, title: str, size: int = 8) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=size)


def _rotate(ax) -> None:
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")


def write_figures(scores: pd.DataFrame, runs: list[Run],
                  out: Outputs) -> dict[str, tuple[str, str]]:
    """Every figure; returns PNG name -> (group, caption)."""
    sns.set_theme(style="whitegrid", context="paper")
    figs = Figures(out)
    for group in sorted(scores["group"].unique()):
        figs.group = group
        sub = scores[scores["group"] == group]
        stem = safe_name(group)
        for task in sorted(set(sub["task"])):
            part = sub[sub["task"] == task]
            data = data_label(set(part["data"]))
            task_runs = [r for r in runs if r.group == group and r.task == task]
            if task == "classification":
                acc = part[part["metric"] == "accuracy"].dropna(subset=["value"])
                if len(acc):
                    _bar(figs, acc, None, f"{group}: accuracy (ours; data: {data})", "accuracy",
                         f"{stem}_accuracy",
                         f"{group}: test accuracy per method. Bars: mean over folds × seeds; "
                         f"error bars: sample std; dots: the individual runs. Data: {data}.")
                    _per_fold(figs, acc, group, "accuracy", data, f"{stem}_folds_accuracy")
                for variant in variant_order({r.variant for r in task_runs}):
                    _confusion(figs, [r for r in task_runs if r.variant == variant], group,
                               variant, data, f"{stem}_confusion_{safe_name(variant)}")
                _tsne(figs, task_runs, group, data, f"{stem}_tsne")
            else:
                ccc = part[part["metric"].isin(["valence_ccc", "arousal_ccc"])].dropna(
                    subset=["value"])
                if len(ccc):
                    ccc = ccc.assign(dimension=ccc["metric"].str.replace("_ccc", ""))
                    _bar(figs, ccc, "dimension", f"{group}: CCC (ours; data: {data})", "CCC",
                         f"{stem}_ccc",
                         f"{group}: concordance correlation (CCC) of valence and arousal per "
                         f"method. Bars: mean over folds × seeds; error bars: sample std; dots: "
                         f"the individual runs. Data: {data}.")
                mean = part[part["metric"] == "mean_ccc"].dropna(subset=["value"])
                if len(mean):
                    _per_fold(figs, mean, group, "mean_ccc", data, f"{stem}_folds_mean_ccc")
                for variant in variant_order({r.variant for r in task_runs}):
                    _va_predictions(figs, [r for r in task_runs if r.variant == variant], group,
                                    variant, data, f"{stem}_va_{safe_name(variant)}")
            for variant in variant_order({r.variant for r in task_runs}):
                _curves(figs, [r for r in task_runs if r.variant == variant], group, variant,
                        f"{stem}_curves_{safe_name(variant)}")
    return figs.captions


def _per_fold(figs: Figures, frame: pd.DataFrame, group: str, metric: str, data: str,
              stem: str) -> None:
    order = variant_order(set(frame["variant"]))
    folds = sorted(frame["fold"].unique())
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(folds) + 3.0), 3.4))
    width = 0.8 / max(len(order), 1)
    for i, variant in enumerate(order):
        g = frame[frame["variant"] == variant].groupby("fold")["value"]
        mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
        x = np.array([folds.index(f) for f in mean.index]) - 0.4 + width * (i + 0.5)
        ax.errorbar(x, mean.to_numpy(), yerr=std.to_numpy(), fmt="o", capsize=3, ms=4,
                    label=variant)
    ax.set_xticks(range(len(folds)), [str(f) for f in folds])
    ax.set_xlabel("fold")
    ax.set_ylabel(metric)
    ax.set_title(f"{group}: {metric} per fold (ours; data: {data})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    seeds = frame.groupby(["variant", "fold"])["seed"].nunique().max()
    figs.save(fig, stem,
              f"{group}: {metric} per test fold and method. Dots: mean over the fold's seeds "
              f"({seeds} at most); error bars: sample std over seeds (none with one seed). "
              f"Shows whether a method's advantage holds in every fold. Data: {data}.")


def _confusion(figs: Figures, runs: list[Run], group: str, variant: str, data: str,
               stem: str) -> None:
    classes = runs[0].classes
    same = [r for r in runs if r.classes == classes]
    total = np.sum([r.confusion for r in same], axis=0)
    support = total.sum(axis=1, keepdims=True)
    # Row-normalised (recall per true class); a class with no test samples stays blank.
    norm = np.divide(total, support, out=np.full(total.shape, np.nan), where=support > 0)
    labels = np.array([["" if np.isnan(v) else f"{v:.2f}\n({c})" for v, c in zip(nr, cr)]
                       for nr, cr in zip(norm, total)])
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.65 * k, 0.9 + 0.55 * k))
    sns.heatmap(norm, annot=labels, fmt="", vmin=0.0, vmax=1.0, cmap="Blues", square=True,
                xticklabels=classes, yticklabels=classes, cbar=False, annot_kws={"size": 6},
                ax=ax)
    ax.grid(False)
    _labels(ax, "predicted", "true", f"{group} / {variant}: confusion, row-normalised,\n"
            f"summed over {len(same)} run(s) (ours; data: {data})")
    figs.save(fig, stem,
              f"{group} / {variant}: confusion matrix summed over {len(same)} run(s) "
              f"(folds × seeds). Colour and first number: share of the true class (row) "
              f"predicted as each class (recall on the diagonal); in brackets: test-sample "
              f"counts. Data: {data}.")


def _read_logs(runs: list[Run], name: str, reader) -> list[tuple[Run, pd.DataFrame]]:
    found = []
    for r in sorted(runs, key=lambda r: (r.fold, r.seed)):
        path = r.path.parent / name
        if path.is_file():
            try:
                found.append((r, reader(path)))
            except (OSError, ValueError):
                continue   # unreadable artefact: the figure draws on the others
    return found


def log_columns(columns) -> tuple[list[str], list[str], list[str]]:
    """train_log.csv's columns as (loss terms, learning rates: lr and lr_<group>, validation
    metrics): a learning rate is never drawn as a loss term."""
    columns = [c for c in columns if c not in LOG_INDEX]
    lrs = sorted(c for c in columns if c == "lr" or c.startswith("lr_"))
    vals = sorted(c for c in columns if c.startswith("val_"))
    terms = sorted(c for c in columns if c not in lrs and c not in vals)
    return terms, lrs, vals


def loss_scale(series: dict[str, pd.Series]) -> tuple[str, float]:
    """The loss panel's y scale: ("linear", 0) unless the terms' typical sizes (median of
    |value|) differ by LOG_AXIS_RATIO or more, then ("log", 0) when every value is positive,
    else ("symlog", linear threshold: the smallest typical size) for terms that cross zero."""
    sizes = [float(v.abs().median()) for v in series.values() if len(v.dropna())]
    sizes = [x for x in sizes if np.isfinite(x) and x > 0]
    if len(sizes) < 2 or max(sizes) / min(sizes) < LOG_AXIS_RATIO:
        return "linear", 0.0
    if all((v.dropna() > 0).all() for v in series.values()):
        return "log", 0.0
    return "symlog", min(sizes)


def _curves(figs: Figures, runs: list[Run], group: str, variant: str, stem: str) -> None:
    logs = [(r, log) for r, log in _read_logs(runs, LOG_NAME, pd.read_csv)
            if "step" in log.columns and len(log)]
    if not logs:
        return
    terms, lrs, vals = log_columns({c for _, log in logs for c in log.columns})
    panels = [("loss terms", terms), ("learning rate", lrs), ("validation", vals)]
    fig, axes = plt.subplots(1, 3, figsize=(11.0, 3.2))
    colors = dict(zip(terms + vals, sns.color_palette("tab10", len(terms + vals) or 1)))
    for ax, (title, columns) in zip(axes, panels):
        labelled = set()
        for r, log in logs:
            for col in columns:
                if col not in log.columns:
                    continue
                rows = log[["step", col]].dropna()
                if rows.empty:
                    continue
                ax.plot(rows["step"], rows[col], color=colors.get(col, "C0"), alpha=0.6, lw=1,
                        marker="o" if col.startswith("val_") else None, ms=3,
                        label=None if col in labelled else col)
                labelled.add(col)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        if title == "loss terms" and labelled:
            scale, threshold = loss_scale({c: pd.concat([log[c] for _, log in logs if c in log])
                                           for c in labelled})
            if scale == "symlog":
                ax.set_yscale("symlog", linthresh=threshold)
            elif scale == "log":
                ax.set_yscale("log")
            if scale != "linear":
                ax.set_title(f"{title} ({scale} axis: sizes differ ≥{LOG_AXIS_RATIO:.0f}×)", fontsize=9)
        if labelled and len(columns) > 1:
            ax.legend(fontsize=6)
        if not labelled:
            ax.text(0.5, 0.5, "not logged" if title != "validation" else
                    "no validation split", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{group} / {variant}: training curves, {len(logs)} run(s)", fontsize=9)
    figs.save(fig, stem,
              f"{group} / {variant}: training curves from train_log.csv of {len(logs)} of "
              f"{len(runs)} run(s), one line per fold × seed. Left: each logged loss term "
              f"(mean since the previous log row; a logarithmic axis where the terms differ by "
              f"{LOG_AXIS_RATIO:.0f}× or more); middle: learning rate(s); right: validation "
              f"metrics at epoch ends (when the protocol has a validation split).")


def _va_predictions(figs: Figures, runs: list[Run], group: str, variant: str, data: str,
                    stem: str) -> None:
    need = {"valence", "arousal", "pred_valence", "pred_arousal"}
    preds = [p for _, p in _read_logs(runs, PREDICTIONS, pd.read_parquet)
             if need <= set(p.columns)]
    if not preds:
        return
    table = pd.concat(preds, ignore_index=True)[sorted(need)].dropna()
    if table.empty:
        return
    fig, axes = plt.subplots(2, 2, figsize=(7.0, 7.2), layout="constrained")
    for col, dim in enumerate(("valence", "arousal")):
        y, p = table[dim].to_numpy(), table[f"pred_{dim}"].to_numpy()
        lo, hi = float(min(y.min(), p.min(), -1.0)), float(max(y.max(), p.max(), 1.0))
        top, bottom = axes[0, col], axes[1, col]
        top.scatter(y, p, s=4, alpha=0.4, rasterized=True)
        bottom.hexbin(y, p, gridsize=25, extent=(lo, hi, lo, hi), cmap="viridis", mincnt=1)
        for ax, kind in ((top, "scatter"), (bottom, "2-D density (count per hexagon)")):
            ax.plot([lo, hi], [lo, hi], color="red", lw=0.8, ls="--")
            ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal")
            _labels(ax, f"label {dim}", f"predicted {dim}", f"{dim}: {kind}")
    fig.suptitle(f"{group} / {variant}: predictions vs labels, {len(table)} test samples "
                 f"from {len(preds)} run(s) (data: {data})", fontsize=9)
    figs.save(fig, stem,
              f"{group} / {variant}: predicted against true valence (left) and arousal (right) "
              f"for {len(table)} test samples pooled over {len(preds)} of {len(runs)} run(s). "
              f"Top: one dot per sample; bottom: the same as a 2-D density. Dashed: perfect "
              f"prediction; a flat cloud means the method predicts near-constant values. "
              f"Data: {data}.")



# ------------------------------------------------------------------------------ t-SNE
def mean_accuracy(runs: list[Run]) -> dict[str, float]:
    """Mean test accuracy over folds x seeds per variant (runs with a NaN left out)."""
    values: dict[str, list[float]] = {}
    for r in runs:
        acc = r.metrics.get("accuracy", np.nan)
        if np.isfinite(acc):
            values.setdefault(r.variant, []).append(float(acc))
    return {v: float(np.mean(a)) for v, a in values.items()}


def tsne_pair(runs: list[Run]) -> tuple[str, str] | None:
    """(baseline, best) variants of one classification group: the baseline is ``supervised``
    (else ``cnn_baseline``; of several backbones, the best-scoring); the best is the variant
    of highest mean test accuracy among the non-baseline methods (ties: first by name). None
    when either is missing."""
    means = mean_accuracy(runs)
    method = {r.variant: r.method for r in runs}
    for name in BASELINES:
        cands = sorted((v for v in means if method[v] == name), key=lambda v: (-means[v], v))
        if cands:
            baseline = cands[0]
            break
    else:
        return None
    others = sorted((v for v in means if method[v] not in BASELINES), key=lambda v: (-means[v], v))
    return (baseline, others[0]) if others else None


def _labelled_embeddings(run: Run) -> pd.DataFrame | None:
    """A run's embeddings with its true class names (``label``), or None when unreadable."""
    folder = run.path.parent
    try:
        emb = pd.read_parquet(folder / EMBEDDINGS)
        labels = pd.read_parquet(folder / PREDICTIONS, columns=["sample_id", "label"])
        table = emb.merge(labels, on="sample_id", how="inner", validate="one_to_one")
    except (OSError, ValueError, KeyError) as err:   # unreadable or duplicated ids: drawn without it
        print(f"ferbench aggregate: note: {folder / EMBEDDINGS}: not used for the t-SNE figure "
              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'})",
              file=sys.stderr)
        return None
    names = np.asarray(run.classes or (), dtype=object)
    codes = table["label"].to_numpy()
    if not len(table) or codes.min() < 0 or codes.max() >= len(names):
        return None
    return table.assign(label=names[codes]).set_index("sample_id")


def tsne_coordinates(features: np.ndarray, seed: int = TSNE_SEED) -> tuple[np.ndarray, float]:
    """2-D t-SNE of ``features`` (scikit-learn, PCA initialisation, fixed ``random_state``);
    perplexity 30, or (n - 1) / 3 for fewer than 91 points. Returns (coordinates, perplexity)."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1)
    return tsne.fit_transform(x), perplexity


def _tsne(figs: Figures, runs: list[Run], group: str, data: str, stem: str) -> None:
    pair = tsne_pair(runs)
    if pair is None:
        return
    means = mean_accuracy(runs)
    by_key = {(r.variant, r.fold, r.seed): r for r in runs}
    # one trained model per panel (features of different folds' models share no space), the
    # same test samples in both: the first (fold, seed) both methods have embeddings for
    chosen = None
    for fold, seed in sorted({(r.fold, r.seed) for r in runs if r.variant == pair[0]}):
        runs_ = [by_key.get((v, fold, seed)) for v in pair]
        if all(r is not None and (r.path.parent / EMBEDDINGS).is_file() for r in runs_):
            tables = [_labelled_embeddings(r) for r in runs_]
            if all(t is not None for t in tables):
                chosen = fold, seed, tables
                break
    if chosen is None:
        return
    fold, seed, tables = chosen
    ids = tables[0].index.intersection(tables[1].index, sort=False)
    total = len(ids)
    if total < 5:
        return
    if total > TSNE_MAX_POINTS:
        pick = np.random.default_rng(TSNE_SEED).choice(total, TSNE_MAX_POINTS, replace=False)
        ids = ids[np.sort(pick)]
    classes = list(next(r for r in runs if r.variant == pair[0]).classes or ())
    palette = dict(zip(classes, sns.color_palette("tab10" if len(classes) <= 10 else "husl",
                                                  len(classes))))
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.4), layout="constrained")
    perplexity, widths = 0.0, []
    for ax, variant, table, role in zip(axes, pair, tables, ("baseline", "best method")):
        part = table.loc[ids]
        feats = part.filter(regex=r"^e\d+$").to_numpy()
        widths.append(feats.shape[1])
        xy, perplexity = tsne_coordinates(feats)
        for name in classes:
            mask = (part["label"] == name).to_numpy()
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=8, alpha=0.8, color=palette[name],
                           label=name, rasterized=True)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{role}: {variant}\n(mean test accuracy {means[variant]:.3f})", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7, title="true class",
               title_fontsize=7)
    fig.suptitle(f"{group}: t-SNE of the test embeddings, fold {fold}, seed {seed}, "
                 f"{len(ids)} samples (ours; data: {data})", fontsize=9)
    sub = (f"{len(ids)} of the run's {total} test samples" if len(ids) < total
           else f"all {total} test samples of the run")
    figs.save(fig, stem,
              f"{group}: t-SNE of the test-set embeddings (the features each method's head reads, "
              f"from embeddings.parquet: {widths[0]} and {widths[1]} dimensions) of the baseline "
              f"{pair[0]} (left) and of {pair[1]} (right), the method with the highest mean test "
              f"accuracy over folds × seeds among the non-baseline methods ({means[pair[1]]:.3f} "
              f"against the baseline's {means[pair[0]]:.3f}), as in Figure 5 of GCNet (Kim et "
              f"al.). One trained model per panel: fold {fold}, seed {seed}; {sub}"
              + (f" (a random subsample, seed {TSNE_SEED}, to keep t-SNE cheap)" if len(ids) < total
                 else "")
              + f"; one dot per sample, coloured by its true class. scikit-learn's TSNE, 2-D, "
              f"perplexity {perplexity:g}, PCA initialisation, random_state {TSNE_SEED}, on the "
              f"raw features. Compact, separated colours mean features that separate the classes; "
              f"the axes have no units and distances between clusters mean little. Data: {data}.")
