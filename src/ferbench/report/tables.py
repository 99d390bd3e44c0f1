"""Tables per dataset (Markdown, LaTeX booktabs, CSV) and per seed paper (published beside ours)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ferbench.io import write_text
from ferbench.report.chance import CHANCE_HEADER, CHANCE_NOTE, PROBE_HEADER, PROBE_NOTE, chance_text, probe_text
from ferbench.report.outputs import Outputs, safe_name
from ferbench.report.published import PAPER_BACKBONE, PAPERS, Block, Paper, Row
from ferbench.report.runs import (BASELINES, POOLED, Run, data_label, metric_order, sizes_text,
                                  variant_order)
from ferbench.report.stats import ALPHA, confidence_interval, testable, wins

DASH = "—"
DIGITS = 4  # per-dataset tables: metrics in their stored units (accuracy 0..1)
DATA_TEXT = {
    "synthetic": "synthetic faces (`ferbench synthesize`): a pipeline check, NOT comparable "
                 "with published numbers",
    "real": "the real dataset",
    "synthetic (per config)": "synthetic faces per the config's dataset root (the runs do not "
                              "record it): NOT comparable with published numbers",
    "unspecified": "not recorded by the runs (no extra.data in metrics.json) nor in the config",
}
TASK_TITLE = {"classification": "classification", "va": "valence/arousal regression"}
NAN_NOTE = ("† some runs gave NaN for this metric (undefined, e.g. a correlation of constant "
            "predictions); the mean is over the other runs")
SINGLE_NOTE = "A cell without ± comes from a single run (no std)."
CI_NOTE = ("Cells: mean ± sample std [95% confidence interval of the mean: Student's t over the "
           "runs]; the CI is optimistic for cross-validation (folds share training data).")
TEST_TEXT = (f"paired over (fold, seed): corrected resampled t-test (Nadeau & Bengio 2003), "
             f"p < {ALPHA}; Wilcoxon signed-rank p and every pair in `paired_tests.csv`")
WINS_HEADER = "Significantly better than"
POOLED_NOTE = ("accuracy: the mean over runs (folds × seeds) of each run's test accuracy, every "
               "fold weighted equally; pooled_accuracy: the accuracy of all runs' test predictions "
               "concatenated (correct / test samples), every sample weighted equally, one number "
               "(no ± or CI). Papers report either; with folds of different sizes they differ.")


#: heads every table file with a synthetic row
BANNER = ("> **Synthetic data.** Rows whose data say *synthetic* ran on procedurally generated "
          "faces (`ferbench synthesize`): a check that the pipeline runs, saying nothing about "
          "the methods. They are never compared with published numbers.\n")
#: the comparability rule, as the paper tables state it
RULE_TEXT = ("Δ is printed only where ours ran on real data of the paper's dataset (the block's "
             "dataset and class count select the runs), under the paper's protocol, on its "
             "backbone and at its input size where the paper gives them; elsewhere the Δ cell "
             "says why not.")


def describe_data(labels: set[str]) -> str:
    if not labels:
        return "no runs yet"
    return "; ".join(label if label.startswith("real: ") else f"{label}: {DATA_TEXT.get(label, label)}"
                     for label in sorted(labels))


def is_synthetic(labels: set[str]) -> bool:
    return any(str(label).startswith(("synthetic", "mixed")) and "synthetic" in str(label)
               for label in labels)


def why_not_comparable(block: Block, row: Row, data: set[str], backbones: set[str],
                       sizes: set, protocols: set | None = None) -> str:
    """Why ours may not be set against the paper's number on this row ("" when it may): one
    rule for every paper table. Real data of the block's dataset (the runs' own record), the
    paper's protocol, backbone (the row's, else the block's) and input size (each where the
    paper's is known)."""
    data = {str(d) for d in data}
    if any("synthetic" in d for d in data):
        return "synthetic"
    real = {d for d in data if d == "real" or d.startswith(f"real: {block.dataset} ")}
    if not data or real != data:
        return "data not recorded" if data <= {"unspecified"} else "not real data of " + block.dataset
    if block.protocol:
        recorded = {p for p in (protocols or set()) if isinstance(p, str)}
        if not recorded or len(recorded) < len(protocols or set()):
            return "protocol not recorded"
        if recorded != {block.protocol}:
            return f"protocol {' / '.join(sorted(recorded))} vs {block.protocol}"
    paper = row.backbone or block.backbone
    if paper and backbones != {paper}:
        label = PAPER_BACKBONE.get(row.backbone or "", "") or block.backbone_label or paper
        return f"backbone differs: {', '.join(sorted(backbones))} vs {label}"
    if block.input_px:
        known = {int(v) for v in sizes if v is not None and not pd.isna(v)}
        if not known or len(known) < len(sizes):
            return "input size not recorded"
        if known != {block.input_px}:
            return f"input {sizes_text(known)} px vs {block.input_px} px"
    return ""


