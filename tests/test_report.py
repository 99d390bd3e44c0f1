"""`ferbench aggregate` on fake run folders with hand-chosen metrics, and the report package's
import graph."""

from __future__ import annotations

import ast
import graphlib
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from fake_tables import CK_CLASSES, VA, run_aggregate, va, write_run

from ferbench.errors import FerbenchError
from ferbench.report.published import PAPERS
from ferbench.report.tables import BANNER
from ferbench.report.runs import collect_runs, fill_data_from_config, load_run, scores_frame

PNG = b"\x89PNG\r\n\x1a\n"


def make_runs(root: Path) -> None:
    # ckplus, supervised: accuracy 0.80, 0.90, 0.70 -> mean 0.80,
    #   sample std sqrt((0^2 + 0.1^2 + 0.1^2) / (3 - 1)) = 0.1
    #   macro_f1 0.60, 0.70, 0.80 -> mean 0.70, std 0.1
    for fold, (acc, f1) in enumerate([(0.80, 0.60), (0.90, 0.70), (0.70, 0.80)]):
        write_run(root, "ckplus", "supervised", fold, metrics={"accuracy": acc, "macro_f1": f1})
    # ckplus, gcnet_s1r1: 0.95, 0.85 -> mean 0.90, std sqrt((0.05^2 + 0.05^2) / 1) = 0.070711
    #   (with legacy_metrics: classification has no legacy variant, so they are not repeated)
    #   extra: generator MSE 0.001, 0.003 -> mean 0.002; identity 0.004 twice; counts not reported
    for fold, (acc, gen) in enumerate([(0.95, 0.001), (0.85, 0.003)]):
        write_run(root, "ckplus", "gcnet_s1r1", fold, metrics={"accuracy": acc, "macro_f1": acc},
                  legacy={"accuracy": acc, "macro_f1": acc},
                  extra={"gen_ref_mse_test": gen, "identity_ref_mse_test": 0.004, "ref_test_samples": 45})
    # fer2013, triplet_m12_full_ft: one run, 0.5 -> 50.00 in paper_000 (no std)
    write_run(root, "fer2013", "triplet_m12_full_ft", 0, metrics={"accuracy": 0.5, "macro_f1": 0.4},
              data="real")
    # afewva, caf on resnet18: valence 0.2/0.4, arousal 0.3/0.5 -> means 0.3 and 0.4, std 0.141421
    #   valence_pcc NaN in fold 1 -> mean over fold 0 only (0.2), flagged; legacy = 2 x textbook
    #   mean_ccc per run = (0.2+0.3)/2 = 0.25 and (0.4+0.5)/2 = 0.45 -> mean 0.35
    m0, m1 = va(0.2, 0.3), va(0.4, 0.5)
    m1["valence_pcc"] = math.nan
    write_run(root, "afewva", "caf", 0, task="va", metrics=m0, backbone="resnet18",
              legacy={k: 2 * v for k, v in m0.items()})
    write_run(root, "afewva", "caf", 1, task="va", metrics=m1, backbone="resnet18",
              legacy={k: 2 * v for k, v in m1.items()})
    # afewva, supervised: a single run with no extra.data
    write_run(root, "afewva", "supervised", 0, task="va", metrics=va(0.6, 0.7), data=None)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agg")
    make_runs(tmp / "runs")
    code, out = run_aggregate(tmp, tmp / "runs")
    assert code == 0
    return out


