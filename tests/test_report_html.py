"""The HTML report of `ferbench aggregate`: every table and figure on it, the figures as files
beside it, the provenance header, the synthetic banner, the papers named and cited, wide tables
split so the headline metric stays in view; and (when a Chromium is installed: `apt-get install
-y chromium`) rendered by a real headless browser at 1400 pixels, every image decoded."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fake_tables import (fake_default_runs, fake_multifold_runs, run_aggregate, va,
                         write_artefacts, write_run)

from ferbench.report.header import page_header
from ferbench.report.headline import chance, comparable, published_values
from ferbench.report.html import column_px, family, inline, split_columns
from ferbench.report.published import PAPERS
from ferbench.report.runs import collect_runs

PNG = b"\x89PNG\r\n\x1a\n"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables = 0
        self.headline_tables = 0
        self.images: list[str] = []
        self.captions = 0
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.th: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self.tables += 1
            self.headline_tables += attrs.get("class") == "headline"
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "figcaption":
            self.captions += 1
        elif tag == "th":
            self._in_th = True
            self.th.append("")
        if "href" in attrs:
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th:
            self.th[-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    runs = tmp / "runs"
    fake_multifold_runs(runs, folds=3)
    for fold in range(2):
        write_artefacts(write_run(runs, "afewva", "caf", fold, task="va", metrics=va(0.2, 0.3),
                                  backbone="resnet18"))
    code, out = run_aggregate(tmp, runs, config={"run": {"datasets": ["ckplus", "afewva"],
                                                         "methods": ["supervised", "caf"]}})
    assert code == 0
    return out


def md_headers(folder: Path) -> tuple[int, list[str]]:
    """The number of Markdown tables in the folder's .md files and all their header cells."""
    count, headers = 0, []
    for md in sorted(folder.glob("*.md")):
        lines = md.read_text().splitlines()
        for a, b in zip(lines, lines[1:]):
            if a.startswith("|") and b.startswith("|---"):
                count += 1
                headers += [c.strip().replace("`", "").replace("**", "")
                            for c in a.strip()[1:-1].split(" | ")]
    return count, headers


def test_report_has_every_table_and_figure_by_file(report):
    text = report["report"].read_text()
    page = Page()
    page.feed(text)
    count, headers = md_headers(report["tables"])
    # split tables: more HTML tables than Markdown ones, every header cell still on the page
    assert page.tables >= count > 10
    assert set(headers) <= set(page.th)
    pngs = sorted(report["figures"].glob("*.png"))
    assert len(page.images) == len(pngs) == page.captions > 5
    # every figure referenced exists, as a PNG beside the page's relative path
    for src in page.images:
        assert not src.startswith("data:") and not Path(src).is_absolute(), src
        target = (report["report"].parent / src).resolve()
        assert target.is_file() and target.read_bytes().startswith(PNG), src
    assert {p.resolve() for p in pngs} == {(report["report"].parent / s).resolve()
                                           for s in page.images}
    # links stay on the page, and every in-page link has its target
    assert all(link.startswith("#") for link in page.links), page.links
    assert {link[1:] for link in page.links} <= page.ids
    assert {f"paper_00{i}" for i in range(5)} | {"ckplus", "afewva"} <= page.ids
    assert "not run (dataset mmi not configured)" in text
    assert "not run (method not in run.methods)" in text
    assert "Significantly better than" in text
    assert re.search(r"confusion matrix summed over \d+ run", text)    # captions say how
    # the figures of a dataset sit in its section, collapsed, in a grid
    ckplus = text[text.index('<section id="ckplus">'):]
    ckplus = ckplus[:ckplus.index("</section>")]
    assert '<details class="figures" id="figures-ckplus">' in ckplus
    assert 'id="fig-ckplus_confusion_gcnet_s1r1"' in ckplus and '<div class="grid">' in ckplus
    assert 'id="fig-ckplus_headline" class="headline"' in ckplus


def test_navigation_names_and_cites_the_papers(report):
    text = report["report"].read_text()
    nav = text[text.index("<nav>"):text.index("</nav>")]
    for paper in PAPERS:
        assert f'<a href="#{paper.key}"' in nav
        assert paper.short in nav.replace("&amp;", "&")
        assert paper.citation in nav
    assert "Triplet sequences (Garg et al.)" in nav and "AVCE (Kim &amp; Song)" in nav
    assert "seed 00" not in text.lower()


