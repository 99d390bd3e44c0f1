"""Statistics of the report (paired tests, confidence intervals) against scipy and hand-worked
values, and every paper table's rows and columns against the paper's structure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fake_tables import MULTIFOLD, fake_multifold_runs, run_aggregate, va, write_run
from scipy import stats as sp

from ferbench.report.published import PAPERS
from ferbench.report.stats import (confidence_interval, corrected_t_test, holm, lower_is_better,
                                   wilcoxon_test)


# ------------------------------------------------------------------------------ the tests alone
def test_corrected_t_test_hand_worked():
    # Nadeau & Bengio (2003): t = mean(d) / sqrt((1/J + n_test/n_train) * var(d, ddof=1)).
    # d = 0.02, 0.03, 0.01, 0.04, 0.05: J = 5, mean 0.03, var = (1+0+4+1+4)e-4 / 4 = 2.5e-4;
    # n_test/n_train = 20/80: (1/5 + 1/4) * 2.5e-4 = 1.125e-4, sqrt = 0.0106066
    # t = 0.03 / 0.0106066 = 2.828427 (= 2 sqrt 2), df = 4; two-sided p = 0.047421.
    t, df, p = corrected_t_test([0.02, 0.03, 0.01, 0.04, 0.05], 20 / 80)
    assert t == pytest.approx(2 * math.sqrt(2))
    assert df == 4
    assert p == pytest.approx(0.0474207, abs=1e-6)
    assert p == pytest.approx(2 * sp.t.sf(2 * math.sqrt(2), 4))
    # Without the correction term it is the plain paired t-test (scipy's ttest_1samp).
    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, 0.2])
    t0, _, p0 = corrected_t_test(d, 0.0)
    ref = sp.ttest_1samp(d, 0.0)
    assert (t0, p0) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    # The correction only widens: smaller |t|, larger p.
    t1, _, p1 = corrected_t_test(d, 0.25)
    assert abs(t1) < abs(t0) and p1 > p0


def test_corrected_t_test_degenerate_inputs():
    assert math.isnan(corrected_t_test([0.1], 0.2)[2])               # one pair: no test
    assert math.isnan(corrected_t_test([0.1, 0.1, 0.1], 0.2)[0])     # zero variance
    assert math.isnan(corrected_t_test([0.1, 0.2], math.nan)[2])     # unknown n_train


def test_wilcoxon_matches_scipy_and_the_exact_distribution():
    d = [0.1, 0.2, -0.05, 0.3, 0.15]
    stat, p = wilcoxon_test(d)
    ref = sp.wilcoxon(d)
    assert (stat, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    # by hand: |-0.05| has rank 1, so W- = 1; of the 2^5 sign patterns, 2 have W <= 1:
    # two-sided exact p = 2 * 2 / 32 = 0.125
    assert stat == 1.0 and p == pytest.approx(0.125)
    assert wilcoxon_test([0.01 * k for k in range(1, 11)])[1] == pytest.approx(2 / 2 ** 10)
    assert math.isnan(wilcoxon_test([0.2])[1])
    assert math.isnan(wilcoxon_test([0.0, 0.0, 0.0])[1])


def test_confidence_interval_matches_scipy():
    x = [0.8, 0.9, 0.7]
    lo, hi = confidence_interval(x)
    ref = sp.t.interval(0.95, df=2, loc=np.mean(x), scale=sp.sem(x))
    assert (lo, hi) == (pytest.approx(ref[0]), pytest.approx(ref[1]))
    assert (lo, hi) == (pytest.approx(0.8 - 0.248414, abs=1e-6), pytest.approx(1.048414, abs=1e-6))
    assert all(math.isnan(v) for v in confidence_interval([0.5]))
    assert confidence_interval([0.5, math.nan, 0.7]) == confidence_interval([0.5, 0.7])


def test_holm_adjustment_and_metric_direction():
    # sorted p: 0.01 (x3), 0.02 (x2), 0.04 (x1) -> 0.03, 0.04, 0.04; NaN stays NaN
    out = holm([0.04, 0.01, math.nan, 0.02])
    assert out[1] == pytest.approx(0.03) and out[3] == pytest.approx(0.04)
    assert out[0] == pytest.approx(0.04) and math.isnan(out[2])
    assert lower_is_better("valence_rmse") and lower_is_better("gen_ref_mse_test")
    assert not lower_is_better("accuracy") and not lower_is_better("mean_ccc")


# ------------------------------------------------------------------------------ through aggregate
CONFIG = {"run": {"datasets": ["ckplus", "afewva", "fer2013"],
                  "methods": ["supervised", "cnn_baseline", "gcnet_s1r1", "caf"]},
          "datasets": {"ckplus": {"protocol": {"classes": 7}},
                       "afewva": {"methods": ["supervised"]}}}


@pytest.fixture(scope="module")
def multifold(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multifold")
    fake_multifold_runs(tmp / "runs")
    code, out = run_aggregate(tmp, tmp / "runs", config=CONFIG)
    assert code == 0
    return out


def md_section(text: str, title: str) -> str:
    return text.split(f"## {title}")[1].split("\n## ")[0]


def md_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_paired_tests_csv_against_scipy_and_hand(multifold):
    tests = pd.read_csv(multifold["tables"] / "paired_tests.csv")
    row = tests[(tests["metric"] == "accuracy") & (tests["method_a"] == "supervised")
                & (tests["method_b"] == "gcnet_s1r1")].iloc[0]
    d = np.array([MULTIFOLD[k][0] - MULTIFOLD[k][1] for k in range(10)])  # -(0.05 + 0.002 k)
    assert row["n_pairs"] == 10 and row["folds"] == 10 and row["seeds"] == 1
    assert row["mean_diff"] == pytest.approx(-0.059)
    assert row["n_test_over_n_train"] == pytest.approx(0.2)
    # by hand: var(d) = 0.002^2 * var(0..9) = 4e-6 * 55/6; t = -0.059 / sqrt(0.3 * 22e-6 / 6)
    assert row["t_corrected"] == pytest.approx(-0.059 / math.sqrt(0.3 * 4e-6 * 55 / 6))
    assert row["df"] == 9
    assert row["p_corrected"] == pytest.approx(2 * sp.t.sf(abs(row["t_corrected"]), 9))
    ref = sp.wilcoxon(d)
    assert row["wilcoxon_p"] == pytest.approx(ref.pvalue) and row["wilcoxon_p"] == \
        pytest.approx(2 / 2 ** 10)
    assert row["better"] == "gcnet_s1r1" and bool(row["significant"])
    tie = tests[(tests["metric"] == "accuracy") & (tests["method_a"] == "cnn_baseline")
                & (tests["method_b"] == "supervised")].iloc[0]
    dd = np.array([MULTIFOLD[k][2] - MULTIFOLD[k][0] for k in range(10)])
    assert tie["wilcoxon_p"] == pytest.approx(sp.wilcoxon(dd).pvalue)
    assert tie["p_corrected"] > 0.5 and not bool(tie["significant"])
    assert set(tests["metric"]) == {"accuracy", "macro_f1"}
    assert len(tests) == 3 * 2       # 3 pairs of methods x 2 metrics


def test_significant_wins_marked_in_tables(multifold):
    md = (multifold["tables"] / "ckplus.md").read_text()
    rows = {r[0]: r for r in md_rows(md)}
    header = rows["Method"]
    col = header.index("Significantly better than")
    assert rows["gcnet_s1r1"][col] == "accuracy: cnn_baseline, supervised; " \
                                      "macro_f1: cnn_baseline, supervised"
    assert rows["supervised"][col] == "none" and rows["cnn_baseline"][col] == "none"
    paper = (multifold["tables"] / "paper_003.md").read_text()
    ck7 = md_section(paper, "CK+, 7 expressions")
    prow = {r[0]: r for r in md_rows(ck7)}
    h = prow["Method (paper)"]
    acc = h.index("Accuracy (%) ours")
    assert prow["GCNet S1R1"][acc].endswith(" *")
    assert prow["CNN (baseline)"][1] == "cnn_baseline"       # the baseline row
    assert not prow["CNN (baseline)"][acc].endswith("*")
    assert "Paired tests against our baseline row (`cnn_baseline`)" in ck7
    csv = pd.read_csv(multifold["tables"] / "paper_003.csv")
    s1r1 = csv[(csv["block"].str.startswith("CK+, 7")) & (csv["row"] == "GCNet S1R1")].iloc[0]
    assert bool(s1r1["better_than_baseline"]) and s1r1["baseline"] == "cnn_baseline"
    mean = np.mean([MULTIFOLD[k][1] for k in range(10)]) * 100
    assert s1r1["ours_mean"] == pytest.approx(mean)
    assert s1r1["diff"] == pytest.approx(mean - 97.93)


def test_one_fold_says_no_test_possible(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "ckplus", "supervised", 0, metrics={"accuracy": 0.5, "macro_f1": 0.5})
    write_run(runs, "ckplus", "gcnet_s1r1", 0, metrics={"accuracy": 0.6, "macro_f1": 0.6})
    write_run(runs, "afewva", "supervised", 0, task="va", metrics=va(0.2, 0.3))
    code, out = run_aggregate(tmp_path, runs, config=CONFIG)
    assert code == 0
    md = (out["tables"] / "ckplus.md").read_text()
    rows = {r[0]: r for r in md_rows(md)}
    col = rows["Method"].index("Significantly better than")
    assert rows["gcnet_s1r1"][col] == "no test possible"
    assert "no test possible: 1 paired run(s) (1 fold(s) × 1 seed(s))" in md
    tests = pd.read_csv(out["tables"] / "paired_tests.csv")
    assert tests["p_corrected"].isna().all() and tests["wilcoxon_p"].isna().all()
    assert tests["note"].str.startswith("no test possible").all()
    paper = (out["tables"] / "paper_003.md").read_text()
    assert "no test possible: 1 paired run(s)" in md_section(paper, "CK+, 7 expressions")
    assert "*" not in "".join(r[6] for r in md_rows(md_section(paper, "CK+, 7 expressions")))
    # a single method: nothing to pair
    assert "no test possible" in (out["tables"] / "afewva.md").read_text()


# ------------------------------------------------------------------------------ paper structure
# Each paper table's blocks, columns and rows as METHODS.md (and the papers) lay them out.
AFEW_COLS = ["RMSE (V)", "RMSE (A)", "SAGR (V)", "SAGR (A)", "PCC (V)", "PCC (A)", "CCC (V)",
             "CCC (A)"]
BASELINE = "Supervised baseline (benchmark row, not in the paper)"
FIXED = "CAF with a fixed margin (benchmark ablation, not in the paper)"
GCNET = ["CNN (baseline)", "GCNet S0R0", "GCNet S1R0", "GCNet S0R1", "GCNet S1R1"]
STRUCTURE = {
    "paper_000": [("FER-2013, top-1 accuracy", ["Top-1 acc (%)"], [
        "MAXIM MILAKOV (Kaggle leaderboard)",
        "RADU + MARIUS + CRISTI (Ionescu and Grozea 2013; Kaggle)",
        "InceptionV1-full_FT (no contrastive pretraining)", "InceptionV1-VGGFace2-full_FT",
        "InceptionV1-VGGFace2-FC_only", "CT512_1-full_FT (Method 1)",
        "CT512_2-full_FT (Method 1 then 2)", "CT512_1-FC_only (Method 1)",
        "CT512_2-FC_only (Method 1 then 2)"])],
    "paper_001": [("AffectNet: expression", ["F1 (%)", "Acc (%)", "CCC (V)", "RMSE (V)",
                                            "CCC (A)", "RMSE (A)"], [
        "Supervised (ImageNet)", "BYOL (VoxCeleb1)", "MoCo-v2 (VoxCeleb1)", "SimCLR (VoxCeleb1)",
        "CycleFace (VoxCeleb1,2)", "(a) TimeAug", "(b) TimeAug + HardNeg",
        "(c) TimeAug + HardNeg + CutMix", "(d) TimeAug + FaceSwap + MaskFN",
        "(e) TimeAug + HardNeg + FaceSwap", "(f) TimeAug + HardNeg + MaskFN",
        "(g) TimeAug + HardNeg + FaceSwap + MaskFN"])],
    "paper_002": [
        ("AffectNet valence/arousal", ["RMSE (V)", "RMSE (A)", "PCC (V)", "PCC (A)", "CCC (V)",
                                       "CCC (A)"], [
            "Mollahosseini, Hasani, and Mahoor 2017 (AlexNet)",
            "Jang, Gunes, and Patras 2019 (SSD w/ VGG16)", "Kollias et al. 2018 (VGG16)",
            "Barros, Parisi, and Wermter 2019 (AlexNet)", "Kossaifi et al. 2020 (ResNet18)",
            "Hasani, Negi, and Mahoor 2020 (ResNeXt50)", "CAF (ResNet18)",
            "CAF (AlexNet, tuned)", FIXED, BASELINE]),
        ("AFEW-VA", AFEW_COLS, ["CAF (R18)", "CAF (AL)", FIXED, BASELINE])],
    "paper_003": [
        ("CK+, 7 expressions", ["Accuracy (%)"], [
            "LBP-TOP [27]", "HOG 3D [15]", "MSR [23]", "TMS (4-fold) [12]", "STM-ExpLet [19]",
            "DTAGN-Joint [13]", "3D-CNN [18]", "3D-CNN-DAP [18]", *GCNET]),
        ("CK+, 8 expressions", ["Accuracy (%)"], [
            "AURF [16]", "AUDB [17]", "Zero-bias CNN+AD [14]", *GCNET]),
        ("MMI", ["Accuracy (%)"], [
            "LBP-TOP [27]", "HOG 3D [15]", "ITBN [25]", "CSPL [29]", "STM-ExpLet [19]",
            "DTAGN-Joint [13]", "3D-CNN [18]", "3D-CNN-DAP [18]", *GCNET]),
        ("Oulu-CASIA", ["Accuracy (%)"], [
            "LBP-TOP [27]", "HOG 3D [15]", "AdaLBP [26]", "Atlases [9]", "STM-ExpLet [19]",
            "DTAGN-Joint [13]", *GCNET])],
    "paper_004": [
        ("AFEW-VA", AFEW_COLS, [
            "Static: Kossaifi et al. [24]", "Static: Mitenkova et al. [30]",
            "Static: Kossaifi et al. [23]", "CAF (R18)", "CAF (AL)", "AVCE (R18)", "AVCE (AL)",
            "Temporal: Kollias et al. [21]", "Temporal: Kossaifi et al. [23]-scratch",
            "Temporal: Kossaifi et al. [23]-trans.", BASELINE]),
        ("Aff-Wild (", AFEW_COLS, [
            "Hasani et al. [13]", "Hasani et al. [14]",
            "Deng et al. [8] (Aff-Wild test set, ResNet50)", "CAF (R18)", "CAF (AL)",
            "AVCE (R18)", "AVCE (AL)", BASELINE]),
        ("Aff-Wild2", ["CCC (V)", "CCC (A)", "Mean CCC"], [
            "ConvGRU [5]", "Self-Attention [50]", "Sanchez et al. [42] (prior best)",
            "AVCE (R18)", "AVCE (AL)", BASELINE]),
        ("Ablation on Aff-Wild", ["CCC (V)", "CCC (A)"], [
            "InfoNCE in place of L_AVCE, similarity f", "InfoNCE in place of L_AVCE, similarity f2",
            "Barlow Twins in place of L_AVCE, similarity f",
            "Barlow Twins in place of L_AVCE, similarity f2", "AVCE without L_dis",
            "AVCE with f", "AVCE with f1", "AVCE with f2"])],
}
META = ["Method (paper)", "Ours: method", "Ours: backbone", "Ours: data", "Ours: runs"]
# Published numbers spot-checked against METHODS.md: (block, row, column) -> value as printed.
PUBLISHED = {
    "paper_000": {("FER", "CT512_2-full_FT (Method 1 then 2)", "Top-1 acc (%)"): "69.15",
                  ("FER", "InceptionV1-VGGFace2-FC_only", "Top-1 acc (%)"): "48.86"},
    "paper_001": {("Aff", "(g) TimeAug + HardNeg + FaceSwap + MaskFN", "RMSE (A)"): "0.372",
                  ("Aff", "SimCLR (VoxCeleb1)", "F1 (%)"): "57.5"},
    "paper_002": {("AffectNet", "CAF (ResNet18)", "RMSE (V)"): "0.2186",
                  ("AFEW-VA", "CAF (AL)", "CCC (A)"): "0.57"},
    "paper_003": {("CK+, 7", "GCNet S1R1", "Accuracy (%)"): "97.93",
                  ("CK+, 8", "CNN (baseline)", "Accuracy (%)"): "95.47",
                  ("MMI", "GCNet S1R1", "Accuracy (%)"): "81.53",
                  ("Oulu", "GCNet S1R0", "Accuracy (%)"): "86.39"},
    "paper_004": {("AFEW-VA", "AVCE (R18)", "SAGR (A)"): "0.876",
                  ("Aff-Wild (", "AVCE (AL)", "PCC (V)"): "0.713",
                  ("Aff-Wild2", "AVCE (R18)", "Mean CCC"): "0.499",
                  ("Ablation", "AVCE with f2", "CCC (V)"): "0.691"},
}


def test_every_paper_table_has_the_papers_rows_and_columns(multifold):
    assert [p.key for p in PAPERS] == sorted(STRUCTURE)
    checked = set()
    for key, blocks in STRUCTURE.items():
        md = (multifold["tables"] / f"{key}.md").read_text()
        sections = md.split("\n## ")[1:]
        assert len(sections) == len(blocks), key
        for section, (title, columns, labels) in zip(sections, blocks):
            assert section.startswith(title), (key, section[:60])
            table = md_rows(section.split("Ours recomputed")[0])
            header, body = table[0], table[1:]
            assert header == META + [f"{c} {part}" for c in columns
                                     for part in ("published", "ours", "Δ")], (key, title)
            assert [r[0] for r in body] == labels, (key, title)
            for r in body:
                assert r[1] != "—", (key, r[0])    # a method, or why there is none
                for (block, label, column), value in PUBLISHED[key].items():
                    if section.startswith(block) and r[0] == label:
                        assert r[header.index(f"{column} published")] == value, (key, label)
                        checked.add((key, block, label, column))
        csv = pd.read_csv(multifold["tables"] / f"{key}.csv")
        n_cells = sum(len(c) * len(rows) for _, c, rows in blocks)
        assert len(csv) == n_cells, key
        tex = (multifold["tables"] / f"{key}.tex").read_text()
        assert tex.count(r"\begin{table}") == len(blocks)
        assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == len(blocks)
    assert len(checked) == sum(len(v) for v in PUBLISHED.values())


def test_rows_not_run_say_why(multifold):
    def status(key, block, label):
        csv = pd.read_csv(multifold["tables"] / f"{key}.csv")
        sel = csv[csv["block"].str.startswith(block) & (csv["row"] == label)]
        assert len(sel), (key, block, label)
        return sel["status"].iloc[0]

    assert status("paper_003", "CK+, 7", "GCNet S1R1") == "run"
    assert status("paper_003", "CK+, 7", "GCNet S0R0") == "not run (method not in run.methods)"
    assert status("paper_003", "CK+, 7", "HOG 3D [15]") == "reference only (no ferbench method)"
    assert status("paper_003", "CK+, 8", "GCNet S1R1") == \
        "not run (dataset ckplus configured with 7 classes)"
    assert status("paper_003", "MMI", "GCNet S1R1") == "not run (dataset mmi not configured)"
    assert status("paper_001", "AffectNet", "SimCLR (VoxCeleb1)") == \
        "not run (dataset affectnet not configured)"
    assert status("paper_004", "Ablation", "AVCE with f1") == \
        "not run (dataset affwild not configured)"
    assert status("paper_002", "AFEW-VA", "CAF (R18)") == \
        "not run (method not in datasets.afewva.methods)"
    assert status("paper_002", "AFEW-VA", FIXED) == "not run (method not in run.methods)"
    assert status("paper_004", "AFEW-VA", BASELINE) == "not run yet (no runs found)"
    md = (multifold["tables"] / "paper_003.md").read_text()
    row = {r[0]: r for r in md_rows(md_section(md, "MMI"))}["GCNet S1R1"]
    assert row[1] == "not run (dataset mmi not configured)" and row[6] == "—"
