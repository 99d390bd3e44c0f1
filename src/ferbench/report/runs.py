"""Runs: every metrics.json under a results folder -> validated, labelled Run records, and the
score frames that the tables and figures are drawn from.

Runs are found as ``**/metrics.json`` under the runs folder (the engine writes
``{dataset}/{method}/fold{k}/seed{s}/metrics.json``); their content, not their path, names
dataset, method, fold and seed. Every file is validated: malformed JSON, a missing key or a
wrongly typed value is a FerbenchError naming the file (and key); no run at all is an error.

Decisions
* Mean ± std is over all runs (folds x seeds) of a method: sample std (ddof=1); a single run has
  no std. Classification also gets ``pooled_accuracy``: all runs' test predictions concatenated
  (correct / test samples, from the confusion matrices), which weights each fold by its size;
  papers report either. One number, so no std or CI; with every seed on the same folds it is
  the mean over seeds of each seed's pooled accuracy. A metric that is NaN in some runs (undefined, e.g. PCC of constant predictions) is
  averaged over the others and flagged; ``n`` counts the finite values.
* Runs whose ``budget`` differs from the config's ``budget`` are left out (they belong to another
  configuration, e.g. demo runs left behind after switching to ``paper``); the count is printed
  and written under each table. If nothing is left, that is an error.
* A dataset whose classification runs have different class counts (CK+ 7 and 8) is split into
  ``{dataset}_{k}cls`` groups; a method run on several backbones becomes ``method@backbone``.
* Legacy metrics (``legacy_metrics``) of VA runs appear as ``legacy_<metric>`` (classification
  has no legacy variant: the engine copies the textbook numbers, so they are not repeated). VA
  runs also get the derived ``mean_ccc`` = (valence_ccc + arousal_ccc) / 2 (Aff-Wild2's measure).
* A method's own test-set measures: numeric ``extra`` entries whose key ends in ``_test``
  (GCNet's ``gen_ref_mse_test`` and ``identity_ref_mse_test``) are reported like metrics, after
  the task's own; other ``extra`` entries (counts, settings) are not.
* Provenance: metrics.json's ``provenance.data.origin``: "synthetic", or "real: <dataset>
  (<first 12 hex digits of the cache fingerprint>)"; runs without it fall back on
  ``extra.data`` ("synthetic" | "real"), then on the config when the dataset root lies inside
  ``synthetic.out`` ("synthetic (per config)"), else "unspecified".
* Settings: the run folder's settings.json (the engine's resolved settings) gives each run's
  input size and epochs; a run without one (written before it existed) has neither (None).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferbench.errors import FerbenchError
from ferbench.train.metrics import VA_KEYS
from ferbench.report.stats import confidence_interval

TASKS = ("classification", "va")
REQUIRED_KEYS = ("dataset", "method", "fold", "seed", "task", "metrics", "n_train", "n_test",
                 "steps", "wall_s", "budget", "backbone")
TASK_KEYS = {"classification": ("classes", "confusion"), "va": ()}
TASK_METRICS = {"classification": ("accuracy", "macro_f1"), "va": VA_KEYS}
#: ``extra`` entries with this key suffix are test-set measures and reported as metrics
EXTRA_SUFFIX = "_test"
#: the baseline methods (run names): listed first; the others are "the methods"
BASELINES = ("supervised", "supervised_va", "cnn_baseline")
#: classification: accuracy of all runs' test predictions concatenated (summary metric)
POOLED = "pooled_accuracy"
SUMMARY_KEYS = ["group", "dataset", "task", "num_classes", "variant", "method", "backbone", "metric"]


@dataclass
class Run:
    path: Path
    dataset: str
    method: str
    fold: int
    seed: int
    task: str
    backbone: str
    budget: str
    data: str
    metrics: dict[str, float]
    legacy: dict[str, float] | None
    classes: tuple[str, ...] | None = None
    confusion: np.ndarray | None = None
    n_train: int = 0
    n_test: int = 0
    steps: int = 0
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] | None = None   # kNN probes of a pretrained run (ferbench.train.probe)
    image_size: int | None = None   # from settings.json
    epochs: int | None = None       # from settings.json
    protocol: str | None = None     # from settings.json: protocol_label of its kind and folds
    provenance: dict[str, Any] = field(default_factory=dict)
    group: str = ""      # table key: dataset, or dataset_{k}cls when class counts differ
    variant: str = ""    # row key: method, or method@backbone when backbones differ

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)


# ------------------------------------------------------------------------------------ loading
def load_run(path: Path) -> Run:
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise FerbenchError(f"{path}: not valid JSON ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{path}: cannot read ({err})") from None
    if not isinstance(obj, dict):
        raise FerbenchError(f"{path}: expected a JSON object at the top level")
    for key in REQUIRED_KEYS:
        if key not in obj:
            raise FerbenchError(f"{path}: missing key {key!r}")
    task = obj["task"]
    if task not in TASKS:
        raise FerbenchError(f"{path}: task: expected one of {TASKS}, got {task!r}")
    for key in TASK_KEYS[task]:
        if key not in obj:
            raise FerbenchError(f"{path}: missing key {key!r} (required for task {task!r})")
    for key in ("dataset", "method", "budget", "backbone"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise FerbenchError(f"{path}: {key}: expected a non-empty string, got {obj[key]!r}")
    for key in ("fold", "seed", "n_train", "n_test", "steps"):
        if not _is_int(obj[key]):
            raise FerbenchError(f"{path}: {key}: expected an integer, got {obj[key]!r}")
    if not _is_number(obj["wall_s"]):
        raise FerbenchError(f"{path}: wall_s: expected a number, got {obj['wall_s']!r}")
    metrics = _metric_dict(path, "metrics", obj["metrics"], TASK_METRICS[task])
    legacy = None
    if obj.get("legacy_metrics") is not None:
        legacy = _metric_dict(path, "legacy_metrics", obj["legacy_metrics"], TASK_METRICS[task])
    extra = obj.get("extra") or {}
    if not isinstance(extra, dict):
        raise FerbenchError(f"{path}: extra: expected an object, got {type(extra).__name__}")
    for key, value in extra.items():
        if key.endswith(EXTRA_SUFFIX) and not _is_number(value):
            raise FerbenchError(f"{path}: extra.{key}: expected a number, got {value!r}")
    probe = obj.get("probe")
    if probe is not None and not (isinstance(probe, dict) and isinstance(probe.get("pretrained"), dict)
                                  and isinstance(probe.get("random"), dict)):
        raise FerbenchError(f"{path}: probe: expected an object with 'pretrained' and 'random' scores")
    provenance = obj.get("provenance") or {}
    if not isinstance(provenance, dict) or not isinstance(provenance.get("data", {}), dict):
        raise FerbenchError(f"{path}: provenance: expected an object with a 'data' object")
    data = provenance_label(obj["dataset"], provenance.get("data") or {})
    if data is None:
        data = extra.get("data", obj.get("data"))
        data = str(data) if data else "unspecified"
    image_size, epochs, protocol = _settings_sizes(Path(path).with_name("settings.json"))
    classes = confusion = None
    if task == "classification":
        classes = obj["classes"]
        if (not isinstance(classes, list) or len(classes) < 2
                or not all(isinstance(c, str) for c in classes)):
            raise FerbenchError(f"{path}: classes: expected a list of at least two names")
        classes = tuple(classes)
        try:
            confusion = np.asarray(obj["confusion"], dtype=float)
        except (TypeError, ValueError):
            confusion = None
        k = len(classes)
        if (confusion is None or confusion.shape != (k, k) or not np.all(np.isfinite(confusion))
                or np.any(confusion < 0) or np.any(confusion != np.round(confusion))):
            raise FerbenchError(f"{path}: confusion: expected a {k}x{k} matrix of counts "
                                f"(one row and column per class)")
        confusion = confusion.astype(np.int64)
    return Run(path=Path(path), dataset=obj["dataset"], method=obj["method"],
               fold=int(obj["fold"]), seed=int(obj["seed"]), task=task,
               backbone=obj["backbone"], budget=obj["budget"], data=data, metrics=metrics,
               legacy=legacy, classes=classes, confusion=confusion, n_train=int(obj["n_train"]),
               n_test=int(obj["n_test"]), steps=int(obj["steps"]), wall_s=float(obj["wall_s"]),
               extra=extra, probe=probe, image_size=image_size, epochs=epochs, protocol=protocol,
               provenance=provenance)


def provenance_label(dataset: str, data: dict[str, Any]) -> str | None:
    """"synthetic", "real: <dataset> (<fingerprint>)", or None when the run does not say."""
    origin = data.get("origin")
    if origin == "synthetic":
        return "synthetic"
    if origin == "real":
        fingerprint = str(data.get("cache_fingerprint") or "")[:12] or "no fingerprint"
        return f"real: {dataset} ({fingerprint})"
    return None


def protocol_label(kind: str, folds: Any = None) -> str:
    """"official split" or "<kind>, <k> folds": how tables name an evaluation protocol."""
    return "official split" if kind == "official" else f"{kind}, {folds} folds"


def _settings_sizes(path: Path) -> tuple[int | None, int | None, str | None]:
    """(input size, epochs, protocol label) from a run's settings.json; all None without one;
    the protocol None when the file does not record it."""
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None, None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise FerbenchError(f"{path}: not valid JSON ({err})") from None
    values = []
    for key in ("image_size", "epochs"):
        try:
            value = obj["train"][key]["value"]
        except (KeyError, TypeError):
            raise FerbenchError(f"{path}: missing key train.{key}.value") from None
        if not _is_int(value):
            raise FerbenchError(f"{path}: train.{key}.value: expected an integer, got {value!r}")
        values.append(int(value))
    protocol = obj.get("protocol") if isinstance(obj, dict) else None
    label = None
    if protocol is not None:
        try:
            label = protocol_label(str(protocol["kind"]["value"]),
                                   (protocol.get("folds") or {}).get("value"))
        except (KeyError, TypeError, AttributeError):
            raise FerbenchError(f"{path}: protocol: expected {{kind: {{value}}, folds: {{value}}}}") from None
    return values[0], values[1], label


def _metric_dict(path: Path, name: str, value: Any, required: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(value, dict):
        raise FerbenchError(f"{path}: {name}: expected an object, got {type(value).__name__}")
    for key in required:
        if key not in value:
            raise FerbenchError(f"{path}: missing key {name}.{key}")
    out: dict[str, float] = {}
    for key, v in value.items():
        if v is None:                      # a strict JSON writer turns NaN into null
            out[key] = math.nan
        elif _is_number(v):
            out[key] = float(v)
        else:
            raise FerbenchError(f"{path}: {name}.{key}: expected a number, got {v!r}")
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def collect_runs(runs_dir: str | Path, budget: str | None = None) -> tuple[list[Run], list[str]]:
    """Load and label every run; returns (runs, notes about what was left out)."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise FerbenchError(f"{root}: runs folder does not exist")
    paths = sorted(root.rglob("metrics.json"))
    if not paths:
        raise FerbenchError(f"{root}: no runs found (no metrics.json under it); "
                            f"train first, or point --runs at results/runs")
    runs = [load_run(p) for p in paths]
    notes: list[str] = []
    if budget is not None:
        other = [r for r in runs if r.budget != budget]
        if other:
            found = sorted({r.budget for r in other})
            notes.append(f"{len(other)} run(s) of budget {', '.join(found)} left out "
                         f"(config budget is {budget!r})")
        runs = [r for r in runs if r.budget == budget]
        if not runs:
            raise FerbenchError(f"{root}: none of the {len(paths)} runs has the config's budget "
                                f"{budget!r} (found: {', '.join(found)})")
    seen: dict[tuple, Path] = {}
    for r in runs:
        key = (r.dataset, r.task, r.num_classes, r.method, r.backbone, r.fold, r.seed)
        if key in seen:
            raise FerbenchError(f"{r.path}: same dataset/method/backbone/fold/seed as "
                                f"{seen[key]}")
        seen[key] = r.path
    _label(runs)
    return runs, notes


