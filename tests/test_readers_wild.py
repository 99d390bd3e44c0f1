"""Readers for the in-the-wild datasets: AffectNet, AFEW-VA, FER-2013, Aff-Wild2."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

import layouts_wild as L
from ferbench.datasets import READERS
from ferbench.datasets.affectnet import AffectNet
from ferbench.datasets.afewva import AfewVA
from ferbench.datasets.affwild2 import AffWild2
from ferbench.datasets.base import COLUMNS
from ferbench.datasets.fer2013 import Fer2013
from ferbench.errors import FerbenchError


def by_id(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["sample_id"]: row for _, row in table.iterrows()}


def test_registered_with_kind_and_task():
    assert READERS["affectnet"] is AffectNet and (AffectNet.kind, AffectNet.task) == ("image", "both")
    assert READERS["afewva"] is AfewVA and (AfewVA.kind, AfewVA.task) == ("sequence", "va")
    assert READERS["fer2013"] is Fer2013 and (Fer2013.kind, Fer2013.task) == ("image", "classification")
    assert READERS["affwild2"] is AffWild2 and (AffWild2.kind, AffWild2.task) == ("sequence", "va")


@pytest.mark.parametrize("reader", [AffectNet, AfewVA, Fer2013, AffWild2])
def test_missing_root_and_unknown_layout_name_the_root(tmp_path, reader):
    with pytest.raises(FerbenchError, match="does not exist"):
        reader().read(tmp_path / "nowhere")
    (tmp_path / "empty" / "junk").mkdir(parents=True)
    with pytest.raises(FerbenchError, match=re.escape(str(tmp_path / "empty")) + ".*expected"):
        reader().read(tmp_path / "empty")


# --------------------------------------------------------------------------- AffectNet CSV

def test_affectnet_csv_labels_boxes_landmarks_and_splits(tmp_path):
    res = AffectNet().read(L.affectnet_csv(tmp_path))
    assert res.variant == "csv" and res.precropped is False
    t = res.table
    assert list(t.columns) == list(COLUMNS)
    rows = by_id(t)
    assert set(rows) == {"1_a", "1_b", "1_c", "2_d", "2_e", "2_broken", "2_k", "1_v1", "1_v2"}
    expected = {"1_a": "happiness", "1_b": "anger", "1_c": "contempt", "2_d": "neutral",
                "2_e": None, "2_broken": "fear", "2_k": "disgust", "1_v1": "disgust",
                "1_v2": "sadness"}
    assert {k: r["emotion"] for k, r in rows.items()} == expected
    # -2 markers become NaN; exponent floats parse.
    assert rows["1_a"]["valence"] == 0.5 and math.isnan(rows["1_a"]["arousal"])
    assert rows["1_b"]["valence"] == pytest.approx(-0.1) and rows["1_b"]["arousal"] == 0.25
    assert (rows["2_d"]["valence"], rows["2_d"]["arousal"]) == (-1.0, 1.0)
    assert (rows["2_e"]["valence"], rows["2_e"]["arousal"]) == (0.3, 0.4)  # code 8 kept for V/A
    # Header-less validation.csv -> test split; training.csv -> train.
    assert t.set_index("sample_id")["split"].to_dict() == {
        k: ("test" if k.startswith("1_v") else "train") for k in rows}
    assert list(rows["1_b"]["box"]) == [11.0, 13.0, 51.0, 61.0]
    lnd = np.asarray(rows["1_b"]["landmarks"])
    assert lnd.shape == (136,) and lnd[0] == 1.0 and lnd[135] == 136.0
    assert np.asarray(rows["1_v1"]["landmarks"])[1] == 101.0
    # The CSV names k.jpg; the disk holds k.JPG.
    assert rows["2_k"]["path"] == "Manually_Annotated/Manually_Annotated_Images/2/k.JPG"
    assert t["subject"].isna().all() and t["sequence"].isna().all() and t["frame"].isna().all()
    assert dict(res.skipped) == {
        "expression none/uncertain/non-face (8-10) without valid valence/arousal": 2,
        "image file missing": 1,
        "valence/arousal outside [-1, 1] and not the -2 marker": 1,
        "expression missing or not a code 0-10": 1,
    }


def test_affectnet_csv_images_decode_and_broken_file_is_named(tmp_path):
    root = L.affectnet_csv(tmp_path)
    reader = AffectNet()
    t = reader.read(root).table.set_index("sample_id", drop=False)
    for sid in ("1_c", "2_d", "1_b", "1_v1"):  # tif, bmp, upper-case JPG, png
        img = reader.load_image(root, t.loc[sid])
        assert img.dtype == np.uint8 and img.shape == (6, 8, 3)
    with pytest.raises(FerbenchError, match="broken.jpg"):
        reader.load_image(root, t.loc["2_broken"])
    out = list(reader.iter_images(root, t))
    errors = [i for i, x in enumerate(out) if isinstance(x, FerbenchError)]
    assert [t.index[i] for i in errors] == ["2_broken"]


def test_affectnet_csv_strict_names_file_and_line(tmp_path):
    root = L.affectnet_csv(tmp_path)
    # Rows 6-7 (codes 9/10 with -2) are the dataset's own markers, not errors; the first
    # real problem is the missing image on line 9.
    with pytest.raises(FerbenchError, match=r"training\.csv line 9 .*missing\.jpg.*image file missing"):
        AffectNet().read(root, strict=True)


def test_affectnet_csv_beside_images_and_bad_headers(tmp_path):
    root = tmp_path / "a"
    L.affectnet_csv(root, nested=False)
    lists = root / "Manually_Annotated_file_lists"
    images = root / "Manually_Annotated_Images"
    (lists / "training.csv").rename(images / "training.csv")
    (lists / "validation.csv").rename(images / "validation.csv")
    lists.rmdir()
    t = AffectNet().read(root).table
    assert len(t) == 9 and t["path"].iloc[0] == "Manually_Annotated_Images/1/a.jpg"

    (images / "validation.csv").write_text("name,x\nfoo,1\n")
    with pytest.raises(FerbenchError, match=r"validation\.csv line 1"):
        AffectNet().read(root)
    (images / "validation.csv").write_text("subDirectory_filePath,face_x,expression\n1/a.jpg,1,2\n")
    with pytest.raises(FerbenchError, match=r"validation\.csv line 1: header lacks.*face_y"):
        AffectNet().read(root)
    (images / "validation.csv").write_text("1/v1.png,1,2,3\n")
    with pytest.raises(FerbenchError, match=r"validation\.csv: header-less file has 4 columns"):
        AffectNet().read(root)
    (images / "validation.csv").unlink()
    (images / "training.csv").unlink()
    with pytest.raises(FerbenchError, match="neither training.csv nor validation.csv"):
        AffectNet().read(root)


# --------------------------------------------------------------------------- AffectNet npy

def test_affectnet_npy_unicode_scalars(tmp_path):
    res = AffectNet().read(L.affectnet_npy(tmp_path))
    assert res.variant == "npy" and res.precropped is True
    rows = by_id(res.table)
    assert set(rows) == {"train_0", "train_1", "test_0", "test_1"}  # ids overlap across sets
    assert rows["train_0"]["emotion"] == "surprise" and rows["train_0"]["split"] == "train"
    assert rows["train_0"]["valence"] == pytest.approx(0.785714) and rows["train_0"]["arousal"] == -0.5
    assert rows["train_1"]["emotion"] == "happiness" and rows["train_1"]["valence"] == pytest.approx(0.1)
    assert rows["test_0"]["emotion"] == "neutral" and math.isnan(rows["test_0"]["valence"])
    assert rows["test_1"]["emotion"] == "contempt" and rows["test_1"]["split"] == "test"
    assert rows["test_1"]["path"] == "val_set/images/1.jpg"
    lnd = np.asarray(rows["test_1"]["landmarks"])
    assert lnd.shape == (136,) and lnd[0] == 1.0 and lnd[-1] == 136.0
    assert rows["train_0"]["box"] is None
    assert dict(res.skipped) == {
        "expression none/uncertain/non-face (8-10) without valid valence/arousal": 1,  # id 2
        "valence/arousal outside [-1, 1] and not the -2 marker": 1,  # id 4
        "annotation file missing": 1,  # id 3 lacks _aro
        "annotation file unreadable": 1,  # id 5
        "annotation without image": 1,  # id 9
    }
    img = AffectNet().load_image(tmp_path, rows["test_1"])
    assert img.shape == (6, 8, 3)


def test_affectnet_npy_strict_names_the_annotation(tmp_path):
    with pytest.raises(FerbenchError, match=r"train_set.annotations.*(3_|9_exp)"):
        AffectNet().read(L.affectnet_npy(tmp_path), strict=True)


def test_affectnet_npy_corrupt_annotation_names_the_file(tmp_path):
    root = tmp_path / "one"
    L.write_image(root / "train_set" / "images" / "5.jpg")
    ann = root / "train_set" / "annotations"
    ann.mkdir(parents=True)
    (ann / "5_exp.npy").write_bytes(b"garbage")
    np.save(ann / "5_val.npy", np.array("0.1"))
    np.save(ann / "5_aro.npy", np.array("0.1"))
    with pytest.raises(FerbenchError, match=r"5_exp\.npy.*annotation file unreadable"):
        AffectNet().read(root, strict=True)


def test_affectnet_csv_repeated_row_is_counted_not_fatal(tmp_path):
    root = L.affectnet_csv(tmp_path)
    train = root / "Manually_Annotated_file_lists" / "training.csv"
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines + [lines[1]]))  # 1/a.jpg listed twice
    res = AffectNet().read(root)
    assert len(res.table) == 9 and res.skipped["row repeats an image already listed"] == 1


# --------------------------------------------------------------------------- AFEW-VA

def test_afewva_nested_zip_parts(tmp_path):
    res = AfewVA().read(L.afewva(tmp_path))
    assert res.variant == "nested" and res.precropped is False
    t = res.table
    rows = by_id(t)
    assert list(t["sample_id"]) == ["001_00000", "001_00001", "002_00000"]
    r = rows["001_00000"]
    assert (r["subject"], r["sequence"], r["frame"]) == ("Alice", "001", 0)
    assert (r["valence"], r["arousal"]) == (0.5, pytest.approx(-0.3))
    assert r["path"] == "AFEW-VA/01/001/00000.png"
    assert (rows["001_00001"]["valence"], rows["001_00001"]["arousal"]) == (1.0, -1.0)
    assert rows["002_00000"]["subject"] == "Bob" and rows["002_00000"]["arousal"] == pytest.approx(0.7)
    lnd = np.asarray(r["landmarks"])
    assert lnd.shape == (136,) and list(lnd[:4]) == [0.0, 0.5, 1.0, 1.5]
    assert t["emotion"].isna().all() and t["split"].isna().all()
    assert dict(res.skipped) == {"valence/arousal outside -10..10": 1,
                                 "frame image missing": 1, "frame without annotation": 1}
    assert AfewVA().load_image(tmp_path, r).shape == (6, 8, 3)


def test_afewva_flat_strict_and_malformed_json(tmp_path):
    root = L.afewva(tmp_path, nested=False)
    res = AfewVA().read(root)
    assert res.variant == "flat" and res.table["path"].iloc[0] == "001/00000.png"
    with pytest.raises(FerbenchError, match=r"001\.json frame '00002'.*outside -10\.\.10"):
        AfewVA().read(root, strict=True)
    (root / "002" / "002.json").write_text('{"actor": "Bob", "frames": {')
    with pytest.raises(FerbenchError, match=r"002\.json: malformed JSON"):
        AfewVA().read(root)
    (root / "002" / "002.json").write_text(json.dumps({"actor": "Bob", "frames": []}))
    with pytest.raises(FerbenchError, match=r"002\.json: malformed annotation"):
        AfewVA().read(root)


# --------------------------------------------------------------------------- FER-2013

FER_SKIPS = {"pixels are not 2304 integers 0-255": 2, "emotion code missing or not 0-6": 1,
             "Usage is not Training/PublicTest/PrivateTest": 1}


@pytest.mark.parametrize("icml", [False, True])
def test_fer2013_csv_and_icml(tmp_path, icml):
    res = Fer2013().read(L.fer2013_csv(tmp_path, icml=icml))
    name = "icml_face_data.csv" if icml else "fer2013.csv"
    assert res.variant == name and res.precropped is True
    t = res.table
    assert list(t["path"]) == [f"{name}#{i}" for i in (0, 1, 2, 5, 8)]
    assert list(t["emotion"]) == ["anger", "happiness", "neutral", "fear", "sadness"]
    assert list(t["split"]) == ["train", "val", "test", "train", "train"]
    assert dict(res.skipped) == FER_SKIPS
    assert any("1 row(s) repeat an earlier image" in n for n in t.attrs["notes"])
    images = list(Fer2013().iter_images(tmp_path, t))
    for img, seed in zip(images, (0, 1, 2, 0, 5)):
        assert img.dtype == np.uint8 and img.shape == (48, 48)
        assert np.array_equal(img.ravel(), L.pixel_row(seed))
    single = Fer2013().load_image(tmp_path, t.iloc[4])
    assert np.array_equal(single.ravel(), L.pixel_row(5))


def test_fer2013_strict_and_bad_rows_at_load(tmp_path):
    root = L.fer2013_csv(tmp_path)
    # data row 3 (0-based) is file line 5: the header is line 1
    with pytest.raises(FerbenchError, match=r"fer2013\.csv line 5: pixels are not 2304"):
        Fer2013().read(root, strict=True)
    reader = Fer2013()
    t = reader.read(root).table
    bad = pd.DataFrame({"path": ["fer2013.csv#3", "fer2013.csv#99", "fer2013.csv#0"]})
    out = list(reader.iter_images(root, bad))
    assert isinstance(out[0], FerbenchError) and "fer2013.csv line 5 (#3): pixels" in str(out[0])
    assert isinstance(out[1], FerbenchError) and "no such data row" in str(out[1])
    assert np.array_equal(out[2].ravel(), L.pixel_row(0)) and len(t) == 5


def test_fer2013_missing_pixels_column(tmp_path):
    (tmp_path / "fer2013.csv").write_text("emotion,Usage\n0,Training\n")
    with pytest.raises(FerbenchError, match=r"fer2013\.csv line 1: header lacks column\(s\) pixels "
                                            r"\(expected emotion, pixels, Usage; has 'emotion', 'Usage'\)$"):
        Fer2013().read(tmp_path)


@pytest.mark.parametrize("icml", [False, True])
def test_fer2013_headerless_csv_names_the_expected_header(tmp_path, icml):
    """Not the first data row echoed back (2,304 pixel values): what line 1 should have been."""
    L.fer2013_csv(tmp_path, icml=icml)
    name = "icml_face_data.csv" if icml else "fer2013.csv"
    path = tmp_path / name
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(FerbenchError) as raised:
        Fer2013().read(tmp_path)
    assert str(raised.value) == (f"{path} line 1: no header row; expected one naming "
                                 f"emotion, pixels, Usage (line 1 holds data)")


def test_fer2013_torchvision_train_test(tmp_path):
    res = Fer2013().read(L.fer2013_torchvision(tmp_path))
    assert res.variant == "torchvision"
    t = res.table
    assert list(t["path"]) == ["fer2013/train.csv#0", "fer2013/train.csv#1", "fer2013/test.csv#0"]
    assert list(t["emotion"]) == ["surprise", "disgust", None]  # test.csv is unlabelled
    assert list(t["split"]) == ["train", "train", "test"]
    assert not res.skipped
    assert any("test.csv: no emotion column" in n for n in t.attrs["notes"])
    img = list(Fer2013().iter_images(tmp_path, t))[2]
    assert np.array_equal(img.ravel(), L.pixel_row(2))


def test_fer2013_image_folders(tmp_path):
    res = Fer2013().read(L.fer2013_folders(tmp_path))
    assert res.variant == "image-folder"
    rows = {r["path"]: (r["emotion"], r["split"]) for _, r in res.table.iterrows()}
    assert rows == {
        "train/angry/Training_10.jpg": ("anger", "train"),
        "train/happy/Training_11.jpg": ("happiness", "train"),
        "test/sad/PublicTest_12.jpg": ("sadness", "val"),
        "test/neutral/PrivateTest_13.jpg": ("neutral", "test"),
        "test/surprise/im5.png": ("surprise", "test"),  # no prefix: the top folder decides
    }
    assert dict(res.skipped) == {"image in an unknown class folder": 1}
    img = next(Fer2013().iter_images(tmp_path, res.table))
    assert img.shape == (48, 48, 3)


# --------------------------------------------------------------------------- Aff-Wild2

def test_affwild2_markers_missing_frames_and_left_right(tmp_path):
    res = AffWild2().read(L.affwild2(tmp_path))
    assert res.variant == "VA_Estimation_Challenge" and res.precropped is True
    t = res.table
    rows = by_id(t)
    assert list(t["sample_id"]) == ["1-30-1280x720_00001", "1-30-1280x720_00007",
                                    "video5_left_00001", "video5_left_00002", "video5_right_00001"]
    r = rows["1-30-1280x720_00001"]
    assert (r["valence"], r["arousal"], r["frame"], r["split"]) == (0.5, -0.25, 1, "train")
    assert r["path"] == "cropped_aligned/1-30-1280x720/00001.jpg"
    assert rows["1-30-1280x720_00007"]["valence"] == pytest.approx(-0.1)
    left, right = rows["video5_left_00002"], rows["video5_right_00001"]
    assert (left["subject"], left["sequence"], left["split"]) == ("video5_left", "video5_left", "test")
    assert (right["subject"], right["valence"], right["arousal"]) == ("video5_right", 0.9, -0.9)
    assert dict(res.skipped) == {"invalid frame (-5 marker)": 2, "frame image missing": 1,
                                 "valence/arousal outside [-1, 1]": 1,
                                 "valence/arousal not a number": 1}
    assert AffWild2().load_image(tmp_path, r).shape == (6, 8, 3)


def test_affwild2_old_layout_nested_and_strict(tmp_path):
    root = tmp_path / "data"
    L.affwild2(root / "Aff-Wild2", task_dir="VA_Set")
    res = AffWild2().read(root)
    assert res.variant == "VA_Set" and len(res.table) == 5
    assert res.table["path"].iloc[0] == "Aff-Wild2/cropped_aligned/1-30-1280x720/00001.jpg"
    # -5 frames are the dataset's own marker: the first strict error is the missing frame 4.
    with pytest.raises(FerbenchError, match=r"1-30-1280x720\.txt line 5 .*00004\.jpg.*frame image missing"):
        AffWild2().read(root, strict=True)


def test_affwild2_malformed_label_files(tmp_path):
    root = L.affwild2(tmp_path)
    label = root / "annotations" / "VA_Estimation_Challenge" / "Validation_Set" / "video5_left.txt"
    label.write_text("arousal,valence\n0.1,0.2\n")
    with pytest.raises(FerbenchError, match=r"video5_left\.txt line 1: expected header"):
        AffWild2().read(root)
    label.write_text("valence,arousal\n0.1,0.2\n0.1,0.2,0.3\n")
    with pytest.raises(FerbenchError, match=r"video5_left\.txt line 3: expected 2 columns"):
        AffWild2().read(root)
    label.write_text("valence,arousal\n0.1,0.2\n\n0.3,0.4\n")
    with pytest.raises(FerbenchError, match=r"video5_left\.txt line 3"):
        AffWild2().read(root)


# --------------------------------------------------------------------------- line numbers

def _fer2013_bad_pixels(root):
    L.fer2013_csv(root)
    return Fer2013(), root, "fer2013.csv", lambda line: len((line.split(",") + [""])[1].split()) == 2303


def _affectnet_header(root):
    L.affectnet_csv(root)
    return AffectNet(), root, "training.csv", lambda line: line.startswith("2/missing.jpg,")


def _affectnet_headerless(root):
    L.affectnet_csv(root)
    lists = root / "Manually_Annotated_file_lists"
    (lists / "training.csv").unlink()
    text = (lists / "validation.csv").read_text()
    (lists / "validation.csv").write_text(text + text.splitlines(keepends=True)[0].replace("1/v1.png", "1/gone.png"))
    return AffectNet(), root, "validation.csv", lambda line: line.startswith("1/gone.png,")


def _affwild2_label_file(root):
    L.affwild2(root)
    label = root / "annotations" / "VA_Estimation_Challenge" / "Train_Set" / "1-30-1280x720.txt"
    label.write_text(label.read_text().replace("-5.0,-5.0\n", "0.25,nope\n"))  # frame 3, before 4's gap
    return AffWild2(), root, label.name, lambda line: line == "0.25,nope"


def _with_blank_lines(build):
    """The same file with a blank and a whitespace-only line after its second line: pandas skips
    them, so data row i is no longer line i + 2."""
    def built(root):
        reader, root, name, is_bad = build(root)
        path = next(p for p in root.rglob(name))
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:2] + ["\n", "   \n"] + lines[2:]))
        return reader, root, name, is_bad
    return built


LINE_CASES = {"fer2013": _fer2013_bad_pixels, "affectnet_header": _affectnet_header,
              "affectnet_headerless": _affectnet_headerless, "affwild2": _affwild2_label_file,
              "fer2013_blank_lines": _with_blank_lines(_fer2013_bad_pixels),
              "affectnet_blank_lines": _with_blank_lines(_affectnet_header)}


@pytest.mark.parametrize("case", sorted(LINE_CASES))
def test_every_reader_names_file_lines(tmp_path, case):
    """One convention in every reader's messages: 1-based lines of the file as an editor shows
    them (a header on line 1 makes 0-based data row i line i + 2)."""
    reader, root, name, is_bad = LINE_CASES[case](tmp_path)
    with pytest.raises(FerbenchError) as raised:
        reader.read(root, strict=True)
    found = re.search(rf"(\S*{re.escape(name)}) line (\d+)", str(raised.value))
    assert found, raised.value
    lines = open(found.group(1)).read().splitlines()
    line = int(found.group(2))
    assert is_bad(lines[line - 1]), (line, lines[line - 1][:60])
    assert sum(map(is_bad, lines)) == 1
