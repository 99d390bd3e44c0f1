"""Size of the HTML report of the default run: bytes on disk and rendered height in pixels.

Builds the 34 runs of the default `make run` as fake run folders (tests/fake_tables.py:
DEFAULT_RUN, every artefact the figures read), runs `ferbench aggregate --report` on them, and
measures the page in headless Chromium at a 1400-pixel-wide window: the document's scroll
height as first shown (collapsed sections closed) and its width against the window's.

    PYTHONPATH=src python benchmarks/report_page_size.py [--keep DIR]

Prints one line per measure. Run it before and after a change to the page, in one session.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_tables import fake_default_runs  # noqa: E402

from ferbench import cli  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE = ("<script>window.addEventListener('load', () => {"
         "const d = document.documentElement;"
         "const p = document.createElement('p'); p.id = 'size-probe';"
         "p.textContent = `height ${d.scrollHeight} width ${d.scrollWidth}`;"
         "document.body.appendChild(p);});</script>")


def rendered_size(page: Path, width: int = 1400) -> tuple[int, int] | None:
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        return None
    probe = page.with_name("size-probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-dev-shm-usage", "--virtual-time-budget=20000",
                              f"--window-size={width},1000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=300).stdout
    finally:
        probe.unlink()
    found = re.search(r'<p id="size-probe">height (\d+) width (\d+)</p>', dom)
    return (int(found.group(1)), int(found.group(2))) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build in this folder and keep it")
    args = parser.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ferbench-page-"))
    tmp.mkdir(parents=True, exist_ok=True)
    runs = tmp / "runs"
    n = fake_default_runs(runs)
    config = tmp / "params.yaml"
    config.write_text(json.dumps({"budget": "demo", "run": {
        "datasets": ["ckplus", "afewva", "fer2013", "affectnet"]}}))   # JSON is YAML
    figures = tmp / "out" / "figures"
    # the workflow writes the page into the figures folder (workflow/rules/report.smk)
    page = figures / "index.html"
    code = cli.main(["aggregate", "--runs", str(runs), "--config", str(config),
                     "--tables", str(tmp / "out" / "tables"), "--figures", str(figures),
                     "--summary", str(tmp / "out" / "summary.json"),
                     "--plots", str(tmp / "out" / "plots.csv"), "--report", str(page)])
    if code:
        return code
    text = page.read_text()
    pngs = sorted(figures.glob("*.png"))
    print(f"runs: {n}; figures: {len(pngs)} PNG")
    print(f"page: {page.stat().st_size:,} bytes "
          f"({sum(p.stat().st_size for p in pngs):,} bytes of PNG beside it)")
    print(f"images embedded: {text.count('data:image/png;base64,')}")
    size = rendered_size(page)
    print("rendered at 1400 px: " + (f"height {size[0]:,} px, width {size[1]:,} px" if size
                                     else "no Chromium (apt-get install -y chromium)"))
    if not args.keep:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