def _label(runs: list[Run]) -> None:
    class_counts: dict[str, set[int]] = {}
    backbones: dict[tuple[str, str], set[str]] = {}
    for r in runs:
        if r.task == "classification":
            class_counts.setdefault(r.dataset, set()).add(r.num_classes)
        backbones.setdefault((r.dataset, r.method), set()).add(r.backbone)
    for r in runs:
        split = r.task == "classification" and len(class_counts[r.dataset]) > 1
        r.group = f"{r.dataset}_{r.num_classes}cls" if split else r.dataset
        several = len(backbones[(r.dataset, r.method)]) > 1
        r.variant = f"{r.method}@{r.backbone}" if several else r.method


def fill_data_from_config(runs: list[Run], config: dict[str, Any]) -> None:
    """Runs that do not record their data: a dataset root inside ``synthetic.out`` marks them
    synthetic, "(per config)" since the config may have changed since the run. Any other root
    stays "unspecified": a root elsewhere does not prove the data is real."""
    synthetic_out = (config.get("synthetic") or {}).get("out")
    datasets = config.get("datasets") or {}
    for r in runs:
        root = (datasets.get(r.dataset) or {}).get("root") if isinstance(datasets, dict) else None
        if r.data != "unspecified" or not root or not synthetic_out:
            continue
        if Path(root).resolve().is_relative_to(Path(synthetic_out).resolve()):
            r.data = "synthetic (per config)"