def cell(mean: float, std: float, n: int, n_runs: int, digits: int, scale: float = 1.0,
         ci: tuple[float, float] | None = None) -> str:
    """``mean ± std [ci_low, ci_high]`` (std and CI only with n > 1), † when runs gave NaN."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "NaN" if n_runs else DASH
    value = mean * scale
    if value != 0 and abs(value) < 10.0 ** (2 - digits):
        # small values (per-pixel MSEs) keep three significant digits instead of rounding to 0.00xx
        digits = 2 - math.floor(math.log10(abs(value)))
    text = f"{value:.{digits}f}"
    if n > 1 and not math.isnan(std):
        text += f" ± {std * scale:.{digits}f}"
        if ci is not None and all(math.isfinite(c) for c in ci):
            text += f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    if n < n_runs:
        text += " †"
    return text


def diff_cell(ours: float, published: str | None, digits: int, why_not: str = "") -> str:
    """Ours minus published, signed, in the paper's units; — when either is missing; why not
    when they may not be compared (:func:`why_not_comparable`)."""
    if published is None or ours is None or not math.isfinite(ours):
        return DASH
    if why_not:
        return why_not
    return f"{ours - float(published):+.{digits}f}"


# ------------------------------------------------------------------------------ rendering
def markdown_table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "—": "--", "Δ": r"$\Delta$", "−": "-", "†": r"$^\dagger$", "×": r"$\times$", "`": "",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex_table(caption: str, label: str, header_rows: list[str], rows: list[list[str]],
                align: str, wide: bool = False) -> str:
    """A booktabs table; ``header_rows`` are already LaTeX, body cells are escaped here.
    ``wide`` scales the tabular to the line width (graphicx's resizebox)."""
    body = [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    return "\n".join([
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        *([r"\resizebox{\linewidth}{!}{%"] if wide else []),
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        *header_rows,
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}" + ("}" if wide else ""),
        r"\end{table}",
        "",
    ])


