"""What each artefact was built from, and the checks its consumers run before trusting it.

Fingerprints (sha256 hex) recorded at write time:

  report.json    ``samples_fingerprint``: the cached sample table (sample ids in cache order and
                 the columns the folds derive from); ``settings``: the crop settings;
                 ``content``: each face array's pixel sha256 (ferbench.data.cache_content); and
                 ``fingerprint``: all three together. report.json is also the completion marker.
  folds.json     ``source``: {``samples``: the samples.parquet it was built from,
                 ``samples_fingerprint``}; ``fingerprint``: folds.parquet's own content.
  encoder.pt     ``provenance``: {dataset, fold (None for all subjects), all_subjects,
                 subjects: [[dataset, subject], ...] every subject whose frames it saw}.
  metrics.json   ``inputs`` (train and pretrain): {cache: {path, fingerprint (report.json's)},
                 folds: {path, fingerprint (the table's content)}, encoder (with --pretrained):
                 {path, sha256 of the file, provenance: {dataset, fold, all_subjects, n_subjects}}},
                 paths as the job was given them (relative to where it ran).

``load_fold`` refuses a cache without its marker, a folds table built from another sample table
(naming both files) or whose rows do not name the cache's samples, and ``train --pretrained``
refuses an encoder that saw one of the job's test subjects. ``ferbench doctor`` re-verifies all
of it on disk, and a result against the inputs its metrics.json names (``check_inputs``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ferbench.errors import FerbenchError

#: the sample-table columns a folds table is derived from (in this order)
SAMPLE_COLUMNS = ("sample_id", "subject", "sequence", "frame", "emotion", "valence", "arousal",
                  "split", "apex")
#: the folds-table columns a training job reads its labels and sets from
FOLDS_COLUMNS = ("sample_id", "cache_row", "subject", "sequence", "frame", "label", "fold",
                 "protocol_sample", "split", "valence", "arousal")
MARKER = "report.json"


def table_fingerprint(table: pd.DataFrame, columns: Iterable[str]) -> str:
    """sha256 of ``columns`` (row order included) as text; a missing column hashes as absent."""
    digest = hashlib.sha256(f"rows={len(table)}".encode())
    for col in columns:
        digest.update(f"\x1e{col}\x1d".encode())
        if col not in table.columns:
            digest.update(b"<absent>")
            continue
        values = table[col].astype(object)
        missing = values.isna().to_numpy(bool)
        text = values.astype(str).to_numpy(object)
        text[missing] = "\x00"
        digest.update("\x1f".join(text.tolist()).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def samples_fingerprint(samples: pd.DataFrame) -> str:
    return table_fingerprint(samples, SAMPLE_COLUMNS)


def folds_fingerprint(folds: pd.DataFrame) -> str:
    return table_fingerprint(folds, FOLDS_COLUMNS)


def cache_fingerprint(samples_fp: str, settings: Mapping[str, Any],
                      content: Mapping[str, Any] | None = None) -> str:
    """Sample table, settings and (recorded since pixel hashes) each face array's pixel sha256."""
    fields: dict[str, Any] = {"samples": samples_fp, "settings": dict(settings)}
    if content:
        fields["pixels"] = {name: (rec or {}).get("sha256") for name, rec in sorted(content.items())}
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- caches -----------------------------------------------------------------------------------
def read_report(cache: str | Path) -> dict[str, Any]:
    """The cache's report.json; its absence means the cache is incomplete (prepare did not finish)."""
    path = Path(cache) / MARKER
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise FerbenchError(f"{Path(cache)}: incomplete cache (no {MARKER}: `ferbench prepare` did not "
                            f"finish or was killed); rerun prepare") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(report, dict):
        raise FerbenchError(f"{path}: not a cache report")
    return report