def md_row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def md_header(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no header starting {first_cell!r}")


# ------------------------------------------------------------------------------ dataset tables
def test_dataset_csv_mean_and_sample_std(done):
    csv = pd.read_csv(done["tables"] / "ckplus.csv").set_index(["variant", "metric"])
    assert csv.loc[("supervised", "accuracy"), "mean"] == pytest.approx(0.80)
    assert csv.loc[("supervised", "accuracy"), "std"] == pytest.approx(0.10)   # ddof=1
    assert csv.loc[("supervised", "accuracy"), "n"] == 3
    assert csv.loc[("supervised", "macro_f1"), "mean"] == pytest.approx(0.70)
    assert csv.loc[("gcnet_s1r1", "accuracy"), "mean"] == pytest.approx(0.90)
    assert csv.loc[("gcnet_s1r1", "accuracy"), "std"] == pytest.approx(math.sqrt(0.005))
    assert not csv.index.get_level_values("metric").str.startswith("legacy_").any()
    va_csv = pd.read_csv(done["tables"] / "afewva.csv").set_index(["variant", "metric"])
    assert va_csv.loc[("caf", "valence_rmse"), "mean"] == pytest.approx(0.3)
    assert va_csv.loc[("caf", "valence_rmse"), "std"] == pytest.approx(math.sqrt(0.02))
    assert va_csv.loc[("caf", "valence_pcc"), "mean"] == pytest.approx(0.2)   # NaN run left out
    assert va_csv.loc[("caf", "valence_pcc"), "n"] == 1
    assert va_csv.loc[("caf", "valence_pcc"), "n_runs"] == 2
    assert va_csv.loc[("caf", "legacy_arousal_ccc"), "mean"] == pytest.approx(0.8)
    assert va_csv.loc[("caf", "mean_ccc"), "mean"] == pytest.approx(0.35)
    assert va_csv.loc[("supervised", "valence_ccc"), "data"] == "unspecified"


def test_method_test_set_measures_from_extra(done):
    csv = pd.read_csv(done["tables"] / "ckplus.csv").set_index(["variant", "metric"])
    assert csv.loc[("gcnet_s1r1", "gen_ref_mse_test"), "mean"] == pytest.approx(0.002)
    assert csv.loc[("gcnet_s1r1", "gen_ref_mse_test"), "std"] == pytest.approx(math.sqrt(2e-6))
    assert csv.loc[("gcnet_s1r1", "identity_ref_mse_test"), "mean"] == pytest.approx(0.004)
    metrics = set(csv.index.get_level_values("metric"))
    assert "ref_test_samples" not in metrics and "data" not in metrics
    assert ("supervised", "gen_ref_mse_test") not in csv.index
    md = (done["tables"] / "ckplus.md").read_text()
    assert md_header(md, "Method")[6:] == ["accuracy", "pooled_accuracy", "macro_f1",
                                           "gen_ref_mse_test", "identity_ref_mse_test",
                                           "Above chance?", "Significantly better than"]
    assert md_row(md, "supervised")[9:11] == ["—", "—"]
    # CI: 0.002 ± t(0.975, 1) * 0.00141421 / sqrt(2) = 0.002 ± 12.7062 * 0.001
    assert md_row(md, "gcnet_s1r1")[9:11] == ["0.00200 ± 0.00141 [-0.01071, 0.01471]",
                                             "0.00400 ± 0.00000 [0.00400, 0.00400]"]


def test_pooled_accuracy_beside_the_mean_over_folds(tmp_path):
    """Two folds of different sizes, worked by hand: fold 0 has 10 test samples, 9 right (0.9);
    fold 1 has 30, 15 right (0.5). Mean over folds (0.9 + 0.5) / 2 = 0.7; pooled (9 + 15) /
    (10 + 30) = 24 / 40 = 0.6. One pooled number: no ± in its cell."""
    runs = tmp_path / "runs"
    for fold, confusion in enumerate([[[4, 1], [0, 5]], [[10, 10], [5, 5]]]):
        acc = (confusion[0][0] + confusion[1][1]) / sum(map(sum, confusion))
        write_run(runs, "ckplus", "supervised", fold, classes=["happy", "sad"], confusion=confusion,
                  metrics={"accuracy": acc, "macro_f1": acc})
    # a VA dataset beside it gets no pooled accuracy
    write_run(runs, "afewva", "caf", 0, task="va", metrics=va(0.2, 0.3))
    code, out = run_aggregate(tmp_path, runs)
    assert code == 0
    csv = pd.read_csv(out["tables"] / "ckplus.csv").set_index(["variant", "metric"])
    assert csv.loc[("supervised", "accuracy"), "mean"] == pytest.approx(0.7)
    assert csv.loc[("supervised", "pooled_accuracy"), "mean"] == pytest.approx(0.6)
    assert csv.loc[("supervised", "pooled_accuracy"), "n_runs"] == 2
    assert math.isnan(csv.loc[("supervised", "pooled_accuracy"), "std"])
    md = (out["tables"] / "ckplus.md").read_text()
    header, row = md_header(md, "Method"), md_row(md, "supervised")
    assert header[6:8] == ["accuracy", "pooled_accuracy"]
    assert row[6].startswith("0.7000 ± 0.2828") and row[7] == "0.6000"
    assert "pooled_accuracy: the accuracy of all runs' test predictions concatenated" in md
    summary = json.loads(out["summary"].read_text())
    assert summary["ckplus"]["supervised"]["accuracy"] == pytest.approx(0.7)
    assert summary["ckplus"]["supervised"]["pooled_accuracy"] == pytest.approx(0.6)
    assert "pooled_accuracy" not in summary["afewva"]["caf"]
    assert "pooled_accuracy" not in (out["tables"] / "afewva.md").read_text()


def test_pooled_accuracy_counts_every_seed_and_skips_empty_runs(tmp_path):
    from ferbench.report.runs import pooled_accuracy
    runs = tmp_path / "runs"
    # seed 0: 3/4 and 1/2 right; seed 1: 4/4 and 0/2 -> (3 + 1 + 4 + 0) / 12 = 2/3
    for seed, (a, b) in enumerate([([[2, 1], [0, 1]], [[1, 0], [1, 0]]),
                                   ([[2, 0], [0, 2]], [[0, 1], [1, 0]])]):
        for fold, confusion in enumerate((a, b)):
            write_run(runs, "ckplus", "caf", fold, seed, classes=["x", "y"], confusion=confusion,
                      metrics={"accuracy": 0.5, "macro_f1": 0.5})
    write_run(runs, "fer2013", "caf", 0, classes=["x", "y"], confusion=[[0, 0], [0, 0]],
              metrics={"accuracy": 0.0, "macro_f1": 0.0})
    frame = pooled_accuracy(collect_runs(runs)[0]).set_index("group")
    assert frame.loc["ckplus", "mean"] == pytest.approx(2 / 3)
    assert frame.loc["ckplus", "n_runs"] == 4 and frame.loc["ckplus", "n"] == 4
    assert math.isnan(frame.loc["fer2013", "mean"]) and frame.loc["fer2013", "n"] == 0


def test_cells_keep_three_significant_digits_for_small_values():
    from ferbench.report.tables import cell
    assert cell(0.8, 0.1, 3, 3, 4) == "0.8000 ± 0.1000"
    assert cell(0.00114, 0.0002, 2, 2, 4) == "0.00114 ± 0.00020"
    assert cell(0.0009, float("nan"), 1, 1, 4) == "0.000900"
    assert cell(0.5, 0.01, 2, 2, 2, scale=100) == "50.00 ± 1.00"
    assert cell(0.0, 0.0, 2, 2, 4) == "0.0000 ± 0.0000"


def test_a_non_numeric_test_measure_names_file_and_key(tmp_path):
    path = write_run(tmp_path / "runs", "ckplus", "gcnet_s0r0", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5},
                     extra={"gen_ref_mse_test": "low"})
    with pytest.raises(FerbenchError, match=re.escape(f"{path}: extra.gen_ref_mse_test: expected a number")):
        load_run(path)