# ------------------------------------------------------------------------------ per dataset
def write_dataset_tables(summary: pd.DataFrame, runs: list[Run], out: Outputs,
                         notes: list[str], tests: pd.DataFrame) -> None:
    for group in sorted(summary["group"].unique()):
        sub = summary[summary["group"] == group]
        group_runs = [r for r in runs if r.group == group]
        md = [BANNER] if is_synthetic({r.data for r in group_runs}) else []
        md += [f"# Results: {group}\n",
              "All numbers here are **ours** (this benchmark): mean ± sample std (ddof=1) over "
              "folds × seeds. Published numbers sit beside ours in `paper_*.md`.\n"]
        tex = [f"% ferbench aggregate: results for {latex_escape(group)}. All numbers are ours "
               f"(mean $\\pm$ sample std over folds x seeds).\n"]
        if md[0] == BANNER:
            tex.append("% SYNTHETIC DATA: rows whose data say synthetic ran on generated faces; "
                       "a pipeline check, not comparable with published numbers.\n")
        for task in [t for t in ("classification", "va") if t in set(sub["task"])]:
            part = sub[sub["task"] == task]
            task_runs = [r for r in group_runs if r.task == task]
            meta = _meta_lines(task_runs)
            metrics = metric_order(task, set(part["metric"]))
            probed = any(r.probe for r in task_runs)
            header = ["Method", "Backbone", "Input", "Epochs", "Runs", "Data", *metrics, CHANCE_HEADER,
                      *([PROBE_HEADER] if probed else []), WINS_HEADER]
            can_test, why_not = testable(tests, group, task)
            rows, flags = [], set()
            for variant in variant_order(set(part["variant"])):
                vpart = part[part["variant"] == variant].set_index("metric")
                vruns = [r for r in task_runs if r.variant == variant]
                row = [variant, ", ".join(sorted({r.backbone for r in vruns})),
                       sizes_text([r.image_size for r in vruns], "px"),
                       sizes_text([r.epochs for r in vruns]), str(len(vruns)),
                       data_label({r.data for r in vruns})]
                for m in metrics:
                    if m not in vpart.index:
                        row.append(DASH)
                        continue
                    s = vpart.loc[m]
                    text = cell(s["mean"], s["std"], int(s["n"]), int(s["n_runs"]), DIGITS,
                                ci=(s["ci_low"], s["ci_high"]))
                    if "†" in text:
                        flags.add("†")
                    if int(s["n"]) == 1:
                        flags.add("single")
                    row.append(text)
                row.append(chance_text(vruns))
                if probed:
                    row.append(probe_text(vruns))
                row.append(wins_text(tests, group, task, variant) if can_test
                           else "no test possible")
                rows.append(row)
            md.append(f"## Task: {TASK_TITLE[task]}\n")
            md.extend(f"- {line}" for line in meta)
            md.append("")
            md.append(markdown_table(header, rows, numeric={4, *range(6, 6 + len(metrics))}))
            footnotes = [CI_NOTE, CHANCE_NOTE] + ([PROBE_NOTE] if probed else []) + \
                        ([POOLED_NOTE] if POOLED in metrics else []) + \
                        ([NAN_NOTE] if "†" in flags else []) + \
                        ([SINGLE_NOTE] if "single" in flags else []) + \
                        [f"{WINS_HEADER}: {TEST_TEXT}."
                         + ("" if can_test else f" Here: {why_not}.")] + \
                        [f"Left out: {n}." for n in notes]
            md.extend(footnotes)
            md.append("")
            caption = (f"{group}, {TASK_TITLE[task]}: ours, mean ± std over folds × seeds; "
                       + "; ".join(meta))
            head = " & ".join(latex_escape(h) for h in header) + r" \\"
            label = f"tab:{safe_name(group).replace('_', '-')}-{task}"
            tex.append(latex_table(caption, label, [head], rows,
                                   "llrrrl" + "r" * len(metrics) + "p{3cm}" * (len(header) - 6 - len(metrics))))
        sizes = pd.DataFrame([{"variant": r.variant, "task": r.task,
                               "image_size": sizes_text([x.image_size for x in group_runs
                                                         if x.variant == r.variant and x.task == r.task]),
                               "epochs": sizes_text([x.epochs for x in group_runs
                                                     if x.variant == r.variant and x.task == r.task])}
                              for r in group_runs]).drop_duplicates(["variant", "task"])
        sub = sub.merge(sizes, on=["variant", "task"], how="left")
        csv = sub.loc[:, [
            "group", "dataset", "task", "num_classes", "method", "backbone", "image_size", "epochs",
            "variant", "data", "metric", "mean", "std", "n", "n_runs", "ci_low", "ci_high"]]
        stem = safe_name(group)
        write_text(out.path(f"{stem}.md"), "\n".join(md))
        write_text(out.path(f"{stem}.tex"), "\n".join(tex))
        write_text(out.path(f"{stem}.csv"), csv.to_csv(index=False))


def wins_text(tests: pd.DataFrame, group: str, task: str, variant: str) -> str:
    found = wins(tests, group, task, variant)
    if not found:
        return "none"
    return "; ".join(f"{metric}: {', '.join(others)}" for metric, others in found.items())