def test_synthetic_runs_get_the_banner_and_the_provenance_header(report):
    text = report["report"].read_text()
    assert text.index('id="synthetic-banner"') < text.index("<nav>")
    assert "Synthetic data: 11 of 11 runs" in text
    prov = text[text.index('<dl class="provenance"'):text.index("</dl>")]
    for label in ("Commit", "Written", "Budget", "Data: ckplus", "Data: afewva", "Hardware",
                  "Job time"):
        assert f"<dt>{label}</dt>" in prov
    # fake runs record no commit nor device: said, not guessed
    assert "<dt>Commit</dt><dd>not recorded by the runs</dd>" in prov
    # 11 runs of wall_s 1.5 each
    assert "<dt>Job time</dt><dd>16 s summed over 11 training jobs (longest 2 s;" in prov


def test_headline_figure_per_dataset_with_chance_and_no_published_on_synthetic(report):
    figures = report["figures"]
    assert (figures / "ckplus_headline.png").read_bytes().startswith(PNG)
    assert (figures / "afewva_headline_va.png").read_bytes().startswith(PNG)
    text = report["report"].read_text()
    caption = re.search(r'id="fig-ckplus_headline".*?<figcaption>(.*?)</figcaption>', text,
                        re.S)[1]
    # GCNet Table 2 (7-class CK+): GCNet S1R1's row, and the CNN baseline row, which names
    # cnn_baseline, else supervised: the fixture runs cnn_baseline, so not supervised's
    assert "(0 drawn; 2 published value(s) not drawn: ours are not on real data" in caption
    assert "chance (1/k for k classes)" in caption


def test_real_runs_have_no_banner_and_show_published_values(tmp_path):
    runs = tmp_path / "runs"
    prov = {"commit": "0123456789abcdef0123", "synthetic": False, "dataset_root": "/data/CK+",
            "cache_fingerprint": "feedbeef00112233", "hardware": {"device": "cuda:0",
                                                                   "torch": "2.5.1"}}
    for fold in range(3):
        for method, acc in (("supervised", 0.6 + 0.01 * fold), ("gcnet_s1r1", 0.9)):
            write_run(runs, "ckplus", method, fold, data="real",
                      metrics={"accuracy": acc, "macro_f1": acc}, provenance=prov)
    code, out = run_aggregate(tmp_path, runs, config={"run": {"datasets": ["ckplus"]}})
    assert code == 0
    text = out["report"].read_text()
    assert 'id="synthetic-banner"' not in text
    prov_html = text[text.index('<dl class="provenance"'):text.index("</dl>")]
    assert "<dd>0123456789ab</dd>" in prov_html
    assert "<dd>cuda:0, torch 2.5.1</dd>" in prov_html
    assert "real (fingerprint feedbeef, root /data/CK+)" in prov_html
    caption = re.search(r'id="fig-ckplus_headline".*?<figcaption>(.*?)</figcaption>', text,
                        re.S)[1]
    # GCNet Table 2: S1R1's 97.93 beside gcnet_s1r1, the CNN baseline row's 96.94 beside
    # supervised (the row's stand-in when cnn_baseline was not run)
    assert "where comparable (2 drawn)" in caption


def test_header_degrades_without_provenance_and_counts_synthetic_by_flag(tmp_path):
    write_run(tmp_path, "ckplus", "supervised", 0, data=None,
              metrics={"accuracy": 0.5, "macro_f1": 0.5})
    write_run(tmp_path, "ckplus", "supervised", 1, data=None, provenance={"synthetic": True},
              metrics={"accuracy": 0.5, "macro_f1": 0.5})
    runs, _ = collect_runs(tmp_path)
    header = page_header(runs, now=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc))
    facts = dict(header.facts)
    # one run says nothing ("unspecified"), the other's provenance flags it synthetic
    assert header.synthetic_runs == 1 and header.banner.startswith("Synthetic data: 1 of 2 runs")
    assert facts["Data: ckplus"] == "synthetic (1 run); unspecified (1 run)"
    assert facts["Written"] == "2026-01-02 03:04 UTC"
    assert facts["Hardware"] == facts["Commit"] == "not recorded by the runs"


# -- table splitting ----------------------------------------------------------------------------
def test_column_families():
    assert family("CCC (V) published") == family("CCC (A) Δ") == family("mean_ccc") == "ccc"
    assert family("Top-1 acc (%)") == family("pooled_accuracy") == family("Acc (%) ours") \
        == "accuracy"
    assert family("valence_rmse") == "rmse" and family("gen_ref_mse_test") == "mse"
    assert family("legacy_valence_ccc") == "legacy ccc"
    assert family("CCC (V) ours, legacy metric mode") == "ccc"
    for meta in ("Method (paper)", "Ours: method", "Ours: data", "Runs", "Backbone",
                 "Significantly better than"):
        assert family(meta) is None


