"""environment.yml and pyproject.toml name the same dependencies with the same pins."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_conda_environment_lists_the_pyproject_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    listed = {entry for entry in pip if not entry.startswith("-e")}
    assert listed == wanted
    assert "torch==2.14.1" in listed and "torchvision==0.29.1" in listed
