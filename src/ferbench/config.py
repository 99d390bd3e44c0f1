"""params.yaml: loading, schema validation, and the settings one training job sees."""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path
from typing import Any

import yaml

from ferbench.errors import FerbenchError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "params.schema.yaml"

#: Budget keys a method may override (the training schedule); everything else in a
#: method's block is the method's own hyperparameters.
TRAIN_KEYS = (
    "backbone", "image_size", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
    "checkpoint_every", "eval_batch_size",
    # optional recipe keys (absent: off)
    "backbone_weights", "lr_schedule", "label_smoothing", "class_weighting", "augmentation", "tta",
)
#: Keys of a method block besides the training keys and the class's hyperparameters.
METHOD_BLOCK_KEYS = ("class", "pretrain", "budgets", "task")


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error is one line ``file:line:column: problem``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FerbenchError(f"{path}: config file does not exist") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = ""
        if err.context and err.context_mark and err.context_mark is not mark:
            context = (f" ({err.context} started at line {err.context_mark.line + 1}, "
                       f"column {err.context_mark.column + 1})")
        raise FerbenchError(f"{where}: not valid YAML: {err.problem or err.context}{context}") from None
    except yaml.YAMLError as err:
        raise FerbenchError(f"{path}: not valid YAML ({err})") from None


def load_config(path: str | Path, validate: bool = True) -> dict[str, Any]:
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise FerbenchError(f"{path}: expected a mapping at the top level")
    if validate:
        validate_config(config, where=str(path))
    return config


def check_config(config: dict[str, Any], where: str = "params.yaml") -> dict[str, type]:
    """Every check a config gets before any job runs: ``ferbench validate-config`` and the
    workflow's DAG build both call this, so they accept and reject the same configs.

    The schema, then what it cannot say (names that must exist elsewhere in the config, finite
    numbers), then what needs the registries (imports torch): every method block's class and
    keys, every backbone and optimiser name. Returns the registered class of every run name
    under ``methods:`` (a run may use another that is not in run.methods, e.g. MaskFN's encoder).
    """
    validate_config(config, where)
    classes = check_methods(config, where)
    check_run_tasks(config, classes, where)
    return classes


def validate_config(config: dict[str, Any], where: str = "params.yaml") -> None:
    """The torch-free part of check_config: the JSON schema, finite numbers, and the names the
    config refers to itself; one line naming the offending key."""
    import jsonschema

    from ferbench.placeholders import check_placeholders

    check_placeholders(_leaves(config), where)   # before the schema: its message says more
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise FerbenchError(f"{where}: {key}: {err.message}")
    for key, value in _leaves(config):
        # the schema's bounds let NaN through (every comparison with it is false), and infinity
        if isinstance(value, float) and not math.isfinite(value):
            raise FerbenchError(f"{where}: {key}: {value!r} is not a finite number")
    budget = config["budget"]
    if budget not in config["budgets"]:
        raise FerbenchError(f"{where}: budget: {budget!r} is not a key of budgets")
    for name in config["run"]["datasets"]:
        if name not in config["datasets"]:
            raise FerbenchError(f"{where}: run.datasets: {name!r} has no entry under datasets")
    for name in config["run"]["methods"]:
        if name not in config["methods"]:
            raise FerbenchError(f"{where}: run.methods: {name!r} has no entry under methods")


