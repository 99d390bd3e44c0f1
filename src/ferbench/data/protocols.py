"""Folds and splits, computed from the sample table alone (deterministic, overridable by a file).

Protocol config (``params.yaml`` ``datasets.<name>.protocol``; missing keys take the dataset's
defaults, its reader's ``default_protocol``)::

    kind:      kfold | group_kfold | official
    folds:     number of folds (kfold / group_kfold)
    classes:   size of the class set (the reader's ``class_sets``; see :func:`class_list`)
    selection: peak | all      (which frames of a labelled sequence are supervised samples)
    task:      classification | va

Fold rules
  kfold        sort the *labelled* subject IDs ascending (string order); the subject of rank r
               (0-based) is in test fold ``r mod k`` (the CK+ convention).
  group_kfold  groups = subjects (AFEW-VA: actor). Groups are taken largest first (ties: lower
               ID first) and each goes to the fold with the fewest labelled samples so far
               (ties: lower fold); balanced like sklearn's GroupKFold but independent of its version.
  official     the reader's ``split`` column. A table without any ``test`` row uses its ``val``
               rows as the test set (AffectNet, Aff-Wild2: test labels are withheld).
A subject is *labelled* when any of its rows has a label for the task (an emotion for
classification, finite valence and arousal for va), whatever the class set: switching 7 <-> 6
classes keeps the folds. Subjects without labels get fold -1 (never tested; sequence methods
may still train on them). A fold file (CSV ``subject,fold``, 0-based folds) replaces either rule;
it must list every labelled subject and no subject the data does not have.

The ``folds`` verb reads a complete cache only (report.json present) and records in folds.json
what it was built from (``source``: the samples.parquet and its fingerprint) and the folds
table's own ``fingerprint`` (ferbench.provenance); training refuses a mismatch.

Class index = position in :func:`class_list`, which keeps the canonical order of
``base.EMOTIONS`` (neutral, anger, contempt, disgust, fear, happiness, sadness, surprise).

Selection ``peak`` (sequence rows): for each labelled sequence the last three frames with frame
number <= the apex frame (``apex`` True; the last frame when no row is marked) carry the
sequence's emotion; when ``neutral`` is in the class set the sequence's first frame is added as
neutral (unless it is already one of the peak frames). Rows without a sequence (stills) are
selected when labelled. ``all``: every row whose emotion is in the class set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import yaml

from ferbench import io, provenance
from ferbench.datasets import dataset_facts
from ferbench.datasets.base import EMOTIONS
from ferbench.errors import FerbenchError

KINDS = ("kfold", "group_kfold", "official")
SELECTIONS = ("peak", "all")
TASKS = ("classification", "va")
PROTOCOL_KEYS = ("kind", "folds", "classes", "selection", "task")
#: Keys assign_folds adds to the resolved protocol; accepted and recomputed on input.
DERIVED_KEYS = ("class_names", "test_split", "fold_rule")
PEAK_FRAMES = 3

FOLD_COLUMNS = (
    "sample_id", "cache_row", "subject", "sequence", "frame", "emotion", "valence", "arousal",
    "split", "apex", "target", "label", "fold", "protocol_sample",
)


# -- protocol resolution ----------------------------------------------------------------------
def class_list(dataset: str, classes: int) -> list[str]:
    """The class names of a ``classes``-way protocol, in canonical EMOTIONS order."""
    sets = dataset_facts(dataset).class_sets
    if classes not in sets:
        raise FerbenchError(
            f"{dataset}: protocol classes {classes} not supported (choose from {sorted(sets)})"
        )
    members = set(sets[classes])
    return [name for name in EMOTIONS if name in members]


def resolve_protocol(dataset: str, protocol: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Dataset defaults overridden by ``protocol``; validated; includes the class list."""
    given = dict(protocol or {})
    unknown = sorted(set(given) - set(PROTOCOL_KEYS) - set(DERIVED_KEYS))
    if unknown:
        raise FerbenchError(
            f"{dataset}: protocol key {unknown[0]!r} unknown (known: {', '.join(PROTOCOL_KEYS)})"
        )
    for key in DERIVED_KEYS:  # present when a folds.json protocol is fed back
        given.pop(key, None)
    base = dict(dataset_facts(dataset).default_protocol)
    if given.get("task") == "va" and "classes" not in given:
        base.pop("classes", None)
    base.update({k: v for k, v in given.items() if v is not None})
    kind, task, selection = base.get("kind"), base.get("task", "classification"), base.get("selection", "all")
    if kind not in KINDS:
        raise FerbenchError(f"{dataset}: protocol kind {kind!r} unknown (choose from {', '.join(KINDS)})")
    if task not in TASKS:
        raise FerbenchError(f"{dataset}: protocol task {task!r} unknown (choose from {', '.join(TASKS)})")
    if selection not in SELECTIONS:
        raise FerbenchError(
            f"{dataset}: protocol selection {selection!r} unknown (choose from {', '.join(SELECTIONS)})"
        )
    resolved: dict[str, Any] = {"kind": kind, "task": task, "selection": selection}
    if kind == "official":
        resolved["folds"] = 1
    else:
        folds = base.get("folds", 10)
        if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
            raise FerbenchError(f"{dataset}: protocol folds must be an integer >= 2, got {folds!r}")
        resolved["folds"] = int(folds)
    if task == "classification":
        classes = base.get("classes", 7)
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)):
            raise FerbenchError(f"{dataset}: protocol classes must be an integer, got {classes!r}")
        resolved["classes"] = int(classes)
        resolved["class_names"] = class_list(dataset, int(classes))
    else:
        resolved["classes"] = 0
        resolved["class_names"] = []
    return resolved


