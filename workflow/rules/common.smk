# Config lookups and input functions shared by the rules/*.smk files; nothing else lives here.
# Everything is computed from the validated config (schema defaults filled in), so the whole DAG,
# every fold included, is known before any data exists: no checkpoints.
import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from ferbench.config import dataset_labels, dataset_runs, folds_name, job_settings, job_task, stage_settings
from ferbench.errors import FerbenchError
from ferbench.protocols import resolve_protocol

RESULTS = os.path.normpath(config["results"])
CACHE = os.path.normpath(config["cache"])
SYNTHETIC = config["synthetic"]
SYNTHETIC_OUT = os.path.normpath(SYNTHETIC["out"])
RUN = config["run"]
BUDGET = config["budgets"][config["budget"]]


def alternatives(names):
    """Wildcard constraint matching exactly the given names."""
    return "|".join(re.escape(name) for name in sorted(names))


def results_path(*parts):
    return os.path.join(RESULTS, *parts)


def cache_path(*parts):
    return os.path.join(CACHE, *parts)


# res(), res_per_attempt(): the rules' threads and resources, from the config's `resources:`
include: "resources.smk"


# -- data ---------------------------------------------------------------------------------------
def synthetic_layout(root):
    """The synthetic layout a dataset root lies in, or None for a real dataset."""
    rel = os.path.relpath(os.path.abspath(root), os.path.abspath(SYNTHETIC_OUT))
    if rel == os.curdir or rel.split(os.sep)[0] == os.pardir:
        return None
    return rel.split(os.sep)[0]


def synthetic_dir(layout):
    return os.path.join(SYNTHETIC_OUT, layout)


def synthetic_out(wildcards):
    return SYNTHETIC_OUT


def synthetic_outputs():
    return [directory(synthetic_dir(layout)) for layout in SYNTHETIC["layouts"]]


def check_datasets(names):
    """Fail at DAG build time, naming the key, for data the workflow cannot make."""
    for name in sorted(names):
        entry = config["datasets"][name]
        root = entry["root"]
        layout = synthetic_layout(root)
        if layout is not None and layout not in SYNTHETIC["layouts"]:
            raise WorkflowError(
                f"datasets.{name}.root: {root!r} lies inside synthetic.out ({SYNTHETIC_OUT}) "
                f"but synthetic.layouts has no {layout!r}"
            )
        if layout is None and not os.path.exists(root):
            raise WorkflowError(
                f"datasets.{name}.root: {root!r} does not exist; point it at your copy of "
                f"{name} (check it with `ferbench inspect {name} ROOT`) or drop {name} "
                "from run.datasets"
            )
        fold_file = entry.get("fold_file")
        if fold_file and not os.path.isfile(fold_file):
            raise WorkflowError(f"datasets.{name}.fold_file: {fold_file!r} does not exist")


def dataset_root_input(wildcards):
    """The synthetic layout folder (made by `synthesize`) or the user's root, as shipped."""
    root = config["datasets"][wildcards.dataset]["root"]
    layout = synthetic_layout(root)
    if layout is not None:
        return synthetic_dir(layout)
    # ancient: a stray file dropped into a multi-GB root must not re-decode it; a changed
    # root path still reruns prepare through params.
    return ancient(root)


def dataset_root(wildcards):
    return config["datasets"][wildcards.dataset]["root"]


def split_check_arg(wildcards):
    """`prepare --split-check`: datasets.<name>.split_check, warn when absent."""
    return config["datasets"][wildcards.dataset].get("split_check") or "warn"


def n_folds(dataset):
    """Folds of the dataset's protocol (official = 1), resolved as `ferbench folds` does."""
    try:
        protocol = resolve_protocol(dataset, config["datasets"][dataset].get("protocol"))
    except FerbenchError as err:
        raise WorkflowError(f"datasets.{dataset}.protocol: {err}") from None
    return protocol["folds"]


def run_folds(dataset):
    """The budget's folds that exist in this dataset's protocol (all of them for null)."""
    total = n_folds(dataset)
    wanted = BUDGET.get("folds")
    if wanted is None:
        return list(range(total))
    folds = sorted(f for f in wanted if f < total)
    if not folds:
        raise WorkflowError(
            f"budgets.{config['budget']}.folds: none of {wanted} exists in the "
            f"{total}-fold protocol of {dataset}"
        )
    return folds


def protocol_json(wildcards):
    protocol = dict(config["datasets"][wildcards.dataset].get("protocol") or {})
    if wildcards.task_suffix:  # folds_<task>: the dataset's other task
        protocol["task"] = wildcards.task_suffix.lstrip("_")
    return json.dumps(protocol, sort_keys=True)


