"""Readers for the lab sequence datasets (CK+, CK+48, MMI, Oulu-CASIA) and JAFFE, on small trees
that reproduce the real on-disk layouts and quirks (see /work/shared/DATASETS.md)."""

from __future__ import annotations

import math
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ferbench.datasets import READERS
from ferbench.datasets.base import COLUMNS
from ferbench.datasets.ckplus import CKPlusReader
from ferbench.datasets.jaffe import JaffeReader
from ferbench.datasets.mmi import MMIReader, apex_from_aucs
from ferbench.datasets.oulu import OuluReader
from ferbench.errors import FerbenchError

import layouts_lab as L


def test_registered_with_names_and_kinds():
    assert READERS["ckplus"] is CKPlusReader
    assert READERS["mmi"] is MMIReader
    assert READERS["oulu"] is OuluReader
    assert READERS["jaffe"] is JaffeReader
    assert [(r.kind, r.task) for r in (CKPlusReader, MMIReader, OuluReader, JaffeReader)] == [
        ("sequence", "classification"), ("sequence", "classification"),
        ("sequence", "classification"), ("image", "classification"),
    ]


# ============================================================================================
# CK+ original distribution
# ============================================================================================
def _points(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0, 640, size=(68, 2)), 3)


def _ck_tree(root: Path) -> dict:
    seqs = {
        # labelled, label names the last frame; landmarks for frames 1 and 4 only
        ("S005", "001"): {
            "frames": {n: L.grey(10 * n) for n in range(1, 5)},
            "label": (4, L.exp_float(3.0) + "\n"),
            "landmarks": {1: _points(1), 4: _points(4)},
        },
        # unlabelled: its Emotion folder exists but is empty
        ("S005", "002"): {"frames": {n: L.grey(50) for n in (1, 2)}, "label": None},
        # labelled, label names frame 3 of 5 (NOT the last file); frame 2 is RGB
        ("S010", "004"): {
            "frames": {1: L.grey(1), 2: L.rgb(250, 20, 5), 3: L.grey(3), 4: L.grey(4), 5: L.grey(5)},
            "label": (3, L.exp_float(7.0)),
        },
        # unlabelled and no Emotion folder at all
        ("S011", "001"): {"frames": {n: L.grey(7) for n in (1, 2, 3)}, "label": None, "emotion_folder": False},
    }
    return L.ckplus_original(root, seqs)


def test_ckplus_original_nested_labels_apex_landmarks(tmp_path):
    dirs = _ck_tree(tmp_path)
    result = CKPlusReader().read(tmp_path)
    t = result.table
    assert result.variant == "original" and result.precropped is False
    assert list(t.columns) == list(COLUMNS)
    assert dict(result.skipped) == {}  # .DS_Store files are neither samples nor skips
    assert len(t) == 4 + 2 + 5 + 3
    assert not t["path"].str.contains("DS_Store").any()
    assert (t["dataset"] == "ckplus").all()

    by_id = t.set_index("sample_id")
    row = by_id.loc["S005_001_00000004"]
    assert (row.subject, row.sequence, row.frame) == ("S005", "S005_001", 4)
    assert row.path == "extended-cohn-kanade-images/cohn-kanade-images/S005/001/S005_001_00000004.png"

    # the sequence's label is on every frame; apex only on the frame the label file names
    seq = t[t["sequence"] == "S010_004"].sort_values("frame")
    assert list(seq["emotion"]) == ["surprise"] * 5
    assert list(seq["apex"]) == [False, False, True, False, False]
    assert list(t[t["sequence"] == "S005_001"].sort_values("frame")["apex"]) == [False, False, False, True]
    assert set(t[t["sequence"] == "S005_001"]["emotion"]) == {"disgust"}
    for unlabelled in ("S005_002", "S011_001"):
        part = t[t["sequence"] == unlabelled]
        assert len(part) > 0 and part["emotion"].isna().all() and not part["apex"].any()
    assert t["apex"].sum() == 2

    # landmarks: 136 floats in x0, y0, x1, y1 order, only where a file exists
    marks = by_id.loc["S005_001_00000004", "landmarks"]
    assert len(marks) == 136
    np.testing.assert_allclose(marks, _points(4).reshape(-1), rtol=1e-7)
    assert by_id.loc["S005_001_00000002", "landmarks"] is None
    assert by_id.loc["S010_004_00000003", "landmarks"] is None

    # frames come back as stored: grey HxW, RGB HxWx3
    reader = CKPlusReader()
    grey = reader.load_image(tmp_path, by_id.loc["S010_004_00000003"])
    colour = reader.load_image(tmp_path, by_id.loc["S010_004_00000002"])
    assert grey.shape == (6, 8) and grey.dtype == np.uint8 and (grey == 3).all()
    assert colour.shape == (6, 8, 3) and tuple(colour[0, 0]) == (250, 20, 5)
    images = list(reader.iter_images(tmp_path, t.iloc[:3]))
    assert [img.shape for img in images] == [(6, 8)] * 3
    assert dirs["images"].is_dir()


