"""MMI Facial Expression Database, as downloaded from its web interface::

    <root>/.../Sessions/<session>/session.xml             <subject id=..>, <track view=..>
    <root>/.../Sessions/<session>/<sid>.avi               (or still images instead of a video)
    <root>/.../Sessions/<session>/<sid>.xml               <Metatag Name="Emotion" Value="k"/>
    <root>/.../Sessions/<session>/<sid>-oao_aucs.xml      <ActionUnit Number=..><Marker Frame=f Type=t/>

Any folder holding a ``session.xml`` up to four levels below ``root`` is a session.

Choices made here:

* Views: ``session.xml``'s ``<track view=..>`` is 0 for frontal, 2 for the dual (frontal+profile
  side by side) recordings. Only view 0 is read by default (the published protocol uses frontal
  sequences, and a dual-view frame holds a profile face that face detection could pick);
  ``MMIReader(views=("0", "2"))`` reads both. Excluded sessions are counted, not errors.
* Emotion codes 1..6 map to the basic six; any other code leaves emotion None and is counted
  ("emotion code not in the 6 basic"). A session without the metatag is unlabelled (None).
* Subject: the ``id`` of ``<subject>`` in ``session.xml`` (or a ``subjectId``-like attribute),
  written ``S%03d`` when numeric; failing that the ``S###`` prefix of the media file name.
* Frames are numbered from 1 in decoding order, like the ``Frame`` attribute of the AU file.
  Rows of a video have path ``<session>/<sid>.avi#<frame>``; frames are counted by decoding
  (container headers can be wrong).
* Apex: per frame, the number of action units in their apex phase (from a Type 2 marker to the
  next marker); the middle of the longest run of frames with the highest count. Without an AU
  file (or apex markers) the middle frame of the sequence.
"""

from __future__ import annotations

import collections
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from ferbench.datasets._lab import IMAGE_SUFFIXES, entries, find_dirs, note, rel
from ferbench.datasets.base import (
    BASIC_SIX, SIX_AND_NEUTRAL, Reader, ReadResult, SkipLog, make_table, open_image, require_root,
)
from ferbench.errors import FerbenchError

CODES: dict[int, str] = {
    1: "anger", 2: "disgust", 3: "fear", 4: "happiness", 5: "sadness", 6: "surprise",
}
VIDEO_SUFFIXES = frozenset({".avi", ".mpg", ".mpeg", ".mp4", ".wmv", ".mov"})
_SUBJECT_FROM_NAME = re.compile(r"^S(\d+)", re.IGNORECASE)
_SUBJECT_ATTRS = ("subjectid", "subject_id", "subject")


def _has_session_xml(folder: Path) -> bool:
    return (folder / "session.xml").is_file()


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError, UnicodeDecodeError) as err:
        raise FerbenchError(f"{path}: malformed MMI XML file ({err})") from err


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1].lower()


def split_key(path: str) -> tuple[str, int | None]:
    """``Sessions/1/S001-001.avi#12`` -> (``Sessions/1/S001-001.avi``, 12); stills -> (path, None)."""
    file, sep, key = path.rpartition("#")
    if sep and key.isdigit():
        return file, int(key)
    return path, None


def session_view(session_xml: ET.Element) -> str | None:
    for el in session_xml.iter():
        if _local(el.tag) == "track" and el.get("view") is not None:
            return el.get("view").strip()
    return None


def session_subject(session_xml: ET.Element) -> str | None:
    for el in session_xml.iter():
        if _local(el.tag) == "subject" and el.get("id"):
            return el.get("id").strip()
    for el in session_xml.iter():
        for key, value in el.attrib.items():
            if key.lower() in _SUBJECT_ATTRS and value.strip():
                return value.strip()
    return None


def normalise_subject(value: str) -> str:
    return f"S{int(value):03d}" if value.isdigit() else value


def emotion_code(path: Path) -> int | None:
    """The ``Value`` of ``<Metatag Name="Emotion">``; None when the file has no such tag."""
    for el in _parse_xml(path).iter():
        if _local(el.tag) == "metatag" and (el.get("Name") or el.get("name") or "").lower() == "emotion":
            value = (el.get("Value") or el.get("value") or "").strip()
            try:
                number = float(value)
                if number != int(number):
                    raise ValueError(value)
            except (ValueError, OverflowError) as err:
                raise FerbenchError(f"{path}: malformed MMI emotion metatag (Value={value!r})") from err
            return int(number)
    return None


