"""params.yaml: loading, schema validation, and the settings one training job sees."""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path
from typing import Any

import yaml

from ferbench import strict_yaml
from ferbench.input_checks import check_hparam_types, check_paths
from ferbench.errors import FerbenchError
from ferbench.method_blocks import method_block, origin, resolved_methods

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "params.schema.yaml"

#: Budget keys a method may override (the training schedule); everything else in a
#: method's block is the method's own hyperparameters.
TRAIN_KEYS = (
    "backbone", "image_size", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
    "checkpoint_every", "eval_batch_size",
    # optional recipe keys (absent: off)
    "backbone_weights", "lr_schedule", "label_smoothing", "class_weighting", "augmentation", "tta",
    # how the job computes (absent: auto; ferbench.precision)
    "precision", "memory_format",
)
#: Keys of a method block besides the training keys and the class's hyperparameters.
METHOD_BLOCK_KEYS = ("class", "pretrain", "budgets", "task", "extends")
#: Keys of a method block's ``budgets.<budget>`` besides training keys and hyperparameters.
METHOD_BUDGET_KEYS = ("pretrain", "datasets")


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error, or a key given twice in one mapping, is one line
    ``file:line:column: problem``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FerbenchError(f"{path}: config file does not exist") from None
    try:
        return strict_yaml.load(text)
    except strict_yaml.DuplicateKey as err:
        raise FerbenchError(f"{path}:{err.line}:{err.column}: not valid YAML: {err}") from None
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


def check_config(config: dict[str, Any], where: str = "params.yaml",
                 allow_unused: bool | None = None) -> dict[str, type]:
    """Every check a config gets before any job runs: ``ferbench validate-config`` and the
    workflow's DAG build both call this, so they accept and reject the same configs.

    The schema, then what it cannot say (names that must exist elsewhere in the config, finite
    numbers), then what needs the registries (imports torch): every method block's class and
    keys, every backbone and optimiser name. Returns the registered class of every run name
    under ``methods:`` (a run may use another that is not in run.methods, e.g. MaskFN's encoder).
    A run name that runs on no dataset is an error unless ``allow_unused`` (None: the config's
    ``run.allow_unused``), then a warning on stderr.
    """
    validate_config(config, where)
    classes = check_methods(config, where)
    check_run_tasks(config, classes, where)
    if allow_unused is None:
        allow_unused = config["run"].get("allow_unused", False) is True   # schema: a boolean
    check_unused_runs(config, classes, where, allow_unused)
    return classes


def unused_runs(config: dict[str, Any], classes: dict[str, type]) -> dict[str, list[str]]:
    """{run name in run.methods that trains on none of run.datasets: why not, per dataset}."""
    used: set[str] = set()
    for dataset in config["run"]["datasets"]:
        used.update(dataset_runs(config, dataset, classes)[0])
    found = {}
    for method in config["run"]["methods"]:
        if method in used:
            continue
        reasons = []
        for dataset in config["run"]["datasets"]:
            only = config["datasets"][dataset].get("methods")
            if only is not None:
                reasons.append(f"not in datasets.{dataset}.methods")
            else:
                task = job_task(config, dataset, method, classes[method])
                reasons.append(f"{dataset} has no {task} labels")
        found[method] = reasons
    return found


def check_unused_runs(config: dict[str, Any], classes: dict[str, type], where: str,
                      allow_unused: bool) -> None:
    """A run name nobody trains is a mistake (a typo in a dataset's list, a forgotten entry)
    unless the config says it is meant: then one warning line per name."""
    import sys

    for method, reasons in unused_runs(config, classes).items():
        text = f"run.methods: {method!r} runs on no dataset ({'; '.join(reasons)})"
        if not allow_unused:
            raise FerbenchError(f"{where}: {text}; add it to a dataset's methods list, remove it, "
                                f"or allow it (run.allow_unused: true, or --allow-unused)")
        print(f"ferbench: warning: {where}: {text}", file=sys.stderr)


