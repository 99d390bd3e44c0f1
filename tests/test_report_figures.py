"""Figures of `ferbench aggregate`: every kind is drawn, in PNG and PDF, and byte-identical when
drawn twice from the same runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_tables import run_aggregate, va, write_artefacts, write_run

PNG = b"\x89PNG\r\n\x1a\n"


def make_runs(root: Path) -> None:
    for fold in range(3):
        for seed in (0, 1):
            for method, acc in (("supervised", 0.6), ("gcnet_s1r1", 0.7)):
                confusion = [[5 if i == j else (1 if j == (i + 1) % 7 else 0) for j in range(7)]
                             for i in range(7)]
                confusion[3] = [0] * 7     # a class without test samples stays blank
                path = write_run(root, "ckplus", method, fold, seed, confusion=confusion,
                                 metrics={"accuracy": acc + 0.01 * fold + 0.02 * seed,
                                          "macro_f1": acc})
                write_artefacts(path)
        path = write_run(root, "afewva", "caf", fold, task="va", metrics=va(0.2, 0.3),
                         backbone="resnet18")
        write_artefacts(path)
    # a run without artefacts: the figures draw on the others
    write_run(root, "afewva", "caf", 3, task="va", metrics=va(0.2, 0.3), backbone="resnet18")


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("figs")
    make_runs(tmp / "runs")
    outs = []
    for name in ("one", "two"):
        (tmp / name).mkdir()
        code, out = run_aggregate(tmp / name, tmp / "runs")
        assert code == 0
        outs.append(out["figures"])
    return outs


def test_every_kind_of_figure_in_png_and_pdf(twice):
    figures = twice[0]
    stems = {p.stem for p in figures.glob("*.png")}
    assert stems == {
        "ckplus_accuracy", "ckplus_folds_accuracy", "ckplus_confusion_supervised",
        "ckplus_confusion_gcnet_s1r1", "ckplus_curves_supervised", "ckplus_curves_gcnet_s1r1",
        "afewva_ccc", "afewva_folds_mean_ccc", "afewva_va_caf", "afewva_curves_caf"}
    for stem in stems:
        png = (figures / f"{stem}.png").read_bytes()
        pdf = (figures / f"{stem}.pdf").read_bytes()
        assert png.startswith(PNG) and len(png) > 1000, stem
        assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf, stem
    assert not list(figures.glob(".*"))[1:]    # only the manifest, no temporary files


def test_figures_are_deterministic(twice):
    one, two = twice
    names = sorted(p.name for p in one.iterdir() if p.suffix in (".png", ".pdf"))
    assert names == sorted(p.name for p in two.iterdir() if p.suffix in (".png", ".pdf"))
    differ = [n for n in names if (one / n).read_bytes() != (two / n).read_bytes()]
    assert differ == []
