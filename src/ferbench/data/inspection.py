"""`ferbench inspect`: what a dataset root holds, counted under the dataset's default protocol.

Keys (text, or exactly these in the one --json object):
  images     rows of the sample table (frames/images found)
  sequences  distinct sequences (0 for still-image datasets)
  subjects   distinct subjects (0 where the dataset has none)
  classes    class name -> count, in class-index order: labelled sequences for sequence
             datasets under peak selection, protocol samples otherwise ({} for va tasks)
  folds      kfold/group_kfold: per test fold, in fold order, labelled sequences (rows with a
             sequence) or samples (stills) carrying protocol samples
  splits     official protocols instead of folds: split -> protocol samples
  skipped    reason -> count (the reader's, plus "unreadable image" with --verify)
  split_statistics  official splits only: split -> image count and median size, channels,
             contrast and sharpness over up to split_check.SPLIT_SAMPLE images per split
             (see ferbench.data.split_check)
  split_warnings    the statistics on which the splits differ far beyond sampling; with
             --strict the first one is an error
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from tqdm import tqdm

from ferbench.datasets import get_reader
from ferbench.datasets.base import Reader
from ferbench.errors import FerbenchError
from ferbench.data.prepare import UNREADABLE
from ferbench.data.protocols import assign_folds
from ferbench.data.split_check import check_splits, format_summary, report_problems, summary_dict


def _units(folds_df: pd.DataFrame) -> pd.Series:
    """Counting unit per row: its sequence, or the sample itself for stills."""
    return folds_df["sequence"].where(folds_df["sequence"].notna(), "sample:" + folds_df["sample_id"].astype(str))


def summarize(
    table: pd.DataFrame,
    dataset: str,
    skipped: Mapping[str, int] | None = None,
    protocol: Mapping[str, Any] | None = None,
    fold_file: str | Path | None = None,
) -> dict[str, Any]:
    """The inspect summary of a sample table (see module doc for the keys)."""
    folds_df, meta = assign_folds(table, dataset, protocol, fold_file)
    proto = meta["protocol"]
    chosen = folds_df[folds_df["protocol_sample"]]
    units = _units(chosen)
    summary: dict[str, Any] = {
        "images": int(len(table)),
        "sequences": int(table["sequence"].dropna().nunique()),
        "subjects": int(table["subject"].dropna().nunique()),
    }
    classes: dict[str, int] = {}
    if meta["task"] == "classification":
        per_sequence = proto["selection"] == "peak"
        for name in meta["classes"]:
            rows = chosen["target"] == name
            if per_sequence:
                classes[name] = int(units[rows & chosen["sequence"].notna()].nunique()
                                    + (rows & chosen["sequence"].isna()).sum())
            else:
                classes[name] = int(rows.sum())
    summary["classes"] = classes
    if meta["kind"] == "official":
        summary["splits"] = {s: int((chosen["split"] == s).sum()) for s in ("train", "val", "test")}
    else:
        summary["folds"] = [int(units[chosen["fold"] == f].nunique()) for f in range(meta["n_folds"])]
    summary["skipped"] = {k: int(v) for k, v in sorted((skipped or {}).items())}
    return summary


def verify_images(reader: Reader, root: Path, table: pd.DataFrame, strict: bool, progress: bool = True,
                  reasons: collections.Counter | None = None) -> pd.Series:
    """Decode every image; returns a bool mask of readable rows (strict: first failure raises).
    ``reasons`` counts the failures: an unsupported pixel format under its mode, else unreadable."""
    ok = []
    images = reader.iter_images(root, table)
    for image in tqdm(images, total=len(table), desc="verify", unit="img", file=sys.stderr,
                      disable=None if progress else True, mininterval=1.0):
        if isinstance(image, FerbenchError):
            if strict:
                raise FerbenchError(f"{image} (--strict)")
            if reasons is not None:
                reasons[getattr(image, "reason", UNREADABLE)] += 1
            ok.append(False)
        else:
            ok.append(True)
    if len(ok) != len(table):
        raise FerbenchError(f"reader yielded {len(ok)} images for {len(table)} samples")
    return pd.Series(ok, index=table.index, dtype=bool)


def format_text(dataset: str, root: str, variant: str, summary: Mapping[str, Any]) -> str:
    lines = [f"{dataset} at {root}" + (f" ({variant})" if variant else "")]
    for key in ("images", "sequences", "subjects"):
        lines.append(f"  {key:<10} {summary[key]}")
    if summary["classes"]:
        width = max(len(k) for k in summary["classes"])
        lines.append("  classes")
        lines.extend(f"    {name:<{width}} {n}" for name, n in summary["classes"].items())
    else:
        lines.append("  classes    (none: regression task)")
    if "folds" in summary:
        folds = summary["folds"]
        lines.append(f"  folds      {len(folds)}: " + " ".join(str(n) for n in folds) + f"  (total {sum(folds)})")
    else:
        lines.append("  splits     " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()))
    if summary.get("split_statistics"):
        lines.append("  split statistics (medians)")
        lines.extend(format_summary(summary["split_statistics"]))
    if summary["skipped"]:
        lines.append("  skipped")
        lines.extend(f"    {n:>6}  {reason}" for reason, n in summary["skipped"].items())
    else:
        lines.append("  skipped    none")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    reader = get_reader(args.dataset)
    root = Path(args.root)
    result = reader.read(root, strict=args.strict)
    table = result.table.reset_index(drop=True)
    skipped = collections.Counter(result.skipped)
    if getattr(args, "verify", False):
        reasons: collections.Counter = collections.Counter()
        ok = verify_images(reader, root, table, args.strict, reasons=reasons)
        skipped.update(reasons)
        table = table[ok].reset_index(drop=True)
    if table.empty:
        raise FerbenchError(f"{root}: the {args.dataset} reader found no samples")
    summary = summarize(table, args.dataset, skipped, None, getattr(args, "fold_file", None))
    stats, problems = check_splits(reader, root, table)
    if stats is not None:
        summary["split_statistics"] = summary_dict(stats)
        summary["split_warnings"] = problems
    report_problems(problems, f"{root}: the {args.dataset} splits", args.strict)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_text(args.dataset, str(root), result.variant, summary))
    return 0
