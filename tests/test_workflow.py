"""The Snakemake workflow: lint-clean, one train job per dataset x method x fold x seed, and one
clear line naming the key for a bad config (through Snakemake and through ferbench)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())

# Every test here starts Snakemake on the workflow (a dry run of the whole DAG at least).
pytestmark = pytest.mark.e2e


def run(*args: str) -> subprocess.CompletedProcess:
    # Rules and tests find `ferbench`/`snakemake` in the interpreter's environment.
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def snakemake(*args: str) -> subprocess.CompletedProcess:
    # --nolock: a dry run must not collide with a real run in the same checkout.
    return run(sys.executable, "-m", "snakemake", "--nolock", *args)


def write_config(tmp_path: Path, edit=None, name: str = "config.yaml") -> Path:
    """params.yaml with cache/results in tmp_path (nothing in the repo is touched), then edit."""
    config = copy.deepcopy(PARAMS)
    config["cache"] = str(tmp_path / "cache")
    config["results"] = str(tmp_path / "results")
    if edit is not None:
        edit(config)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def twelve_jobs(config):
    config["budget"] = "demo"
    config["budgets"]["demo"]["folds"] = [0, 1, 2]
    config["run"] = {"datasets": ["ckplus", "afewva"], "methods": ["supervised"], "seeds": [0, 1]}


def all_folds(config):
    config["budget"] = "demo"
    config["budgets"]["demo"]["folds"] = None
    config["datasets"]["ckplus"]["protocol"]["folds"] = 5
    config["run"] = {"datasets": ["ckplus", "fer2013"], "methods": ["supervised"], "seeds": [3]}


def unregistered_method(config):
    config["methods"]["nosuch"] = {}
    config["run"]["methods"] = ["supervised", "nosuch"]


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """The invocations that build the whole DAG, started together: each one imports the
    method registry (torch), which dominates this file's run time."""
    tmp = tmp_path_factory.mktemp("workflow")
    shipped = str(write_config(tmp))
    commands = {"lint": ["--lint"], "shipped": ["--dry-run", "--configfile", shipped],
                # one MaskFN row's pretraining with its shell command (the job's config)
                "maskfn": [str(tmp / "results" / "pretrain" / "ckplus" / "ssl_all" / "foldall" / "seed0"
                               / "encoder.pt"), "--dry-run", "--printshellcmds", "--configfile", shipped]}
    paper = str(write_config(tmp, lambda c: c.update(budget="paper"), "paper.yaml"))
    commands["paper"] = ["--dry-run", "--forceall", "--configfile", paper]
    commands["demo_forced"] = ["--dry-run", "--forceall", "--configfile", shipped]
    for edit in (twelve_jobs, all_folds, unregistered_method):
        config = write_config(tmp, edit, f"{edit.__name__}.yaml")
        commands[edit.__name__] = ["--dry-run", "--configfile", str(config)]
    with ThreadPoolExecutor(len(commands)) as pool:
        yield {"tmp": tmp, **{name: pool.submit(snakemake, *args) for name, args in commands.items()}}


def dry_run_jobs(result: subprocess.CompletedProcess) -> tuple[dict[str, int], list[tuple[str, ...]]]:
    """The job-stats table and the (dataset, method, fold, seed) of every train job."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    stats = dict(
        (m.group(1), int(m.group(2)))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M)
    )
    jobs, rule = [], None
    for line in out.splitlines():
        started = re.match(r"^(?:local)?rule (\w+):", line)
        if started:
            rule = started.group(1)
        wildcards = re.match(
            r"^\s+wildcards: dataset=(\w+), method=(\w+), fold=(\d+), seed=(\d+)$", line
        )
        if wildcards and rule == "train":
            jobs.append(wildcards.groups())
    return stats, jobs


def dry_run_outputs(result: subprocess.CompletedProcess) -> set[tuple[str, frozenset[str]]]:
    """(rule, its output files) of every job of a dry run."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs, rule = set(), None
    for line in out.splitlines():
        started = re.match(r"^(?:local)?rule (\w+):", line)
        if started:
            rule = started.group(1)
        outputs = re.match(r"^\s+output: (.*)$", line)
        if outputs and rule is not None:
            jobs.add((rule, frozenset(outputs.group(1).split(", "))))
            rule = None
    return jobs