def check_folds_source(cache: str | Path, folds_path: str | Path, meta: Mapping[str, Any],
                       folds: pd.DataFrame, n_images: int) -> None:
    """Refuse a folds table that was not built from ``cache``'s sample table, naming both files.

    Stored fingerprints are compared when both files record them (a cache prepared before
    fingerprints has none: doctor calls it stale); in every case the folds table's
    (cache_row, sample_id) pairs must name the cache's samples."""
    cache, folds_path = Path(cache), Path(folds_path)
    samples_path = cache / "samples.parquet"
    meta_path = folds_path.with_suffix(".json")
    report = read_report(cache)
    source = meta.get("source")
    have = report.get("samples_fingerprint")  # None: prepared before fingerprints (doctor: stale)
    if isinstance(source, Mapping) and source.get("samples_fingerprint") and have:
        if have != source["samples_fingerprint"]:
            raise FerbenchError(
                f"{folds_path} was built from another sample table than {samples_path} "
                f"({meta_path} records {str(source['samples_fingerprint'])[:12]}, {cache / MARKER} "
                f"{str(have)[:12]}); rerun `ferbench folds`")
    if meta.get("fingerprint") and folds_fingerprint(folds) != meta["fingerprint"]:
        raise FerbenchError(f"{folds_path} does not match {meta_path} (another folds table's "
                            f"metadata); rerun `ferbench folds`")
    try:
        samples = pd.read_parquet(samples_path, columns=["sample_id", "cache_row"])
    except FileNotFoundError:
        raise FerbenchError(f"{cache}: incomplete cache (no samples.parquet); rerun prepare") from None
    except Exception as err:  # pyarrow raises several types for a damaged file or missing column
        raise FerbenchError(f"{samples_path}: unreadable sample table ({err})") from None
    rows = samples["cache_row"].to_numpy(np.int64)
    if len(samples) != n_images or (len(rows) and (rows.min() < 0 or rows.max() >= n_images)):
        raise FerbenchError(f"{samples_path}: {len(samples)} samples do not index the cache's "
                            f"{n_images} faces; rerun prepare")
    by_row = np.empty(n_images, dtype=object)
    by_row[rows] = samples["sample_id"].astype(str).to_numpy(object)
    want = folds["sample_id"].astype(str).to_numpy(object)
    got = by_row[folds["cache_row"].to_numpy(np.int64)]
    bad = np.flatnonzero(got != want)
    if len(bad):
        i = int(bad[0])
        raise FerbenchError(
            f"{folds_path} does not belong to {samples_path}: {len(bad)} of {len(folds)} rows name "
            f"other samples (row {i}: {want[i]!r} in the folds table, {got[i]!r} in the cache); "
            f"rerun `ferbench folds`")


# -- encoders ---------------------------------------------------------------------------------
def _subjects(folds: pd.DataFrame, rows: np.ndarray) -> set[str]:
    values = folds["subject"].to_numpy(object)[rows]
    return {str(s) for s in values if s is not None and not pd.isna(s)}


def encoder_provenance(dataset: str, fold: int, all_subjects: bool, folds: pd.DataFrame,
                       mask: np.ndarray) -> dict[str, Any]:
    """What encoder.pt records: the subjects whose frames the pretraining read (``mask``)."""
    seen = sorted(_subjects(folds, np.flatnonzero(mask)))
    return {"dataset": str(dataset), "fold": None if all_subjects else int(fold),
            "all_subjects": bool(all_subjects), "subjects": [[str(dataset), s] for s in seen]}


def check_encoder(path: str | Path, payload: Mapping[str, Any], dataset: str, folds: pd.DataFrame,
                  test: np.ndarray, train_mask: np.ndarray, fold: int) -> None:
    """Refuse an encoder that saw any of the job's test subjects (compared as (dataset, subject)).

    A test subject the job itself trains on (an official split sharing subjects) is no extra leak."""
    prov = payload.get("provenance")
    if not isinstance(prov, Mapping) or not isinstance(prov.get("subjects"), (list, tuple)):
        raise FerbenchError(f"{path}: encoder records no provenance (dataset, fold, subjects seen); "
                            f"rerun `ferbench pretrain` to check it against the test subjects")
    seen = {(str(d), str(s)) for d, s in prov["subjects"]}
    own = _subjects(folds, np.flatnonzero(train_mask))
    tested = {(str(dataset), s) for s in _subjects(folds, np.asarray(test, np.int64)) - own}
    overlap = sorted(s for _, s in seen & tested)
    if overlap:
        origin = "all subjects" if prov.get("all_subjects") else f"fold {prov.get('fold')}"
        shown = ", ".join(overlap[:10]) + (f" and {len(overlap) - 10} more" if len(overlap) > 10 else "")
        raise FerbenchError(f"{path}: encoder pretrained on {prov.get('dataset')} ({origin}) saw "
                            f"{len(overlap)} test subject(s) of {dataset} fold {fold}: {shown}; "
                            f"use the encoder pretrained for this fold")


# -- results ----------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def job_inputs(cache: str | Path, folds_path: str | Path, folds: pd.DataFrame,
               encoder: str | Path | None = None,
               payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a job's metrics.json records of its inputs (see the module docstring): the cache's
    fingerprint (None when it was prepared before fingerprints), the folds table's content
    fingerprint, and the encoder file's sha256 and provenance."""
    report = read_report(cache)
    inputs: dict[str, Any] = {
        "cache": {"path": str(cache), "fingerprint": report.get("fingerprint")},
        "folds": {"path": str(folds_path), "fingerprint": folds_fingerprint(folds)},
    }
    if encoder is not None:
        prov = (payload or {}).get("provenance") or {}
        inputs["encoder"] = {
            "path": str(encoder), "sha256": file_sha256(encoder),
            "provenance": {"dataset": prov.get("dataset"), "fold": prov.get("fold"),
                           "all_subjects": prov.get("all_subjects"),
                           "n_subjects": len(prov.get("subjects") or ())}}
    return inputs


