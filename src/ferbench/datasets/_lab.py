"""Small helpers shared by the lab-dataset readers (CK+, MMI, Oulu-CASIA, JAFFE).

These datasets ship as zip archives unpacked by hand, so the same quirks recur: roots nested a
level or two deeper than documented, and OS metadata files (``.DS_Store``, ``._*``,
``Thumbs.db``, ``__MACOSX``) at every level. Such metadata is not a sample and is never counted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ferbench.datasets.base import SkipLog

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


def is_junk(name: str) -> bool:
    """OS metadata left by archivers/file browsers: hidden files, AppleDouble, Thumbs.db."""
    return name.startswith(".") or name.lower() in _JUNK_NAMES


def entries(folder: Path) -> list[os.DirEntry]:
    """Non-junk entries of ``folder`` sorted by name."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not is_junk(e.name)), key=lambda e: e.name)


def find_dirs(root: Path, match: Callable[[Path], bool], max_depth: int = 3) -> list[Path]:
    """Directories satisfying ``match`` at most ``max_depth`` levels below ``root`` (root included).

    Breadth-first; a matching directory is not searched further, so a nested
    ``Landmarks/Landmarks`` yields whichever level ``match`` accepts first.
    """
    found: list[Path] = []
    level = [root]
    for depth in range(max_depth + 1):
        next_level: list[Path] = []
        for folder in level:
            if match(folder):
                found.append(folder)
                continue
            if depth < max_depth:
                try:
                    next_level.extend(Path(e.path) for e in entries(folder) if e.is_dir())
                except OSError:
                    continue
        level = next_level
    return found


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def note(log: SkipLog, reason: str) -> None:
    """Count a deliberate exclusion (a protocol choice, not bad data): never an error under --strict."""
    log.counts[reason] += 1