@pytest.mark.parametrize("case, budget", [("demo_forced", "demo"), ("paper", "paper")])
def test_the_dag_is_the_job_records_of_ferbench_plan(parsed, tmp_path, case, budget):
    """common.smk only maps ferbench.plan's records onto rules: Snakemake's DAG of the shipped
    config (every job, its rule and output files) is the plan's job list, under the demo and
    the paper budget."""
    from ferbench.config import check_config
    from ferbench.plan import RULES, Plan

    config = copy.deepcopy(PARAMS)
    config["cache"], config["results"] = (str(parsed["tmp"] / "cache"), str(parsed["tmp"] / "results"))
    config["budget"] = budget
    plan = Plan(config, check_config(config))
    planned = {(job.rule, frozenset(job.outputs.values())) for job in plan.jobs()}
    dag = {job for job in dry_run_outputs(parsed[case].result()) if job[0] in RULES}
    assert dag == planned
    assert len(dag) > 50


def test_lint_prints_no_warnings(parsed):
    result = parsed["lint"].result()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Lints for" not in out, out
    assert "Congratulations, your workflow is in a good condition!" in out


def test_shipped_params_yaml_is_valid():
    result = run(str(BIN / "ferbench"), "validate-config", "params.yaml")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_dry_run_has_one_train_job_per_dataset_method_fold_seed(parsed):
    stats, jobs = dry_run_jobs(parsed["twelve_jobs"].result())
    expected = {
        (dataset, "supervised", str(fold), str(seed))
        for dataset in ("ckplus", "afewva") for fold in (0, 1, 2) for seed in (0, 1)
    }
    assert len(jobs) == len(set(jobs)) == 12
    assert set(jobs) == expected
    assert stats["train"] == 12
    # Data are decoded once per dataset, whatever the number of jobs reading them.
    assert stats["prepare"] == stats["folds"] == 2
    assert stats["aggregate"] == 1


def test_shipped_params_pretrain_once_per_shared_encoder(parsed):
    """The default run: GCNet's four variants share one pretraining per CK+ fold (their S/R
    switches are train-only); the triplet runs pretrain once on all CK+ subjects per sampler
    (FC-only and full fine-tuning share it), never per FER-2013 fold; each seed 001 run
    pretrains once on all CK+ subjects for its AffectNet target (their settings differ)."""
    result = parsed["shipped"].result()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    pretrain = sorted(set(re.findall(r"output: \S*/pretrain/(\w+)/(\w+)/(fold\w+)/seed0/encoder\.pt", out)))
    ssl = ["byol", "mocov2", "simclr", "ssl_all", "ssl_timeaug", "ssl_timeaug_faceswap_maskfn",
           "ssl_timeaug_hardneg", "ssl_timeaug_hardneg_cutmix", "ssl_timeaug_hardneg_faceswap",
           "ssl_timeaug_hardneg_maskfn"]
    assert pretrain == sorted([("ckplus", "gcnet_s0r0", "fold0"), ("ckplus", "triplet_m12_fc_only", "foldall"),
                               ("ckplus", "triplet_m1_fc_only", "foldall")]
                              + [("ckplus", name, "foldall") for name in ssl])
    consumers = re.findall(r"input: \S*cache/(\w+)/faces_\d+\.npy.*?/pretrain/\w+/(\w+)/fold\w+/seed0/encoder\.pt", out)
    # MaskFN's frozen patch encoder: the pretrainings of rows d, f and g read simclr's encoder
    assert sorted(consumers) == sorted([("ckplus", "gcnet_s0r0")] * 4 + [("fer2013", "triplet_m1_fc_only")] * 2
                                       + [("fer2013", "triplet_m12_fc_only")] * 2
                                       + [("affectnet", name) for name in ssl] + [("ckplus", "simclr")] * 3)


def test_maskfn_pretraining_depends_on_simclrs_encoder_of_the_same_data_and_fold(parsed):
    """Rows d, f, g (mask_fn) pretrain after simclr's pretraining on the same data and fold (all
    CK+ subjects here), and the job's config names that encoder.pt in mask_fn_encoder."""
    shipped = parsed["shipped"].result()
    out = shipped.stdout + shipped.stderr
    pairs = re.findall(r"input: \S*cache/ckplus/faces_\d+\.npy, \S+, \S+folds\.parquet, "
                       r"\S*/pretrain/ckplus/(\w+)/foldall/seed0/encoder\.pt\n\s+output: \S*/pretrain/ckplus/(\w+)/", out)
    assert sorted(pairs) == [("simclr", "ssl_all"), ("simclr", "ssl_timeaug_faceswap_maskfn"),
                             ("simclr", "ssl_timeaug_hardneg_maskfn")]
    job = parsed["maskfn"].result()
    out = job.stdout + job.stderr
    assert job.returncode == 0, out
    rules = re.findall(r"^rule (\w+):", out, re.M)
    assert rules.count("pretrain") == 2                       # simclr's, then ssl_all's
    encoder = re.search(r'"mask_fn_encoder": "([^"]+)"', out)
    assert encoder and encoder.group(1).endswith("/pretrain/ckplus/simclr/foldall/seed0/encoder.pt"), out