def parse_protocol_arg(text: str | None, dataset: str) -> dict[str, Any] | None:
    """``--protocol``: a params.yaml / YAML file, an inline mapping, ``k=v,...`` or a kind name.

    ``--protocol params.yaml`` takes ``datasets.<dataset>.protocol``; ``'{kind: kfold, classes: 8}'``
    or ``classes=8,selection=peak`` override the defaults; ``official`` sets the kind.
    """
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise FerbenchError(f"{path}: protocol file does not exist") from None
        except yaml.YAMLError as err:
            raise FerbenchError(f"{path}: not valid YAML ({err})") from None
        if isinstance(loaded, dict) and "datasets" in loaded:
            try:
                loaded = loaded["datasets"][dataset].get("protocol") or {}
            except (KeyError, AttributeError, TypeError):
                raise FerbenchError(f"{path}: no datasets.{dataset} entry") from None
        elif isinstance(loaded, dict) and "protocol" in loaded:
            loaded = loaded["protocol"]  # a folds.json
        if not isinstance(loaded, dict):
            raise FerbenchError(f"{path}: expected a protocol mapping")
        return loaded
    if text.startswith("{"):
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise FerbenchError(f"--protocol: not a valid mapping ({err})") from None
        if not isinstance(loaded, dict):
            raise FerbenchError(f"--protocol: expected a mapping, got {text!r}")
        return loaded
    if "=" in text:
        out: dict[str, Any] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise FerbenchError(f"--protocol: expected key=value pairs, got {part!r}")
            out[key.strip()] = yaml.safe_load(value.strip())
        return out
    if text in KINDS:
        return {"kind": text}
    raise FerbenchError(
        f"--protocol: {text!r} is neither a file, a mapping, key=value pairs nor a kind ({', '.join(KINDS)})"
    )