def test_ckplus_flat_layout_and_label_without_sequence(tmp_path):
    L.ckplus_original(tmp_path, {("S050", "003"): {"frames": {1: L.grey(1), 2: L.grey(2)}, "label": (2, " 1.0000000e+00")}}, nested=False)
    L.write(tmp_path / "Emotion" / "S051" / "001" / "S051_001_00000009_emotion.txt", L.exp_float(5.0))
    L.write(tmp_path / "cohn-kanade-images" / "S050" / "003" / "notes.txt", "not a frame")
    result = CKPlusReader().read(tmp_path)
    assert list(result.table["emotion"]) == ["anger", "anger"]
    assert dict(result.skipped) == {
        "label file without an image sequence": 1,
        "unexpected file in an image sequence folder": 1,
    }
    with pytest.raises(FerbenchError, match="notes.txt"):
        CKPlusReader().read(tmp_path, strict=True)


@pytest.mark.parametrize("text", ["abc", "   9.0000000e+00", "nan", "   2.5000000e+00", "", "-1"])
def test_ckplus_malformed_label_is_an_error_naming_the_file(tmp_path, text):
    L.ckplus_original(tmp_path, {("S005", "001"): {"frames": {1: L.grey(1)}, "label": (1, text)}})
    with pytest.raises(FerbenchError, match=r"S005_001_00000001_emotion\.txt.*malformed"):
        CKPlusReader().read(tmp_path)


def test_ckplus_label_naming_a_missing_frame_is_an_error(tmp_path):
    L.ckplus_original(tmp_path, {("S005", "001"): {"frames": {1: L.grey(1), 2: L.grey(2)}, "label": (7, L.exp_float(4))}})
    with pytest.raises(FerbenchError, match=r"S005_001_00000007_emotion\.txt.*frame 7"):
        CKPlusReader().read(tmp_path)


def test_ckplus_malformed_landmarks_is_an_error(tmp_path):
    dirs = L.ckplus_original(
        tmp_path, {("S005", "001"): {"frames": {1: L.grey(1)}, "label": (1, L.exp_float(1)), "landmarks": {1: _points(0)[:67]}}}
    )
    with pytest.raises(FerbenchError, match=r"S005_001_00000001_landmarks\.txt"):
        CKPlusReader().read(tmp_path)
    assert (dirs["landmarks"] / "S005" / "001").is_dir()


def test_ckplus_bad_roots(tmp_path):
    with pytest.raises(FerbenchError, match="does not exist"):
        CKPlusReader().read(tmp_path / "nowhere")
    L.write(tmp_path / "junk" / "a.txt", "x")
    with pytest.raises(FerbenchError, match=r"junk.*not a CK\+ layout"):
        CKPlusReader().read(tmp_path / "junk")
    # images without the Emotion zip unpacked
    L.write(tmp_path / "only" / "cohn-kanade-images" / "S005" / "001" / "S005_001_00000001.png", L.png_bytes(L.grey(1)))
    with pytest.raises(FerbenchError, match="no Emotion folder"):
        CKPlusReader().read(tmp_path / "only")


