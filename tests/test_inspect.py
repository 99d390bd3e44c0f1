"""`ferbench inspect`: counts under the default protocol, JSON keys, --verify, --fold-file."""

from __future__ import annotations

import collections
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fake_tables import CKPLUS_CLASSES, CKPLUS_FOLDS, TableReader, ckplus_like_table
from ferbench import cli
from ferbench.data import inspection
from ferbench.datasets.base import ReadResult, make_table


@pytest.fixture()
def use_reader(monkeypatch):
    def install(reader):
        monkeypatch.setattr(inspection, "get_reader", lambda name: reader)
        return reader
    return install


def _run(capsys, *argv):
    rc = cli.main(["inspect", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_ckplus_json_has_exactly_the_keys_and_the_published_folds(use_reader, capsys, tmp_path):
    table = ckplus_like_table()
    use_reader(TableReader("ckplus", ReadResult(table, collections.Counter({"unexpected file": 3}), "original")))
    rc, out, _ = _run(capsys, "ckplus", str(tmp_path), "--json")
    assert rc == 0
    summary = json.loads(out)  # exactly one JSON object on stdout
    assert set(summary) == {"images", "sequences", "subjects", "classes", "folds", "skipped"}
    assert summary["folds"] == CKPLUS_FOLDS
    assert summary["classes"] == CKPLUS_CLASSES and list(summary["classes"]) == list(CKPLUS_CLASSES)
    assert summary["images"] == len(table)
    assert summary["sequences"] == table["sequence"].nunique() == 327 + 123
    assert summary["subjects"] == 123
    assert summary["skipped"] == {"unexpected file": 3}


def test_text_output_is_readable(use_reader, capsys, tmp_path):
    use_reader(TableReader("ckplus", ReadResult(ckplus_like_table(), variant="original")))
    rc, out, _ = _run(capsys, "ckplus", str(tmp_path))
    assert rc == 0
    assert "folds      10: 33 39 40 35 30 37 29 29 33 22  (total 327)" in out
    assert "contempt" in out and "skipped    none" in out


def test_fold_file_changes_the_fold_counts(use_reader, capsys, tmp_path):
    table = ckplus_like_table()
    use_reader(TableReader("ckplus", ReadResult(table)))
    subjects = sorted(table.loc[table["emotion"].notna(), "subject"].unique())
    path = tmp_path / "folds.csv"
    pd.DataFrame({"subject": subjects, "fold": [0] * 100 + [1] * 18}).to_csv(path, index=False)
    rc, out, _ = _run(capsys, "ckplus", str(tmp_path), "--json", "--fold-file", str(path))
    folds = json.loads(out)["folds"]
    assert rc == 0 and sum(folds) == 327 and folds[2:] == [0] * 8
    path.write_text("subject,fold\nS999,0\n")
    rc, out, err = _run(capsys, "ckplus", str(tmp_path), "--json", "--fold-file", str(path))
    assert rc == 2 and out == "" and f"folds.csv: subject {subjects[0]} is missing" in err
    assert len(err.strip().splitlines()) == 1


def _stills(root, n=10, broken=()):
    rows = []
    for i in range(n):
        path = root / f"img{i}.png"
        if i in broken:
            path.write_bytes(b"not an image")
        else:
            Image.fromarray(np.full((8, 8), i, np.uint8)).save(path)
        rows.append({"sample_id": f"img{i}", "path": path.name, "emotion": ["anger", "happiness"][i % 2],
                     "split": ["train", "val", "test"][i % 3]})
    return make_table(rows, "fer2013")


def test_official_protocol_reports_splits_and_verify_counts_unreadable(use_reader, capsys, tmp_path):
    use_reader(TableReader("fer2013", ReadResult(_stills(tmp_path, broken={0, 5}))))
    rc, out, _ = _run(capsys, "fer2013", str(tmp_path), "--json")
    summary = json.loads(out)
    assert rc == 0
    assert set(summary) == {"images", "sequences", "subjects", "classes", "splits", "skipped",
                            "split_statistics", "split_warnings"}
    assert summary["splits"] == {"train": 4, "val": 3, "test": 3}
    # the split check decodes what it can (two images are broken); splits this small are not compared
    assert {k: v["images"] for k, v in summary["split_statistics"].items()} == {"train": 3, "val": 3, "test": 2}
    assert summary["split_warnings"] == []
    assert summary["sequences"] == 0 and summary["subjects"] == 0 and summary["skipped"] == {}
    assert summary["classes"]["anger"] == 5 and summary["classes"]["happiness"] == 5
    rc, out, _ = _run(capsys, "fer2013", str(tmp_path), "--json", "--verify")
    summary = json.loads(out)
    assert summary["skipped"] == {"unreadable image": 2} and summary["images"] == 8
    assert summary["splits"] == {"train": 3, "val": 3, "test": 2}
    rc, out, err = _run(capsys, "fer2013", str(tmp_path), "--verify", "--strict")
    assert rc == 2 and "img0.png: unreadable image" in err


def test_va_dataset_reports_folds_of_sequences(use_reader, capsys, tmp_path):
    rows = [{"sample_id": f"{v:03d}_{f}", "subject": f"actor{v % 7}", "sequence": f"{v:03d}", "frame": f,
             "path": f"{v:03d}/{f:05d}.png", "valence": 0.1 * f, "arousal": -0.1}
            for v in range(30) for f in range(4)]
    use_reader(TableReader("afewva", ReadResult(make_table(rows, "afewva"))))
    rc, out, _ = _run(capsys, "afewva", str(tmp_path), "--json")
    summary = json.loads(out)
    assert summary["classes"] == {} and len(summary["folds"]) == 6 and sum(summary["folds"]) == 30
    assert summary["subjects"] == 7 and summary["sequences"] == 30