def test_split_keeps_the_headline_first_and_families_whole():
    header = ["Method (paper)", "Ours: method", "Ours: backbone",
              "RMSE (V) published", "RMSE (V) ours", "RMSE (V) Δ",
              "CCC (V) published", "CCC (V) ours", "CCC (V) Δ",
              "SAGR (V) published", "SAGR (V) ours", "SAGR (V) Δ"]
    widths = [100.0] * len(header)
    # fits: one table, every column, no parts
    assert split_columns(header, widths, limit=1200) == (list(range(12)), [])
    # 700 px: names (0, 1) + CCC (6-8) = 500, then the backbone (2) = 600; RMSE and SAGR
    # (300 each) no longer fit and become parts repeating the names
    first, parts = split_columns(header, widths, limit=700)
    assert first == [0, 1, 2, 6, 7, 8]
    assert parts == [("RMSE", [0, 1, 3, 4, 5]), ("SAGR", [0, 1, 9, 10, 11])]
    # every column is shown somewhere
    assert set(first) | {c for _, cols in parts for c in cols} == set(range(12))


def test_split_of_a_dataset_table_keeps_accuracy_and_moves_other_columns():
    header = ["Method", "Backbone", "Runs", "Data", "accuracy", "pooled_accuracy", "macro_f1",
              "Significantly better than"]
    widths = [100, 100, 50, 100, 250, 100, 250, 240]
    first, parts = split_columns(header, widths, limit=900)
    # Method + accuracy family (450), then Backbone, Runs, Data (700); the test column (240)
    # does not fit, macro_f1 (250) neither
    assert first == [0, 1, 2, 3, 4, 5]
    assert parts == [("F1", [0, 6]), ("Other columns", [0, 7])]


def test_column_width_estimate():
    # numbers do not wrap: the longest cell; text wraps at WRAP_CHARS; a header at its longest word
    assert column_px("CCC (V) ours", ["0.1234 ± 0.0100 [0.1000, 0.1500]"], True) == \
        pytest.approx(32 * 6.8 + 14)
    assert column_px("Method (paper)", ["x" * 80], False) == pytest.approx(34 * 6.8 + 14)
    assert column_px("Significantly better than", ["none"], False) == \
        pytest.approx(len("Significantly") * 6.8 + 14)


# -- headline figure: published values and chance -------------------------------------------------
def test_published_values_in_our_units():
    # GCNet Table 2: S1R1 97.93% on CK+ 7 classes -> 0.9793; Table 3 is 8-class, not matched
    assert published_values("ckplus", 7, "classification", "accuracy", "gcnet_s1r1",
                            "cnn3") == [("GCNet (Kim et al.)", pytest.approx(0.9793))]
    assert published_values("ckplus", 6, "classification", "accuracy", "gcnet_s1r1",
                            "cnn3") == []
    # the CNN baseline row names cnn_baseline, else supervised: supervised stands in for it
    # only when cnn_baseline did not run
    assert published_values("ckplus", 7, "classification", "accuracy", "supervised", "cnn3",
                            ran={"supervised", "gcnet_s1r1"}) == [
        ("GCNet (Kim et al.)", pytest.approx(0.9694))]
    assert published_values("ckplus", 7, "classification", "accuracy", "supervised", "cnn3",
                            ran={"supervised", "cnn_baseline"}) == []
    # AVCE Table 1 on AFEW-VA: the AVCE (R18) row's CCC (V) 0.619, the AL (our alexnet_reduced) row's 0.629; CAF's
    # R18 row (0.59) is printed in both CAF's and AVCE's tables
    assert published_values("afewva", None, "va", "valence_ccc", "avce", "resnet18") == [
        ("AVCE (Kim & Song)", pytest.approx(0.619))]
    assert published_values("afewva", None, "va", "valence_ccc", "avce", "alexnet_reduced") == [
        ("AVCE (Kim & Song)", pytest.approx(0.629))]
    assert published_values("afewva", None, "va", "valence_ccc", "caf", "resnet18") == [
        ("CAF (Kim & Song)", pytest.approx(0.59)), ("AVCE (Kim & Song)", pytest.approx(0.59))]
    # rows that name a backbone match no other backbone
    assert published_values("afewva", None, "va", "valence_ccc", "avce", "alexnet") == []
    assert chance("classification", 7) == pytest.approx(1 / 7)
    assert chance("va", None) == 0.0
    assert comparable("real: ckplus (feedbeef)") and comparable("real")
    assert not comparable("synthetic") and not comparable("unspecified")
    assert not comparable("mixed: real, synthetic")


# -- the browser -------------------------------------------------------------------------------
def browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def render(page: Path, script: str, width: int = 1400, open_all: bool = True) -> str:
    """The DOM after ``script`` ran on load, of a copy of ``page`` beside it (same relative
    figure paths); ``open_all``: with every collapsed block open and every image loaded
    eagerly (else as a reader first sees it)."""
    probe = page.with_name("probe.html")
    text = page.read_text()
    if open_all:
        text = text.replace('loading="lazy" ', "").replace("<details", "<details open")
    probe.write_text(text.replace("</body>", f"<script>window.addEventListener('load', () => "
                                              f"{{{script}}});</script></body>"))
    base = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--virtual-time-budget=20000", f"--window-size={width},1000"]
    try:
        return subprocess.run(base + ["--dump-dom", probe.as_uri()], capture_output=True,
                              text=True, timeout=180).stdout
    finally:
        probe.unlink()


