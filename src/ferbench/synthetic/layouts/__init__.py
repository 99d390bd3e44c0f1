"""The layout writers, one module per real dataset layout, and writing them to disk.

A writer takes a fresh folder and the config and returns its LayoutSummary; ``write_layout``
gives it a temporary sibling folder that replaces ``out/<layout>`` only once the writer is done,
so a killed or failed run never leaves a half-written layout behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ferbench.errors import FerbenchError
from ferbench.synthetic.config import LAYOUTS, LayoutSummary, SyntheticConfig
from ferbench.synthetic.layouts.affectnet import write_affectnet
from ferbench.synthetic.layouts.afewva import write_afewva
from ferbench.synthetic.layouts.ckplus import write_ckplus
from ferbench.synthetic.layouts.fer2013 import write_fer2013
from ferbench.synthetic.layouts.oulu import write_oulu

#: Layout name -> writer (each writes under a fresh folder and returns its summary).
WRITERS: dict[str, Callable[[Path, SyntheticConfig], LayoutSummary]] = {
    "ckplus": write_ckplus, "oulu": write_oulu, "affectnet": write_affectnet,
    "afewva": write_afewva, "fer2013": write_fer2013,
}


@contextlib.contextmanager
def _atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` (old copy removed)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise FerbenchError(f"{final}: exists and is not a directory")
    # leftovers of a killed run are hidden siblings; nothing reads them
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in final.parent.glob(f".{final.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_layout(name: str, out: str | os.PathLike, config: SyntheticConfig) -> LayoutSummary:
    """Write one layout to ``out/<name>`` atomically and return what was written."""
    if name not in WRITERS:
        raise FerbenchError(f"unknown synthetic layout {name!r}; known: {', '.join(LAYOUTS)}")
    final = Path(out) / name
    start = time.perf_counter()
    with _atomic_dir(final) as tmp:
        summary = WRITERS[name](tmp, config)
    summary.path = final
    summary.seconds = time.perf_counter() - start
    for rec in summary.records:
        rec.setdefault("dataset", name)
    return summary


def write_layouts(out: str | os.PathLike, config: SyntheticConfig | None = None,
                  log: Callable[[str], Any] | None = None) -> dict[str, LayoutSummary]:
    """Write every layout of ``config`` under ``out``; ``log`` gets one summary line per layout."""
    config = config or SyntheticConfig()
    summaries = {}
    for name in config.layouts:
        summaries[name] = write_layout(name, out, config)
        if log is not None:
            log(summaries[name].line())
    return summaries


def parse_layouts(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(s.strip() for s in items if s.strip())
    for n in names:
        if n not in LAYOUTS:
            raise FerbenchError(f"unknown synthetic layout {n!r}; known: {', '.join(LAYOUTS)}")
    return names


def main(args: Any) -> int:
    """``ferbench synthesize``: write the requested layouts and print one line per layout."""
    config = SyntheticConfig(subjects=args.subjects, frames=args.frames, size=args.size,
                             seed=args.seed, layouts=parse_layouts(args.layouts))
    write_layouts(args.out, config, log=lambda line: print(line, flush=True))
    return 0
