"""DVC around the Snakemake workflow, in a fresh git repository holding a copy of this checkout.

A reduced params.yaml (CK+ synthetic faces, two supervised run names, one fold, one epoch) keeps
the whole DAG to about a minute on 2 cores. The module builds it once with `dvc repro`; the tests
then check, in file order, that a second `dvc repro` does nothing, that `dvc metrics show` and
`dvc plots show` read the summary, that docs/dvc.md's remote command plus `dvc push`/`dvc pull`
restore the tables byte for byte, and last (it changes params.yaml) that changing one method's
parameter reruns that method's train job and nothing else upstream.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# docs/dvc.md's placeholder in its `dvc remote add` line; the test puts its own path there.
REMOTE_PLACEHOLDER = "/path/to/dvc-remote"

#: dvc.yaml's outputs in the DVC cache; all but the first two persist across `dvc repro`
CACHED_OUTS = ("results/tables", "results/figures", "data/synthetic", "cache", "results/runs",
               "results/pretrain", ".snakemake/metadata")
PERSISTENT_OUTS = CACHED_OUTS[2:]

CHANGED_METHOD, KEPT_METHOD = "supervised_head", "supervised"
CHANGED_KEY = f"methods.{CHANGED_METHOD}.head_dropout"

# One repository built once and changed test by test, in file order (make test hands each test
# file to one pytest-xdist worker: --dist loadfile).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def reduced_params() -> dict:
    """The shipped params.yaml cut to 6 jobs: synthesize, prepare, folds, 2 x train, aggregate."""
    config = copy.deepcopy(PARAMS)
    config["budget"] = "demo"
    config["run"] = {"datasets": ["ckplus"], "methods": [KEPT_METHOD, CHANGED_METHOD], "seeds": [0]}
    config["synthetic"].update(layouts=["ckplus"], subjects=12, frames=4, size=48)
    config["datasets"]["ckplus"]["protocol"]["folds"] = 4  # 3 test subjects per fold
    config["datasets"]["ckplus"]["methods"] = [KEPT_METHOD, CHANGED_METHOD]
    config["budgets"]["demo"].update(folds=[0], epochs=1)
    config["methods"][KEPT_METHOD] = {"finetune": "full"}
    config["methods"][CHANGED_METHOD] = {"class": "supervised", "finetune": "head"}
    # The two train jobs side by side on 2 cores (resources are not a DVC param).
    config["resources"]["train"]["threads"] = 1
    return config


# Set by the `project` fixture: DVC and git in the temp repo read none of the user's config.
ISOLATED: dict[str, str] = {}


def environment() -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):  # e.g. when run from a git hook
        env.pop(name, None)
    return env


def sh(repo: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a command in the temp repo; stdout carries stderr too (Snakemake logs there)."""
    return subprocess.run(list(args), cwd=repo, env={**environment(), **ISOLATED},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def ok(repo: Path, *args: str, timeout: int = 300) -> str:
    result = sh(repo, *args, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}"
    return result.stdout


def dvc(repo: Path, *args: str, timeout: int = 300) -> str:
    return ok(repo, str(BIN / "dvc"), *args, timeout=timeout)


def git(repo: Path, *args: str) -> str:
    return ok(repo, "git", "-c", "user.name=ferbench test",
              "-c", "user.email=test@ferbench.invalid", "-c", "commit.gpgsign=false", *args)


def snakemake_jobs(out: str) -> tuple[dict[str, int], set[tuple[str, ...]]]:
    """Job counts per rule and the (dataset, method, fold, seed) of each train job Snakemake ran."""
    rules: dict[str, int] = {}
    trains, rule = set(), None
    for line in out.splitlines():
        started = re.match(r"^(?:local)?rule (\w+):", line)
        if started:
            rule = started.group(1)
            rules[rule] = rules.get(rule, 0) + 1
        wildcards = re.match(
            r"^\s+wildcards: dataset=(\w+), method=(\w+), fold=(\d+), seed=(\d+)$", line
        )
        if wildcards and rule == "train":
            trains.add(wildcards.groups())
    return rules, trains


def run_file(repo: Path, method: str, name: str = "metrics.json") -> Path:
    return repo / "results" / "runs" / "ckplus" / method / "fold0" / "seed0" / name


def tree_digest(*dirs: Path) -> dict[str, str]:
    digest = {}
    for top in dirs:
        assert top.is_dir(), top
        for path in sorted(p for p in top.rglob("*") if p.is_file()):
            name = str(path.relative_to(top.parent))
            digest[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def readme_remote_command() -> list[str]:
    """The `dvc remote add` line of docs/dvc.md ("Reproduce with DVC"), as argv."""
    section = (ROOT / "docs" / "dvc.md").read_text()
    lines = [line.split("#", 1)[0].strip() for line in section.splitlines()
             if re.search(r"\bdvc remote add\b", line)]
    assert len(lines) == 1, f"want one `dvc remote add` line in docs/dvc.md: {lines}"
    argv = lines[0].split()
    assert argv[0].endswith("dvc") and REMOTE_PLACEHOLDER in argv, lines[0]
    return argv


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A git repository with the tracked files of this checkout, the reduced params committed,
    and one `dvc repro` done (its output kept for the first test)."""
    top = tmp_path_factory.mktemp("dvc")
    repo = top / "ferbench"
    for name in ("global", "system", "site"):
        (top / name).mkdir()
    ISOLATED.update(DVC_GLOBAL_CONFIG_DIR=str(top / "global"),
                    DVC_SYSTEM_CONFIG_DIR=str(top / "system"), DVC_SITE_CACHE_DIR=str(top / "site"),
                    DVC_NO_ANALYTICS="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], env=environment(),
                            capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree stays deleted
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    assert not (repo / "results" / "tables").exists() and not (repo / "data").exists()
    (repo / "params.yaml").write_text(yaml.safe_dump(reduced_params(), sort_keys=False))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ferbench with reduced params")
    first = dvc(repo, "repro", timeout=480)
    return {"repo": repo, "first": first}


def test_repro_builds_the_outputs_and_a_second_repro_does_nothing(project):
    repo, first = project["repo"], project["first"]
    rules, trains = snakemake_jobs(first)
    assert {r: rules.get(r) for r in ("synthesize", "prepare", "folds", "train", "aggregate")} == {
        "synthesize": 1, "prepare": 1, "folds": 1, "train": 2, "aggregate": 1}, first
    assert trains == {("ckplus", m, "0", "0") for m in (KEPT_METHOD, CHANGED_METHOD)}, first
    for out in ("results/tables", "results/figures"):
        assert any((repo / out).iterdir()), out
    summary = json.loads((repo / "results/summary.json").read_text())
    assert set(summary["ckplus"]) == {KEPT_METHOD, CHANGED_METHOD}, summary
    assert (repo / "results/plots/per_fold.csv").stat().st_size > 0

    # dvc.lock: the declared params with their values; the outputs: tables and figures, the
    # persistent data and artefacts (generated data, face caches, runs, pretrained encoders),
    # metrics and plots.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["benchmark"]
    assert lock["params"]["params.yaml"]["methods"][CHANGED_METHOD] == {
        "class": "supervised", "finetune": "head"}
    assert "resources" not in lock["params"]["params.yaml"]
    assert sorted(o["path"] for o in lock["outs"]) == sorted(
        [*CACHED_OUTS, "results/plots/per_fold.csv", "results/summary.json"])
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["benchmark"]
    persistent = sorted(next(iter(o)) for o in stage["outs"] if isinstance(o, dict)
                        and next(iter(o.values())).get("persist"))
    assert persistent == sorted(PERSISTENT_OUTS), stage["outs"]
    assert (repo / "data/synthetic/ckplus").is_dir() and any((repo / "cache/ckplus").iterdir())

    # Commit what docs/dvc.md says belongs in git (dvc.lock, metrics, plots) ...
    git(repo, "add", "dvc.lock", "results/summary.json", "results/plots/per_fold.csv")
    git(repo, "commit", "-q", "-m", "dvc repro")
    assert git(repo, "status", "--porcelain") == "", "dvc repro left files git does not ignore"
    # ... then nothing changed: nothing runs, not even Snakemake, and no result is rewritten.
    before = {p: p.stat().st_mtime_ns for p in (run_file(repo, KEPT_METHOD),
                                                run_file(repo, CHANGED_METHOD),
                                                repo / "results/summary.json")}
    second = dvc(repo, "repro")
    assert "Stage 'benchmark' didn't change, skipping" in second, second
    assert "Data and pipelines are up to date." in second, second
    assert "Running stage" not in second and "Job stats" not in second, second
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert dvc(repo, "status").strip() == "Data and pipelines are up to date."
    # A killed job's leftovers in a persistent output are no part of it (.dvcignore).
    run = run_file(repo, KEPT_METHOD).parent
    leftovers = [run / "checkpoint_last.pt", run / ".model.pt.k3j_x9q2.pt",
                 repo / "cache/ckplus/faces_48.npy.shrink"]
    for path in leftovers:
        path.write_bytes(b"partial")
    assert dvc(repo, "status").strip() == "Data and pipelines are up to date."
    for path in leftovers:
        path.unlink()


def test_metrics_show_prints_the_summary_and_plots_read_the_per_fold_scores(project):
    repo = project["repo"]
    summary = json.loads((repo / "results/summary.json").read_text())
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    assert shown[""]["data"]["results/summary.json"]["data"] == summary

    table = dvc(repo, "metrics", "show")
    assert "results/summary.json" in table, table
    for method, scores in summary["ckplus"].items():
        for name in scores:
            assert f"ckplus.{method}.{name}" in table, table
    values = {round(v, 5) for scores in summary["ckplus"].values() for v in scores.values()}
    printed = {round(float(v), 5) for v in re.findall(r"\d+\.\d+|\b\d+\b", table.split("\n", 1)[1])}
    assert values <= printed, table

    plots = dvc(repo, "plots", "show", "--json")
    assert "results/plots/per_fold.csv" in plots, plots


def test_readme_remote_command_then_push_and_pull_restore_the_tables(project, tmp_path):
    repo = project["repo"]
    remote = tmp_path / "remote"
    argv = readme_remote_command()
    ok(repo, str(BIN / "dvc"), *argv[1:argv.index(REMOTE_PLACEHOLDER)], str(remote),
       *argv[argv.index(REMOTE_PLACEHOLDER) + 1:])
    assert str(remote) in dvc(repo, "remote", "list")
    assert git(repo, "status", "--porcelain") == "", "the remote command changed a tracked file"

    pushed = dvc(repo, "push")
    assert re.search(r"\b\d+ files? pushed", pushed), pushed
    assert any(p.is_file() for p in remote.rglob("*")), "nothing reached the remote"
    cloud = dvc(repo, "status", "--cloud")
    assert re.search(r"Cache and remote '[\w-]+' are in sync", cloud), cloud

    outs = [repo / out for out in CACHED_OUTS]
    digest = tree_digest(*outs)
    assert any(name.startswith("tables/") for name in digest), digest
    assert any(name.endswith("/model.pt") for name in digest), digest  # trained models travel

    # Another machine: a clone of the commit, docs/dvc.md's remote line, `dvc pull`. Data, caches,
    # runs and Snakemake's records arrive with the tables; once `snakemake --touch` has put the
    # files' times in the DAG's order (a pull writes them in any order), nothing is to be done,
    # and a changed method param reruns exactly that method's train job there too.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    ok(clone, str(BIN / "dvc"), *argv[1:argv.index(REMOTE_PLACEHOLDER)], str(remote),
       *argv[argv.index(REMOTE_PLACEHOLDER) + 1:])
    dvc(clone, "pull")
    assert tree_digest(*(clone / out for out in CACHED_OUTS)) == digest
    assert dvc(clone, "status").strip() == "Data and pipelines are up to date."
    snakemake = (str(BIN / "snakemake"), "--cores", "1")
    ok(clone, *snakemake, "--touch")
    dry = ok(clone, *snakemake, "--dry-run")
    assert "Nothing to be done" in dry and "Job stats" not in dry, dry
    assert tree_digest(*(clone / out for out in CACHED_OUTS[:-1])) == {
        k: v for k, v in digest.items() if not k.startswith("metadata/")}
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["methods"][CHANGED_METHOD]["head_dropout"] = 0.5
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rules, trains = snakemake_jobs(ok(clone, *snakemake, "--dry-run"))
    assert trains == {("ckplus", CHANGED_METHOD, "0", "0")}, rules
    assert {r: n for r, n in rules.items() if r != "default"} == {"train": 1, "aggregate": 1}, rules

    for out in outs[:2]:
        shutil.rmtree(out)
    shutil.rmtree(repo / ".dvc" / "cache")
    missing = json.loads(dvc(repo, "status", "--json"))
    assert missing["benchmark"] == [{"changed outs": {
        out: "not in cache"
        for out in CACHED_OUTS}}], missing

    pulled = dvc(repo, "pull")
    assert re.search(r"\b\d+ files? (fetched|added)", pulled), pulled
    assert tree_digest(*outs) == digest
    assert dvc(repo, "status").strip() == "Data and pipelines are up to date."


def test_changing_one_method_param_reruns_only_that_methods_jobs(project):
    repo = project["repo"]
    kept, changed = run_file(repo, KEPT_METHOD), run_file(repo, CHANGED_METHOD)
    kept_bytes, kept_mtime = kept.read_bytes(), kept.stat().st_mtime_ns
    changed_mtime = changed.stat().st_mtime_ns
    upstream = {p: p.stat().st_mtime_ns for p in [*(repo / "cache/ckplus").iterdir(),
                                                  *(repo / "data/synthetic/ckplus").rglob("*")]}

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["methods"][CHANGED_METHOD]["head_dropout"] = 0.25
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    status = json.loads(dvc(repo, "status", "--json"))
    assert status == {"benchmark": [{"changed deps": {"params.yaml": {"methods": "modified"}}}]}
    shown = dvc(repo, "status")
    assert re.search(r"params\.yaml:\s+modified:\s+methods$", shown, re.M), shown
    diff = json.loads(dvc(repo, "params", "diff", "--json"))
    assert diff == {"params.yaml": {CHANGED_KEY: {"old": None, "new": 0.25}}}, diff
    assert CHANGED_KEY in dvc(repo, "params", "diff")

    rerun = dvc(repo, "repro", timeout=480)
    assert "Running stage 'benchmark'" in rerun, rerun
    rules, trains = snakemake_jobs(rerun)
    assert trains == {("ckplus", CHANGED_METHOD, "0", "0")}, rerun
    assert {r: n for r, n in rules.items() if r != "default"} == {"train": 1, "aggregate": 1}, rerun

    assert kept.stat().st_mtime_ns == kept_mtime and kept.read_bytes() == kept_bytes
    assert changed.stat().st_mtime_ns > changed_mtime
    assert json.loads(changed.read_text())["method"] == CHANGED_METHOD
    logs = repo / "results/logs/train/ckplus" / CHANGED_METHOD
    job_config = json.loads((logs / "fold0/seed0.config.json").read_text())
    assert job_config["methods"][CHANGED_METHOD]["head_dropout"] == 0.25
    assert {p: p.stat().st_mtime_ns for p in upstream} == upstream

    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["benchmark"]
    assert lock["params"]["params.yaml"]["methods"][CHANGED_METHOD]["head_dropout"] == 0.25
    assert dvc(repo, "status").strip() == "Data and pipelines are up to date."
    assert "didn't change, skipping" in dvc(repo, "repro")
