"""The workflow on a real SLURM: a single-node cluster started on this machine.

The module fixture runs tests/slurm/start_cluster.sh (root; installs munge and SLURM from
Debian's packages when missing) and stops the cluster afterwards if it started it. Where no
cluster runs and none can be started (not root, or the packages cannot be installed) the tests
marked `slurm` skip with that reason; a cluster that is installed but does not come up, or runs
and misbehaves, fails them. Set FERBENCH_KEEP_SLURM=1 to leave a cluster started here running
after the tests.

tests/slurm/mini/ is a three-rule workflow (prepare -> train -> aggregate) that proves the
SLURM machinery (profiles, executor plugin, retries, checkpoint resume) in about a minute per
test. The test_demo_* tests then run the real workflow, reduced to a few jobs, the same way.

Every SLURM run uses workflow/profiles/slurm-cpu (or slurm) as shipped (a copy where a test
breaks it on purpose) and, on the command line, the first status check is made 2 s instead of
the profile's 20 s. Memory is made smaller (so the jobs fit any test machine) where the
profiles leave it, in the workflow's config: the mini workflow's own `resources:`, params.yaml's
through an override file for the demo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
MINI = SLURM_DIR / "mini" / "Snakefile"
PROFILES = REPO / "workflow" / "profiles"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# the first status check 2 s after a submission, then every 2 s (Snakemake's default: 10 s,
# which a test waits out after each of its jobs ends)
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
# the mini workflow's train job: 16 checkpointed steps; the delay per step changes no result,
# only how long there is to cancel a running job (Snakemake's status checks back off by 10 s
# each time no job finished, so slow jobs make slow tests)
MINI_CONFIG = ["--config", "steps=16", "delay=0"]
MINI_CONFIG_SLOW = ["--config", "steps=16", "delay=0.3"]
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", re.M)
READY_STATES = {"idle", "mix", "alloc", "comp"}
#: start_cluster.sh's exit status where a cluster cannot be started on this machine
START_IMPOSSIBLE = 77

# One pytest-xdist worker starts the cluster and stops it after the module (make test hands each
# test file to one worker: --dist loadfile); two would race.


# -- helpers --------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)  # the cluster's config is /etc/slurm/slurm.conf
    # rules call the `ferbench` console script; sbatch --export=ALL hands PATH to the jobs
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _cluster_ready() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                             timeout=30, env=_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(READY_STATES & set(out.stdout.split()))


def snakemake(*args, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run snakemake from the repository root; stdout and stderr together in .stdout."""
    return subprocess.run([*SNAKEMAKE, *map(str, args)], cwd=REPO, env=env or _env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def slurm_profile(tmp_path: Path, name: str, edit=None) -> Path:
    """workflow/profiles/<name>, or a copy of it changed by edit(config)."""
    if edit is None:
        return PROFILES / name
    cfg = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
    edit(cfg)
    dest = tmp_path / f"profile-{name}"
    dest.mkdir()
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def submitted(output: str) -> dict[str, Path]:
    """SLURM job id -> its sbatch log, from Snakemake's output."""
    return {m.group(1): Path(m.group(2)) for m in SUBMITTED.finditer(output)}


def slurm_jobs(ids) -> dict[str, dict[str, str]]:
    """What slurmctld remembers of these jobs (MinJobAge keeps finished ones for an hour)."""
    jobs = {}
    for jid in ids:
        out = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True,
                             text=True, check=True, env=_env()).stdout
        jobs[jid] = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    return jobs


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def wait_then_cancel(proc: subprocess.Popen, comment: str, progressed, timeout: float = 600) -> str:
    """Wait until the SLURM job with this comment runs and progressed() is true; scancel it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended (rc {proc.returncode}) before {comment} could be cancelled")
        out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True,
                             text=True, env=_env()).stdout
        running = [line.split("|", 1)[0] for line in out.splitlines() if line.endswith(f"|{comment}")]
        if running and progressed():
            subprocess.run(["scancel", running[0]], check=True, env=_env())
            return running[0]
        time.sleep(0.5)
    pytest.fail(f"no running SLURM job {comment} with progress within {timeout} s")


def run_and_cancel(tmp_path: Path, args: list, comment: str, progressed, cancel_timeout: float = 600,
                   run_timeout: float = 900) -> tuple[int, str, str]:
    """Run Snakemake, scancel the job with this comment once progressed(), let the workflow
    finish (its retry); returns (exit code, Snakemake's output, the cancelled job id)."""
    out_path = tmp_path / "snakemake.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([*SNAKEMAKE, *map(str, args)], cwd=REPO, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        try:
            victim = wait_then_cancel(proc, comment, progressed, timeout=cancel_timeout)
            rc = proc.wait(timeout=run_timeout)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
    return rc, out_path.read_text(), victim


def assert_nothing_half_written(work: Path, allowed_outputs=()) -> None:
    """Only logs (and the listed complete outputs) exist; no temporary files anywhere."""
    leftovers = []
    for p in work.rglob("*"):
        if not p.is_file() or ".snakemake" in p.parts:
            continue
        rel = p.relative_to(work)
        if ".tmp" in p.name:
            leftovers.append(rel)
        elif rel.parts[:2] == ("results", "logs") or str(rel) in allowed_outputs:
            continue
        else:
            leftovers.append(rel)
    assert not leftovers, f"files left behind by the failed run: {leftovers}"


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM; started (and afterwards stopped) here when needed."""
    was_up = _cluster_ready()
    if os.geteuid() != 0:
        if not was_up:
            pytest.skip("no SLURM cluster is running and starting one needs root "
                        "(sudo tests/slurm/start_cluster.sh)")
        yield
        return
    # idempotent: also fixes a stale config or a drained node of a cluster that was up
    proc = subprocess.run(["bash", str(SLURM_DIR / "start_cluster.sh")], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode == START_IMPOSSIBLE:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no reason given"
        pytest.skip(f"no SLURM cluster: {reason}")
    if proc.returncode != 0:
        pytest.fail(f"tests/slurm/start_cluster.sh failed (rc {proc.returncode}):\n"
                    f"{proc.stderr[-4000:]}\n(deselect the SLURM tests with -m 'not slurm')")
    yield
    if not was_up and not os.environ.get("FERBENCH_KEEP_SLURM"):
        subprocess.run(["bash", str(SLURM_DIR / "stop_cluster.sh")], timeout=120)


@pytest.fixture(scope="module")
def mini_reference(tmp_path_factory):
    """The mini workflow run locally (no SLURM): what every SLURM run must reproduce."""
    work = tmp_path_factory.mktemp("mini-local")
    res = snakemake("-s", MINI, "-d", work, "--cores", "2", *MINI_CONFIG)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "SLURM_JOB_ID=none" in (work / "results/logs/train/seed0.log").read_text()
    return (work / "results/tables/summary.tsv").read_text()


# -- the profiles themselves (no cluster needed) ---------------------------------------------
@pytest.mark.parametrize("name", ["slurm", "slurm-cpu"])
def test_profile_settings(name):
    cfg = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    assert cfg["slurm-status-command"] == "squeue"  # the test cluster has no accounting DB
    assert cfg["slurm-logdir"].startswith("results/logs/")
    assert cfg["slurm-keep-successful-logs"] is True
    assert cfg["retries"] >= 1
    # `gpu` is a global resource: a cap here would throttle the cluster's GPU jobs
    assert "resources" not in cfg
    assert "slurm_account" not in cfg["default-resources"]
    for rule in ("train", "pretrain"):
        res = cfg["set-resources"][rule]
        assert "slurm_partition" in res
        assert ("gpu" in res) == (name == "slurm")
    text = (PROFILES / name / "config.yaml").read_text()
    if name == "slurm-cpu":
        assert not re.search(r"^\s*(gpu|gres|gpu_model)\s*:", text, re.M)


# What params.yaml's `resources:` owns, under any of the names Snakemake or the SLURM plugin
# reads it by: a profile that set one would silently override the config.
PARAMS_OWNED = {"threads", "_cores", "cpus_per_task", "mem", "mem_mb", "mem_mib", "mem_gb",
                "mem_mb_per_cpu", "mem_mib_per_cpu", "runtime", "walltime", "time_min"}


@pytest.mark.parametrize("name", ["default", "slurm", "slurm-cpu"])
def test_profiles_leave_threads_memory_and_time_to_params_yaml(name):
    cfg = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())["resources"]
    assert "set-threads" not in cfg
    defaults = cfg.get("default-resources", {})
    per_rule = cfg.get("set-resources", {})
    assert set(per_rule) <= set(params), "set-resources names a rule params.yaml does not size"
    for where, res in [("default-resources", defaults)] + [(r, v) for r, v in per_rule.items()]:
        owned = set(res) & PARAMS_OWNED
        # the one derived value: sbatch --cpus-per-task is the rule's threads (params.yaml's)
        if where == "default-resources" and res.get("cpus_per_task") == "threads":
            owned.discard("cpus_per_task")
        assert not owned, f"{name} profile, {where}: {sorted(owned)} belong to params.yaml"
        # a GPU is requested only with the partition that has them, never as a default
        if "gpu" in res:
            assert where != "default-resources" and name == "slurm"
            assert res.get("slurm_partition") not in (None, defaults.get("slurm_partition"))
    if name == "default":
        # the workstation profile sets no per-job values at all, only the global GPU cap
        assert not defaults and not per_rule
        assert cfg["resources"] == ["gpu=1"]


# -- the mini workflow on SLURM ---------------------------------------------------------------
@pytest.mark.slurm
def test_mini_workflow_runs_through_slurm(slurm_cluster, mini_reference, tmp_path):
    work = tmp_path / "work"
    profile = slurm_profile(tmp_path, "slurm-cpu")
    res = snakemake("-s", MINI, "-d", work, "--workflow-profile", profile, *FAST, *MINI_CONFIG)
    assert res.returncode == 0, res.stdout[-6000:]

    jobs = submitted(res.stdout)
    assert len(jobs) == 5, res.stdout[-6000:]  # prepare x2, train x2, aggregate; `all` is local
    # slurmctld ran them, under the profile's job-name prefix, and they completed
    known = slurm_jobs(jobs)
    assert set(known) == set(jobs)
    for jid, info in known.items():
        assert info["JobState"] == "COMPLETED", info
        assert info["JobName"].startswith("ferbench_"), info
        assert info["Partition"] == "main"
    # the sbatch logs are kept under results/logs/slurm, named by SLURM job id
    for jid, log in jobs.items():
        assert (work / "results/logs/slurm") in log.parents, log
        assert log.name == f"{jid}.log" and log.is_file(), log
    # each rule's own log was written inside the SLURM job it was submitted as
    for rel in ["prepare/seed0.log", "prepare/seed1.log", "train/seed0.log", "train/seed1.log",
                "aggregate.log"]:
        ids = re.findall(r"SLURM_JOB_ID=(\w+)", (work / "results/logs" / rel).read_text())
        assert len(ids) == 1 and ids[0] in jobs, (rel, ids)
    # the mini config's resources reached sbatch through the workflow's own helpers (the
    # profile sets none): cpus from threads, memory and time from `resources.train`
    train = [known[j] for j, log in jobs.items() if "rule_train" in str(log)]
    assert {t["NumCPUs"] for t in train} == {"1"}
    assert {t["MinMemoryNode"] for t in train} == {"500M"}
    assert {t["TimeLimit"] for t in train} == {"04:00:00"}
    assert (work / "results/tables/summary.tsv").read_text() == mini_reference


@pytest.mark.slurm
def test_mini_cancelled_training_is_retried_and_resumes(slurm_cluster, mini_reference, tmp_path):
    work = tmp_path / "work"
    profile = slurm_profile(tmp_path, "slurm-cpu")
    ckpt = work / "results/runs/seed0/ckpt.json"

    def progressed():
        try:
            return json.loads(ckpt.read_text())["step"] >= 3
        except (OSError, ValueError):
            return False

    rc, output, victim = run_and_cancel(
        tmp_path, ["-s", MINI, "-d", work, "--workflow-profile", profile, *FAST, *MINI_CONFIG_SLOW],
        "rule_train_wildcards_0", progressed)
    assert rc == 0, output[-6000:]

    # SLURM saw the cancellation; Snakemake retried the job as a new SLURM job
    assert f"SLURM-job '{victim}' failed, SLURM status is: 'CANCELLED'" in output, output[-6000:]
    # Snakemake clears a job's log before each attempt: the log is the retry's, and it
    # started where the cancelled attempt's last checkpoint left off
    lines = re.findall(r"SLURM_JOB_ID=(\d+) resume_step=(\d+)",
                       (work / "results/logs/train/seed0.log").read_text())
    assert len(lines) == 1, lines
    second, start = lines[0]
    assert second != victim and second in submitted(output)
    assert int(start) >= 3
    # the retry asked for more: attempt x the config's memory and time
    info = slurm_jobs([victim, second])
    assert info[victim]["JobState"] == "CANCELLED" and info[second]["JobState"] == "COMPLETED"
    assert (info[victim]["MinMemoryNode"], info[second]["MinMemoryNode"]) == ("500M", "1000M")
    assert (info[victim]["TimeLimit"], info[second]["TimeLimit"]) == ("04:00:00", "08:00:00")
    # the cancelled attempt's sbatch log is kept beside the retry's
    assert (work / f"results/logs/slurm/rule_train/0/{victim}.log").is_file()
    assert (work / "results/tables/summary.tsv").read_text() == mini_reference


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.slurm
def test_partition_that_does_not_exist(slurm_cluster, tmp_path):
    def edit(cfg):
        cfg["default-resources"]["slurm_partition"] = "nosuchpartition"

    work = tmp_path / "work"
    profile = slurm_profile(tmp_path, "slurm-cpu", edit=edit)
    res = snakemake("-s", MINI, "-d", work, "--workflow-profile", profile, *FAST, *MINI_CONFIG)
    assert res.returncode != 0
    assert "Error in rule prepare:" in res.stdout, res.stdout[-6000:]
    assert "Invalid partition name specified" in res.stdout
    assert "wildcards: seed=0" in res.stdout
    assert not submitted(res.stdout)
    assert_nothing_half_written(work)


@pytest.mark.slurm
def test_slurm_not_reachable(slurm_cluster, tmp_path):
    # The client talks to a controller port nobody listens on: what a login node sees when
    # slurmctld is down, without taking the shared test cluster down.
    conf = tmp_path / "slurm.conf"
    text = Path("/etc/slurm/slurm.conf").read_text()
    conf.write_text(re.sub(r"^SlurmctldHost=.*$", r"\g<0>\nSlurmctldPort=9", text, flags=re.M))
    work = tmp_path / "work"
    profile = slurm_profile(tmp_path, "slurm-cpu")
    res = snakemake("-s", MINI, "-d", work, "--workflow-profile", profile, *FAST, "--retries", "0",
                    *MINI_CONFIG, env=_env(SLURM_CONF=str(conf)), timeout=600)
    assert res.returncode != 0
    assert "Error in rule prepare:" in res.stdout, res.stdout[-6000:]
    assert "Unable to contact slurm controller" in res.stdout
    assert not submitted(res.stdout)
    assert_nothing_half_written(work)


@pytest.mark.slurm
def test_sbatch_refuses_gpu_job_on_cluster_without_gpus(slurm_cluster, tmp_path):
    # The GPU profile on this GPU-less cluster (its partitions pointed at `main`, so the GPU
    # request is the only problem): data jobs run, sbatch refuses the training jobs.
    def edit(cfg):
        for res in cfg["set-resources"].values():
            res["slurm_partition"] = "main"

    work = tmp_path / "work"
    profile = slurm_profile(tmp_path, "slurm", edit=edit)
    res = snakemake("-s", MINI, "-d", work, "--workflow-profile", profile, *FAST, *MINI_CONFIG)
    assert res.returncode != 0
    assert "Error in rule train:" in res.stdout, res.stdout[-6000:]
    assert "wildcards: seed=0" in res.stdout and "wildcards: seed=1" in res.stdout
    assert "Invalid generic resource (gres) specification" in res.stdout
    assert "--gpus=1" in res.stdout  # the profile's `gpu: 1` became the sbatch request
    assert len(submitted(res.stdout)) == 2  # the two prepare jobs, nothing else
    assert_nothing_half_written(work, allowed_outputs={"cache/seed0.txt", "cache/seed1.txt"})


# -- the real workflow on SLURM ---------------------------------------------------------------
# The demo reduced to a few jobs: one dataset, one method, one seed, two folds, only the
# synthetic layout it needs; a checkpoint every 2 steps so a job can be cancelled mid-run.
DEMO_OVERRIDES = {
    "run": {"datasets": ["ckplus"], "methods": ["supervised"], "seeds": [0]},
    # 20 subjects (2 per test fold), not the demo's 40: the run is only compared, not scored
    "synthetic": {"layouts": ["ckplus"], "subjects": 20},
    "budgets": {"demo": {"folds": [0, 1], "checkpoint_every": 2}},
    # training's memory made small enough for any test machine (the profiles set none)
    "resources": {"train": {"mem_mb": 2000}, "pretrain": {"mem_mb": 2000}},
}
TRAIN_DIR = "results/runs/ckplus/supervised/fold{fold}/seed0"


def demo_run(tmp_path: Path, name: str, *extra) -> tuple[Path, list]:
    """The command for the reduced demo in its own working directory (params.yaml copied)."""
    work = tmp_path / name
    work.mkdir()
    shutil.copy(REPO / "params.yaml", work / "params.yaml")
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(DEMO_OVERRIDES))
    # the target first: --configfile takes every following word
    cmd = ["-s", REPO / "Snakefile", "all", "-d", work, *extra,
           "--configfile", work / "params.yaml", overrides]
    return work, cmd


def tables(work: Path) -> dict[str, bytes]:
    """What the benchmark reports: tables, summary and per-fold numbers (figures are images)."""
    res = work / "results"
    found = {k: v for k, v in files_under(res / "tables").items() if not Path(k).name.startswith(".")}
    found["summary.json"] = (res / "summary.json").read_bytes()
    found["plots/per_fold.csv"] = (res / "plots/per_fold.csv").read_bytes()
    return found


@pytest.fixture(scope="module")
def demo_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo-local")
    work, cmd = demo_run(tmp, "work", "--cores", "2")
    res = snakemake(*cmd, timeout=1800)
    assert res.returncode == 0, res.stdout[-6000:]
    return tables(work)


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_under_slurm_with_a_cancelled_training_equals_local_run(slurm_cluster, demo_reference, tmp_path):
    """The real workflow (reduced demo) through slurmctld, one training job cancelled after its
    first checkpoint: Snakemake retries it as a new SLURM job, the retry resumes from that
    checkpoint, every other job completes with params.yaml's resources, and the tables are the
    local run's byte for byte. (One run checks both: a demo run under SLURM is the costliest
    test of the suite; the mini workflow above checks the retry's doubled resources.)"""
    profile = slurm_profile(tmp_path, "slurm-cpu")
    work, cmd = demo_run(tmp_path, "work", "--workflow-profile", profile, *FAST)
    run_dir = work / TRAIN_DIR.format(fold=0)

    def progressed():  # a checkpoint exists and the job is not finished
        return (run_dir / "checkpoint_last.pt").exists() and not (run_dir / "metrics.json").exists()

    # the plugin's comment is rule_<rule>_wildcards_<values joined by _>
    rc, output, victim = run_and_cancel(tmp_path, cmd, "rule_train_wildcards_ckplus_supervised_0_0",
                                        progressed, cancel_timeout=1200, run_timeout=2400)
    assert rc == 0, output[-6000:]
    assert f"SLURM-job '{victim}' failed, SLURM status is: 'CANCELLED'" in output
    run_log = (run_dir / "run.log").read_text()
    assert re.search(r"resumed from \S*checkpoint_last\.pt at step [1-9]", run_log), run_log

    jobs = submitted(output)
    # synthesize, prepare, folds, train x2, aggregate, and the cancelled training's retry
    assert len(jobs) == 7 and victim in jobs, output[-6000:]
    known = slurm_jobs(jobs)
    assert known.pop(victim)["JobState"] == "CANCELLED"
    assert {i["JobState"] for i in known.values()} == {"COMPLETED"}, known
    # sbatch got params.yaml's resources (the profile sets none): train's memory as overridden
    # in DEMO_OVERRIDES, its time as shipped (the first attempt's: retries ask for more)
    train = [known[j] for j, log in jobs.items() if "rule_train" in str(log) and j in known]
    minutes = yaml.safe_load((REPO / "params.yaml").read_text())["resources"]["train"]["runtime"]
    first = [t for t in train if t["TimeLimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00"]
    assert len(train) == 2 and len(first) == 1, train
    assert first[0]["MinMemoryNode"] == "2000M", first
    for jid, log in jobs.items():
        assert log.is_file() and log.name == f"{jid}.log"
        assert (work / "results/logs/slurm") in log.parents
    assert tables(work) == demo_reference
