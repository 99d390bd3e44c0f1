"""Config mistakes are caught before any job runs, by `ferbench validate-config` and by the
workflow's DAG build alike (both call ferbench.config.check_config), in one line naming the key;
and the schema's method-block keys cannot drift away from the method classes."""

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

from ferbench import cli
from ferbench.config import METHOD_BLOCK_KEYS, METHOD_BUDGET_KEYS, SCHEMA_PATH, TRAIN_KEYS, check_config, load_config
from ferbench.errors import FerbenchError
from ferbench.method_blocks import method_block

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def first_method(config):
    return config["run"]["methods"][0]


#: case -> (edit of params.yaml, the message: its key first)
BAD_CONFIGS = {
    "unknown_hyperparameter": (
        lambda c: c["methods"]["supervised"].update(head_dropuot=0.5),
        ["methods.supervised.head_dropuot", "not a key of method 'supervised'"],
    ),
    "unknown_hyperparameter_of_a_block_not_run": (
        lambda c: (c["methods"].__setitem__("spare", {"class": "supervised", "finetun": "head"}),
                   c["run"].update(methods=["supervised"])),
        ["methods.spare.finetun", "not a key of method 'supervised'"],
    ),
    "unknown_backbone_in_budget": (
        lambda c: c["budgets"]["demo"].update(backbone="resnet81"),
        ["budgets.demo.backbone", "unknown backbone 'resnet81' (known: "],
    ),
    "unknown_backbone_in_unused_budget": (
        lambda c: c["budgets"]["paper"].update(backbone="resnet81"),
        ["budgets.paper.backbone", "unknown backbone 'resnet81'"],
    ),
    "unknown_optimizer_in_method": (
        lambda c: c["methods"]["supervised"].update(optimizer="adamm"),
        ["methods.supervised.optimizer", "unknown optimizer 'adamm' (known: adam, adamw, nesterov, sgd)"],
    ),
    "unknown_optimizer_in_per_budget_pretrain": (
        lambda c: c["methods"]["supervised"].update(budgets={"demo": {"pretrain": {"optimizer": "lbfgs"}}}),
        ["methods.supervised.budgets.demo.pretrain.optimizer", "unknown optimizer 'lbfgs'"],
    ),
    "unknown_backbone_in_a_per_dataset_schedule": (
        lambda c: c["methods"]["caf"]["budgets"]["paper"].update(
            datasets={"affectnet": {"backbone": "resnet81"}}),
        ["methods.caf.budgets.paper.datasets.affectnet.backbone", "unknown backbone 'resnet81'"],
    ),
    "unknown_dataset_in_a_per_dataset_schedule": (
        lambda c: c["methods"]["caf"]["budgets"]["paper"].update(datasets={"afectnet": {"epochs": 2}}),
        ["methods.caf.budgets.paper.datasets", "'afectnet'"],
    ),
    "unknown_training_key_in_a_dataset_budget": (
        lambda c: c["datasets"]["fer2013"].update(budgets={"cpu": {"epoch": 20}}),
        ["datasets.fer2013.budgets.cpu", "'epoch'"],
    ),
    "run_for_a_task_the_dataset_has_no_labels_for": (
        lambda c: c["datasets"]["ckplus"]["methods"].append("caf"),
        ["datasets.ckplus.methods", "'caf' trains for the va task, and ckplus has classification labels only"],
    ),
    "task_the_method_class_cannot_train": (
        lambda c: c["methods"]["caf"].update(task="classification"),
        ["methods.caf.task", "'classification', but method class 'caf' is for va"],
    ),
    "nan_learning_rate": (
        lambda c: c["budgets"]["demo"].update(lr=float("nan")),
        ["budgets.demo.lr", "nan is not a finite number"],
    ),
    "infinite_weight_decay": (
        lambda c: c["methods"]["supervised"].update(weight_decay=float("inf")),
        ["methods.supervised.weight_decay", "inf is not a finite number"],
    ),
    "nan_hyperparameter": (
        lambda c: c["methods"]["supervised"].update(head_dropout=float("-inf")),
        ["methods.supervised.head_dropout", "-inf is not a finite number"],
    ),
    "string_for_a_boolean": (  # bool("false") is True: MaskFN would switch on
        lambda c: c["methods"]["ssl_timeaug"].update(mask_fn="false"),
        ["methods.ssl_timeaug.mask_fn", "'false' is str, expected a boolean (true or false)"],
    ),
    "yes_for_a_boolean": (
        lambda c: c["methods"]["caf"].update(adaptive_margin="yes"),
        ["methods.caf.adaptive_margin", "'yes' is str, expected a boolean (true or false)"],
    ),
    "dataset_root_snakemake_reads_as_a_path_variable": (
        lambda c: c["datasets"]["ckplus"].update(root="data/<ck>"),
        ["datasets.ckplus.root", "which Snakemake cannot carry in a path"],
    ),
    "zero_threads": (
        lambda c: c["resources"]["train"].update(threads=0),
        ["resources.train.threads", "0 is less than the minimum of 1"],
    ),
}


