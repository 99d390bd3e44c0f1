"""ferbench.plan without Snakemake: which jobs a config makes, what each reads and writes.
Shared pretrainings, per-fold against once-for-all encoders, MaskFN's encoder run, the task
(and folds table) of each run per dataset, and the invariants of the whole job list."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ferbench.config import check_config
from ferbench.errors import FerbenchError
from ferbench.plan import Plan, step_resources

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def plan_of(edit=None, budget: str = "demo") -> Plan:
    config = copy.deepcopy(PARAMS)
    config["budget"] = budget
    if edit is not None:
        edit(config)
    return Plan(config, check_config(config))


@pytest.fixture(scope="module")
def shipped() -> Plan:
    return plan_of()


def by_rule(jobs, rule):
    return [job for job in jobs if job.rule == rule]


def test_runs_differing_only_in_train_only_keys_share_one_pretraining(shipped):
    # triplet_m1_fc_only / _full_ft differ in `finetune` only (a train-only key of the class)
    assert shipped.pretraining("fer2013", "triplet_m1_fc_only") == shipped.pretraining("fer2013", "triplet_m1_full_ft")
    m1 = shipped.train_job("fer2013", "triplet_m1_full_ft", 0, 0).inputs["pretrained"]
    assert m1 == "results/pretrain/ckplus/triplet_m1_fc_only/foldall/seed0/encoder.pt"
    # m12 samples differently: its own pretraining
    m12 = shipped.train_job("fer2013", "triplet_m12_full_ft", 0, 0).inputs["pretrained"]
    assert m12 == "results/pretrain/ckplus/triplet_m12_fc_only/foldall/seed0/encoder.pt"
    # the four GCNet variants differ only in train-only switches: one pretraining per fold
    owners = {shipped.pretraining("ckplus", f"gcnet_s{s}r{r}").run for s in (0, 1) for r in (0, 1)}
    assert owners == {"gcnet_s0r0"}
    pretrains = by_rule(shipped.jobs(), "pretrain")
    assert len({job.outputs["encoder"] for job in pretrains}) == len(pretrains)
    assert sorted(job.run for job in pretrains if job.run.startswith(("triplet", "gcnet"))) == [
        "gcnet_s0r0", "triplet_m12_fc_only", "triplet_m1_fc_only"]


def test_a_different_pretraining_key_splits_the_shared_job():
    # merged over its template's budgets.demo: a pretraining learning rate of its own
    plan = plan_of(lambda c: c["methods"]["triplet_m1_full_ft"].update(budgets={"demo": {"pretrain": {"lr": 0.01}}}))
    assert plan.pretraining("fer2013", "triplet_m1_full_ft").run == "triplet_m1_full_ft"
    assert plan.pretraining("fer2013", "triplet_m1_fc_only").run == "triplet_m1_fc_only"


def test_per_fold_encoders_on_the_target_one_for_all_folds_from_other_data():
    def two_folds(config):
        config["budgets"]["demo"]["folds"] = [0, 1]
        config["datasets"]["ckplus"]["methods"].append("simclr")

    plan = plan_of(two_folds)
    # GCNet pretrains on the target's training-fold subjects: one encoder per fold
    gcnet = plan.pretraining("ckplus", "gcnet_s1r1")
    assert (gcnet.dataset, gcnet.per_fold) == ("ckplus", True)
    assert [plan.train_job("ckplus", "gcnet_s1r1", f, 0).inputs["pretrained"] for f in (0, 1)] == [
        f"results/pretrain/ckplus/gcnet_s0r0/fold{f}/seed0/encoder.pt" for f in (0, 1)]
    # SimCLR on AffectNet pretrains on CK+ (another dataset): one job on every subject
    ssl = plan.pretraining("affectnet", "simclr")
    assert (ssl.dataset, ssl.per_fold) == ("ckplus", False)
    assert {plan.train_job("affectnet", "simclr", f, 0).inputs["pretrained"] for f in (0, 1)} == {
        "results/pretrain/ckplus/simclr/foldall/seed0/encoder.pt"}
    # the same run with CK+ as its target: per fold, since CK+'s test subjects are then unseen
    assert plan.pretraining("ckplus", "simclr").per_fold
    folds = {job.fold for job in by_rule(plan.jobs(), "pretrain") if job.run == "simclr"}
    assert folds == {"all", "0", "1"}


def test_maskfn_pretraining_reads_the_encoder_of_its_named_run(shipped):
    job = shipped.pretrain_job("ckplus", "ssl_all", "all", 0)
    encoder = "results/pretrain/ckplus/simclr/foldall/seed0/encoder.pt"
    assert job.inputs["mask_fn_encoder"] == encoder
    config = json.loads(shipped.job_config(job))
    assert config["methods"]["ssl_all"]["mask_fn_encoder"] == encoder
    assert "finetune" not in config["methods"]["ssl_all"]    # a train-only key
    assert "extends" not in config["methods"]["ssl_all"]     # resolved
    # without a mask_fn row, no encoder input
    assert "mask_fn_encoder" not in shipped.pretrain_job("ckplus", "ssl_timeaug", "all", 0).inputs


def test_maskfn_encoder_run_outside_the_run_is_pretrained_for_it():
    def only_maskfn(config):
        config["run"]["methods"] = ["ssl_all"]

    jobs = plan_of(only_maskfn).jobs()
    assert sorted((job.run, job.fold) for job in by_rule(jobs, "pretrain")) == [
        ("simclr", "all"), ("ssl_all", "all")]
    assert [job.run for job in by_rule(jobs, "train")] == ["ssl_all"]


def test_maskfn_encoder_run_without_pretraining_is_one_line_naming_the_key():
    def bad(config):
        config["methods"]["ssl_all"]["mask_fn_encoder"] = "supervised"

    plan = plan_of(bad)
    with pytest.raises(FerbenchError, match=r"^methods\.ssl_all\.mask_fn_encoder: run 'supervised' "
                                            r"\(class supervised\) has no pretraining stage$"):
        plan.jobs()


def test_each_run_reads_the_folds_table_of_its_task(shipped):
    jobs = shipped.jobs()
    affectnet = {job.run: job for job in by_rule(jobs, "train") if job.dataset == "affectnet"}
    assert affectnet["supervised"].inputs["folds"] == "cache/affectnet/folds.parquet"
    assert affectnet["supervised_va"].task == "va"
    assert affectnet["supervised_va"].inputs["folds"] == "cache/affectnet/folds_va.parquet"
    assert affectnet["caf"].inputs["folds"] == "cache/affectnet/folds_va.parquet"   # CAF: va only
    folds = {(job.dataset, job.task) for job in by_rule(jobs, "folds")}
    assert folds == {("ckplus", "classification"), ("afewva", "va"), ("fer2013", "classification"),
                     ("affectnet", "classification"), ("affectnet", "va")}


def test_a_dataset_without_a_methods_list_skips_runs_its_labels_do_not_fit():
    def no_lists(config):
        config["run"]["datasets"] = ["ckplus", "afewva"]
        config["run"]["methods"] = ["supervised", "caf", "gcnet_s1r1"]
        for name in ("ckplus", "afewva"):
            config["datasets"][name].pop("methods")

    plan = plan_of(no_lists)
    assert plan.runs("ckplus") == ["supervised", "gcnet_s1r1"]
    assert plan.runs("afewva") == ["supervised", "caf"]
    assert plan.skipped == {"ckplus": ["caf"], "afewva": ["gcnet_s1r1"]}


@pytest.mark.parametrize("budget", ["demo", "cpu", "paper"])
def test_the_job_list_is_closed_and_each_file_has_one_maker(budget):
    plan = plan_of(budget=budget)
    jobs = plan.jobs()
    makers = Counter(path for job in jobs for path in job.outputs.values())
    assert max(makers.values()) == 1
    made = set(makers)
    for job in jobs:   # every root is synthetic: every input is made by a job of the list
        for value in job.inputs.values():
            for path in value if isinstance(value, list) else [value]:
                assert path in made, (job.key, path)
    # one train job per dataset x run x fold x seed of the run
    trains = by_rule(jobs, "train")
    expected = sum(len(plan.runs(d)) * len(plan.folds(d)) for d in PARAMS["run"]["datasets"])
    assert len(trains) == expected * len(PARAMS["run"]["seeds"])
    assert len({job.key for job in jobs}) == len(jobs)
    aggregate, = by_rule(jobs, "aggregate")
    assert aggregate.inputs["metrics"] == [job.outputs["metrics"] for job in trains]
    # every face size a training job reads is one each dataset is prepared at
    for job in by_rule(jobs, "pretrain") + trains:
        assert job.inputs["faces"] in made


def test_resources_take_a_dataset_s_own_under_its_budget():
    def two_threads_for_fer2013_under_cpu(config):
        config["datasets"]["fer2013"]["budgets"] = {"cpu": {"resources": {"train": {"threads": 2}}}}

    cpu = plan_of(two_threads_for_fer2013_under_cpu, budget="cpu")
    assert cpu.train_job("fer2013", "supervised", 0, 0).resources["threads"] == 2
    assert cpu.train_job("ckplus", "supervised", 0, 0).resources["threads"] == 1
    assert step_resources(cpu.config, "train", "fer2013") == {**PARAMS["resources"]["train"], "threads": 2}
    demo = plan_of(two_threads_for_fer2013_under_cpu)
    assert demo.train_job("fer2013", "supervised", 0, 0).resources == PARAMS["resources"]["train"]
    # shipped: one thread per FER-2013 job under cpu too (docs/cpu-speed.md, two jobs side by side)
    assert plan_of(budget="cpu").train_job("fer2013", "supervised", 0, 0).resources == PARAMS["resources"]["train"]


def test_folds_of_the_budget_that_the_protocol_lacks_are_one_line():
    def too_far(config):
        config["budgets"]["demo"]["folds"] = [7]
        config["run"]["datasets"] = ["afewva"]
        config["run"]["allow_unused"] = True   # the run names that fit no afewva label

    with pytest.raises(FerbenchError, match=r"^budgets\.demo\.folds: none of \[7\] exists in the 6-fold "
                                            r"protocol of afewva$"):
        plan_of(too_far).jobs()


def test_common_smk_asks_method_classes_nothing_by_trial():
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert "hasattr" not in text and "getattr" not in text
    assert "OWNERS" not in text


@pytest.mark.parametrize("budget", ["demo", "cpu", "paper"])
def test_settings_layers_hold_the_resolved_value_of_every_setting(budget):
    from ferbench.plan import settings_layers

    plan = plan_of(budget=budget)
    for job in plan.training_jobs():
        settings = plan.settings(job)
        layers = settings_layers(plan.config, plan.classes, job.dataset, job.run, job.stage)
        hp = {**plan.classes[job.run].all_defaults(), **settings["method"]}
        hp.pop("pretrain", None)
        hp.pop("class", None)
        assert {k[6:]: v for k, (v, _) in layers.items() if k.startswith("train.")} == settings["train"], job.key
        assert {k[7:]: v for k, (v, _) in layers.items() if k.startswith("method.")} == hp, job.key


def test_settings_layers_name_the_key_that_won():
    from ferbench.plan import settings_layers

    def where(plan, dataset, run, stage):
        return {k: w for k, (_, w) in settings_layers(plan.config, plan.classes, dataset, run, stage).items()}

    demo, paper = plan_of(), plan_of(budget="paper")
    ssl = where(demo, "ckplus", "ssl_timeaug_hardneg", "pretrain")
    assert ssl["train.lr"] == "templates.ssl.budgets.demo.pretrain.lr"
    assert ssl["train.epochs"] == "templates.ssl.budgets.demo.pretrain.epochs"
    assert ssl["train.weight_decay"] == "budgets.demo.weight_decay"
    assert ssl["method.time_offsets"] == "templates.ssl_fer.budgets.demo.time_offsets"
    assert ssl["method.hard_neg_interval"] == "templates.ssl_fer_hardneg.budgets.demo.hard_neg_interval"
    assert ssl["method.hard_neg"] == "templates.ssl_fer_hardneg.hard_neg"
    assert ssl["method.face_swap"] == "class ssl_fer default"
    assert where(paper, "ckplus", "ssl_timeaug_hardneg", "pretrain")["method.time_offsets"] == "class ssl_fer default"
    assert where(demo, "affectnet", "supervised", "train")["train.epochs"] == "datasets.affectnet.budgets.demo.epochs"
    assert where(paper, "affectnet", "caf_fixed_margin", "train")["train.epochs"] == \
        "methods.caf.budgets.paper.datasets.affectnet.epochs"
    assert where(paper, "affectnet", "caf_fixed_margin", "train")["method.adaptive_margin"] == \
        "methods.caf_fixed_margin.adaptive_margin"
    assert where(demo, "ckplus", "gcnet_s1r1", "train")["train.eval_batch_size"] == "budgets.demo.eval_batch_size"
