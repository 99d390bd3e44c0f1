"""`ferbench doctor CACHE_OR_RESULTS_DIR...`: re-verify every fingerprint and completion marker.

Walks each folder and reports one line per artefact found:

  cache   a folder with report.json / samples.parquet / faces_*.npy: complete (report.json), its
          sample table matching the recorded fingerprint, every recorded size cached row for row
  folds   a folds table (X.parquet + X.json): its own fingerprint, and built from the sample
          table of the cache beside it (or the one folds.json names)
  run     a run or pretraining folder (metrics.json, encoder.pt, checkpoint_last.pt, ...):
          finished (metrics.json and the files it promises), model.pt and encoder.pt loadable,
          encoder.pt recording its provenance, checkpoint_last.pt (while unfinished) loadable,
          and built from the inputs metrics.json names as they are now: the cache's and folds
          table's fingerprints and the encoder file's sha256 (paths as the jobs were given them:
          run doctor from the folder the jobs ran in)
          every face array's pixels against the hashes prepare recorded (ferbench.data.cache_content:
          sampled blocks unless the file's time changed; ``--deep``: every pixel re-hashed)
  temp    a temporary file a killed writer left, naming the command whose next start removes it
          (prepare, folds, train/pretrain, aggregate: each removes its own folder's)

Each is ``ok``, ``stale`` (built from something else than what is there now, or by a ferbench
that recorded no fingerprint: rebuild it) or ``incomplete`` (a writer did not finish). The exit
status is 1 when anything is not ok (or nothing was found), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ferbench import io, provenance
from ferbench.data import cache_content
from ferbench.errors import FerbenchError

RUN_FILES = ("metrics.json", "checkpoint_last.pt", "encoder.pt", "model.pt", "predictions.parquet", "run.log")
_FACES = re.compile(r"faces_(\d+)\.npy")


class Finding(NamedTuple):
    status: str  # ok | stale | incomplete
    kind: str    # cache | folds | run | temp
    path: Path
    detail: str


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_cache(folder: Path, deep: bool = False) -> Finding:
    def found(status: str, detail: str) -> Finding:
        return Finding(status, "cache", folder, detail)

    report = _json(folder / provenance.MARKER)
    if not isinstance(report, dict):
        return found("incomplete", f"no readable {provenance.MARKER}: prepare did not finish; rerun prepare")
    if not report.get("samples_fingerprint") or not isinstance(report.get("settings"), dict):
        return found("stale", "records no fingerprint (prepared by an older ferbench); rerun prepare")
    samples_path = folder / "samples.parquet"
    try:
        samples = pd.read_parquet(samples_path)
    except Exception as err:  # missing or damaged: pyarrow raises several types
        return found("incomplete", f"{samples_path.name} unreadable ({type(err).__name__}); rerun prepare")
    if provenance.samples_fingerprint(samples) != report["samples_fingerprint"]:
        return found("stale", f"{samples_path.name} does not match {provenance.MARKER} (another sample "
                              f"table); rerun prepare")
    content = report.get("content")
    if provenance.cache_fingerprint(report["samples_fingerprint"], report["settings"], content) \
            != report.get("fingerprint"):
        return found("stale", f"{provenance.MARKER}: fingerprint does not match its settings; rerun prepare")
    channels = report["settings"].get("channels")
    for size in report["settings"].get("sizes", []):
        path = folder / f"faces_{size}.npy"
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as err:
            return found("incomplete", f"{path.name} unreadable ({type(err).__name__}); rerun prepare")
        if shape != (len(samples), channels, size, size):
            return found("stale", f"{path.name} has shape {list(shape)}, the report promises "
                                  f"{[len(samples), channels, size, size]}; rerun prepare")
        why = cache_content.problem(path, (content or {}).get(path.name), deep)
        if why:
            return found("stale", f"{path.name}: {why}; rerun prepare")
    checked = "every pixel re-hashed" if deep else "pixels spot-checked"
    return found("ok", f"{len(samples)} faces at {report['settings'].get('sizes')} px, "
                       f"fingerprint {report['fingerprint'][:12]}, {checked}")


def check_folds(meta_path: Path) -> Finding:
    parquet = meta_path.with_suffix(".parquet")

    def found(status: str, detail: str) -> Finding:
        return Finding(status, "folds", parquet, detail)

    meta = _json(meta_path)
    if not isinstance(meta, dict):
        return found("incomplete", f"{meta_path.name} missing or unreadable; rerun folds")
    try:
        folds = pd.read_parquet(parquet)
    except Exception as err:  # missing or damaged
        return found("incomplete", f"unreadable ({type(err).__name__}); rerun folds")
    source = meta.get("source")
    if not meta.get("fingerprint") or not isinstance(source, dict) or not source.get("samples_fingerprint"):
        return found("stale", f"{meta_path.name} records no fingerprint (written by an older ferbench); "
                              f"rerun folds")
    if provenance.folds_fingerprint(folds) != meta["fingerprint"]:
        return found("stale", f"does not match {meta_path.name} (another folds table); rerun folds")
    cache = parquet.parent if (parquet.parent / "samples.parquet").exists() else Path(str(source.get("samples"))).parent
    report = _json(cache / provenance.MARKER)
    if not isinstance(report, dict):
        return found("stale", f"its cache {cache} is incomplete (no {provenance.MARKER})")
    if not report.get("samples_fingerprint"):
        return found("stale", f"its cache {cache} records no fingerprint (prepared by an older ferbench)")
    if report.get("samples_fingerprint") != source["samples_fingerprint"]:
        return found("stale", f"built from another sample table than {cache / 'samples.parquet'}; rerun folds")
    return found("ok", f"{meta.get('kind')} x{meta.get('n_folds')} from {cache / 'samples.parquet'}")


def check_run(folder: Path, names: set[str], memo: dict | None = None) -> Finding:
    def found(status: str, detail: str) -> Finding:
        return Finding(status, "run", folder, detail)

    metrics = _json(folder / "metrics.json")
    if not isinstance(metrics, dict):
        why = "interrupted (checkpoint_last.pt, no metrics.json): a rerun resumes" \
            if "checkpoint_last.pt" in names else "no metrics.json: the job did not finish"
        return found("incomplete", why)
    pretrain = metrics.get("stage") == "pretrain"
    promised = ("encoder.pt",) if pretrain else ("predictions.parquet", "model.pt")
    missing = [name for name in promised if name not in names]
    if missing:
        return found("incomplete", f"metrics.json without {', '.join(missing)}; rerun the job")
    detail = f"{'pretrain' if pretrain else 'train'} {metrics.get('dataset')} {metrics.get('method')} " \
             f"fold {metrics.get('fold')} seed {metrics.get('seed')}"
    for name in ("encoder.pt",) if pretrain else ("model.pt",):  # before the inputs: the worse news
        why = _unreadable_torch_file(folder / name)
        if why:
            return found("incomplete", f"{name} unreadable ({why}, truncated or damaged); rerun the job")
    mismatch = provenance.check_inputs(metrics.get("inputs"), memo)
    if mismatch:
        return found("stale", mismatch)
    if "encoder.pt" in names:
        import torch

        try:
            payload = torch.load(folder / "encoder.pt", map_location="cpu", weights_only=True)
        except Exception as err:  # damaged file: torch raises several types
            return found("incomplete", f"encoder.pt unreadable ({type(err).__name__}); rerun pretrain")
        prov = payload.get("provenance") if isinstance(payload, dict) else None
        if not isinstance(prov, dict) or not isinstance(prov.get("subjects"), (list, tuple)):
            return found("stale", "encoder.pt records no provenance (dataset, fold, subjects seen); rerun pretrain")
        origin = "all subjects" if prov.get("all_subjects") else f"fold {prov.get('fold')}"
        detail += f"; encoder of {prov.get('dataset')} ({origin}, {len(prov['subjects'])} subjects)"
    read = ", ".join(k for k in ("cache", "folds", "encoder") if metrics["inputs"].get(k))
    return found("ok", f"{detail}; inputs ({read}) unchanged")


def _unreadable_torch_file(path: Path) -> str | None:
    """Why torch cannot load ``path`` (truncated, damaged), or None."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        return type(err).__name__
    return None


