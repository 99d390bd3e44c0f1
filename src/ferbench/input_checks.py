"""Config checks beyond the JSON schema that ``check_config`` runs (so ``validate-config`` and
the workflow's DAG build): hyperparameter types, and paths Snakemake can carry."""

from __future__ import annotations

from typing import Any, Iterable

from ferbench.errors import FerbenchError

#: characters a path cannot hold on its way through Snakemake: it reads ``<name>`` in a file
#: name as a path variable (UndefinedPathvarException), and a line break ends a shell line
SNAKEMAKE_UNSAFE = "<>\n\r\t"


def check_paths(config: dict[str, Any], where: str) -> None:
    """Every path the workflow passes to Snakemake (dataset roots and fold files, the cache,
    results and synthetic folders) is one it can carry: one line naming the key otherwise."""
    paths = [(f"datasets.{name}.{key}", (block or {}).get(key))
             for name, block in (config.get("datasets") or {}).items() for key in ("root", "fold_file")]
    paths += [("cache", config.get("cache")), ("results", config.get("results")),
              ("synthetic.out", (config.get("synthetic") or {}).get("out"))]
    for key, value in paths:
        if isinstance(value, str):
            bad = sorted({c for c in value if c in SNAKEMAKE_UNSAFE})
            if bad:
                shown = " ".join(repr(c) for c in bad)
                raise FerbenchError(f"{where}: {key}: {value!r} holds {shown}, which Snakemake cannot "
                                    f"carry in a path (it reads <name> as a path variable); rename "
                                    f"the folder or link it from a plain name")


def check_hparam_types(cls: type, name: str, block: dict[str, Any], where: str,
                       skip: Iterable[str] = (), key_of: Any = None) -> None:
    """Every hyperparameter of method block ``name`` (its keys but ``skip``: the schedule's and
    the block's own) has its declared type (Method.hparam_type_problem). ``key_of(key)``: the
    dotted key to name (default ``methods.<name>.<key>``)."""
    skip = set(skip)
    for key, value in block.items():
        if key in skip:
            continue
        problem = cls.hparam_type_problem(key, value)
        if problem:
            dotted = key_of(key) if key_of else f"methods.{name}.{key}"
            raise FerbenchError(f"{where}: {dotted}: {problem}")
