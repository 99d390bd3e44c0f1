"""Dataset readers: one per on-disk layout family, registered by name.

A reader file sets ``name`` on its Reader subclass and is registered on import; every module of
this package is imported on the first lookup (no list to edit).
"""

from __future__ import annotations

import importlib
import pkgutil

from ferbench.datasets.base import COLUMNS, EMOTIONS, READERS, Reader, ReadResult, SkipLog, make_table
from ferbench.errors import FerbenchError

_LOADED = False


def get_reader(name: str) -> Reader:
    _load_all()
    try:
        return READERS[name]()
    except KeyError:
        raise FerbenchError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(READERS))}"
        ) from None


def dataset_facts(name: str) -> type[Reader]:
    """The reader class holding ``name``'s facts; the base Reader's generic ones for a name
    without a reader (synthetic or test tables)."""
    _load_all()
    return READERS.get(name, Reader)


def dataset_names() -> list[str]:
    _load_all()
    return sorted(READERS)


def _load_all() -> None:
    # Imported lazily so that `import ferbench.datasets` stays cheap and cycle-free.
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True


__all__ = [
    "COLUMNS", "EMOTIONS", "READERS", "Reader", "ReadResult", "SkipLog", "dataset_facts",
    "dataset_names", "get_reader", "make_table",
]
