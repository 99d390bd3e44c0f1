"""The jobs of a run, planned from the validated config: one record per job, no Snakemake.

``workflow/rules/common.smk`` maps these records onto its rules (their wildcards are a record's
dataset, run, fold and seed); the planning itself lives here, where it can be unit-tested:
which runs train on which dataset, which folds, where each encoder comes from (a pretraining on
the target per fold, or one on every subject of another dataset serving all folds), which runs
share one pretraining (equal ``Method.pretrain_identity``), which other runs' encoders a
pretraining reads (``Method.encoder_inputs``: MaskFN's), and the face sizes each dataset is
decoded at. Everything is computed from the config, so the whole DAG is known before any data
exists. Every question it asks a method class is a hook declared on
:class:`~ferbench.methods.base.Method` with a default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from ferbench.config import TRAIN_KEYS, dataset_runs, folds_name, job_settings, job_task, stage_settings
from ferbench.errors import FerbenchError
from ferbench.method_blocks import method_block

RULES = ("synthesize", "prepare", "folds", "pretrain", "train", "aggregate")


@dataclasses.dataclass(frozen=True)
class Job:
    """One job of the run. ``fold`` is a fold number as text, or "all" for a pretraining on
    every subject that serves every fold; fields a rule has no use for are None."""

    rule: str
    dataset: str | None = None
    run: str | None = None
    fold: str | None = None
    seed: int | None = None
    stage: str | None = None          # pretrain | train (the training rules)
    task: str | None = None           # the task of its folds table (folds, pretrain, train)
    inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    outputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    resources: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.rule, self.dataset, self.run, self.fold, self.seed, self.task)


@dataclasses.dataclass(frozen=True)
class Pretraining:
    """Where the encoder of one (target, run name) comes from."""

    dataset: str        # the data it pretrains on (the target, or the dataset the run names)
    run: str            # the run name whose job pretrains it (the first of the runs sharing it)
    per_fold: bool      # one job per fold (training-fold subjects), else one "all" job


def step_resources(config: Mapping[str, Any], step: str, dataset: str | None = None) -> dict[str, int]:
    """threads / mem_mb / runtime / gpu of one step's first try: the config's ``resources``,
    with the dataset's own under the run's budget where it has them
    (``datasets.<name>.budgets.<budget>.resources.<step>``)."""
    values = dict((config.get("resources") or {}).get(step) or {})
    block = (config.get("datasets") or {}).get(dataset) or {}
    per_budget = (block.get("budgets") or {}).get(config.get("budget")) or {}
    values.update((per_budget.get("resources") or {}).get(step) or {})
    return values


def synthetic_layout(config: Mapping[str, Any], root: str) -> str | None:
    """The synthetic layout a dataset root lies in (inside ``synthetic.out``), or None."""
    out = os.path.abspath(config["synthetic"]["out"])
    rel = os.path.relpath(os.path.abspath(root), out)
    if rel == os.curdir or rel.split(os.sep)[0] == os.pardir:
        return None
    return rel.split(os.sep)[0]


class Plan:
    """The jobs of the run ``config`` describes. ``classes``: every run name's registered
    class (:func:`ferbench.config.check_config` returns them). Errors are FerbenchError, one
    line naming the key."""

    def __init__(self, config: Mapping[str, Any], classes: Mapping[str, type]) -> None:
        self.config = config
        self.classes = classes
        self.results = os.path.normpath(config["results"])
        self.cache = os.path.normpath(config["cache"])
        self.synthetic_out = os.path.normpath(config["synthetic"]["out"])
        self.budget = config["budgets"][config["budget"]]
        self.skipped: dict[str, list[str]] = {}   # dataset -> run names its labels do not fit
        self._runs = {dataset: self._dataset_runs(dataset) for dataset in config["run"]["datasets"]}
        self._owners: dict[tuple[str, bool, str], str] = {}
        self._training: list[Job] | None = None
        self.pretrainings: dict[tuple[str, str], Pretraining] = {}
        for dataset, run in self.run_pairs():
            source = self._pretraining(dataset, run)
            if source is not None:
                key = (source.dataset, source.per_fold, self._identity(source.dataset, run))
                owner = self._owners.setdefault(key, run)
                self.pretrainings[dataset, run] = dataclasses.replace(source, run=owner)

    # -- which runs, folds, encoders ----------------------------------------------------------
    def _dataset_runs(self, dataset: str) -> list[str]:
        runs, skipped = dataset_runs(self.config, dataset, self.classes)
        if skipped:
            self.skipped[dataset] = skipped
        return runs

    def runs(self, dataset: str) -> list[str]:
        """The run names that train on ``dataset``."""
        return list(self._runs[dataset])

    def run_pairs(self) -> list[tuple[str, str]]:
        return [(dataset, run) for dataset in self.config["run"]["datasets"] for run in self._runs[dataset]]

    def folds(self, dataset: str) -> list[int]:
        """The budget's folds that exist in the dataset's protocol (all of them for null)."""
        from ferbench.data.protocols import resolve_protocol

        try:
            total = resolve_protocol(dataset, self.config["datasets"][dataset].get("protocol"))["folds"]
        except FerbenchError as err:
            raise FerbenchError(f"datasets.{dataset}.protocol: {err}") from None
        wanted = self.budget.get("folds")
        if wanted is None:
            return list(range(total))
        folds = sorted(f for f in wanted if f < total)
        if not folds:
            raise FerbenchError(f"budgets.{self.config['budget']}.folds: none of {wanted} exists in "
                                f"the {total}-fold protocol of {dataset}")
        return folds

    def _pretraining(self, dataset: str, run: str) -> Pretraining | None:
        cls = self.classes[run]
        if not cls.pretrain:
            return None
        settings = job_settings(self.config, dataset, run)
        source = cls.pretrain_source(settings)
        if source not in self.config["datasets"]:
            raise FerbenchError(f"methods.{run}: pretraining dataset {source!r} has no entry under datasets")
        return Pretraining(source, run, cls.pretrain_data_depends_on_fold(settings) is True)

    def pretraining(self, dataset: str, run: str) -> Pretraining | None:
        """Where the encoder of ``run`` on target ``dataset`` comes from (None: no pretraining)."""
        if (dataset, run) in self.pretrainings:
            return self.pretrainings[dataset, run]
        return self._pretraining(dataset, run)   # a job outside the run (asked for by name)

    def _identity(self, dataset: str, run: str) -> str:
        settings = stage_settings(dict(self.config), dataset, run, "pretrain", "config")
        return json.dumps(self.classes[run].pretrain_identity(settings), sort_keys=True, default=str)

    def owner(self, dataset: str, run: str, per_fold: bool) -> str:
        """The run name whose job pretrains what ``run`` would pretrain on ``dataset``."""
        return self._owners.get((dataset, per_fold, self._identity(dataset, run)), run)

    def encoder_runs(self, dataset: str, run: str, fold: str) -> dict[str, str]:
        """{hyperparameter: run name whose pretraining job supplies it} for the frozen encoders
        the pretraining of ``run`` on ``dataset`` reads (``Method.encoder_inputs``: MaskFN's
        ``mask_fn_encoder``), each pretrained on the same data and fold by its owning job."""
        settings = stage_settings(dict(self.config), dataset, run, "pretrain", "config")
        out = {}
        for key, other in self.classes[run].encoder_inputs(settings).items():
            where = f"methods.{run}.{key}"
            if other not in self.config["methods"]:
                raise FerbenchError(f"{where}: {other!r} is no run under methods (give a run name, "
                                    "an encoder.pt path or random)")
            cls = self.classes[other]
            if not cls.pretrain:
                raise FerbenchError(f"{where}: run {other!r} (class {cls.name}) has no pretraining stage")
            source = cls.pretrain_source(job_settings(self.config, dataset, other))
            if source != dataset:
                raise FerbenchError(f"{where}: run {other!r} pretrains on {source}, not on {dataset} "
                                    "(this pretraining's data)")
            out[key] = self.owner(dataset, other, fold != "all")
        return out

    # -- paths ----------------------------------------------------------------------------------
    def results_path(self, *parts: str) -> str:
        return os.path.join(self.results, *parts)

    def cache_path(self, *parts: str) -> str:
        return os.path.join(self.cache, *parts)

    def encoder_path(self, dataset: str, run: str, fold: str, seed: int) -> str:
        return self.results_path("pretrain", dataset, run, f"fold{fold}", f"seed{seed}", "encoder.pt")

    def schedule(self, dataset: str, run: str, stage: str) -> dict[str, Any]:
        return stage_settings(dict(self.config), dataset, run, stage, "config")["train"]

    def _cache_inputs(self, dataset: str, run: str, stage: str) -> tuple[str, dict[str, str]]:
        task = job_task(self.config, dataset, run, self.classes[run])
        size = self.schedule(dataset, run, stage)["image_size"]
        return task, {"faces": self.cache_path(dataset, f"faces_{size}.npy"),
                      "samples": self.cache_path(dataset, "samples.parquet"),
                      "folds": self.cache_path(dataset, folds_name(self.config, dataset, task))}

    # -- jobs -----------------------------------------------------------------------------------
    def train_job(self, dataset: str, run: str, fold: int | str, seed: int) -> Job:
        task, inputs = self._cache_inputs(dataset, run, "train")
        source = self.pretraining(dataset, run)
        if source is not None:
            inputs["pretrained"] = self.encoder_path(source.dataset, source.run,
                                                     str(fold) if source.per_fold else "all", seed)
        where = ("runs", dataset, run, f"fold{fold}", f"seed{seed}")
        outputs = {name: self.results_path(*where, file) for name, file in (
            ("metrics", "metrics.json"), ("predictions", "predictions.parquet"),
            ("embeddings", "embeddings.parquet"), ("model", "model.pt"), ("log", "train_log.csv"))}
        return Job("train", dataset, run, str(fold), int(seed), "train", task, inputs, outputs,
                   step_resources(self.config, "train", dataset))

    def pretrain_job(self, dataset: str, run: str, fold: int | str, seed: int) -> Job:
        """The pretraining of run name ``run`` on ``dataset`` (its pretraining data), fold
        "all" for the one on every subject."""
        task, inputs = self._cache_inputs(dataset, run, "pretrain")
        for key, other in self.encoder_runs(dataset, run, str(fold)).items():
            inputs[key] = self.encoder_path(dataset, other, str(fold), seed)
        return Job("pretrain", dataset, run, str(fold), int(seed), "pretrain", task, inputs,
                   {"encoder": self.encoder_path(dataset, run, str(fold), seed)},
                   step_resources(self.config, "pretrain", dataset))

    def training_jobs(self) -> list[Job]:
        """Every train job of the run and every pretraining they read, each once."""
        if self._training is None:
            self._training = self._plan_training()
        return list(self._training)

    def _plan_training(self) -> list[Job]:
        jobs: dict[tuple[Any, ...], Job] = {}
        todo: list[Job] = []
        for dataset, run in self.run_pairs():
            for fold in self.folds(dataset):
                for seed in self.config["run"]["seeds"]:
                    todo.append(self.train_job(dataset, run, fold, seed))
        while todo:
            job = todo.pop(0)
            if job.key in jobs:
                continue
            jobs[job.key] = job
            if job.rule == "train" and "pretrained" in job.inputs:
                source = self.pretraining(job.dataset, job.run)
                fold = job.fold if source.per_fold else "all"
                todo.append(self.pretrain_job(source.dataset, source.run, fold, job.seed))
            if job.rule == "pretrain":
                for other in self.encoder_runs(job.dataset, job.run, job.fold).values():
                    todo.append(self.pretrain_job(job.dataset, other, job.fold, job.seed))
        return list(jobs.values())

    def image_sizes(self) -> list[int]:
        """Every face size a training job of this run reads; each dataset is cached at all."""
        return sorted({self.schedule(job.dataset, job.run, job.stage)["image_size"]
                       for job in self.training_jobs()})

    def datasets(self) -> list[str]:
        """The datasets the run reads: its targets, then any other pretraining data."""
        names = list(self.config["run"]["datasets"])
        for job in self.training_jobs():
            if job.dataset not in names:
                names.append(job.dataset)
        return names

    def jobs(self) -> list[Job]:
        """Every job of the run: data, pretraining, training, the aggregate."""
        training = self.training_jobs()
        sizes = self.image_sizes()
        out: list[Job] = []
        layouts = {synthetic_layout(self.config, self.config["datasets"][d]["root"]) for d in self.datasets()}
        if layouts - {None}:
            out.append(Job("synthesize", outputs={layout: os.path.join(self.synthetic_out, layout)
                                                  for layout in self.config["synthetic"]["layouts"]},
                           resources=step_resources(self.config, "synthesize")))
        for dataset in self.datasets():
            out.append(self.prepare_job(dataset, sizes))
        for dataset, task in sorted({(job.dataset, job.task) for job in training}, key=str):
            out.append(self.folds_job(dataset, task))
        out.extend(training)
        out.append(Job("aggregate", inputs={
            name: [job.outputs[name] for job in training if job.rule == "train"]
            for name in ("metrics", "predictions", "embeddings")},
            outputs={"summary": self.results_path("summary.json"),
                     "plots": self.results_path("plots", "per_fold.csv"),
                     "tables": self.results_path("tables"), "figures": self.results_path("figures")},
            resources=step_resources(self.config, "aggregate")))
        return out

    def prepare_job(self, dataset: str, sizes: list[int]) -> Job:
        root = self.config["datasets"][dataset]["root"]
        layout = synthetic_layout(self.config, root)
        outputs = {f"faces_{size}": self.cache_path(dataset, f"faces_{size}.npy") for size in sizes}
        outputs.update((name, self.cache_path(dataset, file)) for name, file in (
            ("samples", "samples.parquet"), ("landmarks", "landmarks.npy"), ("report", "report.json")))
        root_input = root if layout is None else os.path.join(self.synthetic_out, layout)
        return Job("prepare", dataset, inputs={"root": root_input}, outputs=outputs,
                   resources=step_resources(self.config, "prepare"))

    def protocol_task(self, dataset: str) -> str:
        """The task of the dataset's own protocol (its folds.parquet)."""
        from ferbench.data.protocols import resolve_protocol

        return str(resolve_protocol(dataset, self.config["datasets"][dataset].get("protocol"))["task"])

    def folds_job(self, dataset: str, task: str) -> Job:
        name = folds_name(self.config, dataset, task)
        inputs = {"samples": self.cache_path(dataset, "samples.parquet")}
        if self.config["datasets"][dataset].get("fold_file"):
            inputs["fold_file"] = self.config["datasets"][dataset]["fold_file"]
        return Job("folds", dataset, task=task, inputs=inputs,
                   outputs={"parquet": self.cache_path(dataset, name),
                            "meta": self.cache_path(dataset, name.replace(".parquet", ".json"))},
                   resources=step_resources(self.config, "folds"))

    def check_datasets(self) -> None:
        """Data the run needs and the workflow cannot make: one line naming the key."""
        layouts = self.config["synthetic"]["layouts"]
        for name in sorted(self.datasets()):
            entry = self.config["datasets"][name]
            root = entry["root"]
            layout = synthetic_layout(self.config, root)
            if layout is not None and layout not in layouts:
                raise FerbenchError(f"datasets.{name}.root: {root!r} lies inside synthetic.out "
                                    f"({self.synthetic_out}) but synthetic.layouts has no {layout!r}")
            if layout is None and not os.path.exists(root):
                raise FerbenchError(f"datasets.{name}.root: {root!r} does not exist; point it at "
                                    f"your copy of {name} (check it with `ferbench inspect {name} "
                                    f"ROOT`) or drop {name} from run.datasets")
            fold_file = entry.get("fold_file")
            if fold_file and not os.path.isfile(fold_file):
                raise FerbenchError(f"datasets.{name}.fold_file: {fold_file!r} does not exist")

    # -- what one training job reads ---------------------------------------------------------------
    def job_config(self, job: Job) -> str:
        """The slice of the config one training job reads, as JSON: a valid params file on its
        own, with the method block resolved (no ``extends``). It is the job's --config and a
        param, so changing a value reruns exactly the jobs that read it; the budget's ``folds``
        only selects jobs and is left out; a pretraining leaves out the class's
        ``train_only_hparams`` (changing them does not rerun it) and gets the encoder.pt path of
        each run it reads an encoder of in place of the run name."""
        block = method_block(self.config, job.run)
        block.pop("extends", None)
        if job.stage == "pretrain":
            train_only = self.classes[job.run].train_only_hparams
            for layer in (block, *((block.get("budgets") or {}).values())):
                for key in train_only:
                    (layer or {}).pop(key, None)
            block.update((key, job.inputs[key]) for key in self.encoder_runs(job.dataset, job.run, job.fold))
        name = self.config["budget"]
        sliced = {
            "budget": name,
            "run": {"datasets": [job.dataset], "methods": [job.run], "seeds": [job.seed]},
            "datasets": {job.dataset: self.config["datasets"][job.dataset]},
            "budgets": {name: {k: v for k, v in self.budget.items() if k != "folds"}},
            "methods": {job.run: block},
            "metrics": self.config.get("metrics", {}),
            # where synthetic data live: the job records whether its dataset root is synthetic
            "synthetic": {"out": self.config["synthetic"]["out"]},
        }
        return json.dumps(sliced, sort_keys=True)

    def settings(self, job: Job) -> dict[str, Any]:
        """The resolved settings a training job runs with (:func:`ferbench.config.stage_settings`)."""
        return stage_settings(dict(self.config), job.dataset, job.run, job.stage, "config")

    def settings_layers(self, job: Job) -> dict[str, tuple[Any, str]]:
        """Each resolved setting of a training job with the key that set it (:func:`settings_layers`)."""
        return settings_layers(self.config, self.classes, job.dataset, job.run, job.stage)


