"""Nothing wrong passes silently: stale or foreign folds tables, leaking encoders, unknown fold-file
subjects, killed `prepare` runs, read-only folders and full disks, and `ferbench doctor`."""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fake_fold import make_fold_files, write_config
from fake_tables import TableReader, ckplus_like_table
from ferbench import cli, io, provenance
from ferbench.train.checkpoint import CHECKPOINT
from ferbench.data import prepare, protocols
from ferbench.data.folds import load_fold
from ferbench.datasets.base import ReadResult
from ferbench.errors import FerbenchError
from ferbench.methods.supervised import Supervised
from test_engine import run_cli
from test_preprocess import _reader
from test_report import make_runs, run_aggregate

TESTS = Path(__file__).parent
FOLDS = "kind=kfold,folds=3"


def _prepared(root: Path, reader: TableReader, data: Path) -> tuple[Path, Path]:
    """prepare + folds into ``root``: (cache folder, folds.parquet)."""
    cache = root / "cache"
    prepare.prepare_cache(reader, data, cache, sizes=[32], progress=False)
    folds = cache / "folds.parquet"
    protocols.main(argparse.Namespace(dataset="fake", cache=str(cache), out=str(folds), protocol=FOLDS,
                                      fold_file=None))
    return cache, folds


def _reordered(reader: TableReader) -> TableReader:
    table = reader.result.table.iloc[::-1].reset_index(drop=True)
    return TableReader("fake", ReadResult(table, collections.Counter(), "v1"))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and (
        p.name.startswith(".") or p.name.endswith(".shrink")))


# -- 1. a folds table of another cache ----------------------------------------------------------
def test_folds_of_another_cache_with_the_same_row_count_are_refused_naming_both_files(tmp_path):
    reader = _reader(tmp_path / "data")
    cache_a, folds_a = _prepared(tmp_path / "a", reader, tmp_path / "data")
    cache_b, folds_b = _prepared(tmp_path / "b", _reordered(reader), tmp_path / "data")
    assert len(pd.read_parquet(folds_a)) == len(pd.read_parquet(folds_b))
    load_fold(cache_a, folds_a, 0, 32)  # matching pairs load
    load_fold(cache_b, folds_b, 0, 32)
    with pytest.raises(FerbenchError) as err:
        load_fold(cache_b, folds_a, 0, 32)
    assert str(folds_a) in str(err.value) and str(cache_b / "samples.parquet") in str(err.value)
    # recorded: what the cache and the folds table were built from
    report = json.loads((cache_a / "report.json").read_text())
    meta = json.loads(folds_a.with_suffix(".json").read_text())
    assert report["settings"]["sizes"] == [32] and report["settings"]["margin"] == 0.2
    assert meta["source"]["samples_fingerprint"] == report["samples_fingerprint"]
    assert meta["fingerprint"] == provenance.folds_fingerprint(pd.read_parquet(folds_a))
    assert report["fingerprint"] != json.loads((cache_b / "report.json").read_text())["fingerprint"]


def test_train_refuses_a_folds_table_whose_rows_name_other_samples(tmp_path, capsys):
    # hand-made files without recorded fingerprints: the row-by-row sample id check still holds
    cache, folds = make_fold_files(tmp_path, subjects=6, frames=2)
    samples = pd.read_parquet(cache / "samples.parquet")
    faces = np.load(cache / "faces_32.npy")
    order = np.arange(len(samples))[::-1]
    samples = samples.iloc[order].reset_index(drop=True).assign(cache_row=np.arange(len(samples)))
    other = tmp_path / "other"
    shutil.copytree(cache, other)
    samples.to_parquet(other / "samples.parquet", index=False)
    np.save(other / "faces_32.npy", faces[order])
    config = write_config(tmp_path, epochs=1)
    assert run_cli("train", tmp_path, config, tmp_path / "run", cache=other) == 2
    err = capsys.readouterr().err
    assert str(folds) in err and str(other / "samples.parquet") in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_folds_parquet_beside_another_folds_json_is_refused(tmp_path):
    reader = _reader(tmp_path / "data")
    cache, folds = _prepared(tmp_path / "a", reader, tmp_path / "data")
    table = pd.read_parquet(folds)
    table["fold"] = (table["fold"] + 1) % 3  # same samples, other folds (another protocol's table)
    table.to_parquet(folds, index=False)
    with pytest.raises(FerbenchError, match=r"folds\.parquet does not match .*folds\.json"):
        load_fold(cache, folds, 0, 32)


