"""The headline figure of each table group (dataset): every method's score with its 95%
confidence interval, the published values where they are comparable, and a chance line.

Headline metric: accuracy for classification (chance: 1/k, a uniform guess over the k classes),
the concordance correlation of valence and of arousal for valence/arousal (chance: 0, what a
constant prediction scores), one panel each. A method's point is the mean over folds x seeds,
its bar the 95% CI of the mean (Student's t, as in the tables); a single run has no bar.

Published values come from published.py: every paper row that names the method (and, where the
row names one, the same backbone) on a block of this dataset and class count with a column of
the headline metric. They are drawn only where comparable: every run of the method on real
data (the run's ``data`` label starts with "real"). On synthetic or unrecorded data the caption
says how many published values were left out and why.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ferbench.report.figures import Figures  # noqa: E402
from ferbench.report.outputs import Outputs, safe_name  # noqa: E402
from ferbench.report.published import PAPERS, Paper  # noqa: E402
from ferbench.report.runs import data_label, variant_order  # noqa: E402

#: per task, the headline metrics (one panel each) and their axis labels
HEADLINE = {"classification": (("accuracy", "accuracy"),),
            "va": (("valence_ccc", "valence CCC"), ("arousal_ccc", "arousal CCC"))}


def chance(task: str, num_classes: int | None) -> float:
    """Accuracy of a uniform guess over the classes; CCC of a constant prediction."""
    if task == "classification":
        return 1.0 / num_classes if num_classes else math.nan
    return 0.0


def comparable(data: str) -> bool:
    """Ours may stand beside a published value only on real data."""
    return data.startswith("real")


def published_values(dataset: str, num_classes: int | None, task: str, metric: str,
                     method: str, backbone: str, ran: set[str] | None = None,
                     papers: tuple[Paper, ...] = PAPERS) -> list[tuple[str, float]]:
    """(paper short name, value in our units) of every paper row that reports ``method`` on
    ``dataset`` in the headline ``metric``. A row naming several run names takes the first of
    them that ``ran`` (as its paper table does; all of them when ``ran`` is None)."""
    found = []
    for paper in papers:
        for block in paper.blocks:
            if block.dataset != dataset:
                continue
            if task == "classification" and block.num_classes not in (None, num_classes):
                continue
            for i, col in enumerate(block.columns):
                if col.task != task or col.metric != metric:
                    continue
                for row in block.rows:
                    value = row.published[i]
                    stand_in = next((m for m in row.ours if m in ran), None) if ran else method
                    if (method in row.ours and stand_in == method and value is not None
                            and row.backbone in (None, backbone)):
                        found.append((paper.short or paper.key, float(value) / col.scale))
    return found


def write_headline_figures(summary: pd.DataFrame, out: Outputs,
                           papers: tuple[Paper, ...] = PAPERS) -> dict[str, tuple[str, str]]:
    """One figure per table group and task; returns PNG name -> (group, caption)."""
    figs = Figures(out)
    for group in sorted(summary["group"].unique()):
        figs.group = group
        for task in [t for t in HEADLINE if t in set(summary.loc[summary["group"] == group,
                                                                  "task"])]:
            _headline(figs, summary[(summary["group"] == group) & (summary["task"] == task)],
                      group, task, papers)
    return figs.captions


def _headline(figs: Figures, part: pd.DataFrame, group: str, task: str,
              papers: tuple[Paper, ...]) -> None:
    panels = [(m, label) for m, label in HEADLINE[task] if m in set(part["metric"])]
    if not panels:
        return
    order = variant_order(set(part.loc[part["metric"].isin([m for m, _ in panels]), "variant"]))
    classes = part["num_classes"].dropna()
    num_classes = int(classes.iloc[0]) if len(classes) else None
    line = chance(task, num_classes)
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False,
                             figsize=(3.6 * len(panels) + 1.6, 0.9 + 0.28 * len(order)))
    shown = hidden = 0
    data = data_label(set(part["data"]))
    for ax, (metric, label) in zip(axes[0], panels):
        rows = part[part["metric"] == metric].set_index("variant")
        for y, variant in enumerate(order):
            if variant not in rows.index or pd.isna(rows.loc[variant, "mean"]):
                continue
            s = rows.loc[variant]
            lo, hi = s["ci_low"], s["ci_high"]
            err = None if pd.isna(lo) else [[s["mean"] - lo], [hi - s["mean"]]]
            ax.errorbar([s["mean"]], [y], xerr=err, fmt="o", color="tab:blue", ms=5,
                        capsize=3, label="ours: mean, 95% CI" if y == 0 else None)
            values = published_values(s["dataset"], num_classes, task, metric, s["method"],
                                      s["backbone"], set(part["method"]), papers)
            if values and comparable(str(s["data"])):
                ax.scatter([v for _, v in values], [y] * len(values), marker="D", s=28,
                           color="tab:red", zorder=3,
                           label="published" if shown == 0 else None)
                shown += len(values)
            else:
                hidden += len(values)
        if math.isfinite(line):
            ax.axvline(line, color="grey", linestyle="--", linewidth=1,
                       label=f"chance ({line:.2f})")
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.4)
    axes[0][0].set_yticks(range(len(order)), order)
    axes[0][0].invert_yaxis()       # baselines on top, as in the tables
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{group}: headline {'accuracy' if task == 'classification' else 'CCC'} "
                 f"(ours; data: {data})", fontsize=9)
    why = (f"; {hidden} published value(s) not drawn: ours are not on real data ({data})"
           if hidden else "")
    caption = (f"{group}: each method's {' and '.join(label for _, label in panels)} "
               f"(dot: mean over folds × seeds; bar: 95% confidence interval of the mean, "
               f"Student's t; none for a single run); red diamonds: published values of the "
               f"same method on this dataset, where comparable ({shown} drawn{why}); dashed "
               f"line: chance ("
               + ("1/k for k classes" if task == "classification"
                  else "CCC of a constant prediction") + f"). Data: {data}.")
    figs.save(fig, f"{safe_name(group)}_headline" + ("_va" if task == "va" else ""), caption)
