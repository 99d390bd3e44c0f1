"""`ferbench compare RUN_A RUN_B`: metric differences between two results folders.

Each argument is a results folder (its ``runs/`` is read) or a runs folder itself. Both are
loaded and labelled as `ferbench aggregate` does (every budget is kept: comparing a demo with a
paper run is allowed, and the budgets are printed). For every dataset (table group), method
(variant) and metric present in both: mean ± std and n of A and of B, Δ = mean A - mean B, and,
over the (fold, seed) pairs both have run, the paired tests of stats.py (Wilcoxon signed-rank
and the Nadeau-Bengio corrected t-test). With fewer than two common (fold, seed) pairs the row
says that no test was possible. Markdown on stdout; ``--csv`` also writes every row as CSV.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ferbench.errors import FerbenchError
from ferbench.io import write_text
from ferbench.report.runs import collect_runs, metric_order, run_sizes, scores_frame, variant_order
from ferbench.report.stats import ALPHA, corrected_t_test, lower_is_better, no_test_note, wilcoxon_test
from ferbench.report.tables import DASH, markdown_table

KEYS = ["group", "task", "variant", "metric"]


def runs_folder(path: str | Path) -> Path:
    path = Path(path)
    return path / "runs" if (path / "runs").is_dir() else path


def load(path: str | Path) -> tuple[pd.DataFrame, set[str]]:
    runs, _ = collect_runs(runs_folder(path))
    scores = scores_frame(runs)
    sizes = run_sizes(runs)
    scores["ratio"] = scores["run"].map(sizes["n_test"] / sizes["n_train"].where(
        sizes["n_train"] > 0))
    return scores[~scores["metric"].str.startswith("legacy_")], {r.budget for r in runs}


def compare(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    rows = []
    ga, gb = a.groupby(KEYS, sort=True), b.groupby(KEYS, sort=True)
    for key in sorted(set(ga.groups) & set(gb.groups)):
        pa, pb = ga.get_group(key), gb.get_group(key)
        va_, vb_ = pa["value"].dropna(), pb["value"].dropna()
        paired = pa.merge(pb, on=["fold", "seed"], suffixes=("_a", "_b")).dropna(
            subset=["value_a", "value_b"])
        d = (paired["value_a"] - paired["value_b"]).to_numpy()
        ratio = float(np.mean(np.r_[paired["ratio_a"], paired["ratio_b"]])) if len(d) else math.nan
        w_stat, w_p = wilcoxon_test(d)
        t, df, p = corrected_t_test(d, ratio)
        diff = va_.mean() - vb_.mean() if len(va_) and len(vb_) else math.nan
        better = ""
        if math.isfinite(diff) and diff != 0:
            better = "A" if (diff < 0) == lower_is_better(key[3]) else "B"
        rows.append({
            **dict(zip(["dataset", "task", "method", "metric"], key)),
            "mean_a": va_.mean(), "std_a": va_.std(ddof=1), "n_a": len(va_),
            "mean_b": vb_.mean(), "std_b": vb_.std(ddof=1), "n_b": len(vb_),
            "diff": diff, "better": better, "n_pairs": len(d),
            "wilcoxon_stat": w_stat, "wilcoxon_p": w_p, "t_corrected": t, "df": df,
            "p_corrected": p, "significant": bool(math.isfinite(p) and p < ALPHA and better),
            "note": no_test_note(len(d), paired["fold"].nunique(), paired["seed"].nunique())
            if len(d) < 2 else "",
        })
    return pd.DataFrame(rows)


def _num(value: float, digits: int = 4) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _side(mean: float, std: float, n: int) -> str:
    return _num(mean) + (f" ± {std:.4f}" if n > 1 and math.isfinite(std) else "") + f" (n={n})"


def render(table: pd.DataFrame, name_a: str, name_b: str, budgets: tuple[set, set],
           only: tuple[list, list]) -> str:
    lines = ["# ferbench compare\n", f"- A: `{name_a}` (budget {', '.join(sorted(budgets[0]))})",
             f"- B: `{name_b}` (budget {', '.join(sorted(budgets[1]))})",
             "- Δ = mean A − mean B over each side's runs (folds × seeds); tests paired over the "
             "(fold, seed) runs both have: Wilcoxon signed-rank and the corrected resampled "
             f"t-test (Nadeau & Bengio 2003); * = p < {ALPHA} in the corrected t-test.", ""]
    header = ["Dataset", "Method", "Metric", "A", "B", "Δ (A − B)", "Better", "Pairs",
              "Wilcoxon p", "Corrected t p"]
    body = []
    for group in table["dataset"].unique():
        part = table[table["dataset"] == group]
        for task in part["task"].unique():
            sub = part[part["task"] == task]
            order = metric_order(task, set(sub["metric"]))
            for variant in variant_order(set(sub["method"])):
                rows = sub[sub["method"] == variant].set_index("metric")
                for metric in [m for m in order if m in rows.index]:
                    r = rows.loc[metric]
                    p_text = (_num(r["p_corrected"]) + (" *" if r["significant"] else "")
                              if not r["note"] else "no test possible")
                    body.append([group, variant, metric, _side(r["mean_a"], r["std_a"], r["n_a"]),
                                 _side(r["mean_b"], r["std_b"], r["n_b"]),
                                 DASH if not math.isfinite(r["diff"]) else f"{r['diff']:+.4f}",
                                 r["better"] or DASH, str(r["n_pairs"]),
                                 _num(r["wilcoxon_p"]) if not r["note"] else DASH, p_text])
    lines.append(markdown_table(header, body, numeric={3, 4, 5, 7, 8, 9}))
    notes = sorted({n for n in table["note"] if n})
    lines += [f"No test possible where: {n}." for n in notes]
    for side, keys in zip("AB", only):
        if keys:
            lines.append(f"Only in {side} (not compared): "
                         + ", ".join(sorted({f"{g}/{v}" for g, _, v, _ in keys})) + ".")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    a, budget_a = load(args.run_a)
    b, budget_b = load(args.run_b)
    if args.metrics:
        wanted = {m.strip() for m in args.metrics.split(",") if m.strip()}
        a, b = a[a["metric"].isin(wanted)], b[b["metric"].isin(wanted)]
    table = compare(a, b)
    keys_a = set(a.groupby(KEYS).groups)
    keys_b = set(b.groupby(KEYS).groups)
    if table.empty:
        raise FerbenchError(f"{args.run_a} and {args.run_b} have no dataset, method and metric "
                            f"in common")
    print(render(table, str(args.run_a), str(args.run_b), (budget_a, budget_b),
                 (sorted(keys_a - keys_b), sorted(keys_b - keys_a))), end="")
    if args.csv:
        write_text(args.csv, table.to_csv(index=False))
    return 0
