"""The HTML page of `ferbench aggregate`: provenance, headline figures, every table and figure.

Top down: a banner when any run is on synthetic data; where the numbers come from (commit,
date, budget, data per dataset, hardware, total job time: header.py); a navigation naming the
datasets and the papers (short name and citation); per dataset its headline figure
(headline.py), its tables and, collapsed, its figures in a grid; then one section per paper.

Tables are HTML converted from the Markdown tables (the same text, so the page and the .md files
cannot disagree). A table too wide for a 1400-pixel window is split by column family (one
metric: accuracy, F1, RMSE, PCC, CCC, SAGR, ...): the first part keeps the row names, the
headline metric (accuracy; CCC for valence/arousal) and as many other columns as fit; the rest
follows in a collapsed block, one table per family. Figures are the PNGs beside the page
(the workflow writes it into the figures folder), referenced by relative path and loaded
lazily; the style sheet is inline, so the folder opens in any browser without a server.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from ferbench.io import write_text
from ferbench.report.header import Header
from ferbench.report.outputs import safe_name
from ferbench.report.published import PAPERS, Paper

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em auto; max-width: 1400px; padding: 0 1em;
       color: #222; line-height: 1.35; box-sizing: border-box; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
.banner { background: #fff3cd; border: 2px solid #e0a800; padding: 0.5em 1em; font-weight: 600; }
dl.provenance { display: grid; grid-template-columns: max-content 1fr; gap: 0 1em;
                font-size: 13px; margin: 0.5em 0; }
dl.provenance dt { font-weight: 600; }
dl.provenance dd { margin: 0; }
nav { font-size: 13px; margin: 0.5em 0; }
nav ul { margin: 0.2em 0; padding-left: 1.2em; }
nav .cite { color: #555; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 0.8em; }
figure { margin: 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
.headlines { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure.headline { flex: 0 1 auto; max-width: 900px; }
figcaption { font-size: 12px; color: #444; }
details { margin: 0.4em 0; }
summary { cursor: pointer; color: #0645ad; }
section { border-top: 2px solid #ddd; margin-top: 1.5em; }
p, ul { margin: 0.4em 0; }
code { background: #f4f4f4; padding: 0 2px; }
"""

#: column widths for the split decision: px per character at the tables' 12 px, cell padding
#: and borders, the characters a text cell wraps at, and the width a table may take in a
#: 1400-pixel window (body padding and a scrollbar off, with a margin)
CHAR_PX = 6.8
CELL_PX = 14
WRAP_CHARS = 34
TABLE_PX = 1250
#: column families, in the order a header is searched; the first two are the headline metrics
FAMILY = re.compile(r"accuracy|acc\b|ccc|f1|rmse|pcc|sagr|mse")
HEADLINE_FAMILIES = ("accuracy", "ccc")


def inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", out)
    return out


def _cells(line: str) -> list[str]:
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def markdown_to_html(text: str, shift: int = 1) -> str:
    """The Markdown aggregate writes (headings, lists, pipe tables, paragraphs) as HTML;
    headings move down ``shift`` levels (the page has its own h1)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + shift, 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
            continue
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    return "\n".join(out)


def family(header: str) -> str | None:
    """The metric a column shows ("accuracy", "ccc", "legacy ccc", ...); None for the others
    (method, backbone, data, runs, tests). A paper table's "X published", "X ours" and "X Δ"
    are X's family."""
    base = re.sub(r" (published|ours.*|Δ)$", "", header).lower().replace("_", " ")
    found = FAMILY.search(base)
    if not found:
        return None
    name = "accuracy" if found.group(0) == "acc" else found.group(0)
    return f"legacy {name}" if "legacy" in base else name


def _plain(text: str) -> str:
    return re.sub(r"[`*]", "", text)


def column_px(header: str, cells: list[str], numeric: bool) -> float:
    """Estimated rendered width: numbers do not wrap, text wraps at WRAP_CHARS, a header at
    its longest word."""
    longest_cell = max((len(_plain(c)) for c in cells), default=0)
    if not numeric:
        longest_cell = min(longest_cell, WRAP_CHARS)
    longest_word = max((len(w) for w in _plain(header).split()), default=0)
    return max(longest_cell, longest_word) * CHAR_PX + CELL_PX