def write_tests_csv(tests: pd.DataFrame, out: Outputs) -> None:
    write_text(out.path("paired_tests.csv"), tests.to_csv(index=False))


def _meta_lines(runs: list[Run]) -> list[str]:
    lines = [f"Ours obtained on: {describe_data({r.data for r in runs})}"]
    classes = {r.classes for r in runs if r.classes}
    if classes:
        lines.append("Classes: " + " | ".join(", ".join(c) for c in sorted(classes)))
    lines.append("Budget: " + ", ".join(sorted({r.budget for r in runs})))
    lines.append("Folds: " + ", ".join(str(f) for f in sorted({r.fold for r in runs}))
                 + "; seeds: " + ", ".join(str(s) for s in sorted({r.seed for r in runs})))
    return lines


# ------------------------------------------------------------------------------ per paper
WIN_MARK = "*"


@dataclass
class Stat:
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    n_runs: int = 0
    ci_low: float = math.nan
    ci_high: float = math.nan


@dataclass
class PaperRow:
    row: Row
    method: str | None
    backbones: str
    data: str
    runs: int
    ours: list[Stat]
    legacy: list[Stat]
    group: str | None = None      # the runs' table group and variant (for the paired tests)
    variant: str | None = None
    status: str = ""              # why a row has no runs ("not run (...)"); "" when it has
    run_ids: tuple[int, ...] = ()  # the scores frame's run indices behind the row
    sizes: str = DASH             # the runs' input sizes and epochs (settings.json)
    epochs: str = DASH
    why_not: str = ""             # why ours is not set against the paper's number ("": it is)


def block_rows(block: Block, scores: pd.DataFrame, config: dict | None = None) -> list[PaperRow]:
    relevant = _block_scores(block, scores)
    rows = list(block.rows)
    # Runs of a backbone-specific method on a backbone no row names: an "ours only" row each.
    specific = {m for r in block.rows if r.backbone and len(r.ours) == 1 for m in r.ours}
    agnostic = {m for r in block.rows if not r.backbone for m in r.ours}
    for method in sorted(specific - agnostic):
        named = {r.backbone for r in block.rows if r.ours == (method,)}
        for backbone in sorted(set(relevant.loc[relevant["method"] == method, "backbone"]) - named):
            rows.append(Row(f"{method} on {backbone} (ours only; no published row)", (method,),
                            (None,) * len(block.columns), backbone))
    prows = [_paper_row(block, row, relevant) for row in rows]
    for p in prows:
        if not p.runs:
            p.status = not_run_reason(block, p.row, config)
    return prows


def not_run_reason(block: Block, row: Row, config: dict | None) -> str:
    """Why a paper row has no runs of ours, from the config the workflow ran with."""
    if not row.ours:
        return "reference only (no ferbench method)"
    run = (config or {}).get("run")
    if not isinstance(run, dict):
        return "not run (no runs found)"
    if block.dataset not in (run.get("datasets") or []):
        return f"not run (dataset {block.dataset} not configured)"
    methods = [m for m in row.ours if m in (run.get("methods") or [])]
    if not methods:
        return "not run (method not in run.methods)"
    entry = ((config or {}).get("datasets") or {}).get(block.dataset) or {}
    only = entry.get("methods")
    if only is not None and not any(m in only for m in methods):
        return f"not run (method not in datasets.{block.dataset}.methods)"
    classes = (entry.get("protocol") or {}).get("classes")
    if block.num_classes is not None and classes is not None and classes != block.num_classes:
        return f"not run (dataset {block.dataset} configured with {classes} classes)"
    if row.backbone:
        return f"not run (no runs on backbone {row.backbone})"
    return "not run yet (no runs found)"


def _block_scores(block: Block, scores: pd.DataFrame) -> pd.DataFrame:
    sel = scores[(scores["dataset"] == block.dataset)
                 & scores["task"].isin({c.task for c in block.columns})]
    if block.num_classes is not None:
        keep = (sel["task"] != "classification") | (sel["num_classes"] == block.num_classes)
        sel = sel[keep.fillna(False).astype(bool)]
    return sel


