# The rules/*.smk files' view of the run: the job records of ferbench.plan (planned from the
# validated config, schema defaults filled in), mapped onto the rules' wildcards and arguments.
# No planning happens here. The whole DAG, every fold included, is known before any data
# exists: no checkpoints.
import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from ferbench.config import dataset_labels
from ferbench.errors import FerbenchError
from ferbench.plan import Plan, synthetic_layout

RESULTS = os.path.normpath(config["results"])
CACHE = os.path.normpath(config["cache"])
SYNTHETIC = config["synthetic"]
SYNTHETIC_OUT = os.path.normpath(SYNTHETIC["out"])


def alternatives(names):
    """Wildcard constraint matching exactly the given names."""
    return "|".join(re.escape(name) for name in sorted(names))


def results_path(*parts):
    return os.path.join(RESULTS, *parts)


def cache_path(*parts):
    return os.path.join(CACHE, *parts)


# res(), res_per_attempt(): the rules' threads and resources, from the config's `resources:`
include: "resources.smk"


def planned(call, *args):
    """A call into the plan; its one-line FerbenchError becomes Snakemake's WorkflowError."""
    try:
        return call(*args)
    except FerbenchError as err:
        raise WorkflowError(str(err)) from None


# CLASSES: every run name's class, from check_config in workflow/Snakefile
PLAN = planned(Plan, config, CLASSES)
for _dataset, _skipped in PLAN.skipped.items():
    print(f"ferbench: {_dataset} has {dataset_labels(_dataset)} labels only: not running "
          f"{', '.join(_skipped)} on it", file=sys.stderr)
planned(PLAN.check_datasets)
JOBS = planned(PLAN.jobs)
SIZES = planned(PLAN.image_sizes)
AGGREGATE = next(job for job in JOBS if job.rule == "aggregate")


# -- data ---------------------------------------------------------------------------------------
def synthetic_out(wildcards):
    return SYNTHETIC_OUT


def synthetic_outputs():
    return [directory(os.path.join(SYNTHETIC_OUT, layout)) for layout in SYNTHETIC["layouts"]]


def dataset_root_input(wildcards):
    """The synthetic layout folder (made by `synthesize`) or the user's root, as shipped."""
    root = planned(PLAN.prepare_job, wildcards.dataset, SIZES).inputs["root"]
    if synthetic_layout(config, config["datasets"][wildcards.dataset]["root"]) is not None:
        return root
    # ancient: a stray file dropped into a multi-GB root must not re-decode it; a changed
    # root path still reruns prepare through params.
    return ancient(root)


def dataset_root(wildcards):
    return config["datasets"][wildcards.dataset]["root"]


def split_check_arg(wildcards):
    """`prepare --split-check`: datasets.<name>.split_check, warn when absent."""
    return config["datasets"][wildcards.dataset].get("split_check") or "warn"


def faces_outputs():
    return [cache_path("{dataset}", f"faces_{size}.npy") for size in SIZES]


def sizes_arg(wildcards):
    return " ".join(str(size) for size in SIZES)


def folds_record(wildcards):
    """folds_<task>: the dataset's other task; folds: its protocol's own."""
    task = wildcards.task_suffix.lstrip("_") or planned(PLAN.protocol_task, wildcards.dataset)
    return planned(PLAN.folds_job, wildcards.dataset, task)


def protocol_json(wildcards):
    protocol = dict(config["datasets"][wildcards.dataset].get("protocol") or {})
    if wildcards.task_suffix:  # folds_<task>: the dataset's other task
        protocol["task"] = folds_record(wildcards).task
    return json.dumps(protocol, sort_keys=True)


def fold_file_input(wildcards):
    return {k: v for k, v in folds_record(wildcards).inputs.items() if k == "fold_file"}


def fold_file_arg(wildcards, input):
    fold_file = input.get("fold_file")
    return f"--fold-file {shlex.quote(fold_file)}" if fold_file else ""


# -- training -------------------------------------------------------------------------------------
def train_record(wildcards):
    return planned(PLAN.train_job, wildcards.dataset, wildcards.method, wildcards.fold, int(wildcards.seed))


def pretrain_record(wildcards):
    return planned(PLAN.pretrain_job, wildcards.dataset, wildcards.method, wildcards.fold,
                   int(wildcards.seed))


def train_inputs(wildcards):
    return dict(train_record(wildcards).inputs)


def pretrain_inputs(wildcards):
    return dict(pretrain_record(wildcards).inputs)


def job_config(wildcards):
    """The job's slice of the config (Plan.job_config): its --config file and a param."""
    return planned(PLAN.job_config, train_record(wildcards))


def pretrain_config(wildcards):
    return planned(PLAN.job_config, pretrain_record(wildcards))


def pretrain_fold_arg(wildcards):
    """`foldall` jobs pretrain on every subject (fold 0 only satisfies the fold loader)."""
    return "--fold 0 --all-subjects" if wildcards.fold == "all" else f"--fold {wildcards.fold}"


def pretrained_arg(wildcards, input):
    pretrained = input.get("pretrained")
    return f"--pretrained {shlex.quote(pretrained)}" if pretrained else ""


# -- report ---------------------------------------------------------------------------------------
def train_runs(name):
    """One file per dataset x method x fold x seed of the run."""
    return AGGREGATE.inputs[name]


def runs_dir(wildcards):
    return results_path("runs")


def report_config(wildcards):
    """The whole config but `resources` (scheduling does not change a table)."""
    return json.dumps({k: v for k, v in config.items() if k != "resources"}, sort_keys=True)


def get_final_output():
    return list(AGGREGATE.outputs.values())
