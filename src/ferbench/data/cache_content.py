"""The pixels of a cache's face arrays as part of its fingerprint.

``prepare`` hashes each ``faces_{size}.npy`` while it writes it (sha256 of the pixel bytes,
header left out, rows in cache order) and records in report.json ``content``::

    {"faces_64.npy": {"sha256": ..., "bytes": file size, "mtime_ns": modification time,
                      "data_offset": where the pixels start, "blocks": [[offset, sha256], ...]}}

``blocks`` are SAMPLE_BLOCKS blocks of BLOCK bytes spread evenly over the pixels (all of
them for a small array). Two checks read these:

  quick   (``train``/``pretrain`` at start, ``doctor``): the size must match; when the
          modification time is the recorded one, the sampled blocks are re-hashed (about 1 MiB
          read whatever the array's size); when it is not (the file was written since, or
          copied without its times), the whole array is re-hashed.
  deep    (``doctor --deep``): the whole array is re-hashed, whatever its times say.

A flipped byte in a file whose times were left alone is caught by the quick check only when it
lies in a sampled block; ``doctor --deep`` catches any.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ferbench.errors import FerbenchError

#: bytes per sampled block, and how many blocks the quick check reads
BLOCK = 1 << 16
SAMPLE_BLOCKS = 16
#: bytes read at a time by the full re-hash
READ_CHUNK = 1 << 22


class PixelHasher:
    """sha256 of the rows of one face array, fed in cache order as prepare writes them."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, face: np.ndarray) -> None:
        self._digest.update(np.ascontiguousarray(face, dtype=np.uint8).data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def data_offset(path: str | os.PathLike) -> int:
    """Where an .npy file's array data start (after its header)."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unknown .npy version {version}")
        return f.tell()


def block_offsets(data_bytes: int) -> list[int]:
    """File-independent positions (relative to the data start) of the sampled blocks."""
    if data_bytes <= BLOCK * SAMPLE_BLOCKS:
        return list(range(0, data_bytes, BLOCK))
    last = data_bytes - BLOCK
    return [last * i // (SAMPLE_BLOCKS - 1) for i in range(SAMPLE_BLOCKS)]


def _read_block(f: Any, start: int) -> bytes:
    f.seek(start)
    return f.read(BLOCK)


def record(path: str | os.PathLike, sha256: str) -> dict[str, Any]:
    """What report.json keeps of a finished face array whose pixels hashed to ``sha256``."""
    stat = os.stat(path)
    offset = data_offset(path)
    with open(path, "rb") as f:
        blocks = [[start, hashlib.sha256(_read_block(f, offset + start)).hexdigest()]
                  for start in block_offsets(stat.st_size - offset)]
    return {"sha256": sha256, "bytes": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns),
            "data_offset": int(offset), "blocks": blocks}


def full_sha256(path: str | os.PathLike, offset: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        for chunk in iter(lambda: f.read(READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def problem(path: str | os.PathLike, rec: Any, deep: bool = False) -> str | None:
    """Why the face array at ``path`` no longer holds what prepare recorded (``rec``), or None.
    Quick check unless ``deep`` (see the module docstring)."""
    path = Path(path)
    if not isinstance(rec, Mapping) or not rec.get("sha256"):
        return "no pixel hash recorded (prepared by an older ferbench)"
    try:
        stat = path.stat()
        if stat.st_size != rec.get("bytes"):
            return f"{stat.st_size} bytes, prepare wrote {rec.get('bytes')} (truncated or replaced)"
        offset = int(rec.get("data_offset") or data_offset(path))
        if deep or stat.st_mtime_ns != rec.get("mtime_ns"):
            if full_sha256(path, offset) != rec["sha256"]:
                return "pixels differ from what prepare wrote (sha256 of the whole array)"
            return None
        with open(path, "rb") as f:
            for start, want in rec.get("blocks") or []:
                if hashlib.sha256(_read_block(f, offset + int(start))).hexdigest() != want:
                    return f"pixels differ from what prepare wrote (block at byte {offset + int(start)})"
    except (OSError, ValueError) as err:
        return f"unreadable ({type(err).__name__}: {err})"
    return None


def check_faces(cache: str | os.PathLike, size: int, report: Mapping[str, Any]) -> None:
    """Refuse (one line naming the file) a face array whose pixels or shape are not what
    prepare recorded in ``report``. A cache prepared before pixel hashes is let through
    (``ferbench doctor`` calls it stale)."""
    name = f"faces_{int(size)}.npy"
    path = Path(cache) / name
    content = report.get("content")
    if isinstance(content, Mapping) and name in content:
        why = problem(path, content[name])
        if why:
            raise FerbenchError(f"{path}: {why} since prepare; rerun `ferbench prepare`")


def check_channels(cache: str | os.PathLike, size: int, cached: int, wanted: int, run: str) -> None:
    """A job whose networks take ``wanted`` channels refuses a cache of fewer: a grey cache
    replicated to RGB is another input than the method was configured for. A colour cache
    serves a grey method (converted on the device, as the workflow's 3-channel caches do)."""
    if cached < wanted:
        raise FerbenchError(
            f"{Path(cache) / f'faces_{int(size)}.npy'}: cache holds {cached} channel(s), method "
            f"{run!r} takes {wanted} (methods.{run}.channels); prepare with --channels {wanted}")