# ------------------------------------------------------------------------------------ frames
def scores_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run and metric (VA legacy ones prefixed), plus derived mean_ccc for VA runs."""
    rows = []
    for i, r in enumerate(runs):
        values = dict(r.metrics)
        values.update({k: float(v) for k, v in r.extra.items()
                       if k.endswith(EXTRA_SUFFIX) and k not in values})
        if r.legacy and r.task == "va":
            values.update({f"legacy_{k}": v for k, v in r.legacy.items()})
        if r.task == "va":
            for prefix, src in (("", r.metrics), ("legacy_", r.legacy or {})):
                if "valence_ccc" in src and "arousal_ccc" in src:
                    values[f"{prefix}mean_ccc"] = (src["valence_ccc"] + src["arousal_ccc"]) / 2
        for metric, value in values.items():
            rows.append({
                "run": i, "group": r.group, "dataset": r.dataset, "task": r.task,
                "num_classes": r.num_classes, "method": r.method, "backbone": r.backbone,
                "variant": r.variant, "fold": r.fold, "seed": r.seed, "data": r.data,
                "image_size": r.image_size, "epochs": r.epochs, "protocol": r.protocol,
                "budget": r.budget, "metric": metric, "value": value,
            })
    frame = pd.DataFrame(rows)
    frame["num_classes"] = frame["num_classes"].astype("Int64")
    for col in ("image_size", "epochs"):
        frame[col] = frame[col].astype("Int64")
    return frame


def run_sizes(runs: list[Run]) -> pd.DataFrame:
    """n_train and n_test per run, indexed like scores_frame's ``run`` column."""
    return pd.DataFrame({"n_train": [r.n_train for r in runs], "n_test": [r.n_test for r in runs]})