def _paper_row(block: Block, row: Row, relevant: pd.DataFrame) -> PaperRow:
    # per task of the block's columns, the first of the row's run names with runs for it (a
    # row may take expression cells from `supervised` and V/A cells from `supervised_va`)
    picked: list[str] = []
    parts = [relevant.iloc[0:0]]
    for task in dict.fromkeys(c.task for c in block.columns):
        metrics = {c.metric for c in block.columns if c.task == task}
        for method in row.ours:
            cand = relevant[(relevant["method"] == method) & (relevant["task"] == task)]
            if row.backbone:
                cand = cand[cand["backbone"] == row.backbone]
            if cand["metric"].isin(metrics).any():
                picked.append(method)
                parts.append(cand)
                break
    chosen = ", ".join(dict.fromkeys(picked)) or None
    sel = pd.concat(parts)
    ours, legacy, used = [], [], set()
    for col in block.columns:
        for prefix, target in (("", ours), ("legacy_", legacy)):
            values = sel.loc[(sel["task"] == col.task) & (sel["metric"] == prefix + col.metric)]
            if prefix == "":
                used.update(values["run"])
            finite = values["value"].dropna() * col.scale
            lo, hi = confidence_interval(finite)
            target.append(Stat(mean=float(finite.mean()) if len(finite) else math.nan,
                               std=float(finite.std(ddof=1)) if len(finite) > 1 else math.nan,
                               n=len(finite), n_runs=len(values), ci_low=lo, ci_high=hi))
    used_rows = sel[sel["run"].isin(used)]
    groups, variants = set(used_rows["group"]), set(used_rows["variant"])
    per_run = used_rows.drop_duplicates("run")
    sizes = list(per_run["image_size"]) if "image_size" in per_run else []
    epochs = list(per_run["epochs"]) if "epochs" in per_run else []
    return PaperRow(
        row=row, method=chosen,
        backbones=", ".join(sorted(set(used_rows["backbone"]))) or DASH,
        data=data_label(set(used_rows["data"])) if len(used_rows) else DASH,
        runs=len(used), ours=ours, legacy=legacy, run_ids=tuple(sorted(used)),
        group=next(iter(groups)) if len(groups) == 1 else None,
        variant=next(iter(variants)) if len(variants) == 1 else None,
        sizes=sizes_text(sizes, "px"), epochs=sizes_text(epochs),
        why_not=why_not_comparable(
            block, row, set(used_rows["data"]), set(used_rows["backbone"]), set(sizes),
            set(per_run["protocol"]) if "protocol" in per_run else set()) if used else "")


def _baseline(prows: list[PaperRow]) -> PaperRow | None:
    return next((p for p in prows if p.method in BASELINES and p.runs and p.variant), None)


def _vs_baseline(tests: pd.DataFrame, base: PaperRow | None, prow: PaperRow, col) -> dict:
    """The paired test of ``prow`` against the block's baseline row on ``col``'s metric."""
    if base is None or prow is base or not prow.variant or prow.group != base.group:
        return {}
    pair = {prow.variant, base.variant}
    sel = tests[(tests["group"] == prow.group) & (tests["task"] == col.task)
                & (tests["metric"] == col.metric) & tests["method_a"].isin(pair)
                & tests["method_b"].isin(pair)]
    return {} if sel.empty else sel.iloc[0].to_dict()


def _paper_cells(block: Block, prow: PaperRow, legacy: bool, tests: pd.DataFrame,
                 base: PaperRow | None) -> list[str]:
    stats = prow.legacy if legacy else prow.ours
    cells = []
    for col, pub, stat in zip(block.columns, prow.row.published, stats):
        text = cell(stat.mean, stat.std, stat.n, stat.n_runs, col.digits,
                    ci=(stat.ci_low, stat.ci_high))
        test = {} if legacy else _vs_baseline(tests, base, prow, col)
        if test.get("significant") and test.get("better") == prow.variant:
            text += " " + WIN_MARK
        cells += [pub if pub is not None else DASH, text,
                  diff_cell(stat.mean if stat.n else None, pub, col.digits, prow.why_not)]
    return cells


