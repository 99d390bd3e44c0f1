"""Output folders of `ferbench aggregate`: the files written into each, and safe file names.

Each output folder gets a manifest (.ferbench-aggregate.json) of the files this command wrote;
files listed by the previous manifest and not written this time (a dataset or method no longer in
--runs) are deleted. Files the command did not write are never touched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ferbench.io import write_json

MANIFEST = ".ferbench-aggregate.json"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "-", text)


class Outputs:
    """Tracks the files written into one folder, and removes the previous run's leftovers."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.written: set[str] = set()

    def path(self, name: str) -> Path:
        self.written.add(name)
        return self.folder / name

    def finish(self) -> list[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / MANIFEST
        removed = []
        previous: list[str] = []
        if manifest.exists():
            try:
                previous = list(json.loads(manifest.read_text()).get("files", []))
            except (json.JSONDecodeError, AttributeError, OSError):
                previous = []
        for name in previous:
            stale = self.folder / name
            # Only plain names this command once wrote here; never anything outside the folder.
            keep = name in self.written or "/" in name or name == MANIFEST
            if not keep and stale.is_file():
                stale.unlink()
                removed.append(name)
        write_json(manifest, {"files": sorted(self.written)})
        return removed