def fold_file_input(wildcards):
    fold_file = config["datasets"][wildcards.dataset].get("fold_file")
    return {"fold_file": fold_file} if fold_file else {}


def fold_file_arg(wildcards, input):
    fold_file = input.get("fold_file")
    return f"--fold-file {shlex.quote(fold_file)}" if fold_file else ""


# -- methods (CLASSES: each run method's class, from check_config in workflow/Snakefile) --------
def stage_schedule(dataset, method, stage):
    """The training keys of one stage (a method's `pretrain:` block overrides the pretrain's)."""
    try:
        return stage_settings(config, dataset, method, stage, "config")["train"]
    except FerbenchError as err:
        raise WorkflowError(str(err)) from None


def pretrain_plan(dataset, method):
    """Where the encoder of run name `method` on target `dataset` comes from, or None.

    {"dataset": the pretraining data (the target, or another dataset the method names),
     "method": the first run name whose pretraining is identical (they share one job),
     "per_fold": its data depend on the fold (else one job, stored as foldall, serves all)}.
    """
    cls = CLASSES[method]
    if cls is None or not cls.pretrain:
        return None
    settings = job_settings(config, dataset, method)
    source = cls.pretrain_source(settings) if hasattr(cls, "pretrain_source") else dataset
    if source not in config["datasets"]:
        raise WorkflowError(
            f"methods.{method}: pretraining dataset {source!r} has no entry under datasets"
        )
    if hasattr(cls, "pretrain_data_depends_on_fold"):
        per_fold = bool(cls.pretrain_data_depends_on_fold(settings))
    else:
        per_fold = bool(cls.pretrain_per_fold) and source == dataset
    return {"dataset": source, "method": method, "per_fold": per_fold}


def method_class(method):
    """The class of any run name under `methods:` (check_config gave them all)."""
    return CLASSES[method]


def pretrain_identity(plan):
    cls = method_class(plan["method"])
    if not hasattr(cls, "pretrain_identity"):
        return plan["method"]
    settings = stage_settings(config, plan["dataset"], plan["method"], "pretrain", "config")
    return json.dumps(cls.pretrain_identity(settings), sort_keys=True, default=str)


def dataset_methods(dataset):
    """run.methods, restricted by the dataset's own `methods` list when it has one; without
    one, those whose task the dataset has labels for (the others are named once on stderr)."""
    runs, skipped = dataset_runs(config, dataset, CLASSES)
    if skipped and dataset not in SKIP_NOTED:
        SKIP_NOTED.add(dataset)
        print(f"ferbench: {dataset} has {dataset_labels(dataset)} labels only: not running "
              f"{', '.join(skipped)} on it", file=sys.stderr)
    return runs


SKIP_NOTED = set()


def run_pairs():
    return [(dataset, method) for dataset in RUN["datasets"] for method in dataset_methods(dataset)]


def pretrain_plans():
    """Every (target, run name) with a pretraining stage; equal pretrainings share an owner."""
    plans = {}
    for dataset, method in run_pairs():
        plan = pretrain_plan(dataset, method)
        if plan is None:
            continue
        key = (plan["dataset"], plan["per_fold"], pretrain_identity(plan))
        plan["method"] = OWNERS.setdefault(key, method)
        plans[dataset, method] = plan
    return plans


def encoder_dependencies(wildcards):
    """{hyperparameter: encoder.pt} of the runs a pretraining job's method names as frozen
    encoders (MaskFN's `mask_fn_encoder`: default simclr), each pretrained on the same data and
    fold as this job (by the job that owns that pretraining, when the run shares one)."""
    dataset, method, fold = wildcards.dataset, wildcards.method, wildcards.fold
    cls = method_class(method)
    if not hasattr(cls, "encoder_inputs"):
        return {}
    deps = {}
    for key, run in cls.encoder_inputs(stage_settings(config, dataset, method, "pretrain", "config")).items():
        where = f"methods.{method}.{key}"
        if run not in config["methods"]:
            raise WorkflowError(
                f"{where}: {run!r} is no run under methods (give a run name, an encoder.pt path or random)"
            )
        other = method_class(run)
        if not other.pretrain:
            raise WorkflowError(f"{where}: run {run!r} (class {other.name}) has no pretraining stage")
        source = other.pretrain_source(job_settings(config, dataset, run)) if hasattr(other, "pretrain_source") else dataset
        if source != dataset:
            raise WorkflowError(
                f"{where}: run {run!r} pretrains on {source}, not on {dataset} (this pretraining's data)"
            )
        plan = {"dataset": dataset, "method": run, "per_fold": fold != "all"}
        owner = OWNERS.get((dataset, plan["per_fold"], pretrain_identity(plan)), run)
        deps[key] = pretrain_path(dataset, owner, fold, wildcards.seed)
    return deps