def test_dataset_markdown_cells(done):
    md = (done["tables"] / "ckplus.md").read_text()
    header = md_header(md, "Method")
    row = md_row(md, "supervised")
    # 95% CI: 0.8 ± t(0.975, 2) * 0.1 / sqrt(3) = 0.8 ± 4.3027 * 0.057735 = 0.8 ± 0.2484
    assert row[header.index("accuracy")] == "0.8000 ± 0.1000 [0.5516, 1.0484]"
    assert row[header.index("Runs")] == "3"
    assert row[header.index("Data")] == "synthetic"
    assert md_row(md, "gcnet_s1r1")[header.index("accuracy")] == \
        "0.9000 ± 0.0707 [0.2647, 1.5353]"
    # two folds paired, no significant difference
    assert md_row(md, "gcnet_s1r1")[header.index("Significantly better than")] == "none"
    assert "NOT comparable" in md   # synthetic provenance is spelled out
    va_md = (done["tables"] / "afewva.md").read_text()
    va_header = md_header(va_md, "Method")
    assert md_row(va_md, "caf")[va_header.index("valence_pcc")] == "0.2000 †"
    assert md_row(va_md, "supervised")[va_header.index("valence_rmse")] == "0.6000"  # single run
    assert "unspecified" in md_row(va_md, "supervised")[va_header.index("Data")]


def test_latex_booktabs_and_escaping(done):
    for name in ("ckplus.tex", "afewva.tex", "paper_003.tex", "paper_004.tex"):
        tex = (done["tables"] / name).read_text()
        for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
            assert rule in tex, (name, rule)
        body = [line for line in tex.splitlines() if not line.startswith("%")]
        assert not [line for line in body if re.search(r"(?<!\\)_", line)], name
    tex = (done["tables"] / "ckplus.tex").read_text()
    assert r"gcnet\_s1r1" in tex
    assert r"0.8000 $\pm$ 0.1000 [0.5516, 1.0484]" in tex


# ------------------------------------------------------------------------------ paper tables
def test_paper_tables_exist_for_every_seed(done):
    for paper in PAPERS:
        for ext in ("md", "tex", "csv"):
            assert (done["tables"] / f"{paper.key}.{ext}").is_file()
    assert [p.key for p in PAPERS] == [f"paper_00{i}" for i in range(5)]


def test_paper_003_published_beside_ours(done):
    md = (done["tables"] / "paper_003.md").read_text()
    ck7 = md.split("## CK+, 7 expressions")[1].split("## ")[0]
    header = md_header(ck7, "Method (paper)")
    s1r1 = md_row(ck7, "GCNet S1R1")
    assert s1r1[header.index("Accuracy (%) published")] == "97.93"
    assert s1r1[header.index("Accuracy (%) ours")] == "90.00 ± 7.07 [26.47, 153.53]"
    assert s1r1[header.index("Accuracy (%) Δ")] == "synthetic"   # never set against the paper
    base = md_row(ck7, "CNN (baseline)")
    assert base[header.index("Accuracy (%) published")] == "96.94"
    assert base[header.index("Ours: method")] == "supervised"      # no cnn_baseline runs
    assert base[header.index("Accuracy (%) ours")] == "80.00 ± 10.00 [55.16, 104.84]"
    s0r0 = md_row(ck7, "GCNet S0R0")
    assert s0r0[header.index("Accuracy (%) published")] == "97.08"
    assert s0r0[header.index("Accuracy (%) ours")] == "—"           # not run
    # The 8-class block must not show our 7-class runs.
    ck8 = md.split("## CK+, 8 expressions")[1].split("## ")[0]
    assert md_row(ck8, "GCNet S1R1")[header.index("Accuracy (%) published")] == "97.28"
    assert md_row(ck8, "GCNet S1R1")[header.index("Accuracy (%) ours")] == "—"
    mmi = md.split("## MMI")[1].split("## ")[0]
    assert md_row(mmi, "GCNet S1R1")[header.index("Accuracy (%) published")] == "81.53"
    oulu = md.split("## Oulu-CASIA")[1]
    assert md_row(oulu, "GCNet S1R0")[header.index("Accuracy (%) published")] == "86.39"
    assert "**Published**" in md and "**Ours" in md


