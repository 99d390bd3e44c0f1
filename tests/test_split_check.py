"""The split check: per-split image statistics, and a copy whose training split is blurred
while its test splits are sharp is flagged by `inspect` (an error with --strict)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from ferbench import cli
from ferbench.data.split_check import compare_splits, image_statistics
from ferbench.synthetic import SyntheticConfig, write_layout


def test_image_statistics_on_known_images() -> None:
    flat = np.full((8, 8), 128, np.uint8)
    s = image_statistics(flat)
    assert (s["height"], s["width"], s["channels"], s["contrast"], s["sharpness"]) == (8, 8, 1, 0, 0)
    # a vertical edge 0 | 255: grey levels 0 and 1 in equal parts, std 0.5
    edge = np.zeros((6, 6, 3), np.uint8)
    edge[:, 3:] = 255
    s = image_statistics(edge)
    assert s["channels"] == 3 and s["contrast"] == pytest.approx(0.5, abs=1e-3)
    # standardised to +-1; the Laplacian (reflecting borders) is -2 / +2 beside the edge, 0 elsewhere
    assert s["sharpness"] == pytest.approx(np.var([0, 0, 2, -2, 0, 0] * 6), rel=1e-6)
    # exposure does not move sharpness; blur does
    dim = image_statistics((edge // 2).astype(np.uint8))
    assert dim["sharpness"] == pytest.approx(s["sharpness"], rel=1e-6) and dim["contrast"] < s["contrast"]


def test_compare_splits_flags_only_what_differs_far_beyond_sampling() -> None:
    rng = np.random.default_rng(0)

    def split(name, n, sharp, size=48):
        return pd.DataFrame({"split": name, "height": size, "width": size, "channels": 1,
                             "contrast": rng.uniform(0.15, 0.25, n), "sharpness": sharp * rng.uniform(0.5, 1.5, n)})

    alike = pd.concat([split("train", 200, 1.0), split("test", 40, 1.3)])
    assert compare_splits(alike) == []
    blurred = pd.concat([split("train", 200, 0.01), split("test", 40, 1.0)])
    (problem,) = compare_splits(blurred)
    assert problem.startswith("sharpness: split 'test'") and "split 'train'" in problem
    resized = pd.concat([split("train", 200, 1.0), split("test", 40, 1.0, size=64)])
    assert [p.split(":")[0] for p in compare_splits(resized)] == ["height", "width"]
    tiny = pd.concat([split("train", 200, 0.01), split("test", 5, 1.0)])   # too few to compare
    assert compare_splits(tiny) == []


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fer")
    write_layout("fer2013", root, SyntheticConfig(subjects=30, frames=8, size=96, seed=0, layouts=("fer2013",)))
    return root / "fer2013"


def _inspect(root: Path, capsys, *flags: str) -> tuple[int, str, str]:
    rc = cli.main(["inspect", "fer2013", str(root), *flags])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def blurred_fer2013(fer2013, tmp_path_factory) -> Path:
    """The synthetic FER-2013 copy with its Training rows blurred, its test rows left sharp."""
    csv = pd.read_csv(fer2013 / "fer2013.csv")
    train = csv["Usage"] == "Training"

    def blur(pixels: str) -> str:
        image = np.array(pixels.split(), np.uint8).reshape(48, 48)
        return " ".join(map(str, cv2.GaussianBlur(image, (0, 0), 2.5).ravel()))

    csv.loc[train, "pixels"] = csv.loc[train, "pixels"].map(blur)
    damaged = tmp_path_factory.mktemp("blurred") / "fer2013"
    damaged.mkdir()
    csv.to_csv(damaged / "fer2013.csv", index=False)
    return damaged


def test_inspect_reports_split_statistics_and_flags_a_blurred_training_split(fer2013, blurred_fer2013,
                                                                             capsys) -> None:
    rc, out, err = _inspect(fer2013, capsys, "--json")
    summary = json.loads(out)
    assert rc == 0 and summary["split_warnings"] == [] and "warning" not in err
    assert set(summary["split_statistics"]) == {"train", "val", "test"}
    assert summary["split_statistics"]["train"]["height"] == 48

    rc, out, err = _inspect(blurred_fer2013, capsys)
    assert rc == 0 and "split statistics" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "sharpness" in warnings[0] and "split 'train'" in warnings[0]
    rc, out, err = _inspect(blurred_fer2013, capsys, "--strict")
    errors = [line for line in err.splitlines() if "error" in line]
    assert rc == 2 and len(errors) == 1 and "sharpness" in errors[0] and "--strict" in errors[0]


def _prepare(root: Path, out: Path, capsys, *flags: str) -> tuple[int, str, str]:
    rc = cli.main(["prepare", "fer2013", str(root), "--out", str(out), "--size", "48", "--channels", "1", *flags])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_prepare_reports_split_statistics_and_warns_on_a_blurred_training_split(
        fer2013, blurred_fer2013, tmp_path, capsys) -> None:
    rc, out, err = _prepare(fer2013, tmp_path / "sound", capsys)
    report = json.loads((tmp_path / "sound" / "report.json").read_text())
    assert rc == 0 and "warning" not in err and report["split_warnings"] == []
    assert set(report["split_statistics"]) == {"train", "val", "test"}
    assert "split statistics (medians)" in out and "sharpness" in out

    rc, out, err = _prepare(blurred_fer2013, tmp_path / "warned", capsys)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert rc == 0 and len(warnings) == 1, err
    assert "sharpness" in warnings[0] and "split 'train'" in warnings[0] and "fer2013 splits" in warnings[0]
    report = json.loads((tmp_path / "warned" / "report.json").read_text())
    (finding,) = report["split_warnings"]
    assert finding.startswith("sharpness") and report["images"] > 0   # cached anyway: a warning
    stats = report["split_statistics"]
    assert stats["train"]["sharpness"] * 3 < min(stats["val"]["sharpness"], stats["test"]["sharpness"])
    assert "split warnings: 1" in out


@pytest.mark.parametrize("flags, named", [(("--strict",), "--strict"),
                                          (("--split-check", "error"), "--split-check error")])
def test_prepare_split_check_as_an_error_stops_before_caching(blurred_fer2013, tmp_path, capsys,
                                                               flags, named) -> None:
    out = tmp_path / "cache"
    rc, _, err = _prepare(blurred_fer2013, out, capsys, *flags)
    errors = [line for line in err.splitlines() if "error" in line]
    assert rc == 2 and len(errors) == 1, err
    assert "sharpness" in errors[0] and "split 'train'" in errors[0] and named in errors[0]
    assert not (out / "report.json").exists() and not list(out.glob("faces_*.npy"))


def test_prepare_split_check_off_skips_it(blurred_fer2013, tmp_path, capsys) -> None:
    rc, _, err = _prepare(blurred_fer2013, tmp_path / "off", capsys, "--split-check", "off")
    report = json.loads((tmp_path / "off" / "report.json").read_text())
    assert rc == 0 and "warning" not in err and "split_statistics" not in report