def pretrain_path(dataset, method, fold, seed):
    return results_path("pretrain", dataset, method, f"fold{fold}", f"seed{seed}", "encoder.pt")


def image_sizes():
    """Every face size a job of this run reads; every dataset is cached at all of them."""
    sizes = {
        stage_schedule(dataset, method, "train")["image_size"] for dataset, method in run_pairs()
    }
    sizes |= {
        stage_schedule(plan["dataset"], plan["method"], "pretrain")["image_size"]
        for plan in PLANS.values()
    }
    return sorted(sizes)


def faces_outputs():
    return [cache_path("{dataset}", f"faces_{size}.npy") for size in SIZES]


def sizes_arg(wildcards):
    return " ".join(str(size) for size in SIZES)


def job_config(wildcards, stage="train"):
    """The slice of the config one job reads, as JSON: a valid params file on its own.

    It is the job's --config (so --config/--configfile overrides reach the job) and a param
    (so changing a value reruns exactly the jobs that read it: one method's keys rerun that
    method's jobs; the budget's `folds` list is left out, it only selects jobs; keys a method
    marks as train-only do not rerun its pretraining).
    """
    dataset, method = wildcards.dataset, wildcards.method
    block = dict(config["methods"][method])
    if stage == "pretrain":
        for key in getattr(method_class(method), "train_only_hparams", ()):
            block.pop(key, None)
        block.update(encoder_dependencies(wildcards))  # run names -> the encoder.pt this job reads
    sliced = {
        "budget": config["budget"],
        "run": {"datasets": [dataset], "methods": [method], "seeds": [int(wildcards.seed)]},
        "datasets": {dataset: config["datasets"][dataset]},
        "budgets": {config["budget"]: {k: v for k, v in BUDGET.items() if k != "folds"}},
        "methods": {method: block},
        "metrics": config.get("metrics", {}),
        # where synthetic data live: the job records whether its dataset root is synthetic
        "synthetic": {"out": SYNTHETIC["out"]},
    }
    return json.dumps(sliced, sort_keys=True)


def pretrain_config(wildcards):
    return job_config(wildcards, stage="pretrain")


def report_config(wildcards):
    """The whole config but `resources` (scheduling does not change a table)."""
    return json.dumps({k: v for k, v in config.items() if k != "resources"}, sort_keys=True)


def cache_inputs(dataset, method, size):
    """The faces, samples and the folds table of the task the run trains for on ``dataset``."""
    task = job_task(config, dataset, method, method_class(method))
    return {
        "faces": cache_path(dataset, f"faces_{size}.npy"),
        "samples": cache_path(dataset, "samples.parquet"),
        "folds": cache_path(dataset, folds_name(config, dataset, task)),
    }


def pretrain_inputs(wildcards):
    size = stage_schedule(wildcards.dataset, wildcards.method, "pretrain")["image_size"]
    return {**cache_inputs(wildcards.dataset, wildcards.method, size), **encoder_dependencies(wildcards)}


def train_inputs(wildcards):
    dataset, method = wildcards.dataset, wildcards.method
    inputs = cache_inputs(dataset, method, stage_schedule(dataset, method, "train")["image_size"])
    plan = PLANS.get((dataset, method))
    if plan is not None:
        fold = wildcards.fold if plan["per_fold"] else "all"
        inputs["pretrained"] = pretrain_path(plan["dataset"], plan["method"], fold, wildcards.seed)
    return inputs


def pretrain_fold_arg(wildcards):
    """`foldall` jobs pretrain on every subject (fold 0 only satisfies the fold loader)."""
    return "--fold 0 --all-subjects" if wildcards.fold == "all" else f"--fold {wildcards.fold}"


def pretrained_arg(wildcards, input):
    pretrained = input.get("pretrained")
    return f"--pretrained {shlex.quote(pretrained)}" if pretrained else ""


# -- targets ------------------------------------------------------------------------------------
def train_runs(name):
    """One file per dataset x method x fold x seed of the run."""
    return [
        results_path(
            "runs", dataset, method, f"fold{fold}", f"seed{seed}", name
        )
        for dataset, method in run_pairs()
        for fold in run_folds(dataset)
        for seed in RUN["seeds"]
    ]


def runs_dir(wildcards):
    return results_path("runs")


def get_final_output():
    return [
        results_path("summary.json"),
        results_path("plots", "per_fold.csv"),
        results_path("tables"),
        results_path("figures"),
    ]


check_datasets(RUN["datasets"])
OWNERS = {}  # (pretraining dataset, per fold, identity) -> the run name whose job pretrains it
PLANS = pretrain_plans()
check_datasets({plan["dataset"] for plan in PLANS.values()} - set(RUN["datasets"]))
SIZES = image_sizes()