def test_ckplus_truncated_frame_raises_naming_the_file(tmp_path):
    L.ckplus_original(tmp_path, {("S005", "001"): {"frames": {1: L.grey(1, 40, 40)}, "label": (1, L.exp_float(1))}})
    table = CKPlusReader().read(tmp_path).table
    frame = tmp_path / table.loc[0, "path"]
    frame.write_bytes(frame.read_bytes()[:40])
    with pytest.raises(FerbenchError, match="S005_001_00000001.png"):
        CKPlusReader().load_image(tmp_path, table.loc[0])
    (out,) = list(CKPlusReader().iter_images(tmp_path, table))
    assert isinstance(out, FerbenchError) and "S005_001_00000001.png" in str(out)


# Published split of CK+ (DATASETS.md): 118 labelled subjects, rank r -> fold r mod 10.
FOLD_SEQUENCES = [33, 39, 40, 35, 30, 37, 29, 29, 33, 22]
CLASS_TOTALS = {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25, "happiness": 69, "sadness": 28, "surprise": 83}
CODE = {"anger": 1, "contempt": 2, "disgust": 3, "fear": 4, "happiness": 5, "sadness": 6, "surprise": 7}


def test_ckplus_table_supports_the_subject_fold_rule(tmp_path):
    rng = random.Random(0)
    ids = sorted(rng.sample(range(5, 1000), 123))
    subjects = [f"S{i:03d}" for i in ids]
    unlabelled = {subjects[i] for i in (0, 30, 61, 90, 122)}  # interleaved with labelled ones
    labelled = [s for s in subjects if s not in unlabelled]
    assert len(labelled) == 118
    # fear first so that it all lands in fold 0 and fold 10 has none
    labels = [e for e in sorted(CLASS_TOTALS, key=lambda e: e != "fear") for _ in range(CLASS_TOTALS[e])]
    seqs: dict = {}
    cursor = 0
    for fold, count in enumerate(FOLD_SEQUENCES):
        members = labelled[fold::10]
        for k, subject in enumerate(members):
            n = count // len(members) + (k < count % len(members))
            for j in range(n):
                emo = labels[cursor]
                cursor += 1
                seqs[(subject, f"{j + 1:03d}")] = {"frames": {1: L.grey(0), 2: L.grey(9)}, "label": (2, L.exp_float(CODE[emo]))}
            seqs[(subject, "900")] = {"frames": {1: L.grey(0)}, "label": None}  # an unlabelled sequence
    for subject in unlabelled:
        seqs[(subject, "001")] = {"frames": {1: L.grey(0), 2: L.grey(1)}, "label": None}
    assert cursor == 327
    L.ckplus_original(tmp_path, seqs)

    t = CKPlusReader().read(tmp_path).table
    per_seq = t[t["emotion"].notna()].groupby("sequence").agg(subject=("subject", "first"), emotion=("emotion", "first"))
    assert len(per_seq) == 327
    assert t["sequence"].nunique() == 327 + 118 + 5
    ranked = sorted(per_seq["subject"].unique())
    assert ranked == labelled
    fold_of = {s: r % 10 for r, s in enumerate(ranked)}
    folds = per_seq["subject"].map(fold_of)
    assert [int((folds == f).sum()) for f in range(10)] == FOLD_SEQUENCES
    assert dict(Counter(per_seq["emotion"])) == CLASS_TOTALS
    assert "fear" not in set(per_seq["emotion"][folds == 9])
    assert t["apex"].sum() == 327 and (t.loc[t["apex"], "frame"] == 2).all()
    assert t.loc[t["subject"].isin(unlabelled), "emotion"].isna().all()