def test_affectnet_serves_expression_and_valence_arousal_runs_from_two_folds_tables(parsed):
    """AffectNet labels both: its protocol's expression runs read folds.parquet; the V/A runs
    (CAF, a va-only class; supervised_va, task: va) read folds_va.parquet, which the folds rule
    writes with the protocol's task set to va. Other datasets keep one folds table."""
    result = parsed["shipped"].result()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    reads = dict((method, folds) for folds, method in re.findall(
        r"input: \S*cache/affectnet/faces_\d+\.npy, \S+, \S*cache/affectnet/(folds\w*)\.parquet"
        r"(?:, \S+)?\n\s+output: \S*/runs/affectnet/(\w+)/", out))
    va = {"supervised_va", "caf", "caf_fixed_margin"}
    assert {m for m, f in reads.items() if f == "folds_va"} == va, reads
    assert {m for m, f in reads.items() if f == "folds"} == set(PARAMS["datasets"]["affectnet"]["methods"]) - va
    tables = re.findall(r"output: \S*cache/(\w+)/(folds\w*)\.parquet", out)
    assert sorted(tables) == sorted([(d, "folds") for d in PARAMS["run"]["datasets"]] + [("affectnet", "folds_va")])
    assert re.search(r"wildcards: dataset=affectnet, task_suffix=_va", out)


def test_dry_run_null_folds_means_every_fold_of_the_protocol(parsed):
    stats, jobs = dry_run_jobs(parsed["all_folds"].result())
    # ckplus: 5-fold protocol; fer2013: official split = one fold.
    assert sorted(jobs) == sorted(
        [("ckplus", "supervised", str(fold), "3") for fold in range(5)]
        + [("fer2013", "supervised", "0", "3")]
    )
    assert stats["train"] == 6


