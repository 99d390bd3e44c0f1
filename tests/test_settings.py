"""`ferbench settings`: the resolved settings of one job, each with the layer that set it, from
the same merge the engine uses (config.stage_settings), plus configfile attribution."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from ferbench import cli
from ferbench.config import resolved_settings, stage_settings

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def layered_config() -> dict:
    """Each of the five schedule layers sets its own key, and two of them the same key."""
    config = copy.deepcopy(PARAMS)
    config["budget"] = "demo"
    config["budgets"]["demo"].update(epochs=3, lr=0.01)
    config["datasets"]["ckplus"]["budgets"] = {"demo": {"batch_size": 16, "epochs": 4}}
    block = config["methods"]["gcnet_s1r1"]
    block.update(weight_decay=0.0005, head_dropout=0.25)
    block["budgets"] = {"demo": {"epochs": 5, "image_size": 40,
                                 "datasets": {"ckplus": {"lr": 0.002}}}}
    return config


def test_every_value_names_the_layer_that_set_it():
    config = layered_config()
    got = resolved_settings(config, "ckplus", "gcnet_s1r1", "train")
    train = {k: v["value"] for k, v in got["train"].items()}
    assert train == stage_settings(config, "ckplus", "gcnet_s1r1", "train")["train"]  # one source
    frm = {k: v["from"] for k, v in got["train"].items()}
    assert frm["epochs"] == "method budget: methods.gcnet_s1r1.budgets.demo.epochs"
    assert train["epochs"] == 5
    assert frm["batch_size"] == "dataset block: datasets.ckplus.budgets.demo.batch_size"
    assert frm["weight_decay"] == "method block: methods.gcnet_s1r1.weight_decay"
    assert frm["lr"] == "method dataset entry: methods.gcnet_s1r1.budgets.demo.datasets.ckplus.lr"
    assert train["lr"] == 0.002
    assert frm["optimizer"] == "method block: templates.cnn3.optimizer"
    hp = got["hyperparameters"]
    assert hp["head_dropout"] == {"value": 0.25, "from": "method block: methods.gcnet_s1r1.head_dropout"}
    assert hp["margin"]["from"] == "class default (GCNet)"
    assert got["protocol"]["folds"]["from"] == "dataset block: datasets.ckplus.protocol.folds"
    assert got["protocol"]["task"]["from"] == "dataset default (ckplus reader)"


def test_pretrain_stage_takes_the_pretrain_blocks():
    config = layered_config()
    config["methods"]["gcnet_s1r1"]["budgets"]["demo"]["pretrain"] = {"epochs": 7}
    got = resolved_settings(config, "ckplus", "gcnet_s1r1", "pretrain")
    assert got["train"]["epochs"] == {
        "value": 7, "from": "method budget, pretrain stage: methods.gcnet_s1r1.budgets.demo.pretrain.epochs"}
    assert resolved_settings(config, "ckplus", "gcnet_s1r1", "train")["train"]["epochs"]["value"] == 5


def test_cli_names_the_configfile_and_the_budget_option(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    override = tmp_path / "mine.yaml"
    override.write_text(yaml.safe_dump({"methods": {"gcnet_s1r1": {"budgets": {"demo": {"epochs": 12}}}}}))
    argv = ["settings", "ckplus", "gcnet_s1r1", "--budget", "demo", "--config", str(params),
            "--configfile", str(override)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    epochs = next(line for line in text.splitlines() if line.strip().startswith("epochs "))
    assert epochs.split()[1] == "12" and f"({override})" in epochs
    image = next(line for line in text.splitlines() if line.strip().startswith("image_size "))
    assert f"({params})" in image
    assert "budget demo [--budget]" in text.splitlines()[0]
    assert cli.main(argv + ["--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["train"]["epochs"]["value"] == 12 and got["budget"]["value"] == "demo"


@pytest.mark.parametrize("argv, message", [
    (["settings", "nosuch", "supervised"], "datasets.nosuch: no such entry"),
    (["settings", "ckplus", "nosuch"], "methods.nosuch: no such entry"),
    (["settings", "ckplus", "supervised", "--budget", "huge"], "--budget: 'huge' is not a key of budgets"),
    (["settings", "ckplus", "supervised", "--stage", "pretrain"], "has no pretraining stage"),
])
def test_bad_requests_are_one_line(argv, message, capsys):
    assert cli.main([*argv, "--config", str(ROOT / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