# ============================================================================================
# CK+48
# ============================================================================================
def test_ck48_variant_from_file_names(tmp_path):
    L.ck48(tmp_path / "archive", {
        "anger": ["S005_001_00000009", "S005_001_00000010", "S005_001_00000011"],
        "happy": ["S010_004_00000017", "S010_004_00000015", "S010_004_00000016"],
        "contempt": ["S011_002_00000020"],
        "disgust": [], "fear": [], "sadness": [], "surprise": [],
    })
    result = CKPlusReader().read(tmp_path)
    t = result.table
    assert result.variant == "ck+48" and result.precropped is True
    assert dict(result.skipped) == {}
    assert len(t) == 7
    happy = t[t["sequence"] == "S010_004"].sort_values("frame")
    assert list(happy["frame"]) == [15, 16, 17]
    assert list(happy["apex"]) == [False, False, True]
    assert set(happy["emotion"]) == {"happiness"} and set(happy["subject"]) == {"S010"}
    assert set(t.loc[t["sequence"] == "S005_001", "emotion"]) == {"anger"}
    assert t.set_index("sample_id").loc["S011_002_00000020", "apex"]
    assert t.set_index("sample_id").loc["S010_004_00000017", "path"] == "archive/CK+48/happy/S010_004_00000017.png"
    image = CKPlusReader().load_image(tmp_path, t.iloc[0])
    assert image.shape == (48, 48) and image.dtype == np.uint8


def test_ck48_bad_names_unknown_class_and_conflicts_are_counted(tmp_path):
    base = L.ck48(tmp_path, {
        "anger": ["S005_001_00000011", "IMG_0001"],
        "happy": ["S005_001_00000010", "S010_004_00000017"],
        "fear": [], "sadness": [], "surprise": [],
        "weird": ["S020_001_00000001"],
    })
    result = CKPlusReader().read(base)
    assert list(result.table["sample_id"]) == ["S010_004_00000017"]
    assert dict(result.skipped) == {
        "CK+48 file name is not S###_###_########.<image>": 1,
        "CK+48 sequence appears under two class folders": 2,
        "unknown CK+48 class folder 'weird'": 1,
    }
    with pytest.raises(FerbenchError, match=r"IMG_0001\.png.*--strict"):
        CKPlusReader().read(base, strict=True)


# ============================================================================================
# MMI
# ============================================================================================
AUCS = {
    # AU12 apex phase frames 5..7, AU6 apex phase 6..7 -> most AUs at apex on 6..7 -> frame 6
    "12": [(1, 0), (3, 1), (5, 2), (8, 3), (10, 0)],
    "6": [(1, 0), (4, 1), (6, 2), (8, 3)],
}


def _mmi_tree(root: Path, broken: bool = True) -> Path:
    sessions = root / "mmi-facial-expression-database_download" / "Sessions"
    L.mmi_session(sessions, "1", "S001-001", view=0, subject="1", emotion=4, n_frames=10, aucs=AUCS)
    L.mmi_session(sessions, "2", "S002-005", view=0, subject="2", emotion=7, n_frames=7)
    L.mmi_session(sessions, "3", "S002-006", view=2, subject="2", emotion=1, n_frames=4)
    L.mmi_session(sessions, "17", "S003-001", view=0, subject=None, emotion=1, stills=3)
    if broken:
        L.mmi_session(sessions, "20", "S004-001", view=0, subject="4", emotion=2, broken_video=True)
    L.ds_store(sessions, sessions.parent, root)
    return sessions


