"""`prepare`: crop geometry, channels, unreadable images, atomic writes, thread determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fake_tables import TableReader
from ferbench import cli
from ferbench.data import faces, prepare
from ferbench.data.faces import crop_face, locate_face
from ferbench.data.prepare import prepare_cache
from ferbench.datasets.base import Reader, ReadResult, make_table
from ferbench.errors import FerbenchError


def _white_square(h=200, w=300, x=100, y=60, side=40, rgb=False):
    image = np.zeros((h, w), np.uint8)
    image[y:y + side, x:x + side] = 255
    return np.stack([image] * 3, axis=-1) if rgb else image


def test_landmark_box_is_centred_in_the_crop():
    image = _white_square()
    # landmark points spanning exactly the square: box (100, 60, 40, 40)
    landmarks = [100, 60, 140, 60, 120, 80, 100, 100, 140, 100]
    (face,), method = crop_face(image, [40], landmarks=landmarks, margin=0.5)
    assert method == "landmarks" and face.shape == (3, 40, 40) and face.dtype == np.uint8
    # side = 40 * (1 + 2*0.5) = 80 -> the square occupies the middle half; /2 -> pixels 10..29
    expected = np.zeros((40, 40), np.uint8)
    expected[10:30, 10:30] = 255
    for channel in face:
        np.testing.assert_array_equal(channel, expected)


def test_box_gives_the_same_crop_and_landmarks_win_over_box():
    image = _white_square()
    (from_box,), method = crop_face(image, [40], box=[100, 60, 40, 40], margin=0.5)
    assert method == "box"
    (from_lm,), _ = crop_face(image, [40], landmarks=[100, 60, 140, 100], margin=0.5)
    np.testing.assert_array_equal(from_box, from_lm)
    _, method = crop_face(image, [40], landmarks=[100, 60, 140, 100], box=[0, 0, 10, 10])
    assert method == "landmarks"
    # unusable landmarks (NaN) fall back to the box
    _, method = crop_face(image, [40], landmarks=[np.nan] * 4, box=[100, 60, 40, 40])
    assert method == "box"


def test_square_is_shifted_inside_when_it_fits_and_padded_when_not():
    image = _white_square(h=200, w=300, x=0, y=80, side=40)
    # face at the left border: the 80px square is shifted to x = 0 (no black padding column)
    x0, y0, side = faces.square_region((0, 80, 40, 40), 0.5, image.shape)
    assert (x0, y0, side) == (0, 60, 80)
    # a face box larger than the image: centred, zero padded on every side
    white = np.full((50, 50), 255, np.uint8)
    (face,), method = crop_face(white, [100], box=[0, 0, 50, 50], margin=0.5)
    assert method == "box"
    assert (face[:, 25:75, 25:75] == 255).all()
    assert face[:, :25].max() == 0 and face[:, 75:].max() == 0 and face[:, :, :25].max() == 0


def test_grey_is_replicated_and_rgb_order_kept():
    grey = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251).astype(np.uint8)
    (face,), _ = crop_face(grey, [64], precropped=True)
    assert face.shape == (3, 64, 64)
    np.testing.assert_array_equal(face[0], grey)
    np.testing.assert_array_equal(face[1], face[0])
    np.testing.assert_array_equal(face[2], face[0])
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    (face,), _ = crop_face(red, [16], precropped=True)
    assert (face[0] == 200).all() and (face[1:] == 0).all()
    (one,), _ = crop_face(red, [16], precropped=True, channels=1)
    assert one.shape == (1, 16, 16) and 50 < one[0, 0, 0] < 70  # luma of pure red


def test_precropped_non_square_is_padded_not_stretched():
    image = np.full((20, 40), 255, np.uint8)
    (face,), method = crop_face(image, [40], precropped=True, box=[0, 0, 5, 5])
    assert method == "whole"
    assert (face[:, 10:30] == 255).all() and face[:, :10].max() == 0 and face[:, 30:].max() == 0


def test_detector_only_without_landmarks_or_box_and_centre_fallback():
    calls = []

    def detector(grey):
        calls.append(grey.shape)
        return (100.0, 60.0, 40.0, 40.0)

    image = _white_square(rgb=True)
    locate_face(image, landmarks=[100, 60, 140, 100], detector=detector)
    locate_face(image, box=[100, 60, 40, 40], detector=detector)
    assert calls == []
    box, method = locate_face(image, detector=detector)
    assert method == "detector" and calls == [(200, 300)] and box == (100.0, 60.0, 40.0, 40.0)
    box, method = locate_face(image, detector=lambda grey: None)
    assert method == "center" and box == (50.0, 0.0, 200.0, 200.0)
    # the bundled Haar cascade loads (no download) and finds no face in a blank image
    assert faces.HaarDetector()(np.zeros((120, 160), np.uint8)) is None


# -- whole tables -----------------------------------------------------------------------------
def _write_dataset(root: Path, n=12, broken=(), landmarks=True):
    rows = []
    for i in range(n):
        rel = f"S{i:03d}/001/img_{i:03d}.png"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in broken:
            path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            rgb = i % 3 == 0
            Image.fromarray(_white_square(h=120, w=160, x=50 + i, y=30, side=40, rgb=rgb)).save(path)
        rows.append({
            "sample_id": f"s{i:03d}", "subject": f"S{i:03d}", "sequence": f"S{i:03d}_001", "frame": 1,
            "path": rel, "emotion": "happiness", "apex": True,
            "landmarks": [50 + i, 30, 90 + i, 70] if landmarks else None,
        })
    return make_table(rows, "fake")


def _reader(root, n=12, broken=(), precropped=False, skipped=None, **kw):
    import collections
    table = _write_dataset(root, n, broken, **kw)
    result = ReadResult(table, collections.Counter(skipped or {}), "v1", precropped=precropped)
    return TableReader("fake", result)


def test_prepare_writes_faces_samples_and_report(tmp_path):
    reader = _reader(tmp_path / "data", broken={4}, skipped={"label file without an image sequence": 2})
    out = tmp_path / "cache"
    report = prepare_cache(reader, tmp_path / "data", out, sizes=[32, 48], threads=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["faces_32.npy", "faces_48.npy", "landmarks.npy", "report.json",
                                                     "samples.parquet"]
    faces = np.load(out / "faces_48.npy", mmap_mode="r")
    assert isinstance(faces, np.memmap) and faces.shape == (11, 3, 48, 48) and faces.dtype == np.uint8
    assert np.load(out / "faces_32.npy", mmap_mode="r").shape == (11, 3, 32, 32)
    samples = pd.read_parquet(out / "samples.parquet")
    assert "s004" not in set(samples["sample_id"]) and len(samples) == 11
    assert samples["cache_row"].dtype == np.int64 and list(samples["cache_row"]) == list(range(11))
    assert list(samples["sample_id"]) == [f"s{i:03d}" for i in range(12) if i != 4]
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    assert saved["images"] == 11 and saved["dataset"] == "fake" and saved["variant"] == "v1"
    assert saved["skipped"] == {"label file without an image sequence": 2, "unreadable image": 1}
    assert saved["sizes"] == [32, 48] and saved["channels"] == 3
    assert saved["crop"]["landmarks"] == 11 and sum(saved["crop"].values()) == 11
    # every face is centred: the square's middle is white, the corners black
    assert (faces[:, :, 20:28, 20:28] == 255).all() and (faces[:, :, :4, :4] == 0).all()
    cached, table = prepare.open_cache(out, 48)
    assert len(cached) == len(table) == 11


def test_strict_unreadable_image_is_an_error_naming_the_file_and_leaves_nothing(tmp_path):
    reader = _reader(tmp_path / "data", broken={7})
    out = tmp_path / "cache"
    with pytest.raises(FerbenchError, match=r"img_007\.png: unreadable image.*--strict"):
        prepare_cache(reader, tmp_path / "data", out, sizes=[32], strict=True, progress=False)
    assert list(out.iterdir()) == []


class _Boom(RuntimeError):
    pass


class _FailingReader(TableReader):
    """Decodes a few images, then something unexpected goes wrong."""

    def iter_images(self, root, table):
        for i, image in enumerate(super().iter_images(root, table)):
            if i == 5:
                raise _Boom("disk vanished")
            yield image


class _FailingLoad(TableReader):
    """Base iter_images (decoded in worker processes when threads > 1); row 50 blows up."""

    def load_image(self, root, row):
        if row["sample_id"] == "s050":
            raise _Boom("out of memory")
        return super().load_image(root, row)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("where", ["one-pass reader", "file reader"])
def test_failure_mid_way_leaves_no_partial_cache(tmp_path, monkeypatch, threads, where):
    monkeypatch.setattr(prepare, "PROCESS_MIN_ROWS", 0)  # small table, yet worker processes
    base = _reader(tmp_path / "data", n=80)
    cls = _FailingReader if where == "one-pass reader" else _FailingLoad
    reader = cls("fake", base.result)
    out = tmp_path / "cache"
    with pytest.raises(_Boom):
        prepare_cache(reader, tmp_path / "data", out, sizes=[32, 64], threads=threads, progress=False)
    assert list(out.iterdir()) == []  # no faces, no parquet, no report, no temp files


def test_failed_rerun_keeps_no_report_of_the_old_cache(tmp_path):
    base = _reader(tmp_path / "data")
    out = tmp_path / "cache"
    prepare_cache(base, tmp_path / "data", out, sizes=[32], progress=False)
    with pytest.raises(_Boom):
        prepare_cache(_FailingReader("fake", base.result), tmp_path / "data", out, sizes=[32], progress=False)
    # the old, complete files stay; the completion marker is gone so nothing trusts a mix
    assert sorted(p.name for p in out.iterdir()) == ["faces_32.npy", "landmarks.npy", "samples.parquet"]


def test_threads_give_identical_output_and_order(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "PROCESS_MIN_ROWS", 0)
    pools = []

    class CountingPool(prepare.ProcessPoolExecutor):
        def __init__(self, *args, **kw):
            pools.append(kw["max_workers"])
            super().__init__(*args, **kw)
    monkeypatch.setattr(prepare, "ProcessPoolExecutor", CountingPool)
    reader = _reader(tmp_path / "data", n=70, broken={3, 40}, landmarks=False)  # detector path
    one = prepare_cache(reader, tmp_path / "data", tmp_path / "one", sizes=[24], threads=1, progress=False)
    two = prepare_cache(reader, tmp_path / "data", tmp_path / "two", sizes=[24], threads=2, progress=False)
    for report in (one, two):  # the file times the quick pixel check compares differ, nothing else
        assert report["content"]["faces_24.npy"].pop("mtime_ns") > 0
    assert one == two and pools == [2]  # threads=2 really decoded in two worker processes
    assert one["crop"]["detector"] + one["crop"]["center"] == 68
    np.testing.assert_array_equal(np.load(tmp_path / "one" / "faces_24.npy"), np.load(tmp_path / "two" / "faces_24.npy"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / "samples.parquet"),
                                  pd.read_parquet(tmp_path / "two" / "samples.parquet"))


class _ContainerReader(Reader):
    """Images inside one container: overrides iter_images to decode in one pass."""

    name = "container"
    kind = "image"
    task = "classification"

    def __init__(self, table):
        self.table = table
        self.passes = 0

    def read(self, root, strict=False):
        return ReadResult(self.table, variant="csv", precropped=True)

    def load_image(self, root, row):
        raise AssertionError("prepare must use iter_images")

    def iter_images(self, root, table):
        self.passes += 1
        for i in range(len(table)):
            if i == 2:
                yield FerbenchError("data.csv#2: unreadable image (bad pixels)")
            else:
                yield np.full((48, 48), i, np.uint8)


def test_container_reader_is_decoded_in_one_pass(tmp_path):
    rows = [{"sample_id": f"r{i}", "path": f"data.csv#{i}", "emotion": "anger", "split": "train"} for i in range(40)]
    reader = _ContainerReader(make_table(rows, "container"))
    report = prepare_cache(reader, tmp_path, tmp_path / "cache", sizes=[48], threads=2, progress=False)
    assert reader.passes == 1
    assert report["images"] == 39 and report["crop"]["whole"] == 39 and report["skipped"] == {"unreadable image": 1}
    faces = np.load(tmp_path / "cache" / "faces_48.npy")
    assert [int(f[0, 0, 0]) for f in faces] == [i for i in range(40) if i != 2]


def test_prepare_verb(tmp_path, monkeypatch, capsys):
    reader = _reader(tmp_path / "data", n=6)
    monkeypatch.setattr(prepare, "get_reader", lambda name: reader)
    out = tmp_path / "cache" / "fake"
    rc = cli.main(["prepare", "fake", str(tmp_path / "data"), "--out", str(out), "--size", "16", "--channels", "1",
                   "--threads", "2"])
    assert rc == 0
    assert np.load(out / "faces_16.npy").shape == (6, 1, 16, 16)
    assert "cached 6 faces" in capsys.readouterr().out


class _ShortReader(_ContainerReader):
    def iter_images(self, root, table):
        yield from list(super().iter_images(root, table))[:-1]


def test_reader_yielding_too_few_images_is_an_error(tmp_path):
    rows = [{"sample_id": f"r{i}", "path": f"data.csv#{i}", "emotion": "anger", "split": "train"} for i in range(40)]
    with pytest.raises(FerbenchError, match="iter_images ended before sample 40"):
        prepare_cache(_ShortReader(make_table(rows, "container")), tmp_path, tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_sequence_boxes_frame_every_frame_of_a_sequence_alike() -> None:
    from ferbench.data.faces import landmark_box
    from ferbench.data.prepare import sequence_boxes

    table = pd.DataFrame({
        "sequence": ["a", "a", "b", None],
        # a's apex drops the jaw (y up to 90); b has one frame; the still has no sequence
        "landmarks": [[10, 20, 50, 60], [12, 22, 48, 90], [0, 0, 5, 5], [1, 1, 2, 2]],
    })
    out = sequence_boxes(table)
    # union of a's boxes: x 10..50, y 20..90 -> the same (x, y, w, h) for both frames
    assert landmark_box(out["landmarks"][0]) == landmark_box(out["landmarks"][1]) == (10, 20, 40, 70)
    assert landmark_box(out["landmarks"][2]) == (0, 0, 5, 5)
    assert out["landmarks"][3] == [1, 1, 2, 2]          # no sequence: untouched
    assert table["landmarks"][1] == [12, 22, 48, 90]   # the caller's table is not modified


# -- landmarks in the cache ---------------------------------------------------------------------
def test_a_landmark_maps_to_its_crop_pixel():
    """A bright dot at a known image pixel, named by a landmark: after the crop (shifted inside
    the image, and zero-padded where it leaves it) the point's crop coordinates land on the dot."""
    for dot, box_points in (((103, 61), [80, 40, 140, 100]), ((12, 9), [0, 0, 40, 30])):
        image = np.zeros((120, 160), np.uint8)
        image[dot[1], dot[0]] = 255
        marks = box_points + list(dot)                                  # three points
        x0, y0, side = faces.square_region(faces.landmark_box(marks), 0.3, image.shape)
        (face,), method, region = faces.crop_face_region(image, [side], landmarks=marks, margin=0.3)
        assert method == "landmarks" and region == (x0, y0, side)
        f = faces.points_to_crop(marks, region, 3)
        px, py = f[2] * side - 0.5                                       # size = side: no resampling
        assert (round(px), round(py)) == (dot[0] - x0, dot[1] - y0)
        assert face[0, round(py), round(px)] == 255 and face.sum() == 3 * 255
    # another number of points than the dataset's, or none: NaN
    assert np.isnan(faces.points_to_crop([1, 2, 3, 4], (0, 0, 10), 3)).all()
    assert np.isnan(faces.points_to_crop(None, (0, 0, 10), 3)).all()


