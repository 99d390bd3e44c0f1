"""One self-contained HTML page: every table and figure `ferbench aggregate` wrote, with captions.

The page needs no other file: tables are HTML converted from the Markdown tables (the same text,
so the page and the .md files cannot disagree), figures are the PNGs embedded as data: URIs,
and the style sheet is inline. Open it with any browser (``results/report/index.html``).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ferbench.io import write_text
from ferbench.report.tables import BANNER

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em;
       color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
figure { display: inline-block; margin: 1em; max-width: 48%; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #444; }
nav a { margin-right: 1em; }
section { border-top: 2px solid #ddd; margin-top: 2em; }
code { background: #f4f4f4; padding: 0 2px; }
blockquote.banner { background: #fff3cd; border-left: 4px solid #d39e00; margin: 0.8em 0;
                    padding: 0.4em 0.8em; }
"""


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
        elif line.startswith("> "):   # the tables' synthetic-data banner
            out.append(f'<blockquote class="banner">{inline(line[2:])}</blockquote>')
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


def _table(block: list[str]) -> str:
    header = _cells(block[0])
    align = _cells(block[1]) if len(block) > 1 else []
    numeric = [a.endswith(":") for a in align]
    rows = [_cells(line) for line in block[2:]]
    head = "".join(f"<th>{inline(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if j < len(numeric) and numeric[j] else ""}>'
                         f"{inline(c)}</td>" for j, c in enumerate(row)) + "</tr>"
        for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def figure_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure id="fig-{html.escape(path.stem)}"><img alt="{html.escape(path.stem)}" '
            f'src="data:image/png;base64,{data}"><figcaption><strong>{html.escape(path.name)}'
            f"</strong> (PDF beside it): {html.escape(caption)}</figcaption></figure>")


def write_report(path: str | Path, *, tables_dir: Path, table_files: list[str],
                 figures_dir: Path, captions: dict[str, tuple[str, str]],
                 summary_lines: list[str]) -> None:
    """``table_files``: the .md tables; ``captions``: PNG name -> (group, caption)."""
    datasets = sorted(f for f in table_files if not f.startswith("paper_"))
    papers = sorted(f for f in table_files if f.startswith("paper_"))
    groups = sorted({group for group, _ in captions.values()})
    nav = " ".join(
        [f'<a href="#{html.escape(Path(f).stem)}">{html.escape(Path(f).stem)}</a>'
         for f in datasets + papers] + ['<a href="#figures">figures</a>'])
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>ferbench results</title>", f"<style>{STYLE}</style></head><body>",
        "<h1>ferbench results</h1>",
        *([markdown_to_html(BANNER)] if any((tables_dir / f).read_text().startswith(BANNER)
                                            for f in table_files) else []),
        f"<nav>{nav}</nav>",
        "<ul>" + "".join(f"<li>{inline(s)}</li>" for s in summary_lines) + "</ul>",
        "<p>How to read: every number of ours is the mean ± sample std over folds × seeds, with "
        "the 95% confidence interval of the mean in brackets (Student's t). The column "
        "<em>Significantly better than</em> lists the methods a method beats in a paired test "
        "over the same folds and seeds (corrected resampled t-test of Nadeau &amp; Bengio, "
        "p &lt; 0.05; Wilcoxon signed-rank p beside it in <code>paired_tests.csv</code>). "
        "Paper tables put the published value, ours and the difference Δ = ours − published "
        "side by side; a row we did not run says why.</p>",
    ]
    for title, files in (("Results per dataset", datasets), ("Paper tables", papers)):
        parts.append(f"<h2>{title}</h2>")
        for name in files:
            text = (tables_dir / name).read_text()
            parts.append(f'<section id="{html.escape(Path(name).stem)}">'
                         f"{markdown_to_html(text, shift=2)}</section>")
    parts.append('<section id="figures"><h2>Figures</h2>')
    for group in groups:
        names = sorted(n for n in captions if captions[n][0] == group)
        parts.append(f"<h3>{html.escape(group)}</h3>")
        parts += [figure_html(figures_dir / n, captions[n][1]) for n in names]
    parts.append("</section></body></html>")
    write_text(path, "\n".join(parts) + "\n")
