"""Figures (PNG, Agg backend, written atomically): accuracy bars, confusion heatmaps, CCC bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ferbench.io import atomic_path  # noqa: E402
from ferbench.report.outputs import Outputs, safe_name  # noqa: E402
from ferbench.report.runs import Run, data_label, variant_order  # noqa: E402


def _save(fig: plt.Figure, path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _bar(frame: pd.DataFrame, y: str, hue: str | None, title: str, ylabel: str, path) -> None:
    order = variant_order(set(frame["variant"]))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(order) + 1.5), 3.6))
    # Bars: mean over folds x seeds; error bars: sample std; dots: the individual runs.
    sns.barplot(data=frame, x="variant", y=y, hue=hue, order=order, errorbar="sd",
                capsize=0.15, alpha=0.8, ax=ax)
    dots = {"palette": "dark:black"} if hue else {"color": "black"}
    sns.stripplot(data=frame, x="variant", y=y, hue=hue, order=order, dodge=hue is not None,
                  size=3, legend=False, ax=ax, **dots)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    _save(fig, path)


def write_figures(scores: pd.DataFrame, runs: list[Run], out: Outputs) -> None:
    sns.set_theme(style="whitegrid", context="paper")
    for group in sorted(scores["group"].unique()):
        sub = scores[scores["group"] == group]
        stem = safe_name(group)
        for task in sorted(set(sub["task"])):
            part = sub[sub["task"] == task]
            data = data_label(set(part["data"]))
            if task == "classification":
                acc = part[part["metric"] == "accuracy"].dropna(subset=["value"])
                if len(acc):
                    _bar(acc, "value", None, f"{group}: accuracy (ours; data: {data})",
                         "accuracy", out.path(f"{stem}_accuracy.png"))
                task_runs = [r for r in runs if r.group == group and r.task == task]
                for variant in variant_order({r.variant for r in task_runs}):
                    _confusion([r for r in task_runs if r.variant == variant], group, variant,
                               data, out.path(f"{stem}_confusion_{safe_name(variant)}.png"))
            else:
                ccc = part[part["metric"].isin(["valence_ccc", "arousal_ccc"])].dropna(
                    subset=["value"])
                if len(ccc):
                    ccc = ccc.assign(dimension=ccc["metric"].str.replace("_ccc", ""))
                    _bar(ccc, "value", "dimension", f"{group}: CCC (ours; data: {data})", "CCC",
                         out.path(f"{stem}_ccc.png"))


def _confusion(runs: list[Run], group: str, variant: str, data: str, path) -> None:
    classes = runs[0].classes
    same = [r for r in runs if r.classes == classes]
    total = np.sum([r.confusion for r in same], axis=0)
    support = total.sum(axis=1, keepdims=True)
    # Row-normalised (recall per true class); a class with no test samples stays blank.
    norm = np.divide(total, support, out=np.full(total.shape, np.nan), where=support > 0)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    sns.heatmap(norm, annot=True, fmt=".2f", vmin=0.0, vmax=1.0, cmap="Blues", square=True,
                xticklabels=classes, yticklabels=classes, cbar=False, annot_kws={"size": 7}, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{group} / {variant}: confusion, row-normalised,\nsummed over "
                 f"{len(same)} run(s) (ours; data: {data})", fontsize=8)
    _save(fig, path)