# -- 2. an encoder that saw the job's test subjects --------------------------------------------
class ToyProvenancePretrain(Supervised):
    name = "toy_pretrain_for_provenance_tests"
    pretrain = True
    pretrain_views = 2

    def pretraining_step(self, batch, optimizers=None):
        z1, z2 = self(batch.views[0]), self(batch.views[1])
        return {"loss": (z1 - z2).pow(2).mean()}


@pytest.mark.slow
def test_train_refuses_an_encoder_pretrained_on_another_fold(tmp_path, capsys):
    make_fold_files(tmp_path, subjects=6, frames=2, n_folds=3)
    config = write_config(tmp_path, epochs=1, methods={
        "toy": {"class": ToyProvenancePretrain.name, "finetune": "head", "pretrain": {"epochs": 1}}})
    pre = tmp_path / "pre0"
    assert run_cli("pretrain", tmp_path, config, pre, method="toy", fold=0) == 0
    encoder = pre / "encoder.pt"
    prov = torch.load(encoder, weights_only=True)["provenance"]
    # fold 0 tests subjects S00 and S03 (subject index % 3): pretraining saw the other four
    assert prov == {"dataset": "fake", "fold": 0, "all_subjects": False,
                    "subjects": [["fake", s] for s in ("S01", "S02", "S04", "S05")]}
    assert run_cli("train", tmp_path, config, tmp_path / "run0", method="toy", fold=0,
                   extra=["--pretrained", str(encoder)]) == 0
    capsys.readouterr()
    assert run_cli("train", tmp_path, config, tmp_path / "run1", method="toy", fold=1,
                   extra=["--pretrained", str(encoder)]) == 2
    err = capsys.readouterr().err
    assert str(encoder) in err and "S01, S04" in err and "fold 1" in err
    assert not (tmp_path / "run1" / "metrics.json").exists()


def test_encoder_subjects_are_compared_by_dataset_and_subject(tmp_path):
    cache, folds_path = make_fold_files(tmp_path, subjects=6, frames=2, n_folds=3)
    data = load_fold(cache, folds_path, 0, 32)

    def check(prov):
        provenance.check_encoder("enc.pt", {"provenance": prov}, "fake", data.folds, data.indices["test"],
                                 data.subject_mask, 0)

    everyone = [f"S{i:02d}" for i in range(6)]
    check({"dataset": "other", "fold": None, "all_subjects": True,
           "subjects": [["other", s] for s in everyone]})  # same ids, another dataset: fine
    with pytest.raises(FerbenchError, match=r"enc\.pt: .*\(all subjects\) saw 2 test subject\(s\) of fake fold 0: S00, S03"):
        check({"dataset": "fake", "fold": None, "all_subjects": True, "subjects": [["fake", s] for s in everyone]})
    with pytest.raises(FerbenchError, match="records no provenance"):
        provenance.check_encoder("enc.pt", {"state": {}}, "fake", data.folds, data.indices["test"],
                                 data.subject_mask, 0)


# -- 3. a fold file naming a subject the data does not have ------------------------------------
def test_fold_file_naming_an_unknown_subject_is_an_error(tmp_path):
    table = ckplus_like_table()
    subjects = sorted(table["subject"].dropna().unique())
    path = tmp_path / "folds.csv"
    path.write_text("subject,fold\n" + "".join(f"{s},{i % 10}\n" for i, s in enumerate(subjects))
                    + "Z999,0\n")
    with pytest.raises(FerbenchError, match=r"folds\.csv: subject Z999 is not in the ckplus data"):
        protocols.assign_folds(table, "ckplus", None, path)


# -- 4. killed prepare ------------------------------------------------------------------------
SLOW_PREPARE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_preprocess import _reader
    from ferbench import cli
    from ferbench.data import prepare

    data, out, ready = sys.argv[1:4]
    reader = _reader(Path(data))  # rewrites the same images
    load = reader.load_image

    def slow(root, row):
        Path(ready).touch()
        time.sleep(0.3)
        return load(root, row)

    reader.load_image = slow
    prepare.get_reader = lambda name: reader
    sys.exit(cli.main(["prepare", "fake", data, "--out", out, "--size", "32"]))
