"""Builders for small on-disk trees in the real layouts of CK+, CK+48, MMI, Oulu-CASIA and JAFFE."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def grey(value: int, h: int = 6, w: int = 8) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def rgb(r: int, g: int, b: int, h: int = 6, w: int = 8) -> np.ndarray:
    out = np.zeros((h, w, 3), dtype=np.uint8)
    out[...] = (r, g, b)
    return out


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def ds_store(*folders: Path) -> None:
    for folder in folders:
        write(folder / ".DS_Store", b"\x00\x00\x00\x01Bud1\x00junk")


def exp_float(value: float) -> str:
    """CK+ style: ``   3.0000000e+00`` (leading spaces, 7-digit exponent notation)."""
    return f"   {value:.7e}"


def landmarks_text(points: np.ndarray) -> str:
    """68 lines ``x y`` of exponent floats separated by runs of spaces, as in CK+."""
    return "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in points)


# -- CK+ original -----------------------------------------------------------------------------
def ckplus_original(
    root: Path,
    sequences: dict[tuple[str, str], dict],
    nested: bool = True,
) -> dict[str, Path]:
    """Write a CK+ distribution under ``root``.

    ``sequences[(subject, seq)]`` = {"frames": {n: ndarray}, "label": (frame, text) or None,
    "emotion_folder": bool (empty folder when unlabelled), "landmarks": {n: 68x2 array}}.
    Nested like the real zips: ``extended-cohn-kanade-images/cohn-kanade-images``,
    ``Emotion_labels/Emotion``, ``Landmarks/Landmarks``, with ``.DS_Store`` at every level.
    """
    images = root / "extended-cohn-kanade-images" / "cohn-kanade-images" if nested else root / "cohn-kanade-images"
    emotion = root / "Emotion_labels" / "Emotion" if nested else root / "Emotion"
    marks = root / "Landmarks" / "Landmarks" if nested else root / "Landmarks"
    for folder in (root, images, images.parent, emotion, emotion.parent, marks, marks.parent):
        folder.mkdir(parents=True, exist_ok=True)
    ds_store(root, images, images.parent, emotion, emotion.parent, marks, marks.parent)
    cache: dict[bytes, bytes] = {}
    for (subject, seq), spec in sequences.items():
        folder = images / subject / seq
        for n, array in spec["frames"].items():
            key = array.tobytes() + bytes(array.shape)
            data = cache.setdefault(key, png_bytes(array))
            write(folder / f"{subject}_{seq}_{n:08d}.png", data)
        ds_store(folder, folder.parent)
        efolder = emotion / subject / seq
        if spec.get("label") is not None:
            frame, text = spec["label"]
            write(efolder / f"{subject}_{seq}_{frame:08d}_emotion.txt", text)
            ds_store(efolder, efolder.parent)
        elif spec.get("emotion_folder", True):
            efolder.mkdir(parents=True, exist_ok=True)  # the real tree has empty folders
            ds_store(efolder.parent)
        for n, points in spec.get("landmarks", {}).items():
            mfolder = marks / subject / seq
            write(mfolder / f"{subject}_{seq}_{n:08d}_landmarks.txt", landmarks_text(points))
            ds_store(mfolder)
    return {"images": images, "emotion": emotion, "landmarks": marks}


# -- CK+48 -----------------------------------------------------------------------------------
def ck48(root: Path, files: dict[str, Iterable[str]]) -> Path:
    """``files[class] = ["S010_004_00000017", ...]`` -> 48x48 grey PNGs under ``root/CK+48``."""
    base = root / "CK+48"
    data = png_bytes(grey(128, 48, 48))
    for cls, stems in files.items():
        for stem in stems:
            write(base / cls / f"{stem}.png", data)
        ds_store(base / cls)
    ds_store(base, root)
    return base


# -- MMI -------------------------------------------------------------------------------------
def mmi_frame(i: int, h: int = 24, w: int = 32) -> np.ndarray:
    """RGB frame i of a test video: (200, 20*i, 10) everywhere."""
    return rgb(200, (20 * i) % 256, 10, h, w)


def write_video(path: Path, n_frames: int) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 24, (32, 24))
    assert writer.isOpened()
    for i in range(1, n_frames + 1):
        writer.write(cv2.cvtColor(mmi_frame(i), cv2.COLOR_RGB2BGR))  # OpenCV writes BGR
    writer.release()
    return path


def session_xml(view: int | None, subject: str | None, media: str) -> str:
    subj = f'  <subject id="{subject}" />\n' if subject is not None else ""
    view_attr = f' view="{view}"' if view is not None else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<session sessionId="x" mediaFile="{media}">\n{subj}'
        f'  <track id="0" type="Video"{view_attr} filename="{media}">\n'
        '    <annotation id="1" type="FACS" filename="x-oao_aucs.xml" />\n'
        "  </track>\n</session>\n"
    )


def sid_xml(emotion: int | str | None) -> str:
    tags = '  <Metatag Name="Gender" Value="Female" />\n'
    if emotion is not None:
        tags += f'  <Metatag Name="Emotion" Value="{emotion}" />\n'
    return f'<?xml version="1.0" encoding="utf-8"?>\n<Metadata>\n{tags}</Metadata>\n'


def aucs_xml(units: dict[str, list[tuple[int, int]]]) -> str:
    """``units[au] = [(frame, type), ...]``; types 0 neutral, 1 onset, 2 apex, 3 offset."""
    body = ""
    for au, markers in units.items():
        body += f'  <ActionUnit Number="{au}">\n'
        body += "".join(f'    <Marker Frame="{f}" Type="{t}" />\n' for f, t in markers)
        body += "  </ActionUnit>\n"
    return f'<?xml version="1.0" encoding="utf-8"?>\n<ActionUnits>\n{body}</ActionUnits>\n'


def mmi_session(
    sessions: Path,
    name: str,
    sid: str,
    *,
    view: int | None = 0,
    subject: str | None = None,
    emotion: int | str | None = None,
    n_frames: int = 0,
    stills: int = 0,
    aucs: dict[str, list[tuple[int, int]]] | None = None,
    broken_video: bool = False,
) -> Path:
    folder = sessions / name
    media = f"{sid}.avi" if not stills else f"{sid}_01.png"
    write(folder / "session.xml", session_xml(view, subject, media))
    write(folder / f"{sid}.xml", sid_xml(emotion))
    if broken_video:
        write(folder / f"{sid}.avi", b"RIFF\x00\x00\x00\x00AVI not really a video")
    elif n_frames:
        write_video(folder / f"{sid}.avi", n_frames)
    for i in range(1, stills + 1):
        write(folder / f"{sid}_{i:02d}.png", png_bytes(grey(40 * i)))
    if aucs is not None:
        write(folder / f"{sid}-oao_aucs.xml", aucs_xml(aucs))
    ds_store(folder)
    return folder


# -- Oulu-CASIA ------------------------------------------------------------------------------
OULU_EMOTIONS = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")


def jpeg_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG")
    return buf.getvalue()


def oulu(
    root: Path,
    conditions: Iterable[tuple[str, str]],
    subjects: Iterable[str],
    emotions: Iterable[str] = OULU_EMOTIONS,
    n_frames: int = 3,
) -> Path:
    """``root/B_OriginalImg/OriginalImg/<spectrum>/<light>/<subject>/<Emotion>/000.jpeg``..."""
    original = root / "B_OriginalImg" / "OriginalImg"
    data = jpeg_bytes(rgb(90, 100, 110, 24, 32))
    emotions = tuple(emotions)
    for spectrum, light in conditions:
        for subject in subjects:
            for emo in emotions:
                folder = original / spectrum / light / subject / emo
                for i in range(n_frames):
                    write(folder / f"{i:03d}.jpeg", data)
                ds_store(folder)
            ds_store(original / spectrum / light / subject)
        ds_store(original / spectrum / light, original / spectrum)
    ds_store(original, original.parent, root)
    return original


# -- JAFFE -----------------------------------------------------------------------------------
def palette_tiff(path: Path, indices: np.ndarray, palette_value) -> Path:
    """A mode-P TIFF whose palette entry i is grey level ``palette_value(i)``."""
    h, w = indices.shape
    image = Image.frombytes("P", (w, h), indices.astype(np.uint8).tobytes())
    palette = []
    for i in range(256):
        v = int(palette_value(i))
        palette += [v, v, v]
    image.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="TIFF")
    return path


def grey_tiff(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="TIFF")
    return path
