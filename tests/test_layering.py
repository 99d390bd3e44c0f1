"""The package's imports go one way: from a stage down to the stages it builds on, never up.

Every module under src/ferbench is parsed (not imported) and every import in it is checked, at
any depth (inside functions too, and the command line's lazy ``"module:function"`` verbs): a
module may import its own layer and the layers below it. A module no layer names is an error
too, so a new top-level module is placed on purpose.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Bottom to top. A name covers the module and everything under it (``ferbench`` alone: only the
#: package's own __init__).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("ferbench", "ferbench.errors", "ferbench.io", "ferbench.strict_yaml", "ferbench.input_checks",
              "ferbench.provenance", "ferbench.precision")),
    ("readers", ("ferbench.datasets", "ferbench.synthetic")),
    ("data", ("ferbench.data",)),
    ("models", ("ferbench.models",)),
    ("methods", ("ferbench.methods",)),
    ("config", ("ferbench.config", "ferbench.method_blocks", "ferbench.placeholders")),
    ("train", ("ferbench.train",)),
    ("plan and report", ("ferbench.plan", "ferbench.report")),
    ("entry points", ("ferbench.cli", "ferbench.startup", "ferbench.doctor")),
]

LAZY_VERB = re.compile(r"^(ferbench(?:\.\w+)*):\w+$")


def layer_of(module: str) -> int | None:
    best, level = -1, None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            covers = module == name if name == "ferbench" else module == name or module.startswith(name + ".")
            if covers and len(name) > best:
                best, level = len(name), index
    return level


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """(imported ferbench module, line) of every import in ``source``, at any depth."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            lazy = LAZY_VERB.match(node.value)
            if lazy:
                found.append((lazy.group(1), node.lineno))
    return [(name, line) for name, line in found if name == "ferbench" or name.startswith("ferbench.")]


def violations(sources: dict[str, tuple[str, bool, str]]) -> list[str]:
    """``sources``: module -> (source text, is a package, where it lives). One line per import
    of a higher layer, or of a module in no layer."""
    known = set(sources)
    problems = []
    for module, (source, is_package, where) in sorted(sources.items()):
        own = layer_of(module)
        if own is None:
            problems.append(f"{module} ({where}) is in no layer of tests/test_layering.py LAYERS")
            continue
        for target, line in imported_modules(source, module, is_package, known):
            theirs = layer_of(target)
            if theirs is None:
                problems.append(f"{where}:{line}: {module} imports {target}, which is in no layer")
            elif theirs > own:
                problems.append(f"{where}:{line}: {module} (layer {LAYERS[own][0]}) imports {target} "
                                f"(layer {LAYERS[theirs][0]}, above it)")
    return problems


def package_sources() -> dict[str, tuple[str, bool, str]]:
    return {module_name(path): (path.read_text(), path.name == "__init__.py", str(path.relative_to(SRC.parent)))
            for path in sorted((SRC / "ferbench").rglob("*.py"))}


def test_no_module_imports_a_higher_layer():
    sources = package_sources()
    assert len(sources) > 50  # the walk found the package
    problems = violations(sources)
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_an_upward_import_is_reported_naming_both_modules():
    sources = {
        "ferbench.errors": ("", False, "src/ferbench/errors.py"),
        "ferbench.models": ("def f():\n    from ferbench.train import trainer\n", True, "src/ferbench/models/__init__.py"),
        "ferbench.train": ("", True, "src/ferbench/train/__init__.py"),
        "ferbench.train.trainer": ("from ..errors import FerbenchError\n", False, "src/ferbench/train/trainer.py"),
        "ferbench.cli": ('VERB = "ferbench.train.jobs:main_train"\n', False, "src/ferbench/cli.py"),
        "ferbench.methods.loss": ("from . import base\nfrom ferbench.report import runs\n", False,
                                  "src/ferbench/methods/loss.py"),
    }
    assert violations(sources) == [
        "src/ferbench/methods/loss.py:2: ferbench.methods.loss (layer methods) imports ferbench.report "
        "(layer plan and report, above it)",
        "src/ferbench/models/__init__.py:2: ferbench.models (layer models) imports ferbench.train.trainer "
        "(layer train, above it)",
    ]


def test_a_module_outside_every_layer_is_reported():
    sources = {"ferbench.newstage": ("import ferbench.errors\n", False, "src/ferbench/newstage.py"),
               "ferbench.errors": ("from ferbench import newstage\n", False, "src/ferbench/errors.py")}
    assert violations(sources) == [
        "src/ferbench/errors.py:1: ferbench.errors imports ferbench.newstage, which is in no layer",
        "ferbench.newstage (src/ferbench/newstage.py) is in no layer of tests/test_layering.py LAYERS",
    ]


def test_relative_imports_resolve_against_the_package():
    found = imported_modules("from . import base\nfrom ..data import folds\nfrom .base import Batch\n",
                             "ferbench.methods.simclr", False,
                             {"ferbench.methods.base", "ferbench.data.folds"})
    assert found == [("ferbench.methods.base", 1), ("ferbench.data.folds", 2), ("ferbench.methods.base", 3)]
