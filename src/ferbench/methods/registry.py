"""The method registry: every ``Method`` subclass with a ``name`` registers itself on import
(``base.Method.__init_subclass__``); these functions find the classes by name, importing the
method files of this package on demand.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Any, Mapping

from ferbench.errors import FerbenchError
from ferbench.methods.base import _REGISTRY, Method, RecipeRow

_LOADED = False


def _load_all() -> None:
    """Import every module of this package once so each method file registers itself."""
    global _LOADED
    if _LOADED:
        return
    import ferbench.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in ("base", "registry"):
            importlib.import_module(f"ferbench.methods.{info.name}")
    _LOADED = True


def declared(cls: type, attribute: str, default: Any = None) -> Any:
    """A class's own declaration of ``attribute`` (not one inherited from a parent class)."""
    return cls.__dict__.get(attribute, default)


def recipe_rows(run: str, cls: type[Method]) -> list[RecipeRow]:
    """The paper-recipe rows that apply to run name ``run`` of class ``cls``: rows declared by
    ``cls`` or a parent without ``runs``, and rows of any registered class naming the run."""
    import fnmatch

    declarers = {klass for name in method_names() for klass in get_method(name).__mro__}
    rows = []
    for klass in sorted(declarers, key=lambda k: k.__qualname__):
        for row in declared(klass, "paper_recipe", ()):
            if row.runs:
                applies = any(fnmatch.fnmatchcase(run, p) for p in row.runs.split())
            else:
                applies = issubclass(cls, klass)
            if applies:
                rows.append(row)
    return rows


def method_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[Method]:
    """The Method class registered under ``name``; FerbenchError naming the known ones.

    Looks in ``ferbench/methods/<name>.py`` first (the convention), so one broken method file
    does not take the others down; then imports every method file."""
    if name not in _REGISTRY and importlib.util.find_spec(f"ferbench.methods.{name}") is not None:
        importlib.import_module(f"ferbench.methods.{name}")
    if name not in _REGISTRY:
        _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FerbenchError(f"method: unknown class {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def method_class_name(settings: Mapping[str, Any]) -> str:
    """The class a run name maps to: its block's ``class`` key, else the run name."""
    return str(settings.get("method", {}).get("class") or settings["method_name"])