def _method_cell(prow: PaperRow, runs: list[Run] | None) -> str:
    """The row's run name, with "at chance (...)" when its runs' scores are not above chance."""
    if not prow.method:
        return prow.status
    if runs is None or not prow.run_ids:
        return prow.method
    chosen = [runs[i] for i in prow.run_ids]
    texts = [chance_text([r for r in chosen if r.task == task]) for task in dict.fromkeys(r.task for r in chosen)]
    flagged = [t for t in texts if "at chance" in t]
    return prow.method + ("" if not flagged else " — " + "; ".join(flagged))


def _paired_note(tests: pd.DataFrame, base: PaperRow | None, prows: list[PaperRow]) -> str:
    if base is None:
        return "Paired tests: none (our baseline row has no runs)."
    others = [p for p in prows if p is not base and p.runs]
    can_test, why_not = testable(tests, base.group)
    if not others:
        return f"Paired tests: none (only our baseline row, `{base.variant}`, has runs)."
    if not can_test:
        return f"Paired tests against our baseline row (`{base.variant}`): {why_not}."
    return (f"Paired tests against our baseline row (`{base.variant}`): {WIN_MARK} marks "
            f"significantly better; {TEST_TEXT}.")


def write_paper_tables(scores: pd.DataFrame, out: Outputs, notes: list[str],
                       tests: pd.DataFrame, config: dict | None = None,
                       papers: tuple[Paper, ...] = PAPERS, runs: list[Run] | None = None) -> None:
    """``runs`` (the list the scores frame indexes): rows at chance say so in their method cell."""
    for paper in papers:
        md = [f"# {paper.key}: {paper.title}\n", f"{paper.citation}\n"]
        tex = [f"% ferbench aggregate: {latex_escape(paper.key)}. {latex_escape(paper.citation)}"
               f"\n% needs \\usepackage{{booktabs,graphicx}}\n"]
        csv_rows = []
        all_data: set[str] = set()
        sections = []
        for b, block in enumerate(paper.blocks):
            prows = block_rows(block, scores, config)
            all_data.update(p.data for p in prows if p.runs)
            has_legacy = any(s.n_runs for p in prows for s in p.legacy)
            sections.append((b, block, prows, has_legacy))
        md.append("**Published** columns are copied from the paper (table cited per block), in "
                  "the paper's units. **Ours** columns are this benchmark: mean ± sample std "
                  "(ddof=1) [95% CI of the mean, Student's t] over folds × seeds; **Δ** = ours "
                  "− published. " + DASH + " = not run here (the *Ours: method* column says "
                  "why), or no published value.\n")
        md.append(f"**Ours obtained on:** {describe_data(all_data)}.\n")
        md.append(RULE_TEXT + "\n")
        if is_synthetic(all_data):
            md.insert(0, BANNER)
            tex.insert(0, "% SYNTHETIC DATA: rows whose data say synthetic ran on generated faces; "
                          "a pipeline check, not comparable with published numbers.\n")
        for note in paper.notes:
            md.append(f"- {note}")
        if paper.notes:
            md.append("")
        for b, block, prows, has_legacy in sections:
            base = _baseline(prows)
            md.append(f"## {block.title}\n")
            classes = f", {block.num_classes}-class runs only" if block.num_classes else ""
            md.append(f"Published: {block.source}. Ours: dataset `{block.dataset}`{classes}."
                      + (f" {block.note}" if block.note else "") + "\n")
            variants = [("ours", False)] + ([("ours, legacy metric mode", True)] if has_legacy
                                            else [])
            for title, legacy in variants:
                header = ["Method (paper)", "Ours: method", "Ours: backbone", "Ours: input",
                          "Ours: epochs", "Ours: data", "Ours: runs"]
                for col in block.columns:
                    header += [f"{col.label} published", f"{col.label} {title}",
                               f"{col.label} Δ"]
                rows = [[p.row.label, _method_cell(p, runs), p.backbones, p.sizes, p.epochs, p.data,
                         str(p.runs)]
                        + _paper_cells(block, p, legacy, tests, base) for p in prows]
                if legacy:
                    md.append("Ours recomputed with the authors' metric code (legacy mode):\n")
                md.append(markdown_table(header, rows, numeric=set(range(6, len(header)))))
                tex.append(_paper_latex(paper, b, block, rows, title))
            flags = [c for p in prows for c in _paper_cells(block, p, False, tests, base)
                     + _paper_cells(block, p, True, tests, base)]
            if any("†" in c for c in flags):
                md.append(NAN_NOTE + "\n")
            md.append(_paired_note(tests, base, prows) + "\n")
            for p in prows:
                for col, pub, stat, lstat in zip(block.columns, p.row.published, p.ours, p.legacy):
                    test = _vs_baseline(tests, base, p, col)
                    csv_rows.append({
                        "paper": paper.key, "block": block.title, "source": block.source,
                        "dataset": block.dataset, "row": p.row.label,
                        "status": p.status or "run",
                        "ours_method": p.method or "", "ours_backbone": p.backbones,
                        "ours_input": p.sizes, "ours_epochs": p.epochs,
                        "ours_data": p.data, "ours_runs": p.runs, "column": col.label,
                        "metric": col.metric, "published": float(pub) if pub else math.nan,
                        "ours_mean": stat.mean, "ours_std": stat.std, "ours_n": stat.n,
                        "ours_ci_low": stat.ci_low, "ours_ci_high": stat.ci_high,
                        "diff": stat.mean - float(pub) if pub and not p.why_not else math.nan,
                        "comparable": "" if not (pub and p.runs) else (p.why_not or "yes"),
                        "legacy_mean": lstat.mean, "legacy_std": lstat.std, "legacy_n": lstat.n,
                        "baseline": base.variant if base else "",
                        "p_corrected_vs_baseline": test.get("p_corrected", math.nan),
                        "wilcoxon_p_vs_baseline": test.get("wilcoxon_p", math.nan),
                        "better_than_baseline": bool(test.get("significant")
                                                     and test.get("better") == p.variant),
                    })
        if runs is not None:
            md.append(CHANCE_NOTE + "\n")
        md.extend(f"Left out: {n}." for n in notes)
        write_text(out.path(f"{paper.key}.md"), "\n".join(md) + "\n")
        write_text(out.path(f"{paper.key}.tex"), "\n".join(tex))
        write_text(out.path(f"{paper.key}.csv"), pd.DataFrame(csv_rows).to_csv(index=False))


