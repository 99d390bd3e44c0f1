"""Dataset readers: one per on-disk layout family, registered by name."""

from __future__ import annotations

from ferbench.datasets.base import COLUMNS, EMOTIONS, Reader, ReadResult, SkipLog, make_table
from ferbench.errors import FerbenchError

READERS: dict[str, type[Reader]] = {}


def register(cls: type[Reader]) -> type[Reader]:
    READERS[cls.name] = cls
    return cls


def get_reader(name: str) -> Reader:
    _load_all()
    try:
        return READERS[name]()
    except KeyError:
        raise FerbenchError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(READERS))}"
        ) from None


def dataset_names() -> list[str]:
    _load_all()
    return sorted(READERS)


def _load_all() -> None:
    # Imported lazily so that `import ferbench.datasets` stays cheap and cycle-free.
    from ferbench.datasets import (  # noqa: F401
        affectnet, afewva, affwild2, ckplus, fer2013, jaffe, mmi, oulu,
    )


__all__ = [
    "COLUMNS", "EMOTIONS", "READERS", "Reader", "ReadResult", "SkipLog", "get_reader",
    "dataset_names", "make_table", "register",
]