def test_paper_000_and_001_and_002_and_004(done):
    md = (done["tables"] / "paper_000.md").read_text()
    header = md_header(md, "Method (paper)")
    ct2 = md_row(md, "CT512_2-full_FT (Method 1 then 2)")
    assert ct2[header.index("Top-1 acc (%) published")] == "69.15"
    assert ct2[header.index("Top-1 acc (%) ours")] == "50.00"
    assert ct2[header.index("Ours: data")] == "real"
    assert md_row(md, "CT512_1-FC_only (Method 1)")[header.index("Top-1 acc (%) published")] == "41.96"

    csv = pd.read_csv(done["tables"] / "paper_001.csv")
    simclr = csv[(csv["row"] == "SimCLR (VoxCeleb1)")].set_index("metric")
    assert simclr.loc["macro_f1", "published"] == pytest.approx(57.5)
    assert simclr.loc["valence_ccc", "published"] == pytest.approx(0.594)
    assert simclr.loc["arousal_rmse", "published"] == pytest.approx(0.387)
    assert simclr["ours_mean"].isna().all()

    md2 = (done["tables"] / "paper_002.md").read_text()
    afew = md2.split("## AFEW-VA")[1].split("Ours recomputed")[0]
    h2 = md_header(afew, "Method (paper)")
    caf = md_row(afew, "CAF (R18)")
    assert caf[h2.index("RMSE (V) published")] == "0.17"
    assert caf[h2.index("RMSE (V) ours")] == "0.300 ± 0.141 [-0.971, 1.571]"
    assert caf[h2.index("RMSE (V) Δ")] == "synthetic"
    assert caf[h2.index("CCC (A) published")] == "0.54"
    assert md_row(afew, "CAF (AL)")[h2.index("RMSE (V) ours")] == "—"   # no AlexNet runs
    affectnet = md2.split("## AffectNet")[1].split("## ")[0]
    h_aff = md_header(affectnet, "Method (paper)")
    assert md_row(affectnet, "CAF (ResNet18)")[h_aff.index("RMSE (V) published")] == "0.2186"
    legacy = md2.split("## AFEW-VA")[1].split("Ours recomputed")[1]
    hl = md_header(legacy, "Method (paper)")
    assert md_row(legacy, "CAF (R18)")[hl.index("RMSE (V) ours, legacy metric mode")] == \
        "0.600 ± 0.283 [-1.941, 3.141]"

    md4 = (done["tables"] / "paper_004.md").read_text()
    afew4 = md4.split("## AFEW-VA")[1].split("Ours recomputed")[0]
    h4 = md_header(afew4, "Method (paper)")
    avce = md_row(afew4, "AVCE (R18)")
    assert [avce[h4.index(f"{c} published")] for c in ("RMSE (V)", "SAGR (A)", "CCC (A)")] == \
        ["0.156", "0.876", "0.707"]
    assert avce[h4.index("CCC (V) ours")] == "—"
    assert "Supervised baseline" in afew4
    sup = md_row(afew4, "Supervised baseline (benchmark row, not in the paper)")
    assert sup[h4.index("RMSE (V) ours")] == "0.600"
    assert "0.499" in md4.split("## Aff-Wild2")[1]


