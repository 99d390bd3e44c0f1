"""Folds and splits from the sample table: fold rules, overrides, selection, engine API."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from fake_tables import CKPLUS_FOLDS, ckplus_like_table
from ferbench.data import protocols
from ferbench.datasets.base import make_table
from ferbench.errors import FerbenchError
from ferbench.data.protocols import (
    assign_folds, class_list, fold_indices, resolve_protocol, training_subject_mask,
)


@pytest.fixture(scope="module")
def ck():
    return ckplus_like_table()


def _sequence_rows(seq, subject, emotion, n_frames, apex_frame=None, first=1):
    return [{"sample_id": f"{seq}_{f}", "subject": subject, "sequence": seq, "frame": f,
             "path": f"{seq}/{f}.png", "emotion": emotion, "apex": f == apex_frame}
            for f in range(first, first + n_frames)]


def test_class_lists_keep_canonical_order():
    assert class_list("ckplus", 7) == ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert class_list("ckplus", 6) == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert class_list("ckplus", 8)[0] == "neutral" and len(class_list("ckplus", 8)) == 8
    assert class_list("affectnet", 7) == ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert "contempt" not in class_list("fer2013", 7) and "neutral" in class_list("fer2013", 7)
    with pytest.raises(FerbenchError, match="classes 5"):
        class_list("ckplus", 5)


def test_defaults_and_overrides():
    assert resolve_protocol("ckplus")["kind"] == "kfold"
    assert resolve_protocol("ckplus")["classes"] == 7
    assert resolve_protocol("afewva") == {"kind": "group_kfold", "task": "va", "selection": "all",
                                          "folds": 6, "classes": 0, "class_names": []}
    assert resolve_protocol("affwild2")["folds"] == 1
    assert resolve_protocol("ckplus", {"classes": 8})["class_names"][0] == "neutral"
    with pytest.raises(FerbenchError, match="'shuffle' unknown"):
        resolve_protocol("ckplus", {"shuffle": True})
    with pytest.raises(FerbenchError, match="kind 'loso'"):
        resolve_protocol("ckplus", {"kind": "loso"})


def test_ckplus_rank_mod_rule_gives_the_published_fold_counts(ck):
    folds_df, meta = assign_folds(ck, "ckplus")
    labelled = sorted(ck.loc[ck["emotion"].notna(), "subject"].unique())
    assert len(labelled) == 118 and labelled[:3] != ["S001", "S002", "S003"]
    fold_of = folds_df.groupby("subject")["fold"].first()
    for rank, subject in enumerate(labelled):
        assert fold_of[subject] == rank % 10
    # subjects with no labelled sequence are never tested
    unlabelled = set(ck["subject"]) - set(labelled)
    assert len(unlabelled) == 5 and set(fold_of[sorted(unlabelled)]) == {-1}
    sel = folds_df[folds_df["protocol_sample"]]
    per_fold = [sel.loc[sel["fold"] == f, "sequence"].nunique() for f in range(10)]
    assert per_fold == CKPLUS_FOLDS
    assert meta["n_folds"] == 10 and meta["kind"] == "kfold"
    # three peak frames per labelled sequence
    assert meta["counts"]["9"]["test"] == 3 * CKPLUS_FOLDS[9]
    assert meta["counts"]["9"]["train"] == 3 * (sum(CKPLUS_FOLDS) - CKPLUS_FOLDS[9])
    assert "fear" not in set(sel.loc[sel["fold"] == 9, "target"])


def test_folds_table_has_one_row_per_sample_with_contract_dtypes(ck):
    folds_df, _ = assign_folds(ck, "ckplus")
    assert list(folds_df.columns) == list(protocols.FOLD_COLUMNS)
    assert len(folds_df) == len(ck) and (folds_df["sample_id"] == ck["sample_id"]).all()
    for col in ("cache_row", "label", "fold"):
        assert folds_df[col].dtype == np.int64
    assert folds_df["protocol_sample"].dtype == bool
    assert (folds_df["cache_row"] == np.arange(len(ck))).all()
    not_sel = folds_df[~folds_df["protocol_sample"]]
    assert (not_sel["label"] == -1).all() and not_sel["target"].isna().all()
    sel = folds_df[folds_df["protocol_sample"]]
    names = class_list("ckplus", 7)
    assert [names[i] for i in sel["label"]] == list(sel["target"])


def test_fold_file_overrides_the_rule(ck, tmp_path):
    subjects = sorted(ck.loc[ck["emotion"].notna(), "subject"].unique())
    path = tmp_path / "folds.csv"
    pd.DataFrame({"subject": subjects, "fold": [(9 - i) % 10 for i in range(len(subjects))]}).to_csv(path, index=False)
    folds_df, meta = assign_folds(ck, "ckplus", fold_file=path)
    fold_of = folds_df.groupby("subject")["fold"].first()
    assert [fold_of[s] for s in subjects] == [(9 - i) % 10 for i in range(len(subjects))]
    assert meta["protocol"]["fold_rule"] == "file"


def test_fold_file_errors_name_file_and_subject(ck, tmp_path):
    subjects = sorted(ck.loc[ck["emotion"].notna(), "subject"].unique())
    missing = tmp_path / "missing.csv"
    pd.DataFrame({"subject": subjects[1:], "fold": 0}).to_csv(missing, index=False)
    with pytest.raises(FerbenchError, match=rf"missing\.csv: subject {subjects[0]} is missing"):
        assign_folds(ck, "ckplus", fold_file=missing)
    out_of_range = tmp_path / "range.csv"
    pd.DataFrame({"subject": subjects, "fold": [10] + [0] * (len(subjects) - 1)}).to_csv(out_of_range, index=False)
    with pytest.raises(FerbenchError, match=rf"range\.csv: subject {subjects[0]}: fold 10 out of range 0\.\.9"):
        assign_folds(ck, "ckplus", fold_file=out_of_range)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,split\nS005,1\n")
    with pytest.raises(FerbenchError, match=r"bad\.csv: fold file needs columns subject,fold"):
        assign_folds(ck, "ckplus", fold_file=bad)
    with pytest.raises(FerbenchError, match="nope.csv: fold file does not exist"):
        assign_folds(ck, "ckplus", fold_file=tmp_path / "nope.csv")


def _peak_table():
    rows = (_sequence_rows("A_1", "A", "happiness", 8, apex_frame=6)      # apex before the end
            + _sequence_rows("A_2", "A", "surprise", 4, apex_frame=None)  # no apex: last frame
            + _sequence_rows("B_1", "B", "fear", 2, apex_frame=12, first=11)  # shorter than 3
            + _sequence_rows("B_2", "B", None, 5))                        # unlabelled
    return make_table(rows, "ckplus")


def test_peak_selection_ends_at_the_apex_frame():
    folds_df, _ = assign_folds(_peak_table(), "ckplus", {"folds": 2})
    chosen = folds_df[folds_df["protocol_sample"]]
    by_seq = {s: sorted(g["frame"].tolist()) for s, g in chosen.groupby("sequence")}
    assert by_seq == {"A_1": [4, 5, 6], "A_2": [2, 3, 4], "B_1": [11, 12]}
    assert set(chosen.loc[chosen["sequence"] == "A_1", "target"]) == {"happiness"}
    # frames after the apex and the first frame are not samples in 7 classes
    a1 = folds_df[folds_df["sequence"] == "A_1"].set_index("frame")
    assert not a1.loc[7, "protocol_sample"] and not a1.loc[1, "protocol_sample"]


def test_eight_classes_add_the_first_frame_as_neutral():
    folds_df, meta = assign_folds(_peak_table(), "ckplus", {"folds": 2, "classes": 8})
    a1 = folds_df[folds_df["sequence"] == "A_1"].set_index("frame")
    assert a1.loc[1, "target"] == "neutral" and a1.loc[1, "label"] == meta["classes"].index("neutral") == 0
    assert a1.loc[1, "protocol_sample"] and not a1.loc[2, "protocol_sample"]
    # a 2-frame sequence: its first frame is a peak frame and stays one
    b1 = folds_df[folds_df["sequence"] == "B_1"].set_index("frame")
    assert list(b1["target"]) == ["fear", "fear"]
    assert folds_df.loc[folds_df["sequence"] == "B_2", "target"].isna().all()


def test_selection_all_takes_every_labelled_row():
    rows = [{"sample_id": f"{s}.{e}{i}", "subject": s, "path": f"{s}.{e}{i}.tiff", "emotion": emo}
            for s in ("KA", "KL", "KM") for i, (e, emo) in enumerate([("AN", "anger"), ("NE", "neutral")])]
    rows.append({"sample_id": "KA.XX", "subject": "KA", "path": "KA.XX.tiff", "emotion": "contempt"})
    folds_df, meta = assign_folds(make_table(rows, "jaffe"), "jaffe", {"folds": 3})
    assert folds_df["protocol_sample"].sum() == 6  # contempt is not one of JAFFE's 7 classes
    assert list(folds_df.groupby("subject")["fold"].first()) == [0, 1, 2]


def _afewva_table(n_actors=14, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(40):
        actor = f"actor{rng.integers(n_actors):02d}"
        for f in range(int(rng.integers(3, 12))):
            va = (np.nan, np.nan) if f == 0 else (rng.uniform(-1, 1), rng.uniform(-1, 1))
            rows.append({"sample_id": f"{v:03d}_{f:05d}", "subject": actor, "sequence": f"{v:03d}",
                         "frame": f, "path": f"{v:03d}/{f:05d}.png", "valence": va[0], "arousal": va[1]})
    return make_table(rows, "afewva")


def test_group_kfold_keeps_actors_disjoint_and_is_deterministic():
    table = _afewva_table()
    folds_df, meta = assign_folds(table, "afewva")
    assert meta["kind"] == "group_kfold" and meta["n_folds"] == 6 and meta["classes"] == []
    finite = np.isfinite(folds_df["valence"]) & np.isfinite(folds_df["arousal"])
    assert (folds_df["protocol_sample"] == finite).all()
    assert (folds_df["label"] == -1).all() and folds_df["target"].isna().all()
    assert (folds_df.groupby("subject")["fold"].nunique() == 1).all()
    tested = []
    for k in range(6):
        idx = fold_indices(folds_df, meta, k)
        train_actors = set(folds_df["subject"].iloc[idx["train"]])
        test_actors = set(folds_df["subject"].iloc[idx["test"]])
        assert test_actors and not (train_actors & test_actors)
        assert len(idx["train"]) + len(idx["test"]) == finite.sum() and len(idx["val"]) == 0
        tested += sorted(test_actors)
    assert sorted(tested) == sorted(set(folds_df["subject"]))  # each actor tested exactly once
    # roughly 5:1 — no fold holds more than twice its share
    sizes = [meta["counts"][str(k)]["test"] for k in range(6)]
    assert max(sizes) < 2 * finite.sum() / 6
    # row order does not change any actor's fold
    shuffled, _ = assign_folds(table.sample(frac=1.0, random_state=3), "afewva")
    assert shuffled.groupby("subject")["fold"].first().equals(folds_df.groupby("subject")["fold"].first())


def _official_table(splits=("train", "val", "test")):
    rows = []
    emotions = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "contempt"]
    for i in range(60):
        rows.append({"sample_id": f"img{i}", "path": f"img{i}.jpg", "emotion": emotions[i % 8],
                     "split": splits[i % len(splits)]})
    rows.append({"sample_id": "none", "path": "none.jpg", "emotion": None, "split": "train"})
    return make_table(rows, "x")


def test_official_splits():
    folds_df, meta = assign_folds(_official_table(), "fer2013")
    assert meta["n_folds"] == 1 and (folds_df["fold"] == -1).all()
    idx = fold_indices(folds_df, meta, 0)
    for name in ("train", "val", "test"):
        assert (folds_df["split"].iloc[idx[name]] == name).all()
    assert "contempt" not in set(folds_df["target"].dropna())  # 7 classes
    assert sum(len(v) for v in idx.values()) == folds_df["protocol_sample"].sum() == 60 - 60 // 8
    assert meta["counts"] == {"0": {k: len(v) for k, v in idx.items()}}
    mask = training_subject_mask(folds_df, meta, 0)
    assert mask.sum() == (folds_df["split"] == "train").sum()


def test_affectnet_validation_set_is_the_test_set():
    folds_df, meta = assign_folds(_official_table(("train", "val")), "affectnet")
    idx = fold_indices(folds_df, meta, 0)
    assert len(idx["val"]) == 0 and len(idx["test"]) == 30
    assert meta["protocol"]["test_split"] == "val" and meta["classes"][0] == "neutral" and len(meta["classes"]) == 8


def test_fold_indices_errors(ck, tmp_path):
    folds_df, meta = assign_folds(ck, "ckplus")
    for bad in (10, -1):
        with pytest.raises(FerbenchError, match=rf"ckplus: fold {bad} out of range \(kfold: 0\.\.9\)"):
            fold_indices(folds_df, meta, bad)
    off_df, off_meta = assign_folds(_official_table(), "fer2013")
    with pytest.raises(FerbenchError, match=r"fold 1 out of range \(official: 0\)"):
        fold_indices(off_df, off_meta, 1)
    # a fold file leaving fold 3 without subjects: empty test set
    subjects = sorted(ck.loc[ck["emotion"].notna(), "subject"].unique())
    path = tmp_path / "f.csv"
    pd.DataFrame({"subject": subjects, "fold": [0 if i % 10 == 3 else i % 10 for i in range(len(subjects))]}).to_csv(path, index=False)
    df3, meta3 = assign_folds(ck, "ckplus", fold_file=path)
    with pytest.raises(FerbenchError, match="fold 3 has an empty test set"):
        fold_indices(df3, meta3, 3)
    no_train, m = assign_folds(_official_table(("val", "test")), "fer2013")
    with pytest.raises(FerbenchError, match="empty train set"):
        fold_indices(no_train, m, 0)


def test_training_subject_mask_covers_all_frames_of_training_subjects(ck):
    folds_df, meta = assign_folds(ck, "ckplus")
    mask = training_subject_mask(folds_df, meta, 4)
    test_subjects = set(folds_df.loc[folds_df["fold"] == 4, "subject"])
    assert not (set(folds_df.loc[mask, "subject"]) & test_subjects)
    assert (~mask).sum() == folds_df["subject"].isin(test_subjects).sum()
    # unlabelled frames of training subjects (e.g. unlabelled sequences) are included
    assert (mask & folds_df["emotion"].isna()).sum() > 0
    idx = fold_indices(folds_df, meta, 4)
    assert mask[idx["train"]].all() and not mask[idx["test"]].any()


def test_kfold_needs_subjects():
    with pytest.raises(FerbenchError, match="needs a subject"):
        assign_folds(_official_table(), "fer2013", {"kind": "kfold", "folds": 2})


def test_protocol_argument_forms(tmp_path):
    assert protocols.parse_protocol_arg("classes=8,selection=peak", "ckplus") == {"classes": 8, "selection": "peak"}
    assert protocols.parse_protocol_arg("{kind: kfold, folds: 5}", "ckplus") == {"kind": "kfold", "folds": 5}
    assert protocols.parse_protocol_arg("official", "ckplus") == {"kind": "official"}
    params = tmp_path / "params.yaml"
    params.write_text("datasets:\n  ckplus:\n    protocol: {kind: kfold, folds: 10, classes: 6}\n")
    assert protocols.parse_protocol_arg(str(params), "ckplus")["classes"] == 6
    with pytest.raises(FerbenchError, match="--protocol"):
        protocols.parse_protocol_arg("nonsense", "ckplus")


def test_folds_verb_writes_parquet_and_json(ck, tmp_path):
    cache = tmp_path / "cache" / "ckplus"
    cache.mkdir(parents=True)
    samples = ck.copy()
    samples["cache_row"] = np.arange(len(ck), dtype=np.int64)[::-1]  # any mapping is carried through
    samples.to_parquet(cache / "samples.parquet", index=False)
    out = cache / "folds.parquet"
    args = argparse.Namespace(dataset="ckplus", cache=str(cache), out=str(out), protocol="classes=8", fold_file=None)
    with pytest.raises(FerbenchError, match="incomplete cache"):  # no completion marker yet
        protocols.main(args)
    (cache / "report.json").write_text("{}")  # a complete cache (one without fingerprints)
    assert protocols.main(args) == 0
    folds_df, meta = protocols.load_folds(out)
    assert list(folds_df.columns) == list(protocols.FOLD_COLUMNS)
    assert (folds_df["cache_row"].to_numpy() == samples["cache_row"].to_numpy()).all()
    assert folds_df["cache_row"].dtype == np.int64 and folds_df["label"].dtype == np.int64
    saved = json.loads((cache / "folds.json").read_text())
    assert set(saved) == {"dataset", "kind", "n_folds", "classes", "task", "protocol", "counts",
                          "source", "fingerprint"}
    assert saved["source"]["samples"] == str(cache / "samples.parquet")
    assert saved["classes"][0] == "neutral" and saved["protocol"]["classes"] == 8
    assert sorted(saved["counts"], key=int) == [str(k) for k in range(10)]
    assert set(saved["counts"]["0"]) == {"train", "val", "test"}
    idx = fold_indices(folds_df, meta, 0)
    assert len(idx["test"]) == saved["counts"]["0"]["test"]
    # the same table gives the same file content (deterministic)
    again = tmp_path / "again.parquet"
    protocols.main(argparse.Namespace(**{**vars(args), "out": str(again)}))
    pd.testing.assert_frame_equal(pd.read_parquet(again), folds_df)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]


def test_folds_verb_without_cache_is_one_clear_error(tmp_path):
    args = argparse.Namespace(dataset="ckplus", cache=str(tmp_path), out=str(tmp_path / "f.parquet"),
                              protocol=None, fold_file=None)
    with pytest.raises(FerbenchError, match="samples.parquet: no cached sample table"):
        protocols.main(args)
