"""`ferbench compare RUN_A RUN_B` on fake results folders."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fake_tables import MULTIFOLD, fake_multifold_runs, write_run
from scipy import stats as sp

from ferbench import cli


def table_rows(text: str) -> dict[tuple[str, str, str], list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Dataset"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[tuple(cells[:3])] = cells
    return rows


@pytest.fixture
def folders(tmp_path):
    fake_multifold_runs(tmp_path / "a" / "runs")
    # B: supervised 0.60 + 0.01 k in every fold; fer2013 only in B; one-fold afewva in both
    for k in range(10):
        write_run(tmp_path / "b" / "runs", "ckplus", "supervised", k,
                  metrics={"accuracy": 0.60 + 0.01 * k, "macro_f1": 0.5})
    write_run(tmp_path / "b" / "runs", "fer2013", "supervised", 0,
              metrics={"accuracy": 0.6, "macro_f1": 0.5})
    for side in ("a", "b"):
        write_run(tmp_path / side / "runs", "fer2013" if side == "a" else "mmi", "caf", 0,
                  metrics={"accuracy": 0.5, "macro_f1": 0.5})
        write_run(tmp_path / side / "runs", "ckplus", "gcnet_s0r0", 0,
                  metrics={"accuracy": 0.5 if side == "a" else 0.4, "macro_f1": 0.5})
    return tmp_path


def test_compare_differences_and_paired_tests(folders, capsys):
    csv = folders / "compare.csv"
    # a results folder or its runs/ folder
    code = cli.main(["compare", str(folders / "a"), str(folders / "b" / "runs"), "--csv", str(csv)])
    assert code == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    acc = rows[("ckplus", "supervised", "accuracy")]
    d = np.array([MULTIFOLD[k][0] - (0.60 + 0.01 * k) for k in range(10)])
    assert acc[5] == f"{d.mean():+.4f}" and acc[6] == "A" and acc[7] == "10"
    assert float(acc[8]) == pytest.approx(sp.wilcoxon(d).pvalue, abs=5e-5)
    table = pd.read_csv(csv).set_index(["dataset", "method", "metric"])
    r = table.loc[("ckplus", "supervised", "accuracy")]
    # n_test/n_train = 20/100 in every run
    t = d.mean() / math.sqrt((1 / 10 + 0.2) * d.var(ddof=1))
    assert r["t_corrected"] == pytest.approx(t) and r["df"] == 9
    assert r["p_corrected"] == pytest.approx(2 * sp.t.sf(abs(t), 9))
    assert r["wilcoxon_p"] == pytest.approx(sp.wilcoxon(d).pvalue)
    # one common fold: a difference, but no test
    one = rows[("ckplus", "gcnet_s0r0", "accuracy")]
    assert one[5] == "+0.1000" and one[9] == "no test possible"
    assert "no test possible: 1 paired run(s) (1 fold(s) × 1 seed(s))" in out
    assert "Only in A (not compared): ckplus/cnn_baseline, ckplus/gcnet_s1r1, fer2013/caf." in out
    assert "Only in B (not compared): fer2013/supervised, mmi/caf." in out


def test_compare_metric_filter_and_nothing_in_common(folders, capsys):
    assert cli.main(["compare", str(folders / "a"), str(folders / "b"), "--metrics",
                     "macro_f1"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert {k[2] for k in rows} == {"macro_f1"}
    write_run(folders / "c" / "runs", "oulu", "supervised", 0,
              metrics={"accuracy": 0.5, "macro_f1": 0.5})
    assert cli.main(["compare", str(folders / "a"), str(folders / "c")]) == 2
    assert "no dataset, method and metric in common" in capsys.readouterr().err