def test_affectnet_expression_and_valence_arousal_runs_fill_one_paper_row(tmp_path):
    """AffectNet's expression runs (supervised) and V/A runs (supervised_va, caf) side by side:
    seed 001's Supervised row takes its F1/Acc cells from `supervised` and its V/A cells from
    `supervised_va`; seed 002's AffectNet block has CAF and the V/A baseline."""
    classes = ["neutral", *CK_CLASSES]
    write_run(tmp_path / "runs", "affectnet", "supervised", 0, classes=classes,
              metrics={"accuracy": 0.5, "macro_f1": 0.4})
    write_run(tmp_path / "runs", "affectnet", "supervised_va", 0, task="va", metrics=va(0.3, 0.2))
    write_run(tmp_path / "runs", "affectnet", "caf", 0, task="va", metrics=va(0.35, 0.25),
              backbone="resnet18")
    code, out = run_aggregate(tmp_path, tmp_path / "runs")
    assert code == 0
    csv = pd.read_csv(out["tables"] / "paper_001.csv")
    sup = csv[csv["row"] == "Supervised (ImageNet)"].set_index("metric")
    assert sup.loc["macro_f1", "ours_mean"] == pytest.approx(40.0)
    assert sup.loc["valence_ccc", "ours_mean"] == pytest.approx(0.3)
    assert sup.loc["arousal_rmse", "ours_mean"] == pytest.approx(0.2)
    assert set(sup["ours_method"]) == {"supervised, supervised_va"}
    md2 = (out["tables"] / "paper_002.md").read_text()
    affectnet = md2.split("## AffectNet")[1].split("## ")[0]
    h = md_header(affectnet, "Method (paper)")
    assert md_row(affectnet, "CAF (ResNet18)")[h.index("CCC (V) ours")] == "0.3500"
    base = md_row(affectnet, "Supervised baseline (benchmark row, not in the paper)")
    assert base[h.index("CCC (A) ours")] == "0.2000"
    assert base[h.index("Ours: method")].split(" — ")[0] == "supervised_va"


# ------------------------------------------------------------------------------ DVC files, figures
def test_summary_json(done):
    summary = json.loads(done["summary"].read_text())
    assert summary["ckplus"]["supervised"]["accuracy"] == pytest.approx(0.80)
    assert summary["ckplus"]["gcnet_s1r1"]["macro_f1"] == pytest.approx(0.90)
    assert summary["afewva"]["caf"]["valence_pcc"] == pytest.approx(0.2)
    assert summary["fer2013"]["triplet_m12_full_ft"]["accuracy"] == pytest.approx(0.5)
    assert set(summary) == {"ckplus", "fer2013", "afewva"}


def test_plots_csv_rows(done):
    plots = pd.read_csv(done["plots"])
    assert list(plots.columns) == ["dataset", "method", "fold", "seed", "metric", "value"]
    # ckplus 5 runs x 2 metrics + 2 gcnet runs x 2 test-set measures + fer2013 1 x 2 + afewva
    # caf 2 x (8 + mean_ccc + 8 legacy + legacy mean_ccc) + afewva supervised 1 x (8 + mean_ccc)
    # = 10 + 4 + 2 + 36 + 9
    assert len(plots) == 61
    row = plots[(plots["dataset"] == "ckplus") & (plots["method"] == "supervised")
                & (plots["fold"] == 1) & (plots["metric"] == "accuracy")]
    assert row["value"].tolist() == [pytest.approx(0.9)]


def test_figures_are_pngs(done):
    names = {p.name for p in done["figures"].glob("*.png")}
    # (the fake runs have no train_log.csv nor predictions.parquet: no curves, no VA scatter)
    assert names == {"ckplus_accuracy.png", "ckplus_confusion_supervised.png",
                     "ckplus_confusion_gcnet_s1r1.png", "fer2013_accuracy.png",
                     "fer2013_confusion_triplet_m12_full_ft.png", "afewva_ccc.png",
                     "ckplus_folds_accuracy.png", "fer2013_folds_accuracy.png",
                     "afewva_folds_mean_ccc.png",
                     # headline.py: one per dataset and task
                     "ckplus_headline.png", "fer2013_headline.png", "afewva_headline_va.png"}
    assert {p.name for p in done["figures"].glob("*.pdf")} == {
        n.replace(".png", ".pdf") for n in names}
    for name in names:
        blob = (done["figures"] / name).read_bytes()
        assert blob.startswith(PNG) and len(blob) > 1000, name
    assert not list(done["figures"].glob(".*.png*"))   # no temporary files left behind


# ------------------------------------------------------------------------------ grouping, staleness
def test_stale_outputs_removed_and_foreign_files_kept(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ckplus", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5})
    write_run(runs, "fer2013", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5})
    assert run_aggregate(tmp_path, runs)[0] == 0
    tables = tmp_path / "out" / "tables"
    (tables / "README.md").write_text("mine")
    assert (tables / "fer2013.md").exists()
    for p in (runs / "fer2013").rglob("*"):
        if p.is_file():
            p.unlink()
    code, out = run_aggregate(tmp_path, runs)
    assert code == 0
    assert not (tables / "fer2013.md").exists() and not (tables / "fer2013.csv").exists()
    assert not (out["figures"] / "fer2013_accuracy.png").exists()
    assert (tables / "ckplus.md").exists() and (tables / "paper_000.md").exists()
    assert (tables / "README.md").read_text() == "mine"
    assert "fer2013" not in json.loads(out["summary"].read_text())