""")


def _start_and_kill(tmp_path: Path, out: Path, sig: int) -> int:
    """Run `ferbench prepare` with a slow reader, send ``sig`` once it decodes; its exit status."""
    script = tmp_path / "slow_prepare.py"
    script.write_text(SLOW_PREPARE.format(tests=str(TESTS)))
    ready = tmp_path / "ready"
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), str(out), str(ready)],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "prepare never started decoding"
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_sigkill_leftovers_are_removed_on_the_next_start_and_train_refuses_the_cache(tmp_path):
    reader = _reader(tmp_path / "data")
    cache, folds = _prepared(tmp_path, reader, tmp_path / "data")  # a complete cache...
    assert _start_and_kill(tmp_path, cache, signal.SIGKILL) == -signal.SIGKILL  # ...killed in a rerun
    assert _leftovers(cache)  # what SIGKILL leaves (it cannot be caught)
    assert not (cache / "report.json").exists()
    with pytest.raises(FerbenchError, match=r"incomplete cache \(no report\.json"):
        load_fold(cache, folds, 0, 32)
    with pytest.raises(FerbenchError, match="incomplete cache"):
        protocols.main(argparse.Namespace(dataset="fake", cache=str(cache), out=str(tmp_path / "f.parquet"),
                                          protocol=FOLDS, fold_file=None))
    assert _start_and_kill(tmp_path, cache, signal.SIGKILL) == -signal.SIGKILL
    # no pile-up: the second run removed the first one's (at most one per file being written)
    targets = [name.split(".")[1] for name in _leftovers(cache)]  # ".faces_32.npy.x1y2.npy"
    assert len(targets) == len(set(targets)), _leftovers(cache)
    prepare.prepare_cache(reader, tmp_path / "data", cache, sizes=[32], progress=False)
    assert _leftovers(cache) == []
    load_fold(cache, folds, 0, 32)  # the same samples again: the old folds table fits


def test_sigterm_removes_temporary_files_and_exits_non_zero(tmp_path):
    _reader(tmp_path / "data")
    out = tmp_path / "cache"
    rc = _start_and_kill(tmp_path, out, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM
    assert list(out.iterdir()) == []  # no faces, no table, no report, no temporary file


# -- 5. read-only folders and full disks -------------------------------------------------------
def _one_line(capsys, path_part: str, cause: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ferbench ")]  # train echoes its log
    assert len(lines) == 1 and "Traceback" not in err, err
    assert path_part in lines[0] and cause in lines[0], lines[0]


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic write fails as a full disk does: after part of the file is written."""
    real = io.atomic_path

    @contextlib.contextmanager
    def failing(path, suffix=""):
        with real(path, suffix) as tmp:
            yield tmp
            with open(tmp, "ab") as f:
                f.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    monkeypatch.setattr(io, "atomic_path", failing)


