"""`ferbench aggregate`: every run's metrics.json -> tables, paper tables, figures, DVC files.

This module only drives: runs.py finds, validates and labels the runs and builds the score
frames; stats.py runs the paired tests; tables.py, figures.py and headline.py render them;
html.py puts them on one page (--report) under header.py's provenance; outputs.py tracks the
files written per folder (and removes stale ones). This module writes the DVC files itself: the summary (mean per group,
method and metric) and the plots (one row per run and metric). Every file is written atomically
(temporary name, then rename).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ferbench.config import load_config
from ferbench.io import remove_temporaries, write_json, write_text
from ferbench.report import figures, tables
from ferbench.report.header import page_header
from ferbench.report.headline import write_headline_figures
from ferbench.report.html import write_report
from ferbench.report.outputs import Outputs
from ferbench.report.runs import (collect_runs, fill_data_from_config, run_sizes, scores_frame,
                                  summarise, variant_order)
from ferbench.report.stats import paired_tests


def remove_leftovers(args: argparse.Namespace) -> None:
    """What a killed aggregate left: every temporary file in its table and figure folders
    (aggregate's own), and those of its single files beside other things (summary, plots,
    report)."""
    for folder in (args.tables, args.figures):
        remove_temporaries(folder)
    for single in (args.summary, args.plots, getattr(args, "report", None)):
        if single:
            name = Path(single).name
            remove_temporaries(Path(single).parent, lambda final, name=name: final == name)


def main(args: argparse.Namespace) -> int:
    # Already validated by the workflow (validate-config); only `budget`, `datasets.*.root` and
    # `synthetic.out` are read here.
    config = load_config(args.config, validate=False)
    remove_leftovers(args)
    budget = config.get("budget")
    runs, notes = collect_runs(args.runs, budget=budget if isinstance(budget, str) else None)
    fill_data_from_config(runs, config)
    for note in notes:
        print(f"ferbench aggregate: note: {note}", file=sys.stderr)
    scores = scores_frame(runs)
    summary = summarise(scores, runs)   # + pooled accuracy per classification method
    tests = paired_tests(scores, run_sizes(runs), variant_order)

    table_out = Outputs(args.tables)
    tables.write_dataset_tables(summary, runs, table_out, notes, tests)
    tables.write_paper_tables(scores, table_out, notes, tests, config, runs=runs)
    tables.write_tests_csv(tests, table_out)
    figure_out = Outputs(args.figures)
    captions = figures.write_figures(scores, runs, figure_out)
    headline = write_headline_figures(summary, figure_out)
    if getattr(args, "report", None):
        budgets = ", ".join(sorted({r.budget for r in runs}))
        write_report(args.report, tables_dir=table_out.folder,
                     table_files=[n for n in table_out.written if n.endswith(".md")],
                     figures_dir=figure_out.folder, captions=captions,
                     summary_lines=[f"{len(runs)} runs (budget {budgets}) under `{args.runs}`; "
                                    f"tables in `{args.tables}`, figures (PNG and PDF) in "
                                    f"`{args.figures}`, every paired test in "
                                    f"`{table_out.folder / 'paired_tests.csv'}`."]
                     + [f"Left out: {n}." for n in notes],
                     header=page_header(runs), headline=headline)

    write_json(args.summary, summary_json(summary))
    plots = scores[["group", "variant", "fold", "seed", "metric", "value"]].rename(
        columns={"group": "dataset", "variant": "method"})
    plots = plots.sort_values(["dataset", "method", "fold", "seed", "metric"], kind="stable")
    write_text(args.plots, plots.to_csv(index=False))

    removed = table_out.finish() + figure_out.finish()
    groups = sorted({r.group for r in runs})
    print(f"ferbench aggregate: {len(runs)} runs, {len(groups)} table(s) "
          f"({', '.join(groups)}); {len(table_out.written)} table files in {args.tables}, "
          f"{len(figure_out.written)} figures in {args.figures}"
          + (f"; removed stale {', '.join(removed)}" if removed else ""))
    return 0


def summary_json(summary: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for row in summary.itertuples(index=False):
        mean = None if pd.isna(row.mean) else float(row.mean)   # NaN is not valid JSON
        out.setdefault(row.group, {}).setdefault(row.variant, {})[row.metric] = mean
    return out
