"""The HTML report of `ferbench aggregate`: self-contained, every table and figure on it, and (when
a Chromium is installed: `apt-get install -y chromium`) rendered by a real headless browser with
every image decoded."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fake_tables import fake_multifold_runs, run_aggregate, va, write_artefacts, write_run

PNG = b"\x89PNG\r\n\x1a\n"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables = 0
        self.images: list[str] = []
        self.captions = 0
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self.tables += 1
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "figcaption":
            self.captions += 1
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])


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


def md_tables(folder: Path) -> int:
    count = 0
    for md in folder.glob("*.md"):
        count += sum(1 for a, b in zip(md.read_text().splitlines(),
                                       md.read_text().splitlines()[1:])
                     if a.startswith("|") and b.startswith("|---"))
    return count


def test_report_is_self_contained_with_every_table_and_figure(report):
    text = report["report"].read_text()
    page = Page()
    page.feed(text)
    assert page.tables == md_tables(report["tables"]) > 10
    pngs = sorted(report["figures"].glob("*.png"))
    assert len(page.images) == len(pngs) == page.captions > 5
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    # nothing outside the page: only in-page anchors
    assert all(link.startswith("#") for link in page.links), page.links
    assert {f"paper_00{i}" for i in range(5)} | {"ckplus", "afewva", "figures"} <= page.ids
    assert "not run (dataset mmi not configured)" in text
    assert "not run (method not in run.methods)" in text
    assert "Significantly better than" in text
    assert re.search(r"confusion matrix summed over \d+ run", text)    # captions say how


HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> str:
    """A headless Chromium that starts here: one that loads a blank page and prints its DOM.
    None installed, or one that cannot start (a snap stub, missing libraries): the test is
    skipped with the reason; one that starts fails the test if it then renders wrongly."""
    found = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if found is None:
        pytest.skip("no Chromium (`apt-get install -y chromium`; make test installs it as root)")
    try:
        probe = subprocess.run([found, *HEADLESS, "--dump-dom", "about:blank"], capture_output=True,
                               text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"{found} does not start: {err}")
    if probe.returncode != 0 or "<body" not in probe.stdout:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{found} does not start (exit {probe.returncode}): {last}")
    return found


@pytest.mark.browser
def test_report_renders_in_a_headless_browser(browser, report, tmp_path):
    # A copy of the page with a script that counts, once loaded, the images the browser decoded
    # and the tables it laid out; --dump-dom prints the DOM with the result.
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', () => {"
              "const imgs = [...document.images];"
              "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;"
              "const tables = [...document.querySelectorAll('table')]"
              ".filter(t => t.getBoundingClientRect().height > 0).length;"
              "const p = document.createElement('p'); p.id = 'probe';"
              "p.textContent = `images ${ok}/${imgs.length} tables ${tables}`;"
              "document.body.appendChild(p);});</script>")
    probe.write_text(report["report"].read_text().replace("</body>", script + "</body>"))
    base = [browser, *HEADLESS, "--virtual-time-budget=10000"]
    dom = subprocess.run(base + ["--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    found = re.search(r'<p id="probe">images (\d+)/(\d+) tables (\d+)</p>', dom)
    assert found, dom[-2000:]
    ok, total, tables = map(int, found.groups())
    assert ok == total == len(list(report["figures"].glob("*.png")))
    assert tables == md_tables(report["tables"])
    shot = tmp_path / "page.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1400,2000",
                           report["report"].as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 10_000


def test_synthetic_banner_heads_the_page_and_its_tables(tmp_path):
    from fake_tables import run_aggregate, write_run

    runs = tmp_path / "runs"
    write_run(runs, "ckplus", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5},
              provenance={"data": {"origin": "synthetic"}})
    code, out = run_aggregate(tmp_path, runs)
    assert code == 0
    page = out["report"].read_text()
    banner = '<blockquote class="banner"><strong>Synthetic data.</strong>'
    assert page.index(banner) < page.index("<nav>")        # at the top of the page
    assert page.count(banner) >= 3                         # and over each synthetic table
    real = tmp_path / "real"
    write_run(real / "runs", "ckplus", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5},
              provenance={"data": {"origin": "real", "cache_fingerprint": "0123456789abcdef"}})
    code, out = run_aggregate(real, real / "runs")
    assert code == 0
    page = out["report"].read_text()
    assert banner not in page and "real: ckplus (0123456789ab)" in page