# -- fold file --------------------------------------------------------------------------------
def read_fold_file(path: str | Path) -> dict[str, int]:
    """CSV with columns ``subject,fold`` -> {subject: fold}; one clear line on any defect."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except FileNotFoundError:
        raise FerbenchError(f"{path}: fold file does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{path}: fold file is not a readable CSV ({err})") from None
    frame.columns = [str(c).strip().lower().lstrip("#") for c in frame.columns]
    if not {"subject", "fold"} <= set(frame.columns):
        raise FerbenchError(f"{path}: fold file needs columns subject,fold (found {', '.join(frame.columns)})")
    mapping: dict[str, int] = {}
    for subject, fold in zip(frame["subject"], frame["fold"]):
        if subject is None or pd.isna(subject) or not str(subject).strip():
            raise FerbenchError(f"{path}: fold file has a row without a subject")
        subject = str(subject).strip()
        try:
            value = int(str(fold).strip())
        except ValueError:
            raise FerbenchError(f"{path}: subject {subject}: fold {fold!r} is not an integer") from None
        if subject in mapping and mapping[subject] != value:
            raise FerbenchError(f"{path}: subject {subject} listed twice with different folds")
        mapping[subject] = value
    return mapping


# -- assignment -------------------------------------------------------------------------------
def _has_task_label(table: pd.DataFrame, task: str) -> pd.Series:
    if task == "va":
        return pd.Series(np.isfinite(table["valence"].to_numpy(float))
                         & np.isfinite(table["arousal"].to_numpy(float)), index=table.index)
    return table["emotion"].notna()


def _select_targets(table: pd.DataFrame, protocol: Mapping[str, Any]) -> pd.Series:
    """Per row: the protocol's class name, or None when the row is not a supervised sample."""
    names = set(protocol["class_names"])
    target = pd.Series([None] * len(table), index=table.index, dtype=object)
    emotion = table["emotion"]
    in_set = emotion.isin(names)
    if protocol["selection"] == "all":
        target[in_set] = emotion[in_set]
        return target
    stills = in_set & table["sequence"].isna()
    target[stills] = emotion[stills]
    seq_rows = table[in_set & table["sequence"].notna()]
    if seq_rows.empty:
        return target
    seq_rows = seq_rows.assign(_f=seq_rows["frame"].astype("float64")).sort_values(
        ["sequence", "_f", "sample_id"], na_position="first", kind="stable")
    mixed = seq_rows.groupby("sequence", sort=False)["emotion"].nunique()
    if (mixed > 1).any():
        raise FerbenchError(f"sequence {mixed[mixed > 1].index[0]!r} has more than one emotion")
    groups = seq_rows.groupby("sequence", sort=False)
    pos = groups.cumcount().to_numpy()
    size = groups["sequence"].transform("size").to_numpy()
    apex_pos = pd.Series(np.where(seq_rows["apex"].to_numpy(bool), pos, -1), index=seq_rows.index)
    apex_pos = apex_pos.groupby(seq_rows["sequence"], sort=False).transform("max").to_numpy()
    apex_pos = np.where(apex_pos < 0, size - 1, apex_pos)  # no apex marked: the last frame
    peak = (pos <= apex_pos) & (pos > apex_pos - PEAK_FRAMES)
    idx = seq_rows.index.to_numpy()
    target[idx[peak]] = seq_rows["emotion"].to_numpy()[peak]
    if "neutral" in names:
        first = (pos == 0) & ~peak
        target[idx[first]] = "neutral"
    return target


def _labelled_subjects(table: pd.DataFrame, labelled: pd.Series, kind: str, dataset: str) -> list[str]:
    missing = labelled & table["subject"].isna()
    if missing.any():
        sample = table.loc[missing, "sample_id"].iloc[0]
        raise FerbenchError(
            f"{dataset}: protocol {kind} needs a subject for every labelled sample; {sample} has none"
        )
    return sorted({str(s) for s in table.loc[labelled, "subject"]})


def _rank_mod(subjects: list[str], k: int) -> dict[str, int]:
    return {subject: rank % k for rank, subject in enumerate(subjects)}


def _balanced_groups(subjects: list[str], sizes: Mapping[str, int], k: int) -> dict[str, int]:
    load = [0] * k
    out: dict[str, int] = {}
    for subject in sorted(subjects, key=lambda s: (-sizes[s], s)):
        fold = min(range(k), key=lambda f: (load[f], f))
        out[subject] = fold
        load[fold] += sizes[subject]
    return out