def check_inputs(inputs: Any, memo: dict[tuple[str, str], Any] | None = None) -> str | None:
    """Why a result's recorded inputs (metrics.json ``inputs``) no longer match the files they
    name, or None when they all match. Relative paths are taken from the current folder, as the
    jobs ran. ``memo`` caches each file's current fingerprint across the runs of one check."""
    memo = {} if memo is None else memo
    if not isinstance(inputs, Mapping) or not isinstance(inputs.get("cache"), Mapping) \
            or not isinstance(inputs.get("folds"), Mapping):
        return "metrics.json records no input fingerprints (written by an older ferbench); rerun the job"

    def current(kind: str, path: Path) -> Any:
        key = (kind, str(path))
        if key not in memo:
            try:
                if not path.exists():
                    raise FileNotFoundError(path)
                if kind == "cache":
                    memo[key] = read_report(path).get("fingerprint") or "<none>"
                elif kind == "folds":
                    memo[key] = folds_fingerprint(pd.read_parquet(path))
                else:
                    memo[key] = file_sha256(path)
            except FileNotFoundError:
                memo[key] = "<missing>"
            except FerbenchError:  # no report.json: an incomplete cache
                memo[key] = "<incomplete>"
            except Exception as err:  # damaged parquet: pyarrow raises several types
                memo[key] = f"<unreadable: {type(err).__name__}>"
        return memo[key]

    for kind, field, what in (("cache", "fingerprint", "cache"), ("folds", "fingerprint", "folds table"),
                              ("encoder", "sha256", "encoder")):
        entry = inputs.get(kind)
        if kind == "encoder" and entry is None:
            continue
        if not isinstance(entry, Mapping) or not entry.get("path"):
            return f"metrics.json: inputs.{kind} names no file; rerun the job"
        path, recorded = Path(str(entry["path"])), entry.get(field)
        older = "(prepared by an older ferbench); rerun prepare and the job"
        if not recorded:
            return f"its {what} {path} recorded no fingerprint {older}"
        now = current(kind, path)
        if now == "<missing>":
            return (f"its {what} {path} is not there (run doctor from the folder the jobs ran in); "
                    f"cannot verify")
        if now == "<incomplete>":
            return f"its {what} {path} is incomplete (no {MARKER}); rerun prepare and the job"
        if now == "<none>":
            return f"its {what} {path} records no fingerprint now {older}"
        if now != recorded:
            detail = now if now.startswith("<") else f"now {now[:12]}"
            return (f"built from another {what} than {path} holds now (recorded {str(recorded)[:12]}, "
                    f"{detail}); rerun the job")
    return None


# -- where a run's numbers came from ----------------------------------------------------------
def data_origin(root: str | Path | None, synthetic_out: str | Path | None) -> str:
    """"synthetic" when the dataset root lies inside the synthetic data folder (what
    ``ferbench synthesize`` and the workflow write), "real" for any other root that is named,
    "unknown" without a root."""
    if not root:
        return "unknown"
    out = Path(synthetic_out or "data/synthetic").resolve()
    return "synthetic" if Path(root).resolve().is_relative_to(out) else "real"


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit of the ferbench source tree (with ``+dirty`` when it has local changes), or
    None outside a git checkout (an installed package) or without git."""
    import subprocess

    here = Path(start or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def run_provenance(config: Mapping[str, Any], dataset: str, inputs: Mapping[str, Any],
                   cache: str | Path) -> dict[str, Any]:
    """The data and software half of metrics.json's ``provenance`` (the engine adds device,
    threads, wall time and images/s): dataset root, the reader's layout variant, synthetic or
    real, the cache's and folds table's fingerprints, the protocol, ferbench's version and git
    commit, torch's version."""
    import torch

    import ferbench

    entry = (config.get("datasets") or {}).get(dataset) or {}
    root = entry.get("root")
    report = read_report(cache)
    return {
        "data": {
            "dataset": dataset,
            "root": root,
            "origin": data_origin(root, (config.get("synthetic") or {}).get("out")),
            "layout": report.get("variant") or None,
            "images": report.get("images"),
            "cache_fingerprint": (inputs.get("cache") or {}).get("fingerprint"),
            "folds_fingerprint": (inputs.get("folds") or {}).get("fingerprint"),
        },
        "software": {"ferbench": ferbench.__version__, "git_commit": git_commit(),
                     "torch": torch.__version__},
    }