def _writer_of(path: Path) -> str:
    """The command whose next start removes a temporary file (it owns the folder), or ""."""
    final = io.final_name(path)
    if final in ("report.json", "samples.parquet", "landmarks.npy") or _FACES.fullmatch(final):
        return "`ferbench prepare`"
    if final.startswith("folds"):
        return "`ferbench folds`"
    if final in ("encoder.pt",):
        return "`ferbench pretrain`"
    if final in RUN_FILES or final in ("train_log.csv", "embeddings.parquet", "checkpoint_last.pt"):
        return "`ferbench train` or `ferbench pretrain` (whichever wrote this run folder)"
    if path.parent.name in ("tables", "figures", "plots") or final == "summary.json":
        return "`ferbench aggregate`"
    return ""  # no command owns this folder


def check_checkpoint(folder: Path) -> Finding | None:
    """A checkpoint_last.pt that does not load: a rerun would stop on it."""
    path = folder / "checkpoint_last.pt"
    why = _unreadable_torch_file(path)
    if why:
        return Finding("incomplete", "run", path, f"checkpoint unreadable ({why}); delete it to start afresh")
    return None


def scan(root: Path, memo: dict | None = None, deep: bool = False) -> list[Finding]:
    """Every artefact under ``root`` (a folder), checked (``memo``: input fingerprints already
    computed, shared by the runs that read the same cache, folds table or encoder)."""
    memo = {} if memo is None else memo
    out: list[Finding] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        here, names = Path(folder), set(files)
        if {provenance.MARKER, "samples.parquet"} & names or any(_FACES.fullmatch(n) for n in names):
            out.append(check_cache(here, deep))
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext == ".json" and f"{stem}.parquet" in names and name != provenance.MARKER:
                out.append(check_folds(here / name))
            elif stem.startswith("folds") and ext == ".parquet" and f"{stem}.json" not in names:
                out.append(Finding("incomplete", "folds", here / name, f"no {stem}.json beside it; rerun folds"))
        if names & set(RUN_FILES):
            out.append(check_run(here, names, memo))
            if "checkpoint_last.pt" in names:
                bad = check_checkpoint(here)
                if bad is not None:
                    out.append(bad)
        for path in io.temporary_files(here):
            owner = _writer_of(path)
            who = (f"the next start of {owner} removes it" if owner
                   else "no command removes it here: delete it once no ferbench command runs")
            out.append(Finding("incomplete", "temp", path, f"temporary file a killed writer left; {who}"))
    return out


def main(args: argparse.Namespace) -> int:
    findings: list[Finding] = []
    memo: dict = {}
    for given in args.paths:
        root = Path(given)
        if not root.is_dir():
            raise FerbenchError(f"{root}: not a folder")
        found = scan(root, memo, deep=getattr(args, "deep", False))
        if not found:
            findings.append(Finding("incomplete", "none", root, "no cache, folds table or run found here"))
        findings.extend(found)
    for f in findings:
        print(f"{f.status:<10}  {f.kind:<5}  {f.path}: {f.detail}")
    bad = [f for f in findings if f.status != "ok"]
    counts = {s: sum(f.status == s for f in findings) for s in ("ok", "stale", "incomplete")}
    print(f"{len(findings)} artefact(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if bad else 0