def assign_folds(
    table: pd.DataFrame,
    dataset: str,
    protocol: Mapping[str, Any] | None = None,
    fold_file: str | Path | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sample table -> (folds table with FOLD_COLUMNS, one row per input row in order; meta).

    ``table`` may carry ``cache_row`` (a cached samples.parquet); otherwise rows are numbered.
    ``split`` holds each row's protocol role (AffectNet's val rows become "test").
    ``meta`` is what folds.json holds and what :func:`fold_indices` needs.
    """
    proto = resolve_protocol(dataset, protocol)
    table = table.reset_index(drop=True)
    if table.empty:
        raise FerbenchError(f"{dataset}: the sample table is empty")
    kind, task, k = proto["kind"], proto["task"], proto["folds"]
    labelled = _has_task_label(table, task)

    out = pd.DataFrame({
        "sample_id": table["sample_id"].astype(object),
        "cache_row": (table["cache_row"] if "cache_row" in table else pd.Series(np.arange(len(table))))
        .astype("int64"),
    })
    for col in ("subject", "sequence", "frame", "emotion", "valence", "arousal", "split", "apex"):
        out[col] = table[col]
    out["frame"] = out["frame"].astype("Int64")
    out["apex"] = out["apex"].astype(bool)

    if task == "va":
        target = pd.Series([None] * len(table), dtype=object)
        sample = np.array(labelled, dtype=bool)
        label = np.full(len(table), -1, dtype=np.int64)
    else:
        target = _select_targets(table, proto)
        sample = np.array(target.notna(), dtype=bool)
        index = {name: i for i, name in enumerate(proto["class_names"])}
        label = np.array([index[t] if t is not None else -1 for t in target], dtype=np.int64)

    fold = np.full(len(table), -1, dtype=np.int64)
    split = table["split"].astype(object)
    if kind == "official":
        if fold_file:
            raise FerbenchError(f"{fold_file}: a fold file does not apply to the official splits of {dataset}")
        present = set(split[sample].dropna())
        if "test" not in present and "val" in present:
            split = split.replace({"val": "test"})
            proto["test_split"] = "val"
        else:
            proto["test_split"] = "test"
        sample = sample & split.isin(["train", "val", "test"]).to_numpy(bool)
    else:
        subjects = _labelled_subjects(table, labelled, kind, dataset)
        if len(subjects) < k:
            raise FerbenchError(
                f"{dataset}: {len(subjects)} labelled subjects cannot fill {k} folds ({kind})"
            )
        if fold_file:
            given = read_fold_file(fold_file)
            known = {str(s) for s in table["subject"].dropna()}
            for subject in sorted(given):
                if subject not in known:
                    raise FerbenchError(f"{fold_file}: subject {subject} is not in the {dataset} data")
            for subject in subjects:
                if subject not in given:
                    raise FerbenchError(f"{fold_file}: subject {subject} is missing from the fold file")
            for subject, value in sorted(given.items()):
                if not 0 <= value < k:
                    raise FerbenchError(
                        f"{fold_file}: subject {subject}: fold {value} out of range 0..{k - 1}"
                    )
            mapping = given
        elif kind == "kfold":
            mapping = _rank_mod(subjects, k)
        else:
            counts = table.loc[sample, "subject"].astype(str).value_counts()
            mapping = _balanced_groups(subjects, {s: int(counts.get(s, 0)) for s in subjects}, k)
        subj = table["subject"]
        fold = np.array([mapping.get(str(s), -1) if s is not None and not pd.isna(s) else -1 for s in subj],
                        dtype=np.int64)
        proto["fold_rule"] = "file" if fold_file else ("sorted-id rank mod k" if kind == "kfold" else "balanced groups")

    out["split"] = split.where(split.notna(), None)
    out["target"] = pd.Series(target.where(target.notna(), None).tolist(), dtype=object)
    out["label"] = label
    out["fold"] = fold
    out["protocol_sample"] = sample

    meta = {
        "dataset": dataset,
        "kind": kind,
        "n_folds": k if kind != "official" else 1,
        "classes": list(proto["class_names"]),
        "task": task,
        "protocol": proto,
    }
    meta["counts"] = {
        str(f): {name: int(len(idx)) for name, idx in _indices(out, meta, f).items()}
        for f in range(meta["n_folds"])
    }
    return out[list(FOLD_COLUMNS)], meta


# -- what the engine calls --------------------------------------------------------------------
def _check_fold(meta: Mapping[str, Any], fold: int) -> int:
    n = int(meta["n_folds"])
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < n:
        valid = "0" if n == 1 else f"0..{n - 1}"
        raise FerbenchError(f"{meta['dataset']}: fold {fold!r} out of range ({meta['kind']}: {valid})")
    return int(fold)


def _indices(folds_df: pd.DataFrame, meta: Mapping[str, Any], fold: int) -> dict[str, np.ndarray]:
    sample = folds_df["protocol_sample"].to_numpy(bool)
    if meta["kind"] == "official":
        split = folds_df["split"]
        masks = {name: sample & (split == name).to_numpy(bool) for name in ("train", "val", "test")}
    else:
        f = folds_df["fold"].to_numpy(np.int64)
        masks = {"train": sample & (f != fold) & (f >= 0), "val": np.zeros(len(folds_df), bool),
                 "test": sample & (f == fold)}
    return {name: np.flatnonzero(mask).astype(np.int64) for name, mask in masks.items()}


def fold_indices(folds_df: pd.DataFrame, meta: Mapping[str, Any], fold: int) -> dict[str, np.ndarray]:
    """Row positions into ``folds_df`` of the protocol samples: {"train", "val", "test"}.

    kfold/group_kfold: test = fold ``fold``, train = every other fold, val empty.
    official: ``fold`` must be 0; train/val/test from ``split``.
    """
    fold = _check_fold(meta, fold)
    out = _indices(folds_df, meta, fold)
    for name in ("train", "test"):
        if not len(out[name]):
            raise FerbenchError(f"{meta['dataset']}: fold {fold} has an empty {name} set ({meta['kind']})")
    return out


def training_subject_mask(folds_df: pd.DataFrame, meta: Mapping[str, Any], fold: int) -> np.ndarray:
    """Bool mask over ALL rows (any frame, labelled or not) a fold may train on.

    kfold/group_kfold: every row whose subject is not in test fold ``fold`` (subjects without
    labels, fold -1, are never tested and so always allowed). official: the train split.
    """
    fold = _check_fold(meta, fold)
    if meta["kind"] == "official":
        return (folds_df["split"] == "train").to_numpy(bool)
    return folds_df["fold"].to_numpy(np.int64) != fold


def load_folds(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read folds.parquet and the folds.json beside it."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    try:
        folds_df = pd.read_parquet(path)
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as err:
        raise FerbenchError(f"{err.filename}: folds file does not exist (run `ferbench folds`)") from None
    return folds_df, meta


# -- the `folds` verb -------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    cache = Path(args.cache)
    samples_path = cache / "samples.parquet"
    if not samples_path.is_file():
        raise FerbenchError(f"{samples_path}: no cached sample table (run `ferbench prepare` first)")
    report = provenance.read_report(cache)  # no marker: prepare did not finish
    table = pd.read_parquet(samples_path)
    samples_fp = provenance.samples_fingerprint(table)
    if report.get("samples_fingerprint") not in (None, samples_fp):
        raise FerbenchError(f"{samples_path} does not match {cache / provenance.MARKER} (another "
                            f"cache's sample table); rerun `ferbench prepare`")
    held = set(table["dataset"].dropna()) if "dataset" in table else set()
    if held and held != {args.dataset}:
        raise FerbenchError(f"{samples_path}: cache holds {', '.join(sorted(held))}, not {args.dataset}")
    protocol = parse_protocol_arg(getattr(args, "protocol", None), args.dataset)
    folds_df, meta = assign_folds(table, args.dataset, protocol, getattr(args, "fold_file", None))
    out = Path(args.out)
    # what a killed folds run left of these two files (the cache folder's others are prepare's)
    io.remove_temporaries(out.parent, lambda name: name in (out.name, out.with_suffix(".json").name))
    meta["source"] = {"samples": str(samples_path), "samples_fingerprint": samples_fp,
                      "cache_fingerprint": report.get("fingerprint")}
    meta["fingerprint"] = provenance.folds_fingerprint(folds_df)
    io.write_parquet(out, folds_df)
    io.write_json(out.with_suffix(".json"), meta)
    n = int(folds_df["protocol_sample"].sum())
    print(f"{args.dataset}: {meta['kind']} x{meta['n_folds']}, {n} protocol samples of {len(folds_df)} rows -> {out}")
    return 0