def summarise(scores: pd.DataFrame, runs: list[Run] | None = None) -> pd.DataFrame:
    """mean, sample std (ddof=1), n finite values, n runs and the 95% CI (stats.py) per
    group/task/variant/metric; with ``runs``, also each classification variant's
    ``pooled_accuracy`` (:func:`pooled_accuracy`)."""
    keys = SUMMARY_KEYS
    g = scores.groupby(keys, sort=True, dropna=False)["value"]
    out = g.agg(mean="mean", std=lambda v: v.std(ddof=1), n="count", n_runs="size",
                ci_low=lambda v: confidence_interval(v)[0],
                ci_high=lambda v: confidence_interval(v)[1]).reset_index()
    data = scores.groupby(keys, dropna=False)["data"].agg(lambda v: data_label(set(v)))
    out = out.merge(data.reset_index(), on=keys)
    pooled = pooled_accuracy(runs or [])
    if pooled.empty:
        return out
    out = pd.concat([out, pooled[out.columns]], ignore_index=True)
    return out.sort_values(keys, kind="stable", ignore_index=True)


def pooled_accuracy(runs: list[Run]) -> pd.DataFrame:
    """Per classification group and variant, in summarise's columns (metric ``pooled_accuracy``):
    the accuracy of every run's test predictions concatenated, i.e. the summed confusion
    matrices' trace over their sum (the mean over runs weights each fold equally, this each
    test sample). ``mean`` holds it; std and CI are NaN (one number); ``n`` = ``n_runs`` = the
    runs pooled (``n`` 0 when they have no test samples)."""
    pooled: dict[tuple, list] = {}
    for r in runs:
        if r.task != "classification" or r.confusion is None:
            continue
        key = (r.group, r.dataset, r.task, r.num_classes, r.variant, r.method, r.backbone)
        entry = pooled.setdefault(key, [0, 0, 0, set()])
        entry[0] += int(np.trace(r.confusion))
        entry[1] += int(r.confusion.sum())
        entry[2] += 1
        entry[3].add(r.data)
    rows = [{**dict(zip(SUMMARY_KEYS, (*key, POOLED))),
             "mean": correct / total if total else math.nan, "std": math.nan,
             "n": n_runs if total else 0, "n_runs": n_runs, "ci_low": math.nan,
             "ci_high": math.nan, "data": data_label(data)}
            for key, (correct, total, n_runs, data) in sorted(pooled.items(), key=lambda kv: str(kv[0]))]
    frame = pd.DataFrame(rows, columns=[*SUMMARY_KEYS, "mean", "std", "n", "n_runs", "ci_low",
                                        "ci_high", "data"])
    frame["num_classes"] = frame["num_classes"].astype("Int64")
    return frame