def check_roots(config: dict[str, Any], where: str = "params.yaml") -> list[str]:
    """Each dataset of run.datasets: its root exists and its reader recognises the layout from
    the first files it looks at (no full read). A root inside ``synthetic.out`` that does not
    exist yet is fine: the workflow writes it. Returns one note per root checked."""
    from ferbench.datasets import get_reader

    synthetic_out = Path((config.get("synthetic") or {}).get("out") or "data/synthetic").resolve()
    notes = []
    for dataset in config["run"]["datasets"]:
        root = (config["datasets"][dataset] or {}).get("root")
        key = f"datasets.{dataset}.root"
        if not root:
            raise FerbenchError(f"{where}: {key}: missing")
        path = Path(root)
        inside = path.resolve().is_relative_to(synthetic_out)
        if not path.exists():
            if inside:
                notes.append(f"{dataset}: {root} (synthetic, written by the workflow)")
                continue
            raise FerbenchError(f"{where}: {key}: {root!r} does not exist")
        if not path.is_dir():
            raise FerbenchError(f"{where}: {key}: {root!r} is not a directory")
        try:
            layout = get_reader(dataset).recognise(path)
        except FerbenchError as err:
            raise FerbenchError(f"{where}: {key}: {err}") from None
        notes.append(f"{dataset}: {root} ({layout or 'exists; layout checked when read'})")
    return notes


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
    check_paths(config, where)
    budget = config["budget"]
    if budget not in config["budgets"]:
        raise FerbenchError(f"{where}: budget: {budget!r} is not a key of budgets")
    for name in config["run"]["datasets"]:
        if name not in config["datasets"]:
            raise FerbenchError(f"{where}: run.datasets: {name!r} has no entry under datasets")
    for name in config["run"]["methods"]:
        if name not in config["methods"]:
            raise FerbenchError(f"{where}: run.methods: {name!r} has no entry under methods")
    try:  # every `extends` names an existing block, without cycles
        resolved_methods(config)
        for name in config.get("templates") or {}:
            method_block(config, name, "templates")
    except FerbenchError as err:
        raise FerbenchError(f"{where}: {err}") from None


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


def schedule_layers(config: dict[str, Any], dataset: str, method: str
                    ) -> list[tuple[str, str, dict[str, Any]]]:
    """(layer name, dotted key, block) of every layer a job's schedule is built from, lowest
    first: the budget; the dataset block's ``budgets.<budget>``; the method's block (its
    ``extends`` resolved, :mod:`ferbench.method_blocks`); the method's ``budgets.<budget>``;
    that block's ``datasets.<dataset>``. job_settings merges them and ``ferbench settings``
    names, for each value, the layer it came from: one order."""
    try:
        name = config["budget"]
        budget = config["budgets"][name]
        config["methods"][method]
        dataset_block = config["datasets"][dataset] or {}
    except KeyError as err:
        raise FerbenchError(f"config: no entry for {err.args[0]!r}") from None
    block = method_block(config, method)
    per_dataset = (dataset_block.get("budgets") or {}).get(name) or {}
    per_budget = (block.get("budgets") or {}).get(name) or {}
    per_budget_dataset = (per_budget.get("datasets") or {}).get(dataset) or {}
    return [
        ("budget", f"budgets.{name}", budget or {}),
        ("dataset block", f"datasets.{dataset}.budgets.{name}", per_dataset),
        ("method block", f"methods.{method}", block),
        ("method budget", f"methods.{method}.budgets.{name}", per_budget),
        ("method dataset entry", f"methods.{method}.budgets.{name}.datasets.{dataset}",
         per_budget_dataset),
    ]


