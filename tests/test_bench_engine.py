"""benchmarks/bench_engine.py: its fake cache holds labelled 8-frame sequences, so the methods
that read sequences (GCNet's reference face, triplet sampling) time there as supervised does."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "benchmarks" / "bench_engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(ROOT / "benchmarks"))


def test_fake_cache_sequences_have_one_label_an_onset_and_apex_frames(bench, tmp_path):
    _, folds = bench.write_fake_cache(tmp_path, 96, 32)
    table = pd.read_parquet(folds)
    per_sequence = table.groupby("sequence")
    assert per_sequence.size().eq(8).all()
    assert per_sequence["label"].nunique().eq(1).all() and per_sequence["subject"].nunique().eq(1).all()
    assert per_sequence["frame"].min().eq(0).all()
    assert (table["emotion"] == [bench.CLASSES[i] for i in table["label"]]).all()
    assert table.loc[table["apex"], "frame"].min() == 5
    assert set(table["fold"]) == {0, 1}


@pytest.mark.parametrize("method, stage, backbone", [("gcnet", "train", "cnn3"), ("gcnet", "pretrain", "cnn3"),
                                                     ("triplet", "pretrain", "smallcnn")])
def test_sequence_methods_time_on_the_fake_cache(bench, tmp_path, method, stage, backbone):
    torch.set_num_threads(1)
    cache, folds = bench.write_fake_cache(tmp_path, 1024, 32)   # 128 sequences, ~3 per subject
    args = argparse.Namespace(method=method, stage=stage, backbone=backbone, image_size=32, batch_size=8,
                              steps=2, warmup=1, device_obj=torch.device("cpu"))
    assert bench.time_engine(args, cache, folds) > 0
    assert bench.time_bare(args, cache, folds) > 0