def write_config(tmp_path: Path, edit, name: str = "config.yaml") -> Path:
    config = copy.deepcopy(PARAMS)
    config["cache"] = str(tmp_path / "cache")
    config["results"] = str(tmp_path / "results")
    edit(config)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "snakemake", "--nolock", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dag_runs(tmp_path_factory):
    """One dry run per DAG case, started together (each imports torch for the registries)."""
    tmp = tmp_path_factory.mktemp("dag")
    with ThreadPoolExecutor(2) as pool:
        yield {case: pool.submit(snakemake, "--dry-run", "--configfile",
                                 str(write_config(tmp, BAD_CONFIGS[case][0], f"{case}.yaml")))
               for case in DAG_CASES}


def test_shipped_params_pass_check_config_and_give_each_run_name_its_class():
    classes = check_config(copy.deepcopy(PARAMS))
    assert list(classes) == list(PARAMS["methods"])
    assert set(PARAMS["run"]["methods"]) <= set(classes)
    for name, cls in classes.items():
        assert cls.name == (method_block(PARAMS, name).get("class") or name)


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_validate_config_names_the_key(tmp_path, case, capsys):
    edit, expected = BAD_CONFIGS[case]
    path = write_config(tmp_path, edit)
    assert cli.main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"ferbench validate-config: error: {path}: {expected[0]}: "), err
    for text in expected:
        assert text in err, err


#: the bad configs also given to Snakemake: one per part of the config the workflow reads (a
#: method block, a budget, a per-dataset schedule, a number, a task, resources, and the dataset
#: root Snakemake itself would read as a path). The workflow calls the same check_config that
#: validate-config runs on every case above; these show that its line reaches the user before
#: any job is scheduled (a dry run imports torch: about 6 s of CPU each).
DAG_CASES = ("unknown_hyperparameter", "unknown_backbone_in_budget",
             "unknown_dataset_in_a_per_dataset_schedule", "nan_learning_rate",
             "run_for_a_task_the_dataset_has_no_labels_for", "zero_threads",
             "dataset_root_snakemake_reads_as_a_path_variable")


@pytest.mark.e2e
@pytest.mark.parametrize("case", DAG_CASES)
def test_the_dag_build_rejects_it_with_the_same_line(tmp_path, case, dag_runs):
    """The same check_config line (where = "config"), before any job is scheduled."""
    edit, expected = BAD_CONFIGS[case]
    with pytest.raises(FerbenchError) as raised:
        check_config(load_config(write_config(tmp_path, edit), validate=False), "config")
    dag = dag_runs[case].result()
    out = dag.stdout + dag.stderr
    assert dag.returncode != 0, out
    assert "Job stats:" not in out, out
    assert str(raised.value) in out.splitlines(), out
    assert str(raised.value).startswith(f"config: {expected[0]}: "), raised.value


SYNTAX_ERROR = "budget: demo\nrun:\n  datasets: [ckplus, afewva\n  methods: [supervised]\n"