def job_settings(config: dict[str, Any], dataset: str, method: str) -> dict[str, Any]:
    """Everything one training job needs. Its schedule, each layer of :func:`schedule_layers`
    over the one before (e.g. a large dataset's shorter schedule in its dataset block, CAF's
    paper epochs on AffectNet in its method's dataset entry). A ``pretrain:`` block in any
    layer after the budget overrides the pretraining stage only (:func:`stage_settings`). The
    method block is resolved first (``extends``, :mod:`ferbench.method_blocks`); the class's
    hyperparameters under its ``budgets.<budget>`` override its own.

    Returns {"train": {...schedule...}, "method": {...method's own keys...},
    "protocol": {...}, "dataset": name, "method_name": name, "metrics": {...}}.
    """
    layers = schedule_layers(config, dataset, method)
    block = method_block(config, method)   # its `extends` resolved
    per_budget = (block.pop("budgets", None) or {}).get(config["budget"]) or {}
    # hyperparameters under the budget (e.g. clip offsets for the demo's short clips)
    block.update((k, copy.deepcopy(v)) for k, v in per_budget.items()
                 if k not in (*TRAIN_KEYS, *METHOD_BUDGET_KEYS))
    block.pop("task", None)  # which folds table the job reads (job_task), not a hyperparameter
    # the method block's schedule keys leave it: what remains are the class's hyperparameters
    for key in (*TRAIN_KEYS, "pretrain"):
        block.pop(key, None)
    train: dict[str, Any] = {}
    pretrain: dict[str, Any] = {}
    for i, (_, _, layer) in enumerate(layers):
        train.update((k, copy.deepcopy(layer[k])) for k in TRAIN_KEYS if k in layer)
        if i:  # the budget's own keys are the schedule of both stages
            pretrain.update(copy.deepcopy(layer.get("pretrain") or {}))
    if pretrain:
        block["pretrain"] = pretrain
    return {
        "dataset": dataset,
        "method_name": method,
        "train": train,
        "method": block,
        "protocol": copy.deepcopy((config["datasets"][dataset] or {}).get("protocol", {})),
        "metrics": copy.deepcopy(config.get("metrics", {})),
    }


def job_task(config: dict[str, Any], dataset: str, method: str, cls: type) -> str:
    """The task the jobs of run name ``method`` on ``dataset`` train for: the method block's
    ``task``, else the class's only task (CAF and AVCE: va), else the dataset protocol's. A
    dataset with both kinds of label (AffectNet) thus serves classification runs and
    valence/arousal runs side by side, each with its own folds table (:func:`folds_name`)."""
    from ferbench.data.protocols import resolve_protocol

    block = method_block(config, method)
    if block.get("task"):
        return str(block["task"])
    if len(cls.tasks) == 1:
        return str(cls.tasks[0])
    return str(resolve_protocol(dataset, config["datasets"][dataset].get("protocol"))["task"])