def split_columns(header: list[str], widths: list[float],
                  limit: float = TABLE_PX) -> tuple[list[int], list[tuple[str, list[int]]]]:
    """(the columns shown first, [(title, columns) of each collapsed part]). Everything fits:
    all columns first, no parts. Else first the row names (column 0), "Ours: method", the
    headline family, then each other column by priority (non-metric columns, then the other
    families) while the width allows; the rest goes into one part per family plus one for
    the other columns, each repeating the row names."""
    if sum(widths) <= limit:
        return list(range(len(header))), []
    fams = [family(h) for h in header]
    order = list(dict.fromkeys(f for f in fams if f))
    head = next((f for f in HEADLINE_FAMILIES if f in order), order[0] if order else None)
    key = [0] + [i for i, h in enumerate(header) if i and h.startswith("Ours: method")]
    first = key + [i for i, f in enumerate(fams) if f == head and i not in key]
    used = sum(widths[i] for i in first)
    candidates = ([i for i, f in enumerate(fams) if f is None and i not in first]
                  + [i for fam in order if fam != head for i, f in enumerate(fams) if f == fam])
    rest = []
    for i in candidates:
        # a family goes as a whole or not at all: a metric's published/ours/Δ stay together
        if i in first or i in rest:
            continue
        group = [j for j, f in enumerate(fams) if f == fams[i]] if fams[i] else [i]
        extra = sum(widths[j] for j in group)
        if used + extra <= limit:
            first += group
            used += extra
        else:
            rest += group
    parts = [(fam.upper() if len(fam) <= 4 else fam.capitalize(),
              key + [i for i in rest if fams[i] == fam]) for fam in order
             if any(fams[i] == fam for i in rest)]
    others = [i for i in rest if fams[i] is None]
    if others:
        parts.append(("Other columns", key + others))
    return sorted(first), [(t, sorted(set(cols), key=cols.index)) for t, cols in parts]


def _table(block: list[str]) -> str:
    header = _cells(block[0])
    align = _cells(block[1]) if len(block) > 1 else []
    numeric = [j < len(align) and align[j].endswith(":") for j in range(len(header))]
    rows = [_cells(line) for line in block[2:]]
    widths = [column_px(h, [r[j] for r in rows if j < len(r)], numeric[j])
              for j, h in enumerate(header)]
    first, parts = split_columns(header, widths)
    has_headline = any(family(header[j]) in HEADLINE_FAMILIES for j in first)
    out = _html_table(header, rows, numeric, first, "headline" if has_headline else "")
    if parts:
        titles = ", ".join(t for t, _ in parts)
        out += (f"<details class=more><summary>More columns: {html.escape(titles)}</summary>"
                + "".join(_html_table(header, rows, numeric, cols, "") for _, cols in parts)
                + "</details>")
    return out