def test_class_counts_and_backbones_are_not_mixed(tmp_path):
    runs = tmp_path / "runs"
    eight = CK_CLASSES + ["neutral"]
    write_run(runs, "ckplus", "gcnet_s1r1", 0, metrics={"accuracy": 0.7, "macro_f1": 0.7})
    (runs / "ckplus8").mkdir(parents=True)
    write_run(runs / "ckplus8", "ckplus", "gcnet_s1r1", 0, classes=eight,
              metrics={"accuracy": 0.6, "macro_f1": 0.6})
    write_run(runs, "afewva", "caf", 0, task="va", metrics=va(0.1, 0.1), backbone="resnet18")
    write_run(runs / "x", "afewva", "caf", 0, task="va", metrics=va(0.3, 0.3),
              backbone="smallcnn")
    loaded, _ = collect_runs(runs)
    assert {r.group for r in loaded} == {"ckplus_7cls", "ckplus_8cls", "afewva"}
    assert {r.variant for r in loaded if r.dataset == "afewva"} == {"caf@resnet18", "caf@smallcnn"}
    from ferbench.report.tables import block_rows
    scores = scores_frame(loaded)
    gcnet = [b for b in PAPERS[3].blocks if b.num_classes == 8][0]
    s1r1 = [p for p in block_rows(gcnet, scores) if p.row.label == "GCNet S1R1"][0]
    assert s1r1.ours[0].mean == pytest.approx(60.0)
    afew = PAPERS[4].blocks[0]
    rows = {p.row.label: p for p in block_rows(afew, scores)}
    assert rows["CAF (R18)"].ours[0].mean == pytest.approx(0.1)
    extra = rows["caf on smallcnn (ours only; no published row)"]
    assert extra.ours[0].mean == pytest.approx(0.3) and extra.row.published[0] is None


def test_other_budget_left_out(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ckplus", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5})
    write_run(runs, "ckplus", "supervised", 1, metrics={"accuracy": 0.9, "macro_f1": 0.9},
              budget="paper")
    loaded, notes = collect_runs(runs, budget="demo")
    assert [r.fold for r in loaded] == [0]
    assert "1 run(s) of budget paper left out" in notes[0]
    with pytest.raises(FerbenchError, match="budget 'other'"):
        collect_runs(runs, budget="other")


# ------------------------------------------------------------------------------ bad input
def test_malformed_json_names_the_file(tmp_path):
    runs = tmp_path / "runs"
    good = write_run(runs, "ckplus", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5})
    bad = good.parent.parent / "seed1" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text('{"dataset": "ckplus", ')
    with pytest.raises(FerbenchError, match=re.escape(str(bad))):
        collect_runs(runs)


@pytest.mark.parametrize("drop", ["seed", "metrics", "confusion", "backbone"])
def test_missing_key_names_file_and_key(tmp_path, drop):
    path = write_run(tmp_path, "ckplus", "supervised", 0,
                     metrics={"accuracy": 0.5, "macro_f1": 0.5}, drop=(drop,))
    with pytest.raises(FerbenchError) as err:
        collect_runs(tmp_path)
    assert str(path) in str(err.value) and repr(drop) in str(err.value)


def test_missing_metric_and_bad_values(tmp_path):
    p = write_run(tmp_path / "a", "afewva", "caf", 0, task="va",
                  metrics={k: 0.1 for k in VA if k != "arousal_sagr"})
    with pytest.raises(FerbenchError, match=re.escape(f"{p}: missing key metrics.arousal_sagr")):
        collect_runs(tmp_path / "a")
    p = write_run(tmp_path / "b", "ckplus", "supervised", 0,
                  metrics={"accuracy": "high", "macro_f1": 0.5})
    with pytest.raises(FerbenchError, match=re.escape(f"{p}: metrics.accuracy")):
        collect_runs(tmp_path / "b")
    p = write_run(tmp_path / "c", "ckplus", "supervised", 0,
                  metrics={"accuracy": 0.5, "macro_f1": 0.5}, confusion=[[1, 2], [3, 4]])
    with pytest.raises(FerbenchError, match=re.escape(f"{p}: confusion")):
        collect_runs(tmp_path / "c")


def test_duplicate_runs_are_an_error(tmp_path):
    write_run(tmp_path / "a", "ckplus", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5})
    write_run(tmp_path / "b", "ckplus", "supervised", 0, metrics={"accuracy": 0.6, "macro_f1": 0.6})
    with pytest.raises(FerbenchError, match="same dataset/method"):
        collect_runs(tmp_path)


def test_no_runs_is_a_clear_error_and_nonzero_exit(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    code, out = run_aggregate(tmp_path, tmp_path / "runs")
    assert code != 0
    err = capsys.readouterr().err
    assert "no runs found" in err and str(tmp_path / "runs") in err
    assert not out["summary"].exists()
    code, _ = run_aggregate(tmp_path, tmp_path / "does-not-exist")
    assert code != 0 and "does not exist" in capsys.readouterr().err


def test_data_provenance_falls_back_on_the_config(tmp_path):
    write_run(tmp_path / "runs", "afewva", "caf", 0, task="va", metrics=va(0.1, 0.1), data=None)
    write_run(tmp_path / "runs", "ckplus", "caf", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5},
              data=None)
    write_run(tmp_path / "runs", "fer2013", "caf", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5},
              data="real")
    loaded, _ = collect_runs(tmp_path / "runs")
    syn = tmp_path / "data" / "synthetic"
    config = {"synthetic": {"out": str(syn)},
              "datasets": {"afewva": {"root": str(syn / "afewva")},
                           "ckplus": {"root": str(tmp_path / "elsewhere" / "ckplus")},
                           "fer2013": {"root": str(syn / "fer2013")}}}
    fill_data_from_config(loaded, config)
    data = {r.dataset: r.data for r in loaded}
    # Inside synthetic.out -> synthetic; elsewhere is not proof of real data; recorded data wins.
    assert data == {"afewva": "synthetic (per config)", "ckplus": "unspecified", "fer2013": "real"}


