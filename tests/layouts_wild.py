"""Small on-disk fixtures reproducing the in-the-wild datasets' layouts and quirks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (8, 6), value: int = 100,
                fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


def landmarks_text(offset: float) -> str:
    # Exponent notation, as the legacy CSV writes some numbers.
    return ";".join(f"{offset + k:.4e}" for k in range(136))


# --------------------------------------------------------------------------- AffectNet

AFFECTNET_TRAIN_ROWS = [
    # path, expression, valence, arousal  (-> line in training.csv = index + 2)
    ("1/a.jpg", "1", "0.5", "-2"),           # happiness, arousal marker -> NaN
    ("1/b.JPG", "6", "-1.0e-01", "2.5e-01"),  # anger, exponent floats, upper-case extension
    ("1/c.tif", "7", "0", "0"),              # contempt, tif
    ("2/d.bmp", "0", "-1", "1"),             # neutral, bmp, range edges
    ("2/e.jpg", "8", "0.3", "0.4"),          # none: kept as a V/A sample
    ("2/f.jpg", "9", "-2", "-2"),            # uncertain without V/A: skipped
    ("2/g.jpg", "10", "-2.0", "-2"),         # non-face without V/A: skipped
    ("2/missing.jpg", "2", "0.1", "0.1"),    # not on disk
    ("2/h.jpg", "3", "1.5", "0"),            # valence out of range
    ("2/i.jpg", "", "0.1", "0.1"),           # expression missing
    ("2/broken.jpg", "4", "0.2", "0.2"),     # broken file: found at load time
    ("2/k.jpg", "5", "0.0", "0.0"),          # on disk as k.JPG
]
AFFECTNET_VAL_ROWS = [
    ("1/v1.png", "5", "0.1", "0.2"),
    ("1/v2.jpg", "2", "-0.3", "-2"),
]


def affectnet_csv(root: Path, nested: bool = True) -> Path:
    """Legacy CSV release: CSVs in Manually_Annotated_file_lists/, images one folder down."""
    images = (root / "Manually_Annotated" if nested else root) / "Manually_Annotated_Images"
    for rel, fmt in [("1/a.jpg", "JPEG"), ("1/b.JPG", "JPEG"), ("1/c.tif", "TIFF"),
                     ("2/d.bmp", "BMP"), ("2/e.jpg", "JPEG"), ("2/f.jpg", "JPEG"),
                     ("2/g.jpg", "JPEG"), ("2/h.jpg", "JPEG"), ("2/i.jpg", "JPEG"),
                     ("2/k.JPG", "JPEG"), ("1/v1.png", "PNG"), ("1/v2.jpg", "JPEG")]:
        write_image(images / rel, fmt=fmt)
    (images / "2" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    header = ("#subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
              "expression,valence,arousal\n")
    lines = [header]
    for k, (rel, expr, val, aro) in enumerate(AFFECTNET_TRAIN_ROWS):
        lines.append(f"{rel},{10 + k},{12 + k},{50 + k},{60 + k},{landmarks_text(k)},"
                     f"{expr},{val},{aro}\n")
    (lists / "training.csv").write_text("".join(lines))
    # The validation list ships without a header row.
    lines = [f"{rel},1,2,30,40,{landmarks_text(100)},{expr},{val},{aro}\n"
             for rel, expr, val, aro in AFFECTNET_VAL_ROWS]
    (lists / "validation.csv").write_text("".join(lines))
    return root


def affectnet_npy(root: Path) -> Path:
    """Current release: per-image 0-d unicode npy labels; train and val ids overlap."""
    sets = {
        "train_set": {"0": ("3", "0.785714", "-0.5"), "1": ("1", "1e-1", "0.25"),
                      "2": ("8", "-2", "-2"), "4": ("0", "5", "0")},
        "val_set": {"0": ("0", "-2", "0.1"), "1": ("7", "0.2", "-0.2")},
    }
    for set_name, ids in sets.items():
        images, ann = root / set_name / "images", root / set_name / "annotations"
        ann.mkdir(parents=True, exist_ok=True)
        for sid, (exp, val, aro) in ids.items():
            write_image(images / f"{sid}.jpg")
            np.save(ann / f"{sid}_exp.npy", np.array(exp))
            np.save(ann / f"{sid}_val.npy", np.array(val))
            np.save(ann / f"{sid}_aro.npy", np.array(aro))
            np.save(ann / f"{sid}_lnd.npy", np.arange(136, dtype=np.float64) + int(sid))
    train = root / "train_set"
    write_image(train / "images" / "3.jpg")                 # _aro.npy missing
    np.save(train / "annotations" / "3_exp.npy", np.array("2"))
    np.save(train / "annotations" / "3_val.npy", np.array("0.1"))
    np.save(train / "annotations" / "9_exp.npy", np.array("2"))  # no image
    write_image(train / "images" / "5.jpg")                 # corrupt annotation
    (train / "annotations" / "5_exp.npy").write_bytes(b"garbage")
    np.save(train / "annotations" / "5_val.npy", np.array("0.1"))
    np.save(train / "annotations" / "5_aro.npy", np.array("0.1"))
    return root


# --------------------------------------------------------------------------- AFEW-VA

def afewva_video(folder: Path, video: str, actor: str, labels: dict[str, tuple],
                 on_disk: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in on_disk:
        write_image(folder / f"{stem}.png", fmt="PNG")
    frames = {key: {"valence": v, "arousal": a,
                    "landmarks": [[float(k), float(k) + 0.5] for k in range(68)]}
              for key, (v, a) in labels.items()}
    (folder / f"{video}.json").write_text(json.dumps(
        {"actor": actor, "video_id": video, "frames": frames}))


def afewva(root: Path, nested: bool = True) -> Path:
    base = root / "AFEW-VA" / "01" if nested else root
    afewva_video(base / "001", "001", "Alice",
                 {"00000": (5, -3), "00001": (10, -10), "00002": (11, 0), "00004": (1, 1)},
                 ["00000", "00001", "00002", "00003"])
    base2 = root / "AFEW-VA" / "02" if nested else root
    afewva_video(base2 / "002", "002", "Bob", {"00000": (0, 7)}, ["00000"])
    return root


# --------------------------------------------------------------------------- FER-2013

def pixel_row(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=48 * 48, dtype=np.uint8)


def pixels_text(arr: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in arr)


FER_ROWS = [
    # emotion, pixels seed (or a literal bad string), Usage
    ("0", 0, "Training"),       # row 0: anger
    ("3", 1, "PublicTest"),     # row 1: happiness -> val
    ("6", 2, "PrivateTest"),    # row 2: neutral -> test
    ("4", "short", "Training"),  # row 3: 2303 pixels
    ("5", "text", "Training"),  # row 4: non-numeric
    ("2", 0, "Training"),       # row 5: exact duplicate of row 0 (kept)
    ("7", 3, "Training"),       # row 6: emotion code out of range
    ("1", 4, "Bogus"),          # row 7: unknown Usage
    ("4", 5, "Training"),       # row 8: sadness
]


def fer_pixels(spec) -> str:
    if spec == "short":
        return pixels_text(pixel_row(9)[:-1])
    if spec == "text":
        return pixels_text(pixel_row(9)[:-1]) + " x"
    return pixels_text(pixel_row(spec))


def fer2013_csv(root: Path, icml: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if icml:
        lines = ["emotion, Usage, pixels\n"]
        lines += [f"{e},{u},{fer_pixels(p)}\n" for e, p, u in FER_ROWS]
        (root / "icml_face_data.csv").write_text("".join(lines))
    else:
        lines = ["emotion,pixels,Usage\n"]
        lines += [f"{e},{fer_pixels(p)},{u}\n" for e, p, u in FER_ROWS]
        (root / "fer2013.csv").write_text("".join(lines))
    return root


def fer2013_torchvision(root: Path) -> Path:
    base = root / "fer2013"
    base.mkdir(parents=True, exist_ok=True)
    (base / "train.csv").write_text(
        "emotion,pixels\n" + f"5,{fer_pixels(0)}\n" + f"1,{fer_pixels(1)}\n")
    (base / "test.csv").write_text("pixels\n" + f"{fer_pixels(2)}\n")
    return root


def fer2013_folders(root: Path) -> Path:
    for rel in ["train/angry/Training_10.jpg", "train/happy/Training_11.jpg",
                "test/sad/PublicTest_12.jpg", "test/neutral/PrivateTest_13.jpg",
                "test/surprise/im5.png", "train/unknown/Training_14.jpg"]:
        write_image(root / rel, size=(48, 48))
    (root / "train" / "angry" / ".DS_Store").write_bytes(b"\0")
    return root


# --------------------------------------------------------------------------- Aff-Wild2

def affwild2(root: Path, task_dir: str = "VA_Estimation_Challenge") -> Path:
    ann = root / "annotations" / task_dir
    crops = root / "cropped_aligned"
    train = ann / "Train_Set"
    train.mkdir(parents=True, exist_ok=True)
    (train / "1-30-1280x720.txt").write_text(
        "valence,arousal\n0.5,-0.25\n-5,-5\n-5.0,-5.0\n0.1,0.2\n1.5,0\nabc,0.1\n-1e-1,1.0\n")
    for k in (1, 2, 3, 5, 6, 7):  # frame 4 missing
        write_image(crops / "1-30-1280x720" / f"{k:05d}.jpg")
    val = ann / "Validation_Set"
    val.mkdir(parents=True, exist_ok=True)
    (val / "video5_left.txt").write_text("valence,arousal\n0.3,0.4\n-0.3,-0.4\n")
    (val / "video5_right.txt").write_text("valence,arousal\n0.9,-0.9\n\n")
    for k in (1, 2):
        write_image(crops / "video5_left" / f"{k:05d}.jpg")
    write_image(crops / "video5_right" / "00001.jpg")
    return root
