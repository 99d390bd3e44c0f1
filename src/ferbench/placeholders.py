"""Placeholders of the example configfiles (config/examples/): a value that still reads
"FILL IN: ..." is an error naming its key, so a copied example fails with one clear line until
every placeholder is replaced, instead of running on a path that does not exist."""

from __future__ import annotations

from typing import Any, Iterable

from ferbench.errors import FerbenchError

PLACEHOLDER = "FILL IN"


def check_placeholders(leaves: Iterable[tuple[str, Any]], where: str) -> None:
    """``leaves``: (dotted key, value) of every scalar of the merged config."""
    for key, value in leaves:
        if isinstance(value, str) and value.strip().startswith(PLACEHOLDER):
            raise FerbenchError(f"{where}: {key}: replace the example's placeholder "
                                f"({value.strip()})")