def _html_table(header: list[str], rows: list[list[str]], numeric: list[bool],
                cols: list[int], css: str) -> str:
    head = "".join(f"<th>{inline(header[j])}</th>" for j in cols)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if numeric[j] else ""}>'
                         f"{inline(row[j]) if j < len(row) else ''}</td>" for j in cols)
        + "</tr>" for row in rows)
    attr = f' class="{css}"' if css else ""
    return (f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def figure_html(src: str, name: str, caption: str, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    stem = Path(name).stem
    return (f'<figure id="fig-{html.escape(stem)}"{attr}><img alt="{html.escape(stem)}" '
            f'loading="lazy" src="{html.escape(src)}"><figcaption><strong>'
            f"{html.escape(name)}</strong> (PDF beside it): {html.escape(caption)}"
            f"</figcaption></figure>")


def _nav(datasets: list[str], papers: list[tuple[str, Paper | None]]) -> str:
    data_links = " · ".join(f'<a href="#{html.escape(Path(f).stem)}">'
                            f"{html.escape(Path(f).stem)}</a>" for f in datasets)
    items = []
    for name, paper in papers:
        stem = html.escape(Path(name).stem)
        if paper is None:
            items.append(f'<li><a href="#{stem}">{stem}</a></li>')
            continue
        items.append(f'<li><a href="#{stem}" title="{html.escape(paper.citation)}">'
                     f"{html.escape(paper.short or paper.title)}</a> "
                     f'<span class="cite">{html.escape(paper.citation)}</span></li>')
    return (f"<nav><strong>Datasets:</strong> {data_links or 'none'}"
            f"<br><strong>Papers</strong> (published numbers beside ours):"
            f"<ul>{''.join(items)}</ul></nav>")


HOW_TO_READ = (
    "<details><summary>How to read the numbers</summary><p>Every number of ours is the mean "
    "± sample std over folds × seeds, with the 95% confidence interval of the mean in brackets "
    "(Student's t). The column <em>Significantly better than</em> lists the methods a method "
    "beats in a paired test over the same folds and seeds (corrected resampled t-test of "
    "Nadeau &amp; Bengio, p &lt; 0.05; Wilcoxon signed-rank p beside it in "
    "<code>paired_tests.csv</code>). Paper tables put the published value, ours and the "
    "difference Δ = ours − published side by side; a row we did not run says why. Wide tables "
    "show the headline metric first; the other metrics sit under <em>More columns</em>."
    "</p></details>")


def write_report(path: str | Path, *, tables_dir: Path, table_files: list[str],
                 figures_dir: Path, captions: dict[str, tuple[str, str]],
                 summary_lines: list[str], header: Header | None = None,
                 headline: dict[str, tuple[str, str]] | None = None,
                 papers: tuple[Paper, ...] = PAPERS) -> None:
    """``table_files``: the .md tables; ``captions`` and ``headline``: PNG name -> (group,
    caption) of the figures and of the headline figures; ``header``: the provenance facts."""
    path = Path(path)
    headline = headline or {}
    by_key = {p.key: p for p in papers}
    datasets = sorted(f for f in table_files if not f.startswith("paper_"))
    paper_files = sorted(f for f in table_files if f.startswith("paper_"))
    rel = os.path.relpath(Path(figures_dir).resolve(), path.parent.resolve())

    def src(name: str) -> str:
        return Path(rel, name).as_posix() if rel != "." else name

    def figures_of(group_stems: set[str], found: dict[str, tuple[str, str]]) -> list[str]:
        return sorted(n for n, (g, _) in found.items() if safe_name(g) in group_stems)

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>ferbench results</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>ferbench results</h1>"]
    if header is not None and header.banner:
        parts.append(f'<p class="banner" id="synthetic-banner">{inline(header.banner)}</p>')
    if header is not None:
        parts.append('<dl class="provenance" id="provenance">' + "".join(
            f"<dt>{html.escape(k)}</dt><dd>{inline(v)}</dd>" for k, v in header.facts)
            + "</dl>")
    parts.append(_nav(datasets, [(f, by_key.get(Path(f).stem)) for f in paper_files]))
    parts.append("<ul>" + "".join(f"<li>{inline(s)}</li>" for s in summary_lines) + "</ul>")
    parts.append(HOW_TO_READ)
    parts.append("<h2>Results per dataset</h2>")
    placed: set[str] = set()
    for name in datasets:
        stem = Path(name).stem
        parts.append(f'<section id="{html.escape(stem)}">')
        text = (tables_dir / name).read_text()
        lines = text.splitlines()
        # the table's own title first, then the headline figure, then the rest
        if lines and lines[0].startswith("#"):
            parts.append(markdown_to_html(lines[0], shift=2))
            text = "\n".join(lines[1:])
        tops = figures_of({stem}, headline)
        placed.update(tops)
        if tops:
            parts.append('<div class="headlines">' + "".join(
                figure_html(src(n), n, headline[n][1], "headline") for n in tops) + "</div>")
        parts.append(markdown_to_html(text, shift=2))
        figs = figures_of({stem}, captions)
        placed.update(figs)
        if figs:
            parts.append(f'<details class="figures" id="figures-{html.escape(stem)}"><summary>'
                         f"Figures: {html.escape(stem)} ({len(figs)})</summary>"
                         '<div class="grid">' + "".join(
                             figure_html(src(n), n, captions[n][1]) for n in figs)
                         + "</div></details>")
        parts.append("</section>")
    parts.append("<h2>Paper tables</h2>")
    for name in paper_files:
        stem = Path(name).stem
        parts.append(f'<section id="{html.escape(stem)}">'
                     f"{markdown_to_html((tables_dir / name).read_text(), shift=2)}</section>")
    left = {**{n: c for n, c in captions.items() if n not in placed},
            **{n: c for n, c in headline.items() if n not in placed}}
    if left:
        parts.append('<section id="other-figures"><h2>Other figures</h2>'
                     '<div class="grid">' + "".join(
                         figure_html(src(n), n, left[n][1]) for n in sorted(left))
                     + "</div></section>")
    parts.append("</body></html>")
    write_text(path, "\n".join(parts) + "\n")