def apex_from_aucs(path: Path, n_frames: int) -> int | None:
    """Apex frame (1-based) from the frame-level AU file; None when it marks no apex phase."""
    counts = np.zeros(n_frames + 1, dtype=np.int64)  # index = frame number, 0 unused
    for au in _parse_xml(path).iter():
        if _local(au.tag) != "actionunit":
            continue
        markers = []
        for m in au:
            if _local(m.tag) != "marker":
                continue
            try:
                markers.append((int(float(m.get("Frame", ""))), str(m.get("Type", "")).strip()))
            except ValueError as err:
                raise FerbenchError(f"{path}: malformed MMI AU marker {m.attrib}") from err
        markers.sort()
        for i, (frame, kind) in enumerate(markers):
            if kind != "2":
                continue
            end = markers[i + 1][0] - 1 if i + 1 < len(markers) else n_frames
            lo, hi = max(frame, 1), min(end, n_frames)
            if lo <= hi:
                counts[lo : hi + 1] += 1
    best = counts.max()
    if best == 0:
        return None
    # longest run of frames at the highest count; ties -> the earliest run
    top = counts == best
    start, run = None, (0, -1)
    for frame in range(1, n_frames + 2):
        if frame <= n_frames and top[frame]:
            start = frame if start is None else start
        elif start is not None:
            if frame - start > run[1] - run[0] + 1:
                run = (start, frame - 1)
            start = None
    return (run[0] + run[1]) // 2


