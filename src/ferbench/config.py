"""params.yaml: loading, schema validation, and the settings one training job sees."""

from __future__ import annotations

import argparse
import copy
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


def load_config(path: str | Path, validate: bool = True) -> dict[str, Any]:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FerbenchError(f"{path}: config file does not exist") from None
    except yaml.YAMLError as err:
        raise FerbenchError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise FerbenchError(f"{path}: expected a mapping at the top level")
    if validate:
        validate_config(config, where=str(path))
    return config


def validate_config(config: dict[str, Any], where: str = "params.yaml") -> None:
    """Check the config against the JSON schema; one line naming the offending key."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise FerbenchError(f"{where}: {key}: {err.message}")
    budget = config["budget"]
    if budget not in config["budgets"]:
        raise FerbenchError(f"{where}: budget: {budget!r} is not a key of budgets")
    for name in config["run"]["datasets"]:
        if name not in config["datasets"]:
            raise FerbenchError(f"{where}: run.datasets: {name!r} has no entry under datasets")
    for name in config["run"]["methods"]:
        if name not in config["methods"]:
            raise FerbenchError(f"{where}: run.methods: {name!r} has no entry under methods")


def job_settings(config: dict[str, Any], dataset: str, method: str) -> dict[str, Any]:
    """Everything one training job needs: budget schedule, overridden by the method's block
    (its training keys, then those of its ``budgets.<budget>`` entry, if any).

    Returns {"train": {...schedule...}, "method": {...method's own keys...},
    "protocol": {...}, "dataset": name, "method_name": name, "metrics": {...}}.
    """
    try:
        budget = copy.deepcopy(config["budgets"][config["budget"]])
        method_block = copy.deepcopy(config["methods"][method])
        dataset_block = config["datasets"][dataset]
    except KeyError as err:
        raise FerbenchError(f"config: no entry for {err.args[0]!r}") from None
    train = {k: budget[k] for k in TRAIN_KEYS if k in budget}
    for key in TRAIN_KEYS:
        if key in method_block:
            train[key] = method_block.pop(key)
    # `budgets: {<budget>: {...}}` in a method block: training keys (and a `pretrain:` block)
    # that apply under that budget only, on top of the method's own keys
    per_budget = (method_block.pop("budgets", None) or {}).get(config["budget"]) or {}
    for key in TRAIN_KEYS:
        if key in per_budget:
            train[key] = per_budget[key]
    if per_budget.get("pretrain"):
        method_block["pretrain"] = {**(method_block.get("pretrain") or {}), **per_budget["pretrain"]}
    return {
        "dataset": dataset,
        "method_name": method,
        "train": train,
        "method": method_block,
        "protocol": copy.deepcopy(dataset_block.get("protocol", {})),
        "metrics": copy.deepcopy(config.get("metrics", {})),
    }


def check_method_classes(config: dict[str, Any], where: str = "params.yaml") -> None:
    """Every run method names a registered Method class (imports torch, so kept apart)."""
    from ferbench.methods import get_method

    for name in config["run"]["methods"]:
        block = config["methods"][name] or {}
        try:
            get_method(str(block.get("class") or name))
        except FerbenchError as err:
            raise FerbenchError(f"{where}: methods.{name}: {err}") from None


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    check_method_classes(config, str(args.config))
    print(f"{args.config}: valid")
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
