"""Under the `paper` budget every run resolves to its paper's recipe: input size, channels,
optimiser, learning rate and its policy, epochs, batch size, augmentation. The values were
taken from the papers (/work/shared/seeds, summarised in METHODS.md) and the authors' code where
the paper is silent; each row cites its source. The rows are declared with each method
(``paper_recipe`` in methods/<name>.py, :class:`ferbench.methods.base.RecipeRow`). A row whose
``paper`` differs from ``value`` is a deviation: the benchmark runs ``value``, and the
paper-budget table of docs/paper-recipes.md must say so (its ``readme`` phrase). A change to params.yaml, a method's
defaults or the config resolution that moves any of these fails here, as does a run name
without a row."""

from __future__ import annotations

import copy
import fnmatch
from pathlib import Path

import pytest
import yaml

from ferbench.config import stage_settings
from ferbench.method_blocks import method_block
from ferbench.methods import TaskInfo, get_method, method_names
from ferbench.methods.registry import declared, recipe_rows

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
#: the paper-budget table and its notes (moved out of the README)
README = (ROOT / "docs" / "paper-recipes.md").read_text()


def _dataset_of(run: str) -> str:
    for name, block in PARAMS["datasets"].items():
        if run in (block.get("methods") or []):
            return name
    return "ckplus"


def resolved(run: str, stage: str) -> dict[str, object]:
    """The settings a `paper` job of ``run`` trains with: training keys, the method's
    hyperparameters, ``channels`` and ``aug.<field>`` of the effective augmentation."""
    config = copy.deepcopy(PARAMS)
    config["budget"] = "paper"
    settings = stage_settings(config, _dataset_of(run), run, stage)
    cls = get_method(settings["method"].get("class") or run)
    task = "va" if "classification" not in cls.tasks else "classification"
    classes = () if task == "va" else ("anger", "happiness", "sadness", "surprise")
    if stage == "pretrain":
        assert cls.pretrain, f"{run} has no pretraining stage"
    method = cls(settings, TaskInfo(task, classes, int(settings["train"]["image_size"])))
    method.stage = stage
    out: dict[str, object] = {**settings["train"], **method.hp, "channels": method.in_channels}
    aug = method.augment_config()
    out.update({f"aug.{k}": v for k, v in vars(aug).items()})
    return out


def _matches(run: str, patterns: str) -> bool:
    return any(fnmatch.fnmatchcase(run, p) for p in patterns.split())


def _class_of(run: str) -> type:
    return get_method(method_block(PARAMS, run).get("class") or run)


#: (run, stage, key, value the benchmark runs, the paper's value or None when the same, source,
#:  README phrase required for a deviation), from each method class's ``paper_recipe``
ROWS = [(run, row.stage, row.key, row.value, row.paper, row.source, row.readme)
        for run in PARAMS["run"]["methods"] for row in recipe_rows(run, _class_of(run))]


def test_every_run_has_recipe_rows_and_every_row_a_run():
    covered = {run for run, *_ in ROWS}
    assert covered == set(PARAMS["run"]["methods"]), set(PARAMS["run"]["methods"]) - covered
    declarers = {klass for name in method_names() for klass in get_method(name).__mro__}
    for klass in declarers:
        for row in declared(klass, "paper_recipe", ()):
            if row.runs:   # names runs: some run of params.yaml
                assert any(_matches(run, row.runs) for run in PARAMS["run"]["methods"]), row


_CACHE: dict[tuple[str, str], dict] = {}


@pytest.mark.parametrize("run, stage, key, value, paper, source, readme",
                         ROWS, ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in ROWS])
def test_paper_budget_resolves_to_the_recipe(run, stage, key, value, paper, source, readme):
    if (run, stage) not in _CACHE:
        _CACHE[run, stage] = resolved(run, stage)
    got = _CACHE[run, stage].get(key)
    if isinstance(value, float) or isinstance(got, float):
        assert got == pytest.approx(value), (run, stage, key, source)
    elif isinstance(value, (tuple, list)):
        assert list(got) == pytest.approx(list(value)), (run, stage, key, source)
    else:
        assert got == value, (run, stage, key, source)
    if paper is not None:   # a deviation: the paper-budget table states it
        assert readme and readme in README, \
            f"docs/paper-recipes.md lacks {readme!r} ({run}: {key} {value} vs {paper})"