def test_yaml_syntax_error_is_file_line_column(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(SYNTAX_ERROR)
    assert cli.main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    # the flow sequence opened on line 3, column 13 is still open where line 4 starts a key
    assert re.search(rf"error: {re.escape(str(path))}:4:\d+: not valid YAML: expected ',' or ']'", err), err
    assert "started at line 3, column 13" in err, err


@pytest.mark.e2e
def test_workflow_reports_a_params_yaml_syntax_error_with_line_and_column(tmp_path):
    """Snakemake itself says only "not valid JSON or YAML"; the workflow reads params.yaml first.
    (A --configfile is parsed by Snakemake's command line before the workflow runs.)"""
    (tmp_path / "params.yaml").write_text(SYNTAX_ERROR)
    dag = snakemake("--dry-run", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path))
    out = dag.stdout + dag.stderr
    assert dag.returncode != 0, out
    assert re.search(r"^params\.yaml:4:\d+: not valid YAML: expected ',' or ']'", out, re.M), out


@pytest.mark.e2e
def test_a_configfile_syntax_error_names_file_line_and_column(tmp_path, capsys):
    """Snakemake reads a --configfile in its command line, before any of the workflow's code, and
    says only that it is not valid JSON or YAML (docs/configuration.md quotes it); its --verbose traceback
    has PyYAML's position, and `ferbench validate-config params.yaml FILE` gives it in one line."""
    path = tmp_path / "broken.yaml"
    path.write_text(SYNTAX_ERROR)
    with ThreadPoolExecutor(2) as pool:
        plain, verbose = pool.map(lambda extra: snakemake("--dry-run", *extra, "--configfile", str(path)),
                                  [[], ["--verbose"]])
    for dag in (plain, verbose):
        assert dag.returncode != 0, dag.stdout + dag.stderr
    out = plain.stdout + plain.stderr
    assert "Config file is not valid JSON or YAML." in out, out
    assert "Building DAG" not in out and "Job stats:" not in out, out
    assert f'in "{path}", line 4, column' in verbose.stdout + verbose.stderr, verbose.stderr
    assert cli.main(["validate-config", str(ROOT / "params.yaml"), str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(rf"ferbench validate-config: error: {re.escape(str(path))}:4:\d+: not valid YAML: "
                        rf"expected ',' or ']'.*started at line 3, column 13\)", err), err


def test_validate_config_checks_configfile_overrides_merged_over_params_yaml(tmp_path, capsys):
    """A --configfile usually holds a few overrides: alone it is no valid config, merged over
    params.yaml (as Snakemake merges it) it is checked like the workflow checks it."""
    params = str(ROOT / "params.yaml")
    override = tmp_path / "more_memory.yaml"
    override.write_text("resources:\n  train: {mem_mb: 32000}\nbudgets:\n  demo: {lr: 0.01}\n")
    assert cli.main(["validate-config", params, str(override)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"{params} + {override}: valid"
    override.write_text("resources:\n  train: {threads: 0}\n")
    assert cli.main(["validate-config", params, str(override)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ferbench validate-config: error: {params} + {override}: resources.train.threads: "
                          f"0 is less than the minimum of 1"), err
    # the other keys of resources.train stay those of params.yaml (merged, not replaced)
    from ferbench.config import merged_config

    override.write_text("resources:\n  train: {mem_mb: 32000}\n")
    merged = merged_config([params, override])
    assert merged["resources"]["train"] == {**PARAMS["resources"]["train"], "mem_mb": 32000}


def test_workflow_and_validate_config_call_the_one_check():
    snakefile = (ROOT / "workflow" / "Snakefile").read_text()
    assert "check_config(config" in snakefile
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    assert "all_defaults" not in rules and "get_method(" not in rules


# -- the schema's method-block keys and the method classes ---------------------------------------
def test_schema_schedule_keys_are_the_training_keys():
    assert sorted(SCHEMA["$defs"]["schedule"]["properties"]) == sorted(TRAIN_KEYS)


def test_schema_method_options_are_what_the_method_classes_take():
    """A method block is the schedule's keys, `class`/`pretrain`/`budgets`, and the class's own
    hyperparameters (check_config checks them against the class's defaults). A hyperparameter
    the schema constrains must be one some class declares, and its schema must accept the
    default of every class declaring it."""
    import jsonschema

    from ferbench.methods import get_method, method_names

    assert SCHEMA["properties"]["methods"]["additionalProperties"] == {"$ref": "#/$defs/method_block"}
    assert SCHEMA["properties"]["templates"]["additionalProperties"] == {"$ref": "#/$defs/method_block"}
    block = SCHEMA["$defs"]["method_block"]
    assert block["$ref"] == "#/$defs/schedule"
    options = block["properties"]
    assert set(METHOD_BLOCK_KEYS) <= set(options)
    defaults: dict[str, dict[str, object]] = {}
    for name in method_names():
        for key, value in get_method(name).all_defaults().items():
            defaults.setdefault(key, {})[name] = value
    for key, spec in options.items():
        if key in METHOD_BLOCK_KEYS:
            continue
        assert key in defaults, f"schema: methods.*.{key} is declared by no method class"
        for name, value in defaults[key].items():
            errors = list(jsonschema.Draft202012Validator(spec).iter_errors(value))
            assert not errors, f"schema: methods.*.{key} rejects class {name}'s default {value!r}"


def test_no_method_hyperparameter_is_shadowed_by_a_block_key():
    """job_settings takes training and block keys out of a method's block before the class sees
    it: a hyperparameter of the same name could never be set."""
    from ferbench.methods import get_method, method_names

    reserved = set(TRAIN_KEYS) | set(METHOD_BLOCK_KEYS) | set(METHOD_BUDGET_KEYS)
    for name in method_names():
        assert not reserved & set(get_method(name).all_defaults()), name


def test_registered_names_pass_the_schema_name_pattern():
    """`class`, `backbone` and `optimizer` are schema names: every registered one must fit."""
    from ferbench.methods import method_names
    from ferbench.methods.base import OPTIMIZERS
    from ferbench.models import backbone_names

    pattern = re.compile(SCHEMA["$defs"]["name"]["pattern"])
    for key in ("class",):
        assert SCHEMA["$defs"]["method_block"]["properties"][key] == {
            "$ref": "#/$defs/name"}
    for key in ("backbone", "optimizer"):
        assert SCHEMA["$defs"]["schedule"]["properties"][key] == {"$ref": "#/$defs/name"}
    for name in [*method_names(), *OPTIMIZERS, *backbone_names()]:
        assert pattern.match(name) and len(name) <= SCHEMA["$defs"]["name"]["maxLength"], name


# -- thread counts given on the command line -----------------------------------------------------
@pytest.mark.parametrize("threads", ["0", "-2"])
@pytest.mark.parametrize("verb", ["prepare", "pretrain", "train"])
def test_threads_below_one_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch,
                                                                    verb, threads):
    """--threads 0 (or negative) was raised to 1 without a word; it is a mistake in the job's
    command line (a profile or script computing 0 cores), reported before anything is written."""
    from fake_fold import make_fold_files, write_config as write_params
    from test_preprocess import _reader

    from ferbench.data import prepare

    out = tmp_path / "out"
    if verb == "prepare":
        reader = _reader(tmp_path / "data", n=4)
        monkeypatch.setattr(prepare, "get_reader", lambda name: reader)
        argv = ["prepare", "fake", str(tmp_path / "data"), "--out", str(out), "--size", "32"]
    else:
        make_fold_files(tmp_path, subjects=3, frames=2)
        methods = {"toy": {"class": "simclr"}} if verb == "pretrain" else None
        config = write_params(tmp_path, epochs=1, methods=methods)
        argv = [verb, "--config", str(config), "--dataset", "fake", "--method",
                "toy" if verb == "pretrain" else "supervised", "--fold", "0", "--seed", "0",
                "--cache", str(tmp_path / "cache"), "--folds", str(tmp_path / "folds.parquet"),
                "--out", str(out), "--device", "cpu", "--no-progress"]
    assert cli.main([*argv, "--threads", threads]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ferbench {verb}: error: --threads must be at least 1, got {threads}", err
    assert not out.exists()


# -- the task each run trains for -----------------------------------------------------------------
def test_each_run_trains_for_its_block_task_else_its_class_task_else_the_protocol_task():
    from ferbench.config import folds_name, job_task

    classes = check_config(copy.deepcopy(PARAMS))
    task = {(d, m): job_task(PARAMS, d, m, classes[m]) for d, m in
            [("affectnet", "supervised"), ("affectnet", "supervised_va"), ("affectnet", "caf"),
             ("afewva", "supervised"), ("ckplus", "supervised"), ("affectnet", "simclr")]}
    assert task == {("affectnet", "supervised"): "classification",   # the protocol's
                    ("affectnet", "supervised_va"): "va",            # the block's
                    ("affectnet", "caf"): "va",                      # the class's only task
                    ("afewva", "supervised"): "va", ("ckplus", "supervised"): "classification",
                    ("affectnet", "simclr"): "classification"}
    assert folds_name(PARAMS, "affectnet", "classification") == "folds.parquet"
    assert folds_name(PARAMS, "affectnet", "va") == "folds_va.parquet"
    assert folds_name(PARAMS, "afewva", "va") == "folds.parquet"



def test_a_dataset_without_a_methods_list_runs_the_run_methods_its_labels_fit():
    from ferbench.config import dataset_runs

    config = copy.deepcopy(PARAMS)
    config["run"]["datasets"].append("mmi")
    assert "methods" not in config["datasets"]["mmi"]
    classes = check_config(config)   # not an error: the V/A runs do not apply to MMI
    runs, skipped = dataset_runs(config, "mmi", classes)
    va_runs = [m for m in config["run"]["methods"]
               if m == "supervised_va" or classes[m].tasks == ("va",)]
    assert skipped == va_runs and {"caf", "avce", "supervised_va"} <= set(skipped)
    assert runs == [m for m in config["run"]["methods"] if m not in va_runs]
    # a dataset's own list is taken as given
    assert dataset_runs(config, "afewva", classes) == (
        [m for m in config["run"]["methods"] if m in config["datasets"]["afewva"]["methods"]], [])


# -- the layers of a job's schedule -----------------------------------------------------------
def test_a_jobs_schedule_layers_budget_dataset_method_method_budget_and_method_budget_dataset():
    from ferbench.config import stage_settings

    config = copy.deepcopy(PARAMS)
    config["budget"] = "paper"
    config["datasets"]["affectnet"]["budgets"] = {
        "paper": {"epochs": 30, "batch_size": 64, "lr": 0.01, "pretrain": {"epochs": 3}}}
    config["methods"]["probe"] = {
        "class": "simclr", "lr": 0.02, "pretrain": {"lr": 0.5},
        "budgets": {"paper": {"batch_size": 32, "pretrain": {"batch_size": 16},
                              "datasets": {"affectnet": {"epochs": 7, "pretrain": {"epochs": 9}},
                                           "ckplus": {"epochs": 99}}},
                    "demo": {"epochs": 1}}}
    check_config(config)
    train = stage_settings(config, "affectnet", "probe", "train")
    # epochs: the method budget's AffectNet entry over the dataset's 30; batch: the method
    # budget's 32 over the dataset's 64; lr: the method block's over the dataset's; the rest
    # (backbone, weight decay) from the paper budget; the demo and CK+ entries play no part
    assert {k: train["train"][k] for k in ("epochs", "batch_size", "lr", "backbone", "weight_decay")} == {
        "epochs": 7, "batch_size": 32, "lr": 0.02,
        "backbone": PARAMS["budgets"]["paper"]["backbone"],
        "weight_decay": PARAMS["budgets"]["paper"]["weight_decay"]}
    pre = stage_settings(config, "affectnet", "probe", "pretrain")["train"]
    assert (pre["epochs"], pre["batch_size"], pre["lr"]) == (9, 16, 0.5)
    # another dataset: no dataset layer, the method budget's CK+ entry
    assert stage_settings(config, "ckplus", "probe", "train")["train"]["epochs"] == 99
    assert stage_settings(config, "fer2013", "probe", "train")["train"]["epochs"] == \
        PARAMS["budgets"]["paper"]["epochs"]
    # a method that sets no epochs of its own takes the dataset's
    config["methods"]["plain"] = {"class": "supervised"}
    plain = stage_settings(config, "affectnet", "plain", "train")["train"]
    assert (plain["epochs"], plain["batch_size"], plain["lr"]) == (30, 64, 0.01)
    # no schedule key reaches the method's hyperparameters
    assert not {"budgets", "datasets", "epochs"} & set(train["method"])


def test_shipped_caf_paper_schedule_is_50k_iterations_on_affectnet_and_afewva():
    """256 epochs on AFEW-VA; on AffectNet the per-dataset entry (287,651 training images at
    batch 128: 2,248 iterations per epoch, so 22 epochs are ~50k iterations)."""
    from ferbench.config import stage_settings

    config = copy.deepcopy(PARAMS)
    config["budget"] = "paper"
    for run in ("caf", "caf_fixed_margin"):
        on = {d: stage_settings(config, d, run, "train")["train"] for d in ("affectnet", "afewva")}
        assert (on["afewva"]["epochs"], on["affectnet"]["epochs"]) == (256, 22)
        iterations = on["affectnet"]["epochs"] * -(-287_651 // on["affectnet"]["batch_size"])
        assert 45_000 <= iterations <= 55_000


# -- no silent skip ----------------------------------------------------------------------------
def test_a_run_name_that_runs_on_no_dataset_is_an_error_naming_it(capsys):
    config = copy.deepcopy(PARAMS)
    config["methods"]["extra_run"] = {"class": "supervised"}
    config["run"]["methods"].append("extra_run")   # every run dataset has its own methods list
    with pytest.raises(FerbenchError) as err:
        check_config(config, "params.yaml")
    text = str(err.value)
    assert text.startswith("params.yaml: run.methods: 'extra_run' runs on no dataset")
    assert "not in datasets.ckplus.methods" in text and "run.allow_unused" in text
    config["run"]["allow_unused"] = True
    check_config(config, "params.yaml")
    assert "warning: params.yaml: run.methods: 'extra_run' runs on no dataset" in capsys.readouterr().err


def test_validate_config_allow_unused_option(tmp_path, capsys):
    config = copy.deepcopy(PARAMS)
    config["methods"]["extra_run"] = {"class": "supervised"}
    config["run"]["methods"].append("extra_run")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["validate-config", str(path)]) == 2
    assert "'extra_run' runs on no dataset" in capsys.readouterr().err
    assert cli.main(["validate-config", str(path), "--allow-unused"]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and captured.out.strip().endswith("valid")


def test_validate_config_checks_dataset_roots(tmp_path, capsys, monkeypatch):
    from ferbench.config import check_roots
    from ferbench.synthetic import SyntheticConfig, write_layout

    monkeypatch.chdir(tmp_path)
    config = copy.deepcopy(PARAMS)
    config["run"]["datasets"] = ["ckplus"]
    config["run"]["allow_unused"] = True   # the other datasets' runs
    config["synthetic"]["out"] = str(tmp_path / "synthetic")
    # inside synthetic.out and not written yet: the workflow writes it
    config["datasets"]["ckplus"]["root"] = str(tmp_path / "synthetic" / "ckplus")
    assert "synthetic, written by the workflow" in check_roots(config)[0]
    # a real root that does not exist
    config["datasets"]["ckplus"]["root"] = str(tmp_path / "CK+")
    with pytest.raises(FerbenchError, match=r"^params.yaml: datasets.ckplus.root: '.*CK\+' does not exist$"):
        check_roots(config)
    # exists, but is not a CK+ layout
    (tmp_path / "CK+" / "images").mkdir(parents=True)
    with pytest.raises(FerbenchError, match=r"datasets.ckplus.root: .*not a CK\+ layout"):
        check_roots(config)
    # a CK+ layout (written by the synthesizer) outside synthetic.out is recognised
    write_layout("ckplus", tmp_path / "copy", SyntheticConfig(subjects=2, frames=2, size=32,
                                                               layouts=("ckplus",)))
    config["datasets"]["ckplus"]["root"] = str(tmp_path / "copy" / "ckplus")
    assert check_roots(config) == [f"ckplus: {tmp_path / 'copy' / 'ckplus'} (original)"]
    path = tmp_path / "params.yaml"
    config["datasets"]["ckplus"]["root"] = str(tmp_path / "CK+")
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["validate-config", str(path)]) == 2
    assert "datasets.ckplus.root" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["fer2013", "affectnet", "afewva", "oulu"])
def test_each_reader_recognises_its_synthetic_layout_and_refuses_another(tmp_path, layout):
    from ferbench.datasets import get_reader
    from ferbench.synthetic import SyntheticConfig, write_layout

    write_layout(layout, tmp_path, SyntheticConfig(subjects=2, frames=2, size=32, layouts=(layout,)))
    assert get_reader(layout).recognise(tmp_path / layout)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerbenchError, match="empty: not an? "):
        get_reader(layout).recognise(tmp_path / "empty")