def sizes_text(values: Any, unit: str = "") -> str:
    """"48 px" / "32, 48 px" for the recorded values; "—" when no run recorded one."""
    known = sorted({int(v) for v in values if v is not None and not pd.isna(v)})
    if not known:
        return "—"
    return ", ".join(map(str, known)) + (f" {unit}" if unit else "")


def data_label(values: set[str]) -> str:
    values = set(values)
    return next(iter(values)) if len(values) == 1 else "mixed: " + ", ".join(sorted(values))


def metric_order(task: str, metrics: set[str]) -> list[str]:
    base = list(TASK_METRICS[task]) + (["mean_ccc"] if task == "va" else [])
    if task == "classification":
        base.insert(base.index("accuracy") + 1, POOLED)   # beside the mean over runs
    first = [m for m in base if m in metrics]
    others = sorted(m for m in metrics if m not in base and not m.startswith("legacy_"))
    legacy = [f"legacy_{m}" for m in first + others if f"legacy_{m}" in metrics]
    rest = sorted(m for m in metrics if m not in set(first + others + legacy))
    return first + others + legacy + rest


def variant_order(variants: set[str]) -> list[str]:
    # Baselines first, then alphabetical.
    return sorted(variants, key=lambda v: (not v.startswith(BASELINES), v))