PROBE = ("const imgs = [...document.images];"
         "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
         "const tables = [...document.querySelectorAll('table')]"
         ".filter(t => t.getBoundingClientRect().height > 0).length;"
         # a headline table scrolls sideways when its wrapper's content is wider than the wrapper
         "const wide = [...document.querySelectorAll('table.headline')]"
         ".filter(t => t.parentElement.scrollWidth > t.parentElement.clientWidth + 1).length;"
         "const heads = document.querySelectorAll('table.headline').length;"
         "const b = document.getElementById('synthetic-banner');"
         "const banner = b ? b.getBoundingClientRect().height : 0;"
         "const page = document.documentElement.scrollWidth > window.innerWidth ? 1 : 0;"
         "const p = document.createElement('p'); p.id = 'probe';"
         "p.textContent = `images ${ok}/${imgs.length} tables ${tables} headline ${heads} "
         "wide ${wide} banner ${banner} pagewide ${page}`;"
         "document.body.appendChild(p);")


@pytest.mark.browser
@pytest.mark.skipif(browser() is None, reason="no Chromium (apt-get install -y chromium)")
def test_report_renders_in_a_headless_browser(report):
    dom = render(report["report"], PROBE)
    found = re.search(r'<p id="probe">images (\d+)/(\d+) tables (\d+) headline (\d+) wide (\d+) '
                      r'banner ([\d.]+) pagewide (\d)</p>', dom)
    assert found, dom[-2000:]
    ok, total, tables, heads, wide, banner, pagewide = found.groups()
    assert int(ok) == int(total) == len(list(report["figures"].glob("*.png")))
    page = Page()
    page.feed(report["report"].read_text())
    assert int(tables) == page.tables and int(heads) == page.headline_tables > 5
    assert int(wide) == 0 and int(pagewide) == 0      # no sideways scrolling at 1400 px
    assert float(banner) > 0


@pytest.mark.browser
@pytest.mark.skipif(browser() is None, reason="no Chromium (apt-get install -y chromium)")
def test_default_run_page_fits_at_1400_px_and_is_short(tmp_path):
    """The 34 runs of the default `make run` (fake, every artefact): the paper tables of 23-29
    columns are split, so no headline table scrolls sideways; the page as first shown is under
    a third of the 54,786 px the page measured before headline figures and collapsed figure
    grids (benchmarks/report_page_size.py)."""
    runs = tmp_path / "runs"
    fake_default_runs(runs)
    code, out = run_aggregate(tmp_path, runs, config={"run": {
        "datasets": ["ckplus", "afewva", "fer2013", "affectnet"]}})
    assert code == 0
    page = Page()
    page.feed(out["report"].read_text())
    assert len(page.images) == len(list(out["figures"].glob("*.png")))
    dom = render(out["report"], PROBE)
    found = re.search(r"headline (\d+) wide (\d+) banner ([\d.]+) pagewide (\d)", dom)
    assert found, dom[-2000:]
    assert int(found.group(1)) == page.headline_tables > 10
    assert found.group(2) == "0" and found.group(4) == "0"
    # height as a reader first sees it: collapsed blocks closed
    dom = render(out["report"], "const p = document.createElement('p'); p.id = 'h';"
                 "p.textContent = `height ${document.documentElement.scrollHeight}`;"
                 "document.body.appendChild(p);", open_all=False)
    height = int(re.search(r'<p id="h">height (\d+)</p>', dom).group(1))
    assert 2000 < height < 54_786 / 3


def test_split_tables_hold_every_cell(report):
    """Every cell of a wide Markdown table's row appears in the HTML tables made from it."""
    text = report["report"].read_text()
    md = (report["tables"] / "paper_004.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| AVCE (R18) |")]
    assert rows
    cells = [inline(c.strip()) for c in rows[0].strip()[1:-1].split(" | ")]
    assert len(cells) == 31   # 7 row columns (method, ours: method, backbone, input, epochs, data, runs) + 8 x 3
    section = text[text.index('<section id="paper_004">'):]
    row_cells = re.findall(r"<tr><td[^>]*>AVCE \(R18\)</td>(.*?)</tr>", section)
    shown = [c for row in row_cells for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    # the row is split over several tables (the names repeat), none of its cells lost
    assert len(row_cells) > 1
    assert set(cells) <= set(shown) | {cells[0]}