@pytest.fixture
def read_only(monkeypatch):
    """Creating any temporary file fails as on a read-only mount (root ignores chmod 0o555)."""
    def refuse(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("fault, cause", [("full_disk", "no space left on device"),
                                          ("read_only", "read-only file system")])
def test_prepare_folds_train_aggregate_name_the_path_and_the_cause(tmp_path, capsys, request, fault, cause):
    reader = _reader(tmp_path / "data")
    good_cache, good_folds = _prepared(tmp_path / "good", reader, tmp_path / "data")
    make_fold_files(tmp_path, subjects=6, frames=2)
    config = write_config(tmp_path, epochs=1)
    make_runs(tmp_path / "runs")
    request.getfixturevalue(fault)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(prepare, "get_reader", lambda name: reader)
    try:
        out = tmp_path / "cache2"
        assert cli.main(["prepare", "fake", str(tmp_path / "data"), "--out", str(out), "--size", "32"]) == 2
        _one_line(capsys, str(out), cause)
        assert _leftovers(out) == [] and not (out / "report.json").exists()
        folds = tmp_path / "f" / "folds.parquet"
        assert cli.main(["folds", "fake", "--cache", str(good_cache), "--out", str(folds),
                         "--protocol", FOLDS]) == 2
        _one_line(capsys, str(folds), cause)
        assert not folds.exists() and _leftovers(folds.parent) == []
        run = tmp_path / "run"
        assert run_cli("train", tmp_path, config, run) == 2
        _one_line(capsys, str(run), cause)
        assert _leftovers(run) == [] and not (run / "metrics.json").exists()
        assert run_aggregate(tmp_path, tmp_path / "runs")[0] == 2
        _one_line(capsys, str(tmp_path / "out"), cause)
        assert _leftovers(tmp_path / "out") == []
    finally:
        monkey.undo()


def test_synthesize_on_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    from PIL import Image

    def refuse(self, fp, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(fp))

    monkeypatch.setattr(Image.Image, "save", refuse)
    out = tmp_path / "synthetic"
    assert cli.main(["synthesize", "--out", str(out), "--layouts", "ckplus", "--subjects", "2",
                     "--frames", "2", "--size", "32"]) == 2
    _one_line(capsys, str(out), "read-only file system")


def test_prepare_checks_free_space_before_sizing_the_memory_map(tmp_path, capsys, monkeypatch):
    reader = _reader(tmp_path / "data")
    monkeypatch.setattr(prepare, "get_reader", lambda name: reader)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "cache"
    assert cli.main(["prepare", "fake", str(tmp_path / "data"), "--out", str(out), "--size", "32"]) == 2
    _one_line(capsys, str(out), "no space left on device")
    assert list(out.iterdir()) == []


# -- 6. ferbench doctor ------------------------------------------------------------------------
def _doctor(capsys, *paths) -> tuple[int, list[str]]:
    rc = cli.main(["doctor", *map(str, paths)])
    return rc, capsys.readouterr().out.splitlines()


def _stamp(cache: Path, margin: float = 0.2) -> str:
    """Record in a hand-made cache's report.json the fingerprints `prepare` records; returns the
    cache fingerprint (``margin`` stands for any crop setting: another one, another cache)."""
    samples_fp = provenance.samples_fingerprint(pd.read_parquet(cache / "samples.parquet"))
    settings = {"sizes": [32], "channels": 3, "margin": margin}
    report = {**json.loads((cache / "report.json").read_text()), "samples_fingerprint": samples_fp,
              "settings": settings, "fingerprint": provenance.cache_fingerprint(samples_fp, settings)}
    (cache / "report.json").write_text(json.dumps(report))
    return report["fingerprint"]


@pytest.mark.slow
def test_doctor_reports_ok_stale_and_incomplete(tmp_path, capsys):
    reader = _reader(tmp_path / "data")
    cache, folds = _prepared(tmp_path / "a", reader, tmp_path / "data")
    _stamp(make_fold_files(tmp_path / "r", subjects=6, frames=2, n_folds=3)[0])
    config = write_config(tmp_path / "r", epochs=1, methods={
        "toy": {"class": ToyProvenancePretrain.name, "finetune": "head", "pretrain": {"epochs": 1}}})
    results = tmp_path / "results"
    assert run_cli("pretrain", tmp_path / "r", config, results / "pretrain" / "toy", method="toy") == 0
    assert run_cli("train", tmp_path / "r", config, results / "runs" / "toy", method="toy",
                   extra=["--pretrained", str(results / "pretrain" / "toy" / "encoder.pt")]) == 0
    capsys.readouterr()
    rc, lines = _doctor(capsys, cache, results)
    assert rc == 0, lines
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["ok", "cache"], ["ok", "folds"], ["ok", "run"], ["ok", "run"]]
    assert "4 artefact(s): 4 ok, 0 stale, 0 incomplete" in lines[-1]

    # a foreign sample table, an interrupted run, a killed writer's temporary file
    _prepared(tmp_path / "b", _reordered(reader), tmp_path / "data")
    shutil.copy(tmp_path / "b" / "cache" / "samples.parquet", cache / "samples.parquet")
    interrupted = results / "runs" / "other"
    interrupted.mkdir()
    (interrupted / CHECKPOINT).write_bytes(b"x")
    (cache / ".faces_32.npy.abcd1234.npy").write_bytes(b"x")
    rc, lines = _doctor(capsys, cache, results)
    assert rc == 1
    text = "\n".join(lines)
    assert f"stale       cache  {cache}: samples.parquet does not match report.json" in text
    assert f"incomplete  temp   {cache / '.faces_32.npy.abcd1234.npy'}" in text
    assert f"incomplete  run    {interrupted}: interrupted" in text
    (cache / "report.json").unlink()
    rc, lines = _doctor(capsys, cache)
    assert rc == 1 and f"incomplete  cache  {cache}: no readable report.json" in "\n".join(lines)
    assert f"stale       folds  {folds}: its cache {cache} is incomplete" in "\n".join(lines)


