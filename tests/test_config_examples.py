"""The example configfiles (config/examples/): as shipped, `ferbench validate-config` refuses
each with one line naming the first placeholder's key; each placeholder is caught on its own;
filled in, each is valid and sets what its comment says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ferbench import cli
from ferbench.config import merged_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "examples"
PARAMS = ROOT / "params.yaml"
NAMES = ("real_cpu", "real_gpu_paper", "slurm_gpu")
PLACEHOLDER = re.compile(r'root: "FILL IN[^"]*"')


def roots(path: Path) -> list[str]:
    """Datasets whose root is a placeholder, in file order."""
    data = yaml.safe_load(path.read_text())
    return [name for name, block in data["datasets"].items()
            if str(block.get("root", "")).startswith("FILL IN")]


def fill(text: str, datasets: list[str], keep: str | None = None) -> str:
    """Every placeholder root replaced by a folder inside synthetic.out (generated there, so no
    copy is needed), except ``keep``'s."""
    for name in datasets:
        if name == keep:
            continue
        block = re.search(rf"(?m)^  {name}:\n(?:\s+#.*\n)*\s+root: \"FILL IN[^\"]*\"", text)
        assert block, name
        text = text.replace(block.group(0),
                            PLACEHOLDER.sub(f"root: data/synthetic/{name}", block.group(0)))
    return text


def validate(capsys, *paths: Path) -> tuple[int, str, str]:
    code = cli.main(["validate-config", *map(str, paths)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", NAMES)
def test_example_as_shipped_fails_in_one_line_naming_the_placeholder(name, capsys):
    path = EXAMPLES / f"{name}.yaml"
    datasets = roots(path)
    assert datasets, "an example without placeholders would run on someone else's paths"
    code, out, err = validate(capsys, PARAMS, path)
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"{PARAMS} + {path}: datasets.{datasets[0]}.root: replace the example's placeholder" \
        in err


@pytest.mark.parametrize("name", NAMES)
def test_each_placeholder_is_caught_on_its_own_and_filled_examples_are_valid(name, capsys,
                                                                             tmp_path):
    path = EXAMPLES / f"{name}.yaml"
    text = path.read_text()
    datasets = roots(path)
    for left in datasets:
        one = tmp_path / f"{name}_{left}.yaml"
        one.write_text(fill(text, datasets, keep=left))
        code, _, err = validate(capsys, PARAMS, one)
        assert code != 0 and f"datasets.{left}.root: replace the example's placeholder" in err
    filled = tmp_path / f"{name}.yaml"
    filled.write_text(fill(text, datasets))
    code, out, err = validate(capsys, PARAMS, filled)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"{PARAMS} + {filled}: valid"   # after the roots it checked


def test_examples_set_the_budget_and_resources_they_say(tmp_path):
    def merged(name: str) -> dict:
        path = EXAMPLES / f"{name}.yaml"
        filled = tmp_path / path.name
        filled.write_text(fill(path.read_text(), roots(path)))
        return merged_config([PARAMS, filled])

    cpu = merged("real_cpu")
    assert cpu["budget"] == "cpu" and cpu["run"]["datasets"] == ["ckplus", "fer2013"]
    gpu = merged("real_gpu_paper")
    params = yaml.safe_load(PARAMS.read_text())
    assert gpu["budget"] == "paper" and gpu["resources"]["train"]["gpu"] == 1
    # merged key by key: the memory and time params.yaml sets survive the example's threads
    assert gpu["resources"]["train"]["mem_mb"] == params["resources"]["train"]["mem_mb"]
    assert gpu["run"]["methods"] == params["run"]["methods"]
    slurm = merged("slurm_gpu")
    # on SLURM the profile requests the GPU; the workstation's slot count stays 0
    assert slurm["budget"] == "paper" and slurm["resources"]["train"]["gpu"] == 0
    assert slurm["resources"]["train"]["mem_mb"] == 32000
