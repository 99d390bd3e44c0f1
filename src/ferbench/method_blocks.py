"""A run name's method block as params.yaml composes it: ``extends`` and ``templates``.

A block under ``methods:`` (or under ``templates:``, blocks that are not runs themselves) may say
``extends: <name>`` or ``extends: [<name>, ...]``: each name is a key of ``templates`` or another
run name under ``methods``, itself resolved first. The named blocks are merged in order, then the
block's own keys over them: mappings merge key by key (``budgets: {demo: {...}}`` of a run adds
to its template's), anything else is replaced, as Snakemake merges a ``--configfile``.

Everything downstream (job settings, the checks, the job's own config slice) reads the resolved
block, so a job's config never holds ``extends``.
"""

from __future__ import annotations

import copy
from typing import Any

from ferbench.errors import FerbenchError


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings key by key, other values replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _section_of(config: dict[str, Any], name: str, key: str) -> str:
    """Where an extended name lives: ``templates`` or ``methods`` (one of them, not both)."""
    in_templates = name in (config.get("templates") or {})
    in_methods = name in (config.get("methods") or {})
    if in_templates and in_methods:
        raise FerbenchError(f"{key}: {name!r} is both a key of templates and a run under methods; "
                            "rename one")
    if not (in_templates or in_methods):
        raise FerbenchError(f"{key}: {name!r} is neither a key of templates nor a run under methods")
    return "templates" if in_templates else "methods"


def sources(config: dict[str, Any], name: str,
            section: str = "methods") -> list[tuple[str, dict[str, Any]]]:
    """(dotted key, block as written) of every block that makes up ``<section>.<name>``, in
    the order they are merged (the named block itself last)."""
    out: list[tuple[str, dict[str, Any]]] = []

    def visit(name: str, section: str, chain: tuple[str, ...]) -> None:
        path = f"{section}.{name}"
        if path in chain:
            raise FerbenchError(f"{chain[-1]}.extends: {name!r} extends itself "
                                f"({' -> '.join((*chain, path))})")
        block = (config.get(section) or {}).get(name) or {}
        if not isinstance(block, dict):
            raise FerbenchError(f"{path}: expected a mapping")
        parents = block.get("extends") or []
        for parent in [parents] if isinstance(parents, str) else list(parents):
            visit(str(parent), _section_of(config, str(parent), f"{path}.extends"), (*chain, path))
        out.append((path, block))

    visit(name, section, ())
    return out


def method_block(config: dict[str, Any], name: str, section: str = "methods") -> dict[str, Any]:
    """The resolved block of run name ``name`` (or a template), without ``extends``."""
    block: dict[str, Any] = {}
    for _, layer in sources(config, name, section):
        block = merge(block, {k: v for k, v in layer.items() if k != "extends"})
    return block


def origin(config: dict[str, Any], name: str, path: tuple[str, ...]) -> str:
    """The dotted key that set ``methods.<name>`` + ``path`` (the last block of the chain
    holding it), e.g. ``templates.ssl_fer.budgets.demo.time_offsets``."""
    for where, block in reversed(sources(config, name)):
        value: Any = block
        for part in path:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            return ".".join((where, *path))
    return ".".join(("methods", name, *path))


def resolved_methods(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{run name: resolved block} of every block under ``methods:``."""
    return {name: method_block(config, name) for name in config.get("methods") or {}}