@pytest.mark.slow
def test_doctor_flags_a_result_whose_cache_folds_or_encoder_changed_since(tmp_path, capsys):
    """metrics.json records the fingerprints of what the job read; a cache prepared again, another
    folds table or another encoder.pt at those paths makes the result stale."""
    cache, folds = make_fold_files(tmp_path / "r", subjects=6, frames=2, n_folds=3)
    fingerprint = _stamp(cache)
    config = write_config(tmp_path / "r", epochs=1, methods={
        "toy": {"class": ToyProvenancePretrain.name, "finetune": "head", "pretrain": {"epochs": 1}}})
    results = tmp_path / "results"
    pre, run = results / "pretrain" / "toy", results / "runs" / "toy"
    encoder = pre / "encoder.pt"
    assert run_cli("pretrain", tmp_path / "r", config, pre, method="toy") == 0
    assert run_cli("train", tmp_path / "r", config, run, method="toy",
                   extra=["--pretrained", str(encoder)]) == 0
    capsys.readouterr()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["inputs"] == {
        "cache": {"path": str(cache), "fingerprint": fingerprint},
        "folds": {"path": str(folds), "fingerprint": provenance.folds_fingerprint(pd.read_parquet(folds))},
        "encoder": {"path": str(encoder), "sha256": provenance.file_sha256(encoder),
                    "provenance": {"dataset": "fake", "fold": 0, "all_subjects": False, "n_subjects": 4}}}
    assert json.loads((pre / "metrics.json").read_text())["inputs"] == {
        k: metrics["inputs"][k] for k in ("cache", "folds")}
    rc, lines = _doctor(capsys, results)
    assert rc == 0, lines
    assert f"ok          run    {run}: train fake toy fold 0 seed 0; inputs (cache, folds, encoder) unchanged" \
        in lines, lines

    def stale(*runs: Path) -> str:
        rc, lines = _doctor(capsys, results)
        assert rc == 1, lines
        flagged = [line for line in lines if line.startswith("stale")]
        assert [line.split()[2] for line in flagged] == [f"{r}:" for r in runs], lines
        return "\n".join(flagged)

    # the cache prepared again with another crop setting: both results read the old faces
    _stamp(cache, margin=0.3)
    text = stale(pre, run)
    assert f"{run}: built from another cache than {cache} holds now (recorded {fingerprint[:12]}, now " in text
    _stamp(cache)

    # another folds table at the same path (same samples, other folds)
    original = folds.read_bytes()
    table = pd.read_parquet(folds)
    table["fold"] = (table["fold"] + 1) % 3
    table.to_parquet(folds, index=False)
    assert f"{run}: built from another folds table than {folds} holds now" in stale(pre, run)
    folds.write_bytes(original)

    # another encoder.pt where the one the result was fine-tuned from was
    saved = encoder.read_bytes()
    payload = torch.load(encoder, weights_only=True)
    payload["state"] = {k: v + 1 for k, v in payload["state"].items()}
    torch.save(payload, encoder)
    assert f"{run}: built from another encoder than {encoder} holds now" in stale(run)
    encoder.write_bytes(saved)

    # a result written before metrics.json recorded its inputs, and a cache gone since
    del metrics["inputs"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert f"{run}: metrics.json records no input fingerprints (written by an older ferbench)" in stale(run)
    shutil.rmtree(cache)
    assert f"{pre}: its cache {cache} is not there" in stale(pre, run)


def test_a_disk_filling_up_during_prepare_raises_instead_of_sigbus(tmp_path, capsys, monkeypatch):
    # the free-space check passes, then another job fills the disk: the blocks of the face
    # arrays are reserved before the memory map is written, so this is ENOSPC, not SIGBUS
    reader = _reader(tmp_path / "data")
    monkeypatch.setattr(prepare, "get_reader", lambda name: reader)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    out = tmp_path / "cache"
    assert cli.main(["prepare", "fake", str(tmp_path / "data"), "--out", str(out), "--size", "32"]) == 2
    _one_line(capsys, str(out / "faces_32.npy"), "no space left on device")
    assert list(out.iterdir()) == []


def test_torch_save_on_a_full_disk_is_one_line_naming_the_checkpoint(tmp_path, capsys, monkeypatch):
    make_fold_files(tmp_path, subjects=6, frames=2)
    config = write_config(tmp_path, epochs=1)

    def save(obj, f, *args, **kwargs):  # what torch.save raises when the disk is full
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    run = tmp_path / "run"
    assert run_cli("train", tmp_path, config, run) == 2
    _one_line(capsys, str(run / CHECKPOINT), "no space left on device")
    assert _leftovers(run) == []