def test_prepare_stores_landmarks_in_crop_fractions(tmp_path):
    reader = _reader(tmp_path / "data", broken={4})
    reader.result.table.at[2, "landmarks"] = None                       # one row without points
    out = tmp_path / "cache"
    report = prepare_cache(reader, tmp_path / "data", out, sizes=[48], threads=1, progress=False)
    marks = np.load(out / "landmarks.npy")
    assert marks.shape == (11, 2, 2) and marks.dtype == np.float32
    assert report["landmarks"] == {"points": 2, "rows": 10} and report["settings"]["cache_format"] == 2
    samples = pd.read_parquet(out / "samples.parquet")
    row = int(samples.index[samples["sample_id"] == "s002"][0])
    assert np.isnan(marks[row]).all()
    # the white square's corners (50 + i, 30) and (90 + i, 70): a 56 px square from (42 + i, 22)
    others = np.delete(marks, row, axis=0)
    np.testing.assert_allclose(others[:, 0], np.tile([8.5 / 56, 8.5 / 56], (10, 1)), rtol=1e-6)
    np.testing.assert_allclose(others[:, 1], np.tile([48.5 / 56, 48.5 / 56], (10, 1)), rtol=1e-6)
    faces = np.load(out / "faces_48.npy")
    # the corner pixel of the white square in the face is where the landmark says
    x, y = np.round(others[0, 0] * 48 - 0.5).astype(int)
    assert faces[0, 0, y + 1, x + 1] == 255 and faces[0, 0, y - 2, x - 2] == 0
    no_marks = _reader(tmp_path / "plain", landmarks=False)
    report = prepare_cache(no_marks, tmp_path / "plain", tmp_path / "c2", sizes=[32], progress=False)
    assert np.load(tmp_path / "c2" / "landmarks.npy").shape == (12, 0, 2) and report["landmarks"]["points"] == 0
    # what training jobs read (FoldData.landmarks): the memmap, None without points or file
    from ferbench.data.folds import FoldData, open_landmarks

    opened = open_landmarks(out, 11)
    np.testing.assert_array_equal(opened, marks)
    assert open_landmarks(tmp_path / "c2", 12) is None
    (tmp_path / "c2" / "landmarks.npy").unlink()                        # a cache of format 1
    assert open_landmarks(tmp_path / "c2", 12) is None
    with pytest.raises(FerbenchError, match=r"landmarks.npy: expected float \[12, P, 2\]"):
        open_landmarks(out, 12)
    fold = FoldData(images=faces, folds=samples, meta={}, fold=0, indices={}, subject_mask=np.ones(11, bool),
                    cache_row=samples["cache_row"].to_numpy(np.int64)[::-1].copy(), label=np.zeros(11, np.int64),
                    va=np.zeros((11, 2), np.float32), landmarks=opened)
    np.testing.assert_array_equal(fold.landmarks_at(np.array([[0, 1]])), marks[[10, 9]][None])