def folds_name(config: dict[str, Any], dataset: str, task: str) -> str:
    """folds.parquet for the dataset protocol's own task, folds_<task>.parquet for the other."""
    from ferbench.data.protocols import resolve_protocol

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
    for section in ("templates", "methods"):
        for name, block in (config.get(section) or {}).items():
            block = block or {}
            with_pretrain(f"{section}.{name}", block)
            for budget, per_budget in (block.get("budgets") or {}).items():
                per_budget = per_budget or {}
                with_pretrain(f"{section}.{name}.budgets.{budget}", per_budget)
                for dataset, per_dataset in (per_budget.get("datasets") or {}).items():
                    with_pretrain(f"{section}.{name}.budgets.{budget}.datasets.{dataset}", per_dataset)
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
    for name, block in resolved_methods(config).items():
        class_name = str(block.get("class") or name)
        try:
            cls = get_method(class_name)
        except FerbenchError:
            key = (origin(config, name, ("class",)) if block.get("class")
                   else "run.methods" if name in config["run"]["methods"] else f"methods.{name}")
            raise FerbenchError(f"{where}: {key}: unknown method {class_name!r} "
                                f"(known: {', '.join(method_names())})") from None
        hparams = set(cls.all_defaults())
        known = set(TRAIN_KEYS) | set(METHOD_BLOCK_KEYS) | hparams
        unknown = sorted(set(block) - known)
        if unknown:
            raise FerbenchError(f"{where}: {origin(config, name, (unknown[0],))}: not a key of method "
                                f"{cls.name!r} (known: {', '.join(sorted(known))})")
        check_hparam_types(cls, name, block, where, skip=(*TRAIN_KEYS, *METHOD_BLOCK_KEYS),
                           key_of=lambda key: origin(config, name, (key,)))
        # under budgets.<budget>: training keys, pretrain/datasets blocks and hyperparameters
        known = set(TRAIN_KEYS) | set(METHOD_BUDGET_KEYS) | hparams
        for budget, per_budget in (block.get("budgets") or {}).items():
            unknown = sorted(set(per_budget or {}) - known)
            if unknown:
                key = origin(config, name, ("budgets", budget, unknown[0]))
                raise FerbenchError(f"{where}: {key}: neither a training key nor a hyperparameter of "
                                    f"method {cls.name!r}")
            check_hparam_types(cls, name, per_budget or {}, where, skip=(*TRAIN_KEYS, *METHOD_BUDGET_KEYS),
                               key_of=lambda key, budget=budget: origin(config, name, ("budgets", budget, key)))
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
    config = merged_config(paths)
    check_config(config, where, allow_unused=True if getattr(args, "allow_unused", False) else None)
    for note in check_roots(config, where):
        print(f"  {note}")
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


#: schedule values stage_settings fills in when no layer sets them
ENGINE_DEFAULTS = {"checkpoint_every": "engine default", "eval_batch_size": "engine default (batch_size)"}


def _file_setting(files: list[tuple[str, dict[str, Any]]], dotted: str) -> str | None:
    """The last of ``files`` (merged in order) whose own content sets the dotted key."""
    found = None
    for path, content in files:
        node: Any = content
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                node = _MISSING
                break
            node = node[part]
        if node is not _MISSING:
            found = path
    return found


_MISSING = object()