def _paper_latex(paper: Paper, b: int, block: Block, rows: list[list[str]], title: str) -> str:
    n_meta = 7
    top = ["Method (paper)", "Ours: method", "Ours: backbone", "Ours: input", "Ours: epochs",
           "Ours: data", "Runs"]
    first = " & ".join(latex_escape(h) for h in top[:n_meta])
    spans, rules = [], []
    for i, col in enumerate(block.columns):
        start = n_meta + 3 * i + 1
        spans.append(rf"\multicolumn{{3}}{{c}}{{{latex_escape(col.label)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + 2}}}")
    head1 = first + " & " + " & ".join(spans) + r" \\"
    head2 = " & " * (n_meta - 1) + " & " + " & ".join(
        [r"published & " + latex_escape(title) + r" & $\Delta$"] * len(block.columns)) + r" \\"
    mode = " in legacy metric mode" if "legacy" in title else ""
    caption = (f"{paper.title}: {block.title}. Published: {block.source}. "
               f"Ours{mode}: mean ± std [95% CI] over folds × seeds on dataset {block.dataset}; "
               f"Δ = ours − published; {WIN_MARK} = significantly better than our baseline row.")
    suffix = "-legacy" if "legacy" in title else ""
    label = f"tab:{paper.key.replace('_', '-')}-{b}{suffix}"
    return latex_table(caption, label, [head1, "".join(rules), head2], rows,
                       "lllrrll" + "rrr" * len(block.columns), wide=True)
