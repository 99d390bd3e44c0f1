"""What the top of the HTML page says about where its numbers come from: the commit, the date,
the budget, the data per dataset, the hardware and the total job time, and whether a banner
must warn that some rows are synthetic.

Read from each run's metrics.json: its ``provenance`` object where the engine wrote one (dataset
root, synthetic flag, fingerprints, commit, device, torch version, threads), else the keys every
run has (``device``, ``wall_s``, ``extra.data``, ``inputs``' fingerprints). Keys are looked up
by name anywhere inside ``provenance`` (it may nest them, e.g. under ``hardware``); a fact no run
records reads "not recorded", never a guess.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ferbench.report.runs import Run

NOT_RECORDED = "not recorded by the runs"


@dataclass
class Header:
    facts: list[tuple[str, str]]     # (label, text), in page order
    synthetic_runs: int
    total_runs: int

    @property
    def banner(self) -> str | None:
        if not self.synthetic_runs:
            return None
        return (f"Synthetic data: {self.synthetic_runs} of {self.total_runs} runs trained and "
                f"tested on synthetic faces (`ferbench synthesize`). Their numbers check the "
                f"pipeline; they say nothing about the methods and are not comparable with "
                f"published values.")


def find(obj: Any, *names: str) -> Any:
    """The first value under any of ``names``, searched breadth-first through nested dicts."""
    level = [obj]
    while level:
        for d in level:
            for name in names:
                if isinstance(d, dict) and d.get(name) not in (None, ""):
                    return d[name]
        level = [v for d in level if isinstance(d, dict) for v in d.values()
                 if isinstance(v, dict)]
    return None


def _raw(run: Run) -> dict:
    try:
        obj = json.loads(run.path.read_text())
    except (OSError, ValueError):
        return {}         # load_run read it a moment ago; a vanished file only loses facts
    return obj if isinstance(obj, dict) else {}


def is_synthetic(run: Run, provenance: dict) -> bool:
    flag = find(provenance, "synthetic")
    return bool(flag) if isinstance(flag, bool) else run.data.startswith("synthetic")


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _listing(counter: Counter) -> str:
    if not counter:
        return NOT_RECORDED
    return "; ".join(f"{k} ({n} run{'s' if n > 1 else ''})" if len(counter) > 1 else k
                     for k, n in sorted(counter.items()))


def page_header(runs: list[Run], now: dt.datetime | None = None) -> Header:
    commits: Counter = Counter()
    hardware: Counter = Counter()
    data: dict[str, Counter] = {}
    synthetic = 0
    for run in runs:
        obj = _raw(run)
        prov = obj.get("provenance") if isinstance(obj.get("provenance"), dict) else {}
        commit = find(prov, "commit", "git_commit")
        if commit:
            dirty = find(prov, "dirty", "git_dirty")
            commits[str(commit)[:12] + (" (with uncommitted changes)" if dirty else "")] += 1
        device = find(prov, "device") or obj.get("device")
        torch = find(prov, "torch", "torch_version")
        threads = find(prov, "threads", "num_threads", "torch_threads")
        if device:
            hardware[", ".join([str(device)] + ([f"torch {torch}"] if torch else [])
                               + ([f"{threads} thread(s)"] if threads else []))] += 1
        is_syn = is_synthetic(run, prov)
        synthetic += is_syn
        data.setdefault(run.dataset, Counter())[_data_text(run, prov, obj, is_syn)] += 1
    now = now or dt.datetime.now(dt.timezone.utc)
    wall = sum(r.wall_s for r in runs)
    longest = max((r.wall_s for r in runs), default=0.0)
    facts = [
        ("Commit", _listing(commits)),
        ("Written", now.strftime("%Y-%m-%d %H:%M UTC")),
        ("Budget", ", ".join(sorted({r.budget for r in runs})) or NOT_RECORDED),
        *[(f"Data: {name}", _listing(counter)) for name, counter in sorted(data.items())],
        ("Hardware", _listing(hardware)),
        ("Job time", f"{duration(wall)} summed over {len(runs)} training jobs (longest "
                     f"{duration(longest)}; pretraining jobs not counted)"),
    ]
    return Header(facts=facts, synthetic_runs=synthetic, total_runs=len(runs))


def _data_text(run: Run, prov: dict, obj: dict, is_syn: bool) -> str:
    """"synthetic (root)" or "real (fingerprint, root)"; the run's own label where it already
    says more (e.g. "real: ckplus (1a2b3c4d)")."""
    root = find(prov, "dataset_root", "root")
    fingerprint = find(prov, "cache_fingerprint", "fingerprint") or find(
        obj.get("inputs") or {}, "fingerprint")
    label = run.data
    if is_syn and not label.startswith("synthetic"):
        label = "synthetic"          # the provenance flag outranks an unrecorded label
    details = []
    if fingerprint and not is_syn and str(fingerprint)[:8] not in label:
        details.append(f"fingerprint {str(fingerprint)[:8]}")
    if root:
        details.append(f"root {root}")
    return label + (f" ({', '.join(details)})" if details else "")