def test_mmi_sessions_labels_apex_subjects(tmp_path):
    _mmi_tree(tmp_path)
    result = MMIReader().read(tmp_path)
    t = result.table
    assert result.variant == "original"
    assert list(t.columns) == list(COLUMNS)
    assert dict(result.skipped) == {
        "emotion code not in the 6 basic": 1,
        "session with track view 2 not read (views=0)": 1,
        "unreadable video": 1,
    }
    assert dict(Counter(t["sequence"])) == {"1": 10, "2": 7, "17": 3}
    s1 = t[t["sequence"] == "1"]
    assert list(s1["frame"]) == list(range(1, 11))
    assert s1.iloc[5]["path"] == "mmi-facial-expression-database_download/Sessions/1/S001-001.avi#6"
    assert list(s1.loc[s1["apex"], "frame"]) == [6]  # from the AU file, not the middle (5)
    assert set(s1["emotion"]) == {"happiness"} and set(s1["subject"]) == {"S001"}
    s2 = t[t["sequence"] == "2"]
    assert s2["emotion"].isna().all()  # code 7 is not one of the six
    assert list(s2.loc[s2["apex"], "frame"]) == [4]  # no AU file -> middle frame
    s17 = t[t["sequence"] == "17"]
    assert set(s17["subject"]) == {"S003"}  # no <subject> in session.xml -> from the file name
    assert set(s17["emotion"]) == {"anger"}
    assert list(s17["path"].str.rsplit("/", n=1).str[1]) == ["S003-001_01.png", "S003-001_02.png", "S003-001_03.png"]
    assert list(s17.loc[s17["apex"], "frame"]) == [2]
    assert t["sample_id"].is_unique


def test_mmi_decodes_each_video_frame_in_rgb(tmp_path):
    _mmi_tree(tmp_path, broken=False)
    reader = MMIReader()
    t = reader.read(tmp_path).table
    # shuffled rows across videos and stills: each output must match its own row
    sub = t.sample(frac=1.0, random_state=3).reset_index(drop=True)
    images = list(reader.iter_images(tmp_path, sub))
    assert len(images) == len(sub)
    for (_, row), image in zip(sub.iterrows(), images):
        assert not isinstance(image, FerbenchError), image
        if ".avi#" in row["path"]:
            np.testing.assert_array_equal(image, L.mmi_frame(int(row["frame"])))
        else:
            assert image.shape == (6, 8) and (image == 40 * int(row["frame"])).all()
    one = reader.load_image(tmp_path, t[t["sequence"] == "1"].iloc[8])
    np.testing.assert_array_equal(one, L.mmi_frame(9))
    # a frame beyond the end of the video is an error naming file#frame, yielded not raised
    bad = t[t["sequence"] == "1"].iloc[[0]].copy()
    bad["path"] = bad["path"].str.replace("#1", "#99")
    (err,) = list(reader.iter_images(tmp_path, bad))
    assert isinstance(err, FerbenchError) and "S001-001.avi#99" in str(err)
    with pytest.raises(FerbenchError, match="S001-001.avi#99"):
        reader.load_image(tmp_path, bad.iloc[0])


def test_mmi_options_strict_and_errors(tmp_path):
    sessions = _mmi_tree(tmp_path)
    with pytest.raises(FerbenchError, match=r"S004-001\.avi.*unreadable video"):
        MMIReader().read(tmp_path, strict=True)
    both = MMIReader(views=("0", "2")).read(tmp_path).table
    assert set(both["sequence"]) == {"1", "2", "3", "17"}
    assert set(both.loc[both["sequence"] == "3", "emotion"]) == {"anger"}
    (sessions / "20" / "S004-001.avi").unlink()
    assert MMIReader().read(tmp_path).skipped["MMI session has no video or images"] == 1
    # exclusions by protocol are counted but are not bad data: strict passes without session 20
    shutil.rmtree(sessions / "20")
    result = MMIReader().read(tmp_path, strict=True)
    assert dict(result.skipped) == {
        "emotion code not in the 6 basic": 1,
        "session with track view 2 not read (views=0)": 1,
    }
    # malformed label XML names the file
    L.write(sessions / "2" / "S002-005.xml", "<Metadata><Metatag Name='Emotion' Value='4'></Metadata")
    with pytest.raises(FerbenchError, match=r"S002-005\.xml"):
        MMIReader().read(tmp_path)
    L.write(sessions / "2" / "S002-005.xml", L.sid_xml("happy"))
    with pytest.raises(FerbenchError, match=r"S002-005\.xml.*Value='happy'"):
        MMIReader().read(tmp_path)
    with pytest.raises(FerbenchError, match="not an MMI layout"):
        MMIReader().read(L.write(tmp_path / "other" / "a.avi", b"x").parent)  # no session.xml below


