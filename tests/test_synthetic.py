"""The synthetic face generator: determinism, exact file formats of the real layouts, faces whose
landmarks, expressions and valence are consistent, identity as a nuisance, subject-disjoint
FER-2013 splits, atomic layout writes, and round trips through the dataset readers."""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferbench import synthetic as syn
from ferbench.datasets.base import EMOTIONS
from ferbench.errors import FerbenchError
from ferbench.synthetic.layouts import WRITERS
from ferbench.synthetic.layouts.afewva import CLIPS_PER_ACTOR

SMALL = syn.SyntheticConfig(subjects=5, frames=4, size=48, seed=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return out, syn.write_layouts(out, SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------
# arguments

@pytest.mark.parametrize("kwargs, message", [
    ({"layouts": ("ckplus", "celeba")}, "unknown synthetic layout 'celeba'"),
    ({"size": 0}, "--size must be at least"),
    ({"frames": 0}, "--frames must be at least"),
    ({"subjects": 0}, "--subjects must be positive"),
    ({"subjects": -3}, "--subjects must be positive"),
    ({"seed": -1}, "--seed must be a non-negative integer"),
    ({"layouts": ()}, "no synthetic layout given"),
])
def test_bad_config_is_one_clear_error(kwargs, message):
    with pytest.raises(FerbenchError, match=re.escape(message)) as info:
        syn.SyntheticConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_cli_writes_layouts_and_reports_bad_layout(tmp_path, capsys):
    from ferbench.cli import main

    rc = main(["synthesize", "--out", str(tmp_path), "--layouts", "fer2013, afewva",
               "--subjects", "3", "--frames", "2", "--size", "32"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert [line.split(":")[0] for line in out] == ["fer2013", "afewva"]
    assert (tmp_path / "fer2013" / "fer2013.csv").is_file()
    assert (tmp_path / "afewva" / "001" / "001.json").is_file()

    rc = main(["synthesize", "--out", str(tmp_path), "--layouts", "ckplus,mmi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "unknown synthetic layout 'mmi'" in err[0]


# ------------------------------------------------------------------------------------------
# determinism and atomic writes

def test_same_arguments_give_identical_bytes(written, tmp_path):
    out, _ = written
    syn.write_layouts(tmp_path, SMALL)
    for layout in syn.LAYOUTS:
        first, second = _files(out / layout), _files(tmp_path / layout)
        assert list(first) == list(second), layout
        assert all(first[k] == second[k] for k in first), layout
    # a layout written alone is the same as written among the others
    alone = tmp_path / "alone"
    syn.write_layouts(alone, syn.SyntheticConfig(**{**vars(SMALL), "layouts": ("oulu",)}))
    assert _files(alone / "oulu") == _files(out / "oulu")
    # a different seed gives different faces
    other = tmp_path / "other"
    syn.write_layouts(other, syn.SyntheticConfig(**{**vars(SMALL), "seed": 4,
                                                    "layouts": ("fer2013",)}))
    assert _files(other / "fer2013") != _files(out / "fer2013")


def test_layout_is_replaced_atomically(tmp_path, monkeypatch):
    cfg = syn.SyntheticConfig(subjects=3, frames=2, size=32, layouts=("fer2013",))
    syn.write_layouts(tmp_path, cfg)
    target = tmp_path / "fer2013"
    (target / "stale.txt").write_text("from an older run")
    before = _files(target)

    def broken(root, config):
        (root / "fer2013.csv").write_text("half")
        raise RuntimeError("killed")

    monkeypatch.setitem(WRITERS, "fer2013", broken)
    with pytest.raises(RuntimeError):
        syn.write_layouts(tmp_path, cfg)
    assert _files(target) == before  # a failed run leaves the complete old copy alone
    assert [p.name for p in tmp_path.iterdir()] == ["fer2013"]  # and no temporary folder
    monkeypatch.undo()
    syn.write_layouts(tmp_path, cfg)
    assert not (target / "stale.txt").exists()  # a complete rerun replaces the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer2013"]


# ------------------------------------------------------------------------------------------
# file formats of the real layouts

EXP = r"-?\d\.\d{7}e[+-]\d{2}"


def test_ckplus_files_match_the_original_distribution(written):
    out, summaries = written
    root = out / "ckplus"
    s = summaries["ckplus"]
    assert {p.name for p in root.iterdir()} == {"cohn-kanade-images", "Emotion", "Landmarks",
                                                "FACS"}
    assert (root / "cohn-kanade-images" / ".DS_Store").is_file()
    assert (root / "Emotion" / ".DS_Store").is_file()
    seq_dirs = sorted(p for p in (root / "cohn-kanade-images").glob("S*/*") if p.is_dir())
    assert len(seq_dirs) == s.sequences and s.labelled < s.sequences
    unlabelled = 0
    for seq_dir in seq_dirs:
        subject, seq = seq_dir.parent.name, seq_dir.name
        assert re.fullmatch(r"S\d{3}", subject) and re.fullmatch(r"\d{3}", seq)
        frames = sorted(seq_dir.glob("*.png"))
        assert [f.name for f in frames] == [f"{subject}_{seq}_{i:08d}.png"
                                            for i in range(1, SMALL.frames + 1)]
        with Image.open(frames[0]) as im:
            assert im.mode in ("L", "RGB") and im.width > im.height
        for f in frames:
            lm = (root / "Landmarks" / subject / seq / f"{f.stem}_landmarks.txt").read_text()
            lines = lm.splitlines()
            assert len(lines) == 68
            assert all(re.fullmatch(rf"   {EXP}   {EXP}", line) for line in lines)
        labels = list((root / "Emotion" / subject / seq).iterdir())
        if not labels:  # unlabelled sequences keep an empty Emotion folder, as shipped
            unlabelled += 1
            continue
        (label,) = labels
        assert label.name == f"{frames[-1].stem}_emotion.txt"  # names the apex frame
        text = label.read_text()
        assert re.fullmatch(rf"   {EXP}\n", text)
        assert 1 <= int(float(text)) <= 7
    assert unlabelled == s.sequences - s.labelled
    assert sum(s.labels.values()) == s.labelled


def test_oulu_affectnet_afewva_fer2013_formats(written):
    out, summaries = written
    strong = out / "oulu" / "OriginalImg" / "VL" / "Strong"
    assert sorted(p.name for p in strong.iterdir()) == [f"P{i:03d}" for i in range(1, 6)]
    for subject in strong.iterdir():
        assert sorted(p.name for p in subject.iterdir()) == sorted(syn.OULU_FOLDERS.values())
        for seq in subject.iterdir():
            assert sorted(p.name for p in seq.iterdir()) == [f"{i:03d}.jpeg" for i in range(4)]
    with Image.open(strong / "P001" / "Anger" / "000.jpeg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 48)

    lists = out / "affectnet" / "Manually_Annotated_file_lists"
    train = (lists / "training.csv").read_text().splitlines()
    val = (lists / "validation.csv").read_text().splitlines()
    assert train[0] == syn.AFFECTNET_HEADER
    assert not val[0].startswith("subDirectory")  # validation.csv has no header row
    codes = set()
    for line in train[1:] + val:
        cells = line.split(",")
        assert len(cells) == 9
        path = out / "affectnet" / "Manually_Annotated_Images" / cells[0]
        assert path.is_file()
        x, y, w, h = map(int, cells[1:5])
        marks = [float(v) for v in cells[5].split(";")]
        assert len(marks) == 136
        code, valence, arousal = int(cells[6]), float(cells[7]), float(cells[8])
        codes.add(code)
        with Image.open(path) as im:
            assert 0 <= x and 0 <= y and x + w <= im.width and y + h <= im.height and w > 0 < h
        if code <= 8:
            assert -1 <= valence <= 1 and -1 <= arousal <= 1
        else:
            assert valence == arousal == -2
    assert set(range(8)) <= codes <= set(range(11))
    assert {int(line.split(",")[6]) for line in val} == set(range(8))

    afew = out / "afewva"
    videos = sorted(p for p in afew.iterdir())
    assert [p.name for p in videos] == [f"{i:03d}" for i in range(1, CLIPS_PER_ACTOR * 5 + 1)]
    for video in videos:
        doc = json.loads((video / f"{video.name}.json").read_text())
        assert doc["video_id"] == video.name and isinstance(doc["actor"], str)
        assert sorted(doc["frames"]) == [f"{i:05d}" for i in range(4)]
        for key, frame in doc["frames"].items():
            assert (video / f"{key}.png").is_file()
            assert isinstance(frame["valence"], int) and -10 <= frame["valence"] <= 10
            assert isinstance(frame["arousal"], int) and -10 <= frame["arousal"] <= 10
            assert np.asarray(frame["landmarks"]).shape == (68, 2)

    with open(out / "fer2013" / "fer2013.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 * 7 * 3
    for row in rows:
        pixels = row["pixels"].split(" ")
        assert len(pixels) == 2304 and all(0 <= int(p) <= 255 for p in pixels)
        assert row["Usage"] in syn.FER2013_USAGE and 0 <= int(row["emotion"]) <= 6
    usages = [row["Usage"] for row in rows]  # ordered in blocks, as the real file
    assert usages == sorted(usages, key=list(syn.FER2013_USAGE).index)


def test_fer2013_splits_are_subject_disjoint(written):
    _, summaries = written
    records = summaries["fer2013"].records
    by_split: dict[str, set] = {}
    for rec in records:
        by_split.setdefault(rec["usage"], set()).add(rec["subject"])
    assert set(by_split) == set(syn.FER2013_USAGE)
    names = list(by_split)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not by_split[a] & by_split[b], (a, b)
    usage = syn.fer2013_usage(40, seed=0)
    counts = {u: sum(1 for v in usage.values() if v == u) for u in syn.FER2013_USAGE}
    assert counts == {"Training": 32, "PublicTest": 4, "PrivateTest": 4}


# ------------------------------------------------------------------------------------------
# the faces themselves

def _identity(seed: int) -> syn.Identity:
    return syn.sample_identity(np.random.default_rng(seed))


def _mouth_opening(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[66] - lm[62]) + np.linalg.norm(lm[57] - lm[51]))


def test_expression_moves_the_landmarks_as_the_emotion_says():
    for seed in range(5):
        idn = _identity(seed)
        lm = {e: syn.face_landmarks(idn, syn.expression_aus(idn, e, 1.0))
              for e in ("neutral", "surprise", "happiness", "sadness", "anger")}
        assert _mouth_opening(lm["surprise"]) > 2 * _mouth_opening(lm["neutral"])
        # brows: raised in surprise, lowered in anger (y grows downwards)
        assert lm["surprise"][17:27, 1].mean() < lm["neutral"][17:27, 1].mean() - 0.05
        assert lm["anger"][17:27, 1].mean() > lm["neutral"][17:27, 1].mean() + 0.02
        # mouth corners: up in a smile, down in sadness, relative to the lip centre
        def corners(p):
            return p[[48, 54], 1].mean() - p[[51, 57], 1].mean()
        assert corners(lm["happiness"]) < corners(lm["neutral"]) - 0.05
        assert corners(lm["sadness"]) > corners(lm["neutral"]) + 0.03


def test_intensity_ramps_monotonically_from_neutral():
    idn = _identity(11)
    for emotion in ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"):
        seq = syn.render_sequence(idn, emotion, frames=6, apex=0.8, gamma=1.3,
                                  rng=np.random.default_rng(0), canvas=(64, 48), nuisance=0.0)
        assert seq.intensity[0] == 0 and seq.intensity[-1] == pytest.approx(0.8)
        assert np.all(np.diff(seq.intensity) > 0)
        # no pose change without nuisance: landmark displacement is the expression alone
        dist = np.linalg.norm(seq.landmarks - seq.landmarks[0], axis=2).sum(axis=1)
        assert dist[0] == 0 and np.all(np.diff(dist) > 0), (emotion, dist)
        pixels = [np.abs(im.astype(float) - seq.images[0]).mean() for im in seq.images]
        assert pixels[-1] > pixels[len(pixels) // 2] > pixels[0] == 0, (emotion, pixels)


def test_landmarks_lie_on_the_drawn_face():
    idn = _identity(5)
    rng = np.random.default_rng(2)
    scene = syn.make_scene(rng, (96, 96), 0.75, mode="L", nuisance=0.0)
    img, lm = syn.render_face(idn, syn.expression_aus(idn, "surprise", 1.0), scene, rng=rng)
    assert img.shape == (96, 96) and np.all((lm > 0) & (lm < 96))
    at = lambda p: float(img[int(round(p[1])), int(round(p[0]))])  # noqa: E731
    skin = at((lm[1] + lm[31]) / 2)  # the cheek between jaw and nose
    assert at((lm[62] + lm[66]) / 2) < 0.5 * skin  # the open mouth is dark
    for eye in (slice(36, 42), slice(42, 48)):
        assert at(lm[eye].mean(axis=0)) < 0.6 * skin  # the iris sits between the lids
    # the same landmarks come out of render_face under a pose, transformed by that pose
    posed = syn.Pose(roll=math.radians(10), dx=4.0, dy=-3.0)
    _, lm2 = syn.render_face(idn, syn.expression_aus(idn, "surprise", 1.0), scene, posed, rng)
    centre = np.array(scene.center)
    c, s = math.cos(posed.roll), math.sin(posed.roll)
    expected = (lm - centre) @ np.array([[c, -s], [s, c]]).T + centre + [4.0, -3.0]
    assert np.allclose(lm2, expected, atol=1e-6)


def test_valence_sign_follows_the_emotion(written):
    rng = np.random.default_rng(0)
    for level in (0.25, 0.5, 1.0):
        for _ in range(50):
            assert syn.valence_arousal("happiness", level, rng)[0] > 0
            assert syn.valence_arousal("sadness", level, rng)[0] < 0
            assert syn.valence_arousal("anger", level, rng)[0] < 0
    assert syn.valence_arousal("surprise", 1.0)[1] > syn.valence_arousal("sadness", 1.0)[1]
    _, summaries = written
    for rec in summaries["affectnet"].records:
        if rec["emotion"] == "happiness":
            assert rec["valence"] > 0
        elif rec["emotion"] in ("sadness", "anger", "disgust", "fear"):
            assert rec["valence"] < 0
        if rec["emotion"] is not None:
            assert -1 <= rec["valence"] <= 1 and -1 <= rec["arousal"] <= 1
    last = {}
    for rec in summaries["afewva"].records:
        last[rec["sequence"]] = rec  # the apex frame comes last
    for rec in last.values():
        if rec["expressed"] == "happiness":
            assert rec["valence"] > 0
        elif rec["expressed"] in ("sadness", "anger"):
            assert rec["valence"] < 0


def test_afewva_identity_says_nothing_of_the_emotion(tmp_path):
    """Each actor's clips play different emotions and every emotion is played about equally
    often, so a valence/arousal regressor cannot learn who instead of how."""
    summary = syn.write_layout("afewva", tmp_path, syn.SyntheticConfig(
        subjects=16, frames=2, size=32, layouts=("afewva",)))
    clips = {(r["subject"], r["sequence"]): r["expressed"] for r in summary.records}
    by_actor: dict[str, list[str]] = {}
    for (actor, _), emotion in clips.items():
        by_actor.setdefault(actor, []).append(emotion)
    assert len(by_actor) == 16
    assert all(len(e) == CLIPS_PER_ACTOR == len(set(e)) for e in by_actor.values())
    counts = Counter(clips.values())
    assert set(counts) == set(EMOTIONS)  # 16 actors x 4 clips = 64 = 8 emotions x 8
    assert set(counts.values()) == {16 * CLIPS_PER_ACTOR // len(EMOTIONS)}, counts


def test_identity_is_a_nuisance():
    """Two people with the same (neutral) expression differ more than one person's frames."""
    rng = np.random.default_rng(0)
    scene = syn.make_scene(rng, (64, 64), 0.8, mode="L", nuisance=0.0)
    faces = []
    for seed in range(6):
        idn = _identity(100 + seed)
        faces.append(syn.render_face(idn, syn.expression_aus(idn, "neutral", 0.0), scene,
                                     rng=np.random.default_rng(1))[0].astype(float))
    within = []
    for seed in range(6):
        seq = syn.render_sequence(_identity(100 + seed), "neutral", frames=4,
                                  rng=np.random.default_rng(seed), canvas=(64, 64),
                                  face_frac=0.8, mode="L", nuisance=1.0)
        within += [np.abs(seq.images[k].astype(float) - seq.images[0]).mean() for k in (1, 2, 3)]
    between = [np.abs(a - b).mean() for i, a in enumerate(faces) for b in faces[i + 1:]]
    assert min(between) > max(within), (min(between), max(within))


# ------------------------------------------------------------------------------------------
# round trips through the dataset readers

def _reader(name: str):
    from ferbench.datasets import get_reader

    return get_reader(name)


def _by_path(table):
    return {Path(p).as_posix(): row for p, row in zip(table["path"], table.itertuples())}


@pytest.mark.parametrize("layout", ["ckplus", "oulu", "afewva"])
def test_sequence_layouts_round_trip_through_their_readers(written, layout):
    out, summaries = written
    reader = _reader(layout)
    result = reader.read(out / layout, strict=True)
    table, s = result.table, summaries[layout]
    assert len(table) == s.images == len(s.records)
    rows = _by_path(table)
    assert set(rows) == {rec["path"] for rec in s.records}
    for rec in s.records:
        row = rows[rec["path"]]
        assert row.emotion == rec["emotion"], rec["path"]
        assert bool(row.apex) == rec["apex"], rec["path"]
        if layout == "afewva":
            assert row.subject == rec["subject"]
            assert row.valence == pytest.approx(rec["valence"])
            assert row.arousal == pytest.approx(rec["arousal"])
    assert table["subject"].nunique() == SMALL.subjects
    assert table["sequence"].nunique() == s.sequences
    first = table.iloc[0]
    image = reader.load_image(out / layout, first)
    with Image.open(out / layout / first["path"]) as im:
        assert image.shape[:2] == (im.height, im.width)
    if layout in ("ckplus", "afewva"):  # the readers keep the landmarks we wrote
        lm = np.asarray(first["landmarks"], float).reshape(68, 2)
        assert np.all((lm >= 0) & (lm <= [image.shape[1], image.shape[0]]))


def test_affectnet_round_trips_through_its_reader(written):
    out, summaries = written
    result = _reader("affectnet").read(out / "affectnet")
    table, records = result.table, summaries["affectnet"].records
    rows = _by_path(table)
    labelled = [rec for rec in records if rec["emotion"] is not None]
    assert {r for r, row in rows.items() if row.emotion is not None} == \
        {rec["path"] for rec in labelled}
    for rec in labelled:
        row = rows[rec["path"]]
        assert row.emotion == rec["emotion"]
        assert row.valence == pytest.approx(rec["valence"], abs=1e-6)
        assert row.arousal == pytest.approx(rec["arousal"], abs=1e-6)
    # codes 8-10 are either kept unlabelled or counted as skipped, never lost silently
    extra = len(records) - len(labelled)
    assert len(table) - len(labelled) + sum(result.skipped.values()) == extra
    splits = {split: {rows[rec["path"]].split for rec in labelled if rec["split"] == split}
              for split in ("training", "validation")}
    assert len(splits["training"]) == len(splits["validation"]) == 1
    assert splits["training"] != splits["validation"]


def test_fer2013_round_trips_through_its_reader(written):
    out, summaries = written
    reader = _reader("fer2013")
    result = reader.read(out / "fer2013", strict=True)
    table, records = result.table, summaries["fer2013"].records
    assert len(table) == len(records)
    assert list(table["emotion"]) == [rec["emotion"] for rec in records]
    assert list(table["split"]) == [rec["split"] for rec in records]
    images = list(reader.iter_images(out / "fer2013", table.head(3)))
    assert all(isinstance(im, np.ndarray) and im.shape == (48, 48) for im in images)