def count_frames(path: Path) -> int:
    """Frames decodable from a video (0 when it cannot be opened)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        n = 0
        while cap.grab():
            n += 1
        return n
    except cv2.error:
        return 0
    finally:
        cap.release()


def decode_frames(path: Path, wanted: Iterable[int]) -> dict[int, np.ndarray | FerbenchError]:
    """Decode ``path`` once and return the wanted 1-based frames as RGB (errors for the missing)."""
    import cv2

    wanted = set(wanted)
    out: dict[int, np.ndarray | FerbenchError] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            last = max(wanted, default=0)
            frame = 0
            while frame < last:
                ok = cap.grab()
                if not ok:
                    break
                frame += 1
                if frame in wanted:
                    ok, image = cap.retrieve()
                    if ok and image is not None:
                        out[frame] = np.ascontiguousarray(_to_rgb(image))
    except cv2.error:
        pass  # frames not decoded so far become errors below
    finally:
        cap.release()
    for frame in wanted - set(out):
        out[frame] = FerbenchError(f"{path}#{frame}: video frame could not be decoded")
    return out


def _to_rgb(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        return image.astype(np.uint8, copy=False)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class MMIReader(Reader):
    name = "mmi"
    kind = "sequence"
    task = "classification"
    has_landmarks = False
    fixed_camera = True
    default_protocol = {"kind": "kfold", "folds": 10, "classes": 6,
                        "selection": "peak", "task": "classification"}
    class_sets = {6: BASIC_SIX, 7: SIX_AND_NEUTRAL}

    def __init__(self, views: Iterable[str | int] = ("0",)) -> None:
        if isinstance(views, (str, int)):
            views = (views,)
        self.views = tuple(str(v) for v in views)

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        root = require_root(root, self.name)
        log = SkipLog(strict)
        sessions = find_dirs(root, _has_session_xml, max_depth=4)
        if not sessions:
            raise FerbenchError(
                f"{root}: not an MMI layout; expected Sessions/<session>/session.xml (with <sid>.avi "
                "and <sid>.xml) within four levels"
            )
        by_name: dict[str, Path] = {}
        for session in sessions:
            if session.name in by_name:
                raise FerbenchError(
                    f"{session}: MMI session id {session.name!r} also at {by_name[session.name]}; "
                    "point the root at one copy of the Sessions folder"
                )
            by_name[session.name] = session
        rows: list[dict[str, Any]] = []
        for session in sorted(sessions, key=lambda p: (len(p.name), p.name)):
            rows.extend(self._read_session(root, session, log))
        return ReadResult(make_table(rows, self.name), log.counts, "original", precropped=False)

    def _read_session(self, root: Path, session: Path, log: SkipLog) -> list[dict[str, Any]]:
        meta = _parse_xml(session / "session.xml")
        view = session_view(meta)
        if view is not None and view not in self.views:
            note(log, f"session with track view {view} not read (views={','.join(self.views)})")
            return []
        files = [Path(e.path) for e in entries(session) if e.is_file()]
        videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
        stills = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        label_xmls = [
            f for f in files
            if f.suffix.lower() == ".xml" and f.name.lower() != "session.xml"
            and not f.stem.lower().endswith("-oao_aucs")
        ]
        if not videos and not stills:
            log.skip("MMI session has no video or images", session)
            return []
        # (sequence id, stem naming the label files, media)
        if videos:
            groups = [(session.name if len(videos) == 1 else f"{session.name}_{v.stem}", v.stem, [v]) for v in videos]
        else:
            groups = [(session.name, stills[0].stem, stills)]

        declared = session_subject(meta)
        rows: list[dict[str, Any]] = []
        for sequence, stem, media in groups:
            subject = normalise_subject(declared) if declared else None
            if subject is None:
                m = _SUBJECT_FROM_NAME.match(stem)
                subject = f"S{int(m[1]):03d}" if m else None
            if subject is None:
                log.skip("MMI session names no subject (no <subject id> in session.xml, no S### file name)", session / "session.xml")
                continue
            label_xml = session / f"{stem}.xml"
            if not label_xml.is_file():
                label_xml = label_xmls[0] if len(label_xmls) == 1 else None
            code = emotion_code(label_xml) if label_xml is not None else None
            emotion = CODES.get(code) if code is not None else None

            if len(media) == 1 and media[0].suffix.lower() in VIDEO_SUFFIXES:
                n_frames = count_frames(media[0])
                if n_frames == 0:
                    log.skip("unreadable video", media[0])
                    continue
                paths = [f"{rel(media[0], root)}#{i}" for i in range(1, n_frames + 1)]
            else:
                n_frames = len(media)
                paths = [rel(p, root) for p in media]
            if code is not None and emotion is None:
                note(log, "emotion code not in the 6 basic")

            aucs = session / f"{stem}-oao_aucs.xml"
            if not aucs.is_file():
                found = [f for f in files if f.name.lower().endswith("-oao_aucs.xml")]
                aucs = found[0] if len(found) == 1 else None
            apex = apex_from_aucs(aucs, n_frames) if aucs is not None else None
            if apex is None:
                apex = (n_frames + 1) // 2
            for number, path in enumerate(paths, start=1):
                rows.append({
                    "sample_id": f"{sequence}_{number:04d}",
                    "subject": subject,
                    "sequence": sequence,
                    "frame": number,
                    "path": path,
                    "emotion": emotion,
                    "apex": number == apex,
                })
        return rows

    def load_image(self, root: Path, row: pd.Series) -> np.ndarray:
        file, frame = split_key(row["path"])
        if frame is None:
            return open_image(Path(root) / file)
        result = decode_frames(Path(root) / file, [frame])[frame]
        if isinstance(result, FerbenchError):
            raise result
        return result

    def iter_images(self, root: Path, table: pd.DataFrame) -> Iterator[np.ndarray | FerbenchError]:
        # Decode each video once, keeping only its requested frames until its last row is served.
        keys = [split_key(p) for p in table["path"]]
        wanted: dict[str, set[int]] = collections.defaultdict(set)
        remaining: collections.Counter = collections.Counter()
        for file, frame in keys:
            if frame is not None:
                wanted[file].add(frame)
                remaining[file] += 1
        cache: dict[str, dict[int, np.ndarray | FerbenchError]] = {}
        for file, frame in keys:
            if frame is None:
                try:
                    yield open_image(Path(root) / file)
                except FerbenchError as err:
                    yield err
                continue
            if file not in cache:
                cache[file] = decode_frames(Path(root) / file, wanted[file])
            yield cache[file][frame]
            remaining[file] -= 1
            if remaining[file] == 0:
                del cache[file]