def test_mmi_apex_rules(tmp_path):
    path = L.write(tmp_path / "a-oao_aucs.xml", L.aucs_xml(AUCS))
    assert apex_from_aucs(path, 10) == 6
    # one AU, apex from 4 until the offset marker at 9 -> frames 4..8 -> middle 6
    path = L.write(tmp_path / "b-oao_aucs.xml", L.aucs_xml({"1": [(2, 1), (4, 2), (9, 3)]}))
    assert apex_from_aucs(path, 20) == 6
    # apex phase without an offset marker runs to the end of the video
    path = L.write(tmp_path / "c-oao_aucs.xml", L.aucs_xml({"1": [(2, 1), (8, 2)]}))
    assert apex_from_aucs(path, 12) == 10
    # no apex markers at all -> no opinion (the reader then takes the middle frame)
    path = L.write(tmp_path / "d-oao_aucs.xml", L.aucs_xml({"1": [(2, 1), (5, 3)]}))
    assert apex_from_aucs(path, 12) is None


# ============================================================================================
# Oulu-CASIA
# ============================================================================================
def test_oulu_default_reads_vl_strong_only(tmp_path):
    L.oulu(tmp_path, [("VL", "Strong"), ("VL", "Dark"), ("NI", "Strong")], ["P001", "P002"], n_frames=3)
    result = OuluReader().read(tmp_path)
    t = result.table
    assert dict(result.skipped) == {}
    assert len(t) == 2 * 6 * 3
    assert t["sequence"].nunique() == 12
    seq = t[t["sequence"] == "VL_Strong_P001_Anger"].sort_values("frame")
    assert list(seq["frame"]) == [0, 1, 2]
    assert list(seq["apex"]) == [False, False, True]
    assert list(seq["sample_id"]) == ["VL_Strong_P001_Anger_000", "VL_Strong_P001_Anger_001", "VL_Strong_P001_Anger_002"]
    assert seq.iloc[0]["path"] == "B_OriginalImg/OriginalImg/VL/Strong/P001/Anger/000.jpeg"
    assert set(seq["subject"]) == {"P001"}
    assert dict(Counter(t.drop_duplicates("sequence")["emotion"])) == {
        e: 2 for e in ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    }
    image = OuluReader().load_image(tmp_path, seq.iloc[0])
    assert image.shape == (24, 32, 3) and image.dtype == np.uint8


def test_oulu_options_unknown_folders_and_errors(tmp_path):
    original = L.oulu(tmp_path, [("VL", "Strong"), ("NI", "Dark"), ("NI", "Strong")], ["P001"], emotions=["Anger", "Fear"], n_frames=2)
    t = OuluReader(spectra=["NI"], illuminations=["dark", "Strong"]).read(tmp_path).table
    assert sorted(t["sequence"].unique()) == ["NI_Dark_P001_Anger", "NI_Dark_P001_Fear", "NI_Strong_P001_Anger", "NI_Strong_P001_Fear"]
    with pytest.raises(FerbenchError, match=r"VL[/\\]Weak"):
        OuluReader(illuminations=("Weak",)).read(tmp_path)
    with pytest.raises(FerbenchError, match="unknown spectrum 'IR'"):
        OuluReader(spectra=("IR",))
    L.write(original / "VL" / "Strong" / "P001" / "Contempt" / "000.jpeg", b"x")
    L.write(original / "VL" / "Strong" / "P001" / "Anger" / "thumb.gif", b"x")
    result = OuluReader().read(tmp_path)
    assert len(result.table) == 4
    assert dict(result.skipped) == {
        "unknown Oulu-CASIA emotion folder": 1,
        "unexpected file in an Oulu-CASIA sequence folder (not ###.jpeg)": 1,
    }
    with pytest.raises(FerbenchError, match=r"(Contempt[/\\]000\.jpeg|thumb\.gif).*--strict"):
        OuluReader().read(tmp_path, strict=True)
    with pytest.raises(FerbenchError, match="not an Oulu-CASIA layout"):
        OuluReader().read(original / "VL" / "Strong" / "P001")