# ------------------------------------------------------------------------------ module layout
REPORT = Path(__file__).resolve().parents[1] / "src" / "ferbench" / "report"


def import_cycle(folder: Path, package: str) -> list[str] | None:
    """A cycle among the modules of ``folder`` (the package ``package``), or None.

    Every import counts, also one inside a function: a deferred import back still makes the two
    modules depend on each other.
    """
    modules = {p.stem for p in folder.glob("*.py")}

    def sibling(dotted: str) -> str | None:
        if dotted == package:
            return "__init__"
        if dotted.startswith(package + "."):
            name = dotted[len(package) + 1:].split(".")[0]
            return name if name in modules else None
        return None

    graph: dict[str, set[str]] = {}
    for module in modules:
        targets = set()
        for node in ast.walk(ast.parse((folder / f"{module}.py").read_text())):
            if isinstance(node, ast.Import):
                targets.update(sibling(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:   # relative: from . import x, from .x import y, from .. import z
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) + 1 - node.level] + ([base] if base else []))
                # `from pkg import name` imports the submodule pkg.name when there is one
                targets.update(sibling(f"{base}.{alias.name}") or sibling(base)
                               for alias in node.names)
        graph[module] = targets - {None, module}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def test_report_modules_import_one_way():
    assert (REPORT / "runs.py").is_file() and (REPORT / "aggregate.py").is_file()
    assert import_cycle(REPORT, "ferbench.report") is None


def test_import_cycle_check_sees_deferred_and_relative_imports(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "model.py").write_text("from pkg.report.cli import main\n")
    (tmp_path / "cli.py").write_text("def main():\n    from . import model\n")
    assert set(import_cycle(tmp_path, "pkg.report")) == {"cli", "model"}
    (tmp_path / "cli.py").write_text("def main():\n    pass\n")
    assert import_cycle(tmp_path, "pkg.report") is None


def test_every_published_row_a_method_declares_is_a_row_of_a_paper_table():
    """Methods declare which paper rows their runs fill (``published_rows``): each label names a
    row of report/published.py, and the tables read them from the registry."""
    from ferbench.report.published import declared_rows

    labels = {row.label for paper in PAPERS for block in paper.blocks for row in block.rows}
    assert set(declared_rows()) <= labels
    assert declared_rows()["GCNet S1R1"] == ("gcnet_s1r1",)
    row = next(r for p in PAPERS for b in p.blocks for r in b.rows if r.label == "CNN (baseline)")
    assert row.ours == ("cnn_baseline", "supervised")
    reference = next(r for p in PAPERS for b in p.blocks for r in b.rows if r.label == "LBP-TOP [27]")
    assert reference.ours == ()


# ------------------------------------------------------------------------------ provenance and Δ
def real(dataset: str, fingerprint: str = "abcdef0123456789") -> dict:
    return {"data": {"dataset": dataset, "root": f"/data/{dataset}", "origin": "real",
                     "cache_fingerprint": fingerprint}}


TEN = ("kfold", 10)   # GCNet's protocol: 10-fold subject-independent