def _leaves(value: Any, key: str = "") -> Any:
    """(dotted key, value) of every scalar in a nested config (list items by index)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        yield key or "(top level)", value
        return
    for sub, item in items:
        yield from _leaves(item, f"{key}.{sub}" if key else str(sub))


def job_settings(config: dict[str, Any], dataset: str, method: str) -> dict[str, Any]:
    """Everything one training job needs. Its schedule, each layer over the one before: the
    budget; the dataset block's ``budgets.<budget>`` (a large dataset's shorter schedule); the
    method's block (its training keys); the method's ``budgets.<budget>``; that block's
    ``datasets.<dataset>`` (e.g. CAF's paper epochs on AffectNet). A ``pretrain:`` block in any
    layer after the budget overrides the pretraining stage only (:func:`stage_settings`).

    Returns {"train": {...schedule...}, "method": {...method's own keys...},
    "protocol": {...}, "dataset": name, "method_name": name, "metrics": {...}}.
    """
    try:
        budget = copy.deepcopy(config["budgets"][config["budget"]])
        method_block = copy.deepcopy(config["methods"][method])
        dataset_block = config["datasets"][dataset]
    except KeyError as err:
        raise FerbenchError(f"config: no entry for {err.args[0]!r}") from None
    method_block = method_block or {}
    per_dataset = copy.deepcopy((dataset_block.get("budgets") or {}).get(config["budget"]) or {})
    per_budget = (method_block.pop("budgets", None) or {}).get(config["budget"]) or {}
    per_budget_dataset = (per_budget.get("datasets") or {}).get(dataset) or {}
    method_block.pop("task", None)  # which folds table the job reads (job_task), not a hyperparameter
    # the method block's schedule keys leave it: what remains are the class's hyperparameters
    own = {k: method_block.pop(k) for k in (*TRAIN_KEYS, "pretrain") if k in method_block}
    train = {k: budget[k] for k in TRAIN_KEYS if k in budget}
    pretrain: dict[str, Any] = {}
    for layer in (per_dataset, own, per_budget, per_budget_dataset):
        train.update((k, layer[k]) for k in TRAIN_KEYS if k in layer)
        pretrain.update(layer.get("pretrain") or {})
    if pretrain:
        method_block["pretrain"] = pretrain
    return {
        "dataset": dataset,
        "method_name": method,
        "train": train,
        "method": method_block,
        "protocol": copy.deepcopy(dataset_block.get("protocol", {})),
        "metrics": copy.deepcopy(config.get("metrics", {})),
    }


def job_task(config: dict[str, Any], dataset: str, method: str, cls: type) -> str:
    """The task the jobs of run name ``method`` on ``dataset`` train for: the method block's
    ``task``, else the class's only task (CAF and AVCE: va), else the dataset protocol's. A
    dataset with both kinds of label (AffectNet) thus serves classification runs and
    valence/arousal runs side by side, each with its own folds table (:func:`folds_name`)."""
    from ferbench.protocols import resolve_protocol

    block = config["methods"][method] or {}
    if block.get("task"):
        return str(block["task"])
    if len(cls.tasks) == 1:
        return str(cls.tasks[0])
    return str(resolve_protocol(dataset, config["datasets"][dataset].get("protocol"))["task"])


def folds_name(config: dict[str, Any], dataset: str, task: str) -> str:
    """folds.parquet for the dataset protocol's own task, folds_<task>.parquet for the other."""
    from ferbench.protocols import resolve_protocol

    own = resolve_protocol(dataset, config["datasets"][dataset].get("protocol"))["task"]
    return "folds.parquet" if task == own else f"folds_{task}.parquet"


def dataset_labels(dataset: str) -> str:
    """The labels a dataset's reader provides: classification, va or both."""
    from ferbench.datasets import dataset_facts

    return str(getattr(dataset_facts(dataset), "task", "both"))  # no reader: not known here


def dataset_runs(config: dict[str, Any], dataset: str,
                 classes: dict[str, type]) -> tuple[list[str], list[str]]:
    """(run names that train on ``dataset``, run names left out because the dataset has no
    labels for their task). A dataset's own ``methods`` list is taken as given (check_run_tasks
    refuses one that names an impossible run); without one, run.methods apply where they can."""
    only = config["datasets"][dataset].get("methods")
    if only is not None:
        return [m for m in config["run"]["methods"] if m in only], []
    labels = dataset_labels(dataset)
    runs, skipped = [], []
    for method in config["run"]["methods"]:
        fits = labels in ("both", job_task(config, dataset, method, classes[method]))
        (runs if fits else skipped).append(method)
    return runs, skipped


def check_run_tasks(config: dict[str, Any], classes: dict[str, type], where: str = "params.yaml") -> None:
    """Every (dataset, run name) of the run trains for a task its class supports and the
    dataset has labels for: a mismatch is one line naming the key, before any job runs."""
    for dataset in config["run"]["datasets"]:
        labels = dataset_labels(dataset)
        for method in dataset_runs(config, dataset, classes)[0]:
            cls = classes[method]
            task = job_task(config, dataset, method, cls)
            if task not in cls.tasks:
                raise FerbenchError(f"{where}: methods.{method}.task: {task!r}, but method class "
                                    f"{cls.name!r} is for {' and '.join(cls.tasks)}")
            if labels not in (task, "both"):
                raise FerbenchError(f"{where}: datasets.{dataset}.methods: {method!r} trains for "
                                    f"the {task} task, and {dataset} has {labels} labels only")


def _schedules(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(dotted key, block) of every block that may hold training keys."""
    found = [(f"budgets.{name}", block) for name, block in config["budgets"].items()]

    def with_pretrain(key: str, block: dict[str, Any] | None) -> None:
        block = block or {}
        found.append((key, block))
        found.append((f"{key}.pretrain", block.get("pretrain") or {}))

    for name, block in (config.get("datasets") or {}).items():
        for budget, per_budget in ((block or {}).get("budgets") or {}).items():
            with_pretrain(f"datasets.{name}.budgets.{budget}", per_budget)
    for name, block in config["methods"].items():
        block = block or {}
        with_pretrain(f"methods.{name}", block)
        for budget, per_budget in (block.get("budgets") or {}).items():
            per_budget = per_budget or {}
            with_pretrain(f"methods.{name}.budgets.{budget}", per_budget)
            for dataset, per_dataset in (per_budget.get("datasets") or {}).items():
                with_pretrain(f"methods.{name}.budgets.{budget}.datasets.{dataset}", per_dataset)
    return found


def check_methods(config: dict[str, Any], where: str = "params.yaml") -> dict[str, type]:
    """The registry part of check_config (imports torch): every backbone and optimiser name of
    every budget and method block exists, and every method block (run or not) names a
    registered class and only keys that class, or the budget, knows.
    Returns {run name: class} for every block under ``methods:``."""
    from ferbench.methods import get_method, method_names
    from ferbench.methods.base import OPTIMIZERS
    from ferbench.models import backbone_names

    registered = {"backbone": backbone_names(), "optimizer": sorted(OPTIMIZERS)}
    for key, block in _schedules(config):
        for field, known in registered.items():
            if field in block and block[field] not in known:
                raise FerbenchError(f"{where}: {key}.{field}: unknown {field} {block[field]!r} "
                                    f"(known: {', '.join(known)})")
    classes = {}
    for name, block in config["methods"].items():
        block = block or {}
        class_name = str(block.get("class") or name)
        try:
            cls = get_method(class_name)
        except FerbenchError:
            key = (f"methods.{name}.class" if block.get("class")
                   else "run.methods" if name in config["run"]["methods"] else f"methods.{name}")
            raise FerbenchError(f"{where}: {key}: unknown method {class_name!r} "
                                f"(known: {', '.join(method_names())})") from None
        known = set(TRAIN_KEYS) | set(METHOD_BLOCK_KEYS) | set(cls.all_defaults())
        unknown = sorted(set(block) - known)
        if unknown:
            raise FerbenchError(f"{where}: methods.{name}.{unknown[0]}: not a key of method {cls.name!r} "
                                f"(known: {', '.join(sorted(known))})")
        classes[name] = cls
    return classes


def merged_config(paths: list[str | Path]) -> dict[str, Any]:
    """The config Snakemake builds from params.yaml and ``--configfile`` files: each file read
    (a syntax error names its file, line and column), later ones merged over earlier ones by
    Snakemake's own update_config (nested mappings key by key, anything else replaced)."""
    config = load_config(paths[0], validate=False)
    if len(paths) > 1:
        from snakemake.utils import update_config

        for path in paths[1:]:
            update_config(config, load_config(path, validate=False))
    return config


def main(args: argparse.Namespace) -> int:
    paths = [args.config] if isinstance(args.config, (str, Path)) else list(args.config)
    where = " + ".join(map(str, paths))  # a merged config's key may come from any of them
    check_config(merged_config(paths), where)
    print(f"{where}: valid")
    return 0


def stage_settings(config: dict[str, Any], dataset: str, method: str, stage: str,
                   config_path: str = "params.yaml") -> dict[str, Any]:
    """job_settings plus the stage's schedule (a method's ``pretrain:`` block overrides it)."""
    for key, name in (("datasets", dataset), ("methods", method)):
        if name not in (config.get(key) or {}):
            known = ", ".join(sorted(config.get(key) or {}))
            raise FerbenchError(f"{config_path}: {key}.{name}: no such entry (known: {known})")
    settings = job_settings(config, dataset, method)
    settings["method"] = dict(settings["method"] or {})
    pre = settings["method"].get("pretrain") or {}
    if not isinstance(pre, dict):
        raise FerbenchError(f"{config_path}: methods.{method}.pretrain: expected a mapping")
    unknown = sorted(set(pre) - set(TRAIN_KEYS))
    if unknown:
        raise FerbenchError(f"{config_path}: methods.{method}.pretrain.{unknown[0]}: not a training key "
                            f"(known: {', '.join(TRAIN_KEYS)})")
    if stage == "pretrain":
        settings["train"] = {**settings["train"], **pre}
    missing = [k for k in ("backbone", "image_size", "epochs", "batch_size", "lr") if k not in settings["train"]]
    if missing:
        raise FerbenchError(f"{config_path}: budgets.{config.get('budget')}.{missing[0]}: missing")
    settings["train"].setdefault("checkpoint_every", 500)
    settings["train"].setdefault("eval_batch_size", settings["train"]["batch_size"])
    settings["budget"] = config.get("budget")
    settings["stage"] = stage
    return settings