def settings_layers(config: Mapping[str, Any], classes: Mapping[str, type], dataset: str, run: str,
                    stage: str) -> dict[str, tuple[Any, str]]:
    """The resolved settings of one training job, each with the layer that set it:
    {"train.<key>" | "method.<hyperparameter>": (value, where)}. ``where`` is the dotted key
    of params.yaml that won (``budgets.demo.lr``, ``datasets.affectnet.budgets.demo.epochs``,
    ``templates.ssl.budgets.demo.pretrain.lr`` ...) or ``class <name> default``. The values
    are those :func:`ferbench.config.stage_settings` resolves (the layers in its order)."""
    from ferbench.method_blocks import origin

    budget = config["budget"]
    block = method_block(config, run)
    per_budget = (block.get("budgets") or {}).get(budget) or {}
    dataset_where = f"datasets.{dataset}.budgets.{budget}"
    # (values, where a key of it was set) of each layer, in job_settings' order
    layers: list[tuple[Mapping[str, Any], Any]] = [
        (config["budgets"][budget], lambda *key: ".".join(("budgets", budget, *key))),
        ((config["datasets"][dataset].get("budgets") or {}).get(budget) or {},
         lambda *key: ".".join((dataset_where, *key))),
    ]
    for path, values in (((), block), (("budgets", budget), per_budget),
                         (("budgets", budget, "datasets", dataset),
                          (per_budget.get("datasets") or {}).get(dataset) or {})):
        layers.append((values, lambda *key, path=path: origin(config, run, (*path, *key))))
    out: dict[str, tuple[Any, str]] = {}
    for values, where in layers:
        out.update((f"train.{k}", (v, where(k))) for k, v in values.items() if k in TRAIN_KEYS)
    if stage == "pretrain":   # a `pretrain:` block of any layer after the budget, over all of them
        for values, where in layers[1:]:
            out.update((f"train.{k}", (v, where("pretrain", k))) for k, v in (values.get("pretrain") or {}).items())
    out.setdefault("train.checkpoint_every", (500, "ferbench.config.stage_settings default"))
    out.setdefault("train.eval_batch_size", (out["train.batch_size"][0], "train.batch_size"))
    # hyperparameters: the class's defaults, the block's, its budget block's
    cls = classes[run]
    for key, value in cls.all_defaults().items():
        out[f"method.{key}"] = (value, f"class {cls.name} default")
    reserved = (*TRAIN_KEYS, "class", "pretrain", "budgets", "task", "extends")
    for key, value in block.items():
        if key not in reserved:
            out[f"method.{key}"] = (value, origin(config, run, (key,)))
    for key, value in per_budget.items():
        if key not in (*TRAIN_KEYS, "pretrain", "datasets"):
            out[f"method.{key}"] = (value, origin(config, run, ("budgets", budget, key)))
    return out