def test_delta_only_for_real_data_on_the_papers_backbone_and_input(tmp_path):
    """One rule for every paper table: Δ where ours ran on real data of the paper's dataset, its
    backbone and its input size; otherwise the cell says why not."""
    runs = tmp_path / "runs"
    for fold, acc in enumerate([0.95, 0.85]):   # mean 90.00 - 97.93 = -7.93
        write_run(runs, "ckplus", "gcnet_s1r1", fold, metrics={"accuracy": acc, "macro_f1": acc},
                  backbone="cnn3", provenance=real("ckplus"), settings={"image_size": 64, "epochs": 10, "protocol": TEN})
    write_run(runs, "ckplus", "supervised", 0, metrics={"accuracy": 0.9, "macro_f1": 0.9},
              provenance=real("ckplus"), settings={"image_size": 64, "epochs": 15, "protocol": TEN})
    write_run(runs, "ckplus", "gcnet_s1r0", 0, metrics={"accuracy": 0.9, "macro_f1": 0.9},
              backbone="cnn3", provenance=real("ckplus"), settings={"image_size": 32, "epochs": 10, "protocol": TEN})
    write_run(runs, "ckplus", "gcnet_s0r1", 0, metrics={"accuracy": 0.9, "macro_f1": 0.9},
              backbone="cnn3", provenance=real("ckplus"))              # no settings.json
    write_run(runs / "five", "ckplus", "cnn_baseline", 0, metrics={"accuracy": 0.9, "macro_f1": 0.9},
              backbone="cnn3", provenance=real("ckplus"),
              settings={"image_size": 64, "epochs": 10, "protocol": ("kfold", 5)})
    write_run(runs, "ckplus", "gcnet_s0r0", 0, metrics={"accuracy": 0.9, "macro_f1": 0.9},
              backbone="cnn3", provenance={"data": {"origin": "synthetic"}},
              settings={"image_size": 64, "epochs": 10, "protocol": TEN})
    write_run(runs, "fer2013", "supervised", 0, metrics={"accuracy": 0.6, "macro_f1": 0.6},
              provenance=real("fer2013"),
              settings={"image_size": 48, "epochs": 3, "protocol": ("official", None)})
    code, out = run_aggregate(tmp_path, runs)
    assert code == 0
    fer = (out["tables"] / "paper_000.md").read_text()
    hf = md_header(fer, "Method (paper)")
    assert md_row(fer, "InceptionV1-full_FT (no contrastive pretraining)")[hf.index("Top-1 acc (%) Δ")] \
        == "backbone differs: smallcnn vs InceptionV1"
    assert not fer.startswith(BANNER)
    md = (out["tables"] / "paper_003.md").read_text()
    ck7 = md.split("## CK+, 7 expressions")[1].split("## ")[0]
    h = md_header(ck7, "Method (paper)")
    delta = h.index("Accuracy (%) Δ")
    s1r1 = md_row(ck7, "GCNet S1R1")
    assert s1r1[delta] == "-7.93"
    assert s1r1[h.index("Ours: data")] == "real: ckplus (abcdef012345)"
    assert s1r1[h.index("Ours: input")] == "64 px" and s1r1[h.index("Ours: epochs")] == "10"
    assert md_row(ck7, "CNN (baseline)")[delta] == "protocol kfold, 5 folds vs kfold, 10 folds"
    assert md_row(ck7, "GCNet S1R0")[delta] == "input 32 px vs 64 px"
    assert md_row(ck7, "GCNet S0R1")[delta] == "protocol not recorded"
    assert md_row(ck7, "GCNet S0R0")[delta] == "synthetic"
    assert md.startswith(BANNER)                     # one synthetic row heads the file with it
    csv = pd.read_csv(out["tables"] / "paper_003.csv")
    ck7_csv = csv[csv["block"].str.startswith("CK+, 7")].set_index("row")
    assert ck7_csv.loc["GCNet S1R1", "diff"] == pytest.approx(90.0 - 97.93)
    assert ck7_csv.loc["GCNet S1R1", "comparable"] == "yes"
    assert math.isnan(ck7_csv.loc["GCNet S1R0", "diff"])
    # the dataset table: input size and epochs beside the backbone, from settings.json
    ck = (out["tables"] / "ckplus.md").read_text()
    head = md_header(ck, "Method")
    assert head[:6] == ["Method", "Backbone", "Input", "Epochs", "Runs", "Data"]
    assert md_row(ck, "supervised")[1:4] == ["smallcnn", "64 px", "15"]
    assert md_row(ck, "gcnet_s0r1")[2:4] == ["—", "—"]
    assert "real: ckplus (abcdef012345)" in ck and ck.startswith(BANNER)


def test_all_real_tables_have_no_banner_and_synthetic_ones_do(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ckplus", "gcnet_s1r1", 0, metrics={"accuracy": 0.9, "macro_f1": 0.9},
              backbone="cnn3", provenance=real("ckplus"), settings={"image_size": 64, "epochs": 10, "protocol": TEN})
    write_run(runs, "fer2013", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5},
              provenance={"data": {"origin": "synthetic"}}, settings={"image_size": 48, "epochs": 3})
    code, out = run_aggregate(tmp_path, runs)
    assert code == 0
    tables = out["tables"]
    assert not (tables / "ckplus.md").read_text().startswith(BANNER)
    assert not (tables / "paper_003.md").read_text().startswith(BANNER)
    for name in ("fer2013.md", "paper_000.md"):
        assert (tables / name).read_text().startswith(BANNER), name
    assert (tables / "paper_000.tex").read_text().startswith("% SYNTHETIC DATA")
    md = (tables / "paper_000.md").read_text()
    h = md_header(md, "Method (paper)")
    assert md_row(md, "InceptionV1-full_FT (no contrastive pretraining)")[h.index("Top-1 acc (%) Δ")] \
        == "synthetic"


def test_settings_json_that_is_not_valid_names_the_file(tmp_path):
    path = write_run(tmp_path / "runs", "ckplus", "supervised", 0,
                     metrics={"accuracy": 0.5, "macro_f1": 0.5})
    (path.parent / "settings.json").write_text(json.dumps({"train": {"epochs": {"value": 3}}}))
    with pytest.raises(FerbenchError, match=r"settings.json: missing key train.image_size.value"):
        load_run(path)