def resolved_settings(config: dict[str, Any], dataset: str, method: str, stage: str = "train",
                      files: list[tuple[str, dict[str, Any]]] | None = None,
                      config_path: str = "params.yaml") -> dict[str, Any]:
    """Every setting one job uses, each as {"value", "from"}: the values are stage_settings'
    (the engine's own), and ``from`` names the layer that set each one (class default, budget,
    dataset block, method block, its budget, its dataset entry, engine default), its dotted key,
    and with ``files`` ([(path, its own content)], merged in order) the file that set it.
    ``ferbench settings`` prints this and the engine writes it to each run's settings.json."""
    from ferbench.methods import get_method
    from ferbench.methods.registry import method_class_name
    from ferbench.data.protocols import resolve_protocol

    settings = stage_settings(config, dataset, method, stage, config_path)
    cls = get_method(method_class_name(settings))
    if stage == "pretrain" and not cls.pretrain:
        raise FerbenchError(f"methods.{method}: class {cls.name!r} has no pretraining stage "
                            f"(use --stage train)")
    files = files or []

    def origin(layer: str, dotted: str | None) -> str:
        if dotted is None:
            return layer
        prefix = f"methods.{method}."
        if dotted.startswith(prefix):  # the block of its `extends` chain that set it
            from ferbench.method_blocks import origin as block_origin

            dotted = block_origin(config, method, tuple(dotted[len(prefix):].split(".")))
        where = _file_setting(files, dotted)
        return f"{layer}: {dotted}" + (f" ({where})" if where else "")

    layers = schedule_layers(config, dataset, method)
    source: dict[str, tuple[str, str | None]] = {}
    for name, key, layer in layers:
        source.update((k, (name, f"{key}.{k}")) for k in TRAIN_KEYS if k in layer)
    if stage == "pretrain":
        for name, key, layer in layers[1:]:
            for k in layer.get("pretrain") or {}:
                source[k] = (f"{name}, pretrain stage", f"{key}.pretrain.{k}")
    train = {}
    for k, value in settings["train"].items():
        layer, dotted = source.get(k, (ENGINE_DEFAULTS.get(k, "engine default"), None))
        train[k] = {"value": value, "from": origin(layer, dotted)}

    given = {k: v for k, v in settings["method"].items() if k not in ("class", "pretrain")}
    block = f"methods.{method}"
    hp = {"class": {"value": cls.name, "from": origin("method block", f"{block}.class")
                    if settings["method"].get("class") else "run name"}}
    defaults = cls.all_defaults()
    for k in sorted(set(defaults) | set(given)):
        if k in given:
            hp[k] = {"value": given[k], "from": origin("method block", f"{block}.{k}")}
        else:
            hp[k] = {"value": defaults[k], "from": f"class default ({cls.__name__})"}

    augmentation = cls.augment_settings({**defaults, **given}, settings["train"], stage)
    if cls.all_defaults().get("augment"):
        aug_from = f"class {cls.__name__}'s augment, then {block}.augment"
    else:
        aug_from = f"{train.get('augmentation', {}).get('from', 'none')}, then {block}.augment"
    if stage == "pretrain":
        aug_from += ", then pretrain_augment"

    given_protocol = settings["protocol"] or {}
    protocol = {}
    for k, value in resolve_protocol(dataset, given_protocol).items():
        protocol[k] = {"value": value, "from": origin("dataset block", f"datasets.{dataset}.protocol.{k}")
                       if k in given_protocol else f"dataset default ({dataset} reader)"}
    return {
        "dataset": dataset, "method": method, "class": cls.name, "stage": stage,
        "budget": {"value": config.get("budget"), "from": origin("config", "budget")},
        "train": train, "hyperparameters": hp,
        "augmentation": {"value": augmentation, "from": aug_from},
        "protocol": protocol,
    }


def format_settings(resolved: dict[str, Any]) -> str:
    """``ferbench settings``' text: one line per setting, value then the layer that set it."""
    def text(value: Any) -> str:
        return json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)

    lines = [f"{resolved['dataset']} {resolved['method']} (class {resolved['class']}), "
             f"stage {resolved['stage']}, budget {resolved['budget']['value']} "
             f"[{resolved['budget']['from']}]"]
    for title in ("train", "hyperparameters", "protocol"):
        entries = resolved[title]
        lines.append(f"{'schedule' if title == 'train' else title}:")
        width = max((len(k) for k in entries), default=0)
        vwidth = min(24, max((len(text(e['value'])) for e in entries.values()), default=0))
        lines += [f"  {k:<{width}}  {text(e['value']):<{vwidth}}  {e['from']}" for k, e in entries.items()]
    aug = resolved["augmentation"]
    lines.append(f"augmentation: {text(aug['value'])}  [{aug['from']}]")
    return "\n".join(lines)


def settings_main(args: argparse.Namespace) -> int:
    """``ferbench settings DATASET RUN``: the resolved settings of one job, with their layers."""
    paths = [args.config, *(args.configfile or [])]
    config = merged_config(paths)
    if args.budget is not None:
        config["budget"] = args.budget
        if args.budget not in (config.get("budgets") or {}):
            raise FerbenchError(f"--budget: {args.budget!r} is not a key of budgets "
                                f"(known: {', '.join(sorted(config.get('budgets') or {}))})")
    where = " + ".join(map(str, paths))
    validate_config(config, where)
    files = [(str(p), load_config(p, validate=False)) for p in paths]
    resolved = resolved_settings(config, args.dataset, args.run, args.stage, files, where)
    if args.budget is not None:
        resolved["budget"]["from"] = "--budget"
    print(json.dumps(resolved, indent=1, default=str) if args.json else format_settings(resolved))
    return 0