# ============================================================================================
# JAFFE
# ============================================================================================
def test_jaffe_names_palette_tiffs_and_junk(tmp_path):
    folder = tmp_path / "jaffedbase"
    indices = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    L.palette_tiff(folder / "KA.AN1.39.tiff", indices, lambda i: 255 - i)  # grey palette, not identity
    with Image.open(folder / "KA.AN1.39.tiff") as im:
        assert im.mode == "P"  # the fixture really is a palette TIFF
    L.grey_tiff(folder / "KA.HA2.44.tiff", L.grey(77, 8, 8))
    L.grey_tiff(folder / "YM.NE3.51.tiff", L.grey(5, 8, 8))
    L.grey_tiff(folder / "KR.SU1.79.tiff", L.grey(6, 8, 8))
    L.grey_tiff(folder / "portrait.tiff", L.grey(6, 8, 8))
    L.grey_tiff(folder / "KA.XX1.1.tiff", L.grey(6, 8, 8))
    L.write(folder / "README", "The JAFFE images may be used only for non-commercial research.")
    L.ds_store(folder, tmp_path)

    result = JaffeReader().read(tmp_path)
    t = result.table.set_index("sample_id")
    assert sorted(t.index) == ["KA.AN1.39", "KA.HA2.44", "KR.SU1.79", "YM.NE3.51"]
    assert dict(t["emotion"]) == {"KA.AN1.39": "anger", "KA.HA2.44": "happiness", "KR.SU1.79": "surprise", "YM.NE3.51": "neutral"}
    assert dict(t["subject"]) == {"KA.AN1.39": "KA", "KA.HA2.44": "KA", "KR.SU1.79": "KR", "YM.NE3.51": "YM"}
    assert t["sequence"].isna().all() and t["frame"].isna().all() and not t["apex"].any()
    assert t.loc["KA.AN1.39", "path"] == "jaffedbase/KA.AN1.39.tiff"
    assert dict(result.skipped) == {
        "JAFFE file name is not SUBJECT.EXPn.ID.tiff": 1,
        "unknown JAFFE expression code 'XX'": 1,
    }
    image = JaffeReader().load_image(tmp_path, t.loc["KA.AN1.39"])
    assert image.shape == (8, 8) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, 255 - indices)
    with pytest.raises(FerbenchError, match=r"(portrait|KA\.XX1\.1)\.tiff.*--strict"):
        JaffeReader().read(tmp_path, strict=True)


def test_jaffe_bad_root_and_truncated_image(tmp_path):
    L.write(tmp_path / "empty" / "README", "x")
    with pytest.raises(FerbenchError, match=r"empty.*not a JAFFE layout"):
        JaffeReader().read(tmp_path / "empty")
    path = L.grey_tiff(tmp_path / "j" / "KA.AN1.39.tiff", L.grey(9, 64, 64))
    table = JaffeReader().read(tmp_path / "j").table
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FerbenchError, match=r"KA\.AN1\.39\.tiff"):
        JaffeReader().load_image(tmp_path / "j", table.iloc[0])
    assert math.isnan(table.loc[0, "valence"])
    assert isinstance(table, pd.DataFrame)