BAD_CONFIGS = {
    "wrong_key": (
        lambda c: c["budgets"]["demo"].update(epoch=3),
        ["budgets.demo", "'epoch' was unexpected"],
    ),
    "wrong_type": (
        lambda c: c["budgets"]["demo"].update(epochs="four"),
        ["budgets.demo.epochs", "'four' is not of type 'integer'"],
    ),
    "unknown_method": (
        lambda c: c["run"].update(methods=["nosuch"]),
        ["run.methods", "'nosuch' has no entry under methods"],
    ),
    "unknown_dataset": (
        lambda c: c["run"].update(datasets=["ckplus", "imagenet"]),
        ["run.datasets.1", "'imagenet' is not one of"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_naming_the_key(tmp_path, case):
    edit, expected = BAD_CONFIGS[case]
    config = write_config(tmp_path, edit)

    checked = run(str(BIN / "ferbench"), "validate-config", str(config))
    assert checked.returncode != 0
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1, checked.stderr
    for text in expected:
        assert text in lines[0], checked.stderr

    dag = snakemake("--dry-run", "--configfile", str(config))
    assert dag.returncode != 0
    message = [line for line in (dag.stdout + dag.stderr).splitlines() if expected[0] in line]
    assert message, dag.stdout + dag.stderr
    for text in expected:
        assert text in message[0], message[0]


def test_method_not_in_registry_is_named_at_dag_build(parsed):
    dag = parsed["unregistered_method"].result()
    out = dag.stdout + dag.stderr
    assert dag.returncode != 0
    assert "run.methods: unknown method 'nosuch' (known: " in out, out


def test_missing_real_dataset_root_names_its_key(tmp_path):
    missing = tmp_path / "MMI" / "Sessions"

    def edit(config):
        config["datasets"]["mmi"]["root"] = str(missing)
        config["run"]["datasets"] = ["ckplus", "mmi"]
        config["run"]["allow_unused"] = True   # the run names of the datasets left out

    dag = snakemake("--dry-run", "--configfile", str(write_config(tmp_path, edit)))
    out = dag.stdout + dag.stderr
    assert dag.returncode != 0
    assert f"datasets.mmi.root: '{missing}' does not exist" in out, out


# -- resources: params.yaml's `resources:` is their one source ----------------------------------
def job_resources(out: str) -> dict[str, dict[str, str]]:
    """rule -> its jobs' `resources:` line of a dry run, as a mapping (one job per rule here)."""
    found, rule = {}, None
    for line in out.splitlines():
        started = re.match(r"^(?:local)?rule (\w+):", line)
        if started:
            rule = started.group(1)
        listed = re.match(r"^\s+resources: (.*)$", line)
        if listed and rule:
            found[rule] = dict(item.split("=", 1) for item in listed.group(1).split(", "))
    return found


def resized(config):
    config["budget"] = "demo"
    config["budgets"]["demo"]["folds"] = [0]
    config["run"] = {"datasets": ["ckplus"], "methods": ["supervised"], "seeds": [0]}
    config["resources"]["train"] = {"threads": 3, "mem_mb": 12345, "runtime": 77, "gpu": 0}
    config["resources"]["prepare"]["mem_mb"] = 4321


@pytest.mark.parametrize("profile", ["default", "slurm", "slurm-cpu"])
def test_changed_params_resources_reach_the_jobs_under_every_profile(tmp_path, profile):
    config = write_config(tmp_path, resized)
    dag = snakemake("--dry-run", "--cores", "8", "--configfile", str(config),
                    "--workflow-profile", str(ROOT / "workflow" / "profiles" / profile))
    out = dag.stdout + dag.stderr
    assert dag.returncode == 0, out
    jobs = job_resources(out)
    train, prepare = jobs["train"], jobs["prepare"]
    assert (train["mem_mb"], train["runtime"]) == ("12345", "77")
    assert prepare["mem_mb"] == "4321"
    assert prepare["runtime"] == str(PARAMS["resources"]["prepare"]["runtime"])
    assert "--threads 3" in out
    if profile != "default":
        # what a SLURM profile adds: partitions, cpus from the threads, a GPU on the GPU partition
        assert train["cpus_per_task"] == "3"
        assert (train["slurm_partition"], train["gpu"]) == (
            ("gpu", "1") if profile == "slurm" else ("main", "0"))
        assert (prepare["slurm_partition"], prepare["gpu"]) == ("main", "0")


def test_a_datasets_own_resources_reach_its_jobs_only(tmp_path):
    """datasets.<name>.budgets.<budget>.resources.train overrides resources.train key by key,
    for that dataset under that budget only."""
    def edit(config):
        resized(config)
        config["run"]["datasets"] = ["ckplus", "fer2013"]
        config["datasets"]["fer2013"]["methods"] = ["supervised"]
        config["datasets"]["fer2013"]["budgets"] = {
            "demo": {"resources": {"train": {"threads": 2, "runtime": 300}}},
            "cpu": {"resources": {"train": {"threads": 4}}}}

    dag = snakemake("--dry-run", "--cores", "8", "--configfile", str(write_config(tmp_path, edit)),
                    "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm-cpu"))
    out = dag.stdout + dag.stderr
    assert dag.returncode == 0, out
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        if not block.startswith("rule train:"):
            continue
        dataset = re.search(r"wildcards: dataset=(\w+)", block).group(1)
        listed = re.search(r"^\s+resources: (.*)$", block, re.M).group(1)
        jobs[dataset] = dict(item.split("=", 1) for item in listed.split(", "))
        jobs[dataset]["threads"] = re.search(r"--threads (\d+)", block).group(1)
    assert {d: (j["threads"], j["cpus_per_task"], j["runtime"], j["mem_mb"]) for d, j in jobs.items()} == {
        "fer2013": ("2", "2", "300", "12345"),      # its own threads and runtime, the shared memory
        "ckplus": ("3", "3", "77", "12345")}        # resources.train as given


def test_a_retry_asks_for_attempt_times_the_params_resources(tmp_path):
    """The first try fails; the retry's resources are twice the config's (no SLURM needed)."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(f"""
config["resources"] = {{"step": {{"threads": 1, "mem_mb": 300, "runtime": 7, "gpu": 0}}}}
include: {str(ROOT / "workflow" / "rules" / "resources.smk")!r}

rule step:
    output: "out.txt"
    resources:
        mem_mb=res_per_attempt("step", "mem_mb"),
        runtime=res_per_attempt("step", "runtime"),
    shell:
        "echo {{resources.mem_mb}} {{resources.runtime}} >> tries.txt;"
        " test -e first || {{{{ touch first; exit 1; }}}}; touch {{output}}"
""")
    done = snakemake("-s", str(snakefile), "-d", str(tmp_path), "--cores", "1", "--retries", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "tries.txt").read_text().split("\n")[:2] == ["300 7", "600 14"]
