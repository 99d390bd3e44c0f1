"""Figures of `ferbench aggregate`: every kind is drawn, in PNG and PDF, and byte-identical when
drawn twice from the same runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fake_tables import run_aggregate, va, write_artefacts, write_run

from ferbench.report import figures
from ferbench.report.outputs import Outputs
from ferbench.report.runs import collect_runs, scores_frame

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
        "ckplus_tsne", "afewva_ccc", "afewva_folds_mean_ccc", "afewva_va_caf",
        "afewva_curves_caf", "ckplus_headline", "afewva_headline_va"}
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


# -- t-SNE of the test embeddings ----------------------------------------------------------------
def test_tsne_compares_the_baseline_with_the_best_other_method(twice):
    """make_runs: gcnet_s1r1 (mean accuracy 0.72) against supervised (0.62), on fold 0 seed 0;
    its caption on the report says which, why, and how the t-SNE was computed."""
    page = (twice[0].parent / "report" / "index.html").read_text()
    assert 'id="fig-ckplus_tsne"' in page
    caption = re.search(r'id="fig-ckplus_tsne".*?<figcaption>(.*?)</figcaption>', page, re.S)[1]
    assert "baseline supervised (left)" in caption and "gcnet_s1r1 (right)" in caption
    assert "highest mean test accuracy over folds × seeds among the non-baseline methods" in caption
    assert "(0.720 against the baseline&#x27;s 0.620)" in caption
    assert "fold 0, seed 0; all 30 test samples" in caption
    assert "perplexity 9.66667" in caption and "random_state 0" in caption and "16 and 16" in caption


def _runs(root: Path, accuracies: dict[str, list[float]], n: int = 30) -> list:
    for method, values in accuracies.items():
        for fold, acc in enumerate(values):
            write_artefacts(write_run(root, "ckplus", method, fold, metrics={"accuracy": acc,
                                                                             "macro_f1": acc}), n=n)
    return collect_runs(root)[0]


def test_best_method_is_the_highest_mean_among_non_baselines(tmp_path: Path) -> None:
    runs = _runs(tmp_path, {"supervised": [0.5, 0.6], "cnn_baseline": [0.9, 0.9],
                            "caf": [0.8, 0.4], "gcnet_s1r1": [0.75, 0.5], "triplet": [0.625, 0.625]})
    # cnn_baseline scores highest but is a baseline; gcnet (0.625) ties triplet: first by name
    assert figures.tsne_pair(runs) == ("supervised", "gcnet_s1r1")
    assert figures.mean_accuracy(runs)["caf"] == pytest.approx(0.6)
    only_baselines = [r for r in runs if r.method in ("supervised", "cnn_baseline")]
    assert figures.tsne_pair(only_baselines) is None
    # no supervised runs: cnn_baseline is the baseline
    assert figures.tsne_pair([r for r in runs if r.method != "supervised"]) == ("cnn_baseline",
                                                                               "gcnet_s1r1")


def test_tsne_subsamples_to_the_cap_and_is_deterministic(tmp_path: Path, monkeypatch) -> None:
    runs = _runs(tmp_path / "runs", {"supervised": [0.6], "caf": [0.7]}, n=60)
    monkeypatch.setattr(figures, "TSNE_MAX_POINTS", 25)
    out = Outputs(tmp_path / "figs")
    captions = figures.write_figures(scores_frame(runs), runs, out)
    caption = captions["ckplus_tsne.png"][1]
    assert "25 of the run's 60 test samples (a random subsample, seed 0" in caption
    first = (tmp_path / "figs" / "ckplus_tsne.png").read_bytes()
    figures.write_figures(scores_frame(runs), runs, Outputs(tmp_path / "again"))
    assert (tmp_path / "again" / "ckplus_tsne.png").read_bytes() == first


def test_tsne_coordinates_keep_separated_classes_apart() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 32))
    labels = np.repeat(np.arange(4), 25)
    feats = centres[labels] + rng.normal(0, 0.05, (100, 32))
    xy, perplexity = figures.tsne_coordinates(feats)
    assert xy.shape == (100, 2) and perplexity == 30.0
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() == 1.0   # each point's neighbour: its class
    again, _ = figures.tsne_coordinates(feats)
    assert np.array_equal(xy, again)
    small, p = figures.tsne_coordinates(feats[:10])
    assert small.shape == (10, 2) and p == pytest.approx(3.0)


def test_tsne_passes_over_an_unreadable_embeddings_file_with_a_note(tmp_path: Path, capsys) -> None:
    """Fold 0's embeddings of the best method are damaged: the figure uses fold 1 and says why."""
    runs = _runs(tmp_path / "runs", {"supervised": [0.6, 0.6], "caf": [0.7, 0.7]})
    broken = next(r for r in runs if r.method == "caf" and r.fold == 0).path.parent / figures.EMBEDDINGS
    broken.write_bytes(b"not a parquet file")
    captions = figures.write_figures(scores_frame(runs), runs, Outputs(tmp_path / "figs"))
    assert "fold 1" in captions["ckplus_tsne.png"][1]
    err = capsys.readouterr().err
    assert f"{broken}: not used for the t-SNE figure" in err, err


def test_learning_rates_stay_out_of_the_loss_panel() -> None:
    terms, lrs, vals = figures.log_columns(
        ["step", "epoch", "lr", "lr_encoder", "lr_head", "loss", "loss_gen", "val_accuracy"])
    assert terms == ["loss", "loss_gen"]
    assert lrs == ["lr", "lr_encoder", "lr_head"]
    assert vals == ["val_accuracy"]


def test_loss_axis_is_logarithmic_where_terms_differ_by_orders_of_magnitude() -> None:
    import pandas as pd

    near = {"a": pd.Series([2.0, 1.5]), "b": pd.Series([0.5, 0.05])}   # medians 1.75 and 0.275
    assert figures.loss_scale(near) == ("linear", 0.0)
    far = {"gen": pd.Series([150.0, 140.0]), "cls": pd.Series([1.2, 0.8])}  # 145 / 1.0 >= 100
    assert figures.loss_scale(far) == ("log", 0.0)
    crossing = {"avce": pd.Series([-0.02, 0.02]), "av": pd.Series([3.0, 2.0])}   # 2.5 / 0.02
    assert figures.loss_scale(crossing) == ("symlog", pytest.approx(0.02))
    assert figures.loss_scale({"only": pd.Series([1e-6, 1e3])}) == ("linear", 0.0)
