"""YAML loading that refuses a mapping with the same key twice.

PyYAML keeps the last value of a repeated key without a word (``budget:`` twice: the second
wins). A config is read for what its author meant, so a repeat is an error naming both lines.
Merge keys (``<<: *anchor``) are YAML's way to combine mappings and stay allowed.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKey(Exception):
    """A mapping key given twice: ``key``, at 1-based ``line``/``column``, first at ``first_line``."""

    def __init__(self, key: Any, line: int, column: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key!r} (first at line {first_line})")
        self.key, self.line, self.column, self.first_line = key, line, column, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the constructor below names it
            continue
        mark = key_node.start_mark
        if first is not None:
            raise DuplicateKey(key, mark.line + 1, mark.column + 1, first)
        seen[key] = mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str) -> Any:
    """yaml.safe_load, but a repeated mapping key raises DuplicateKey."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
