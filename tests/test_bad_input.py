"""Bad input that once gave a wrong number or a traceback: each case kept as a regression test.

Config types and YAML, cache pixels and checkpoints, leftovers of killed writers, numerically
diverging training, and the operating system's refusals (symlink loops, --out naming a file,
too little memory). Image decoding has its own file (test_bad_input_images.py).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from fake_fold import make_fold_files, write_config
from fake_tables import TableReader
from ferbench import cli, doctor, startup
from ferbench.train.checkpoint import CHECKPOINT
from ferbench.data import cache_content
from ferbench.train.checkpoint import save_torch
from ferbench.config import read_yaml
from ferbench.data.folds import load_fold
from ferbench.datasets.base import ReadResult, make_table
from ferbench.train.divergence import DivergenceWatch, nonfinite_tensors
from ferbench.errors import FerbenchError
from ferbench.methods import get_method
from ferbench.data.prepare import prepare_cache

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "ferbench"


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def _validate(tmp_path: Path, capsys, override: dict | str) -> tuple[int, str]:
    path = tmp_path / "override.yaml"
    path.write_text(override if isinstance(override, str) else yaml.safe_dump(override))
    rc = cli.main(["validate-config", str(REPO / "params.yaml"), str(path)])
    out = capsys.readouterr()
    return rc, (out.err or out.out).strip()


# -- 2. types are checked where they are declared ----------------------------------------------
@pytest.mark.parametrize("key, value, wanted", [
    ("methods.ssl_timeaug.mask_fn", "false", "a boolean"),
    ("methods.caf.adaptive_margin", "yes", "a boolean"),
    ("methods.caf.otsu_bins", 256.0, "an integer"),
    ("methods.caf.otsu_bins", True, "an integer"),
    ("methods.caf.margin", "0.5", "a number"),
    ("methods.avce.head_lr", "0.1", "a number or null"),
    ("methods.ssl_timeaug.time_offsets", 2, "a list"),
])
def test_validate_config_rejects_a_value_of_the_wrong_type_in_one_line(tmp_path, capsys, key, value, wanted):
    _, method, name = key.split(".")
    rc, line = _validate(tmp_path, capsys, {"methods": {method: {name: value}}})
    assert rc == 2 and len(line.splitlines()) == 1
    assert f"{key}: {value!r} is {type(value).__name__}, expected {wanted}" in line


@pytest.mark.parametrize("key, value", [
    ("methods.caf.margin", 1),             # an integer is a number
    ("methods.avce.head_lr", None),        # declared: a number or null
    ("methods.avce.head_lr", 0.01),
    ("methods.ssl_timeaug.mask_fn", False),
])
def test_validate_config_accepts_values_of_the_declared_type(tmp_path, capsys, key, value):
    _, method, name = key.split(".")
    rc, line = _validate(tmp_path, capsys, {"methods": {method: {name: value}}})
    assert rc == 0 and line.endswith(": valid")


def test_the_job_checks_types_too_without_validate_config():
    cls = get_method("ssl_fer")
    assert cls.hparam_type_problem("mask_fn", "false") == "'false' is str, expected a boolean (true or false)"
    assert cls.hparam_type_problem("mask_fn", True) is None
    from ferbench.methods import TaskInfo

    settings = {"method_name": "ssl_x", "method": {"hard_neg": "no"}, "train": {}}
    with pytest.raises(FerbenchError, match=r"methods\.ssl_x\.hard_neg: 'no' is str, expected a boolean"):
        cls(settings, TaskInfo("classification", ("a", "b"), 32))


def test_no_bool_of_a_setting_in_the_source():
    """bool("false") is True: a setting is never passed through bool() (its type is checked)."""
    suspicious = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "bool" and node.args:
                text = ast.unparse(node.args[0])
                if any(word in text for word in ("hp[", "hp.get", "settings", "config", "args.", "params")):
                    suspicious.append(f"{path.relative_to(SRC)}:{node.lineno}: bool({text})")
    assert suspicious == []


def test_duplicate_yaml_key_names_both_lines(tmp_path, capsys):
    text = "budget: demo\nrun:\n  seeds: [0]\n  seeds: [1]\n"
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(FerbenchError, match=r"dup\.yaml:4:3: not valid YAML: duplicate key 'seeds' "
                                            r"\(first at line 3\)"):
        read_yaml(path)
    rc, line = _validate(tmp_path, capsys, "budget: demo\nbudget: cpu\n")
    assert rc == 2 and "override.yaml:2:1: not valid YAML: duplicate key 'budget' (first at line 1)" in line
    # YAML merge keys combine mappings: not a duplicate
    path.write_text("a: &x {k: 1}\nb:\n  <<: *x\n  j: 2\n")
    assert read_yaml(path) == {"a": {"k": 1}, "b": {"k": 1, "j": 2}}


@pytest.mark.parametrize("root", ["data/<ck>", "data/a>b", "data/two\nlines"])
def test_dataset_root_snakemake_cannot_carry_is_one_line(tmp_path, capsys, root):
    rc, line = _validate(tmp_path, capsys, {"datasets": {"ckplus": {"root": root}}})
    assert rc == 2 and len(line.splitlines()) == 1
    assert "datasets.ckplus.root:" in line and "Snakemake cannot carry" in line


# -- 1. images through prepare ----------------------------------------------------------------
def _image_table(root: Path, images: dict[str, Image.Image]):
    rows = []
    for i, (name, image) in enumerate(images.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name)
        rows.append({"sample_id": f"s{i}", "subject": f"S{i}", "sequence": f"S{i}_1", "frame": 1,
                     "path": name, "emotion": "happiness", "apex": True})
    return TableReader("fake", ReadResult(make_table(rows, "fake"), precropped=True))


def test_a_16bit_png_caches_the_same_face_as_its_8bit_twin_and_other_modes_are_counted(tmp_path):
    face = np.random.default_rng(0).integers(0, 256, size=(40, 40), dtype=np.uint8)
    reader = _image_table(tmp_path / "data", {
        "eight.png": Image.fromarray(face),
        "sixteen.png": Image.fromarray(face.astype(np.uint16) * 257),
        "float.tif": Image.fromarray(face.astype(np.float32), mode="F"),
    })
    report = prepare_cache(reader, tmp_path / "data", tmp_path / "cache", sizes=[32], progress=False)
    assert report["images"] == 2 and report["skipped"] == {"unsupported image mode F": 1}
    faces = np.load(tmp_path / "cache" / "faces_32.npy")
    assert np.abs(faces[0].astype(int) - faces[1].astype(int)).max() <= 1
    assert faces[1].max() > 200  # not all 255 (the clipped decode), not all dark either
    with pytest.raises(FerbenchError, match=r"float\.tif: unsupported image mode F \(--strict\)"):
        prepare_cache(reader, tmp_path / "data", tmp_path / "strict", sizes=[32], strict=True, progress=False)


# -- 3. the cache's pixels are part of its fingerprint -----------------------------------------
@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    images = {f"S{i}/f.png": Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)) for i in range(120)}
    reader = _image_table(tmp_path / "data", images)
    prepare_cache(reader, tmp_path / "data", tmp_path / "cache", sizes=[64], progress=False)
    return tmp_path / "cache"


def _flip(path: Path, position: int, keep_time: bool = False) -> None:
    stat = path.stat()
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))
    if keep_time:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _doctor(paths: list[Path], *extra: str) -> tuple[int, str]:
    import contextlib
    import io as _io

    buf = _io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["doctor", *map(str, paths), *extra])
    return rc, buf.getvalue()


def test_prepare_records_the_pixel_hash_it_computed_while_writing(prepared):
    report = json.loads((prepared / "report.json").read_text())
    rec = report["content"]["faces_64.npy"]
    path = prepared / "faces_64.npy"
    # the hash of the pixels as they lie on disk (header left out), rows in cache order
    import hashlib

    assert rec["sha256"] == hashlib.sha256(np.load(path).tobytes()).hexdigest()
    assert rec["bytes"] == path.stat().st_size and rec["mtime_ns"] == path.stat().st_mtime_ns
    assert len(rec["blocks"]) == cache_content.SAMPLE_BLOCKS
    assert _doctor([prepared])[0] == 0 and _doctor([prepared], "--deep")[0] == 0


def test_a_flipped_byte_is_caught_by_doctor_and_train(prepared, tmp_path):
    path = prepared / "faces_64.npy"
    offset = cache_content.data_offset(path)
    _flip(path, offset + 300_000)  # the file's time changes: the quick check re-hashes it all
    rc, out = _doctor([prepared])
    assert rc == 1 and "stale" in out and "faces_64.npy: pixels differ from what prepare wrote" in out
    report = json.loads((prepared / "report.json").read_text())
    with pytest.raises(FerbenchError, match=r"faces_64\.npy: pixels differ from what prepare wrote.*"
                                            r"rerun `ferbench prepare`"):
        cache_content.check_faces(prepared, 64, report)


def test_load_fold_refuses_a_cache_whose_pixels_changed(tmp_path):
    cache, folds = make_fold_files(tmp_path, subjects=6, frames=2)
    path = cache / "faces_32.npy"
    report = json.loads((cache / "report.json").read_text())
    report["content"] = {path.name: cache_content.record(path, cache_content.full_sha256(
        path, cache_content.data_offset(path)))}
    (cache / "report.json").write_text(json.dumps(report))
    assert len(load_fold(cache, folds, 0, 32).images) == 6 * 4 * 2  # subjects x classes x frames
    _flip(path, cache_content.data_offset(path) + 1000)
    with pytest.raises(FerbenchError, match=r"faces_32\.npy: pixels differ from what prepare wrote"):
        load_fold(cache, folds, 0, 32)


def test_a_flip_behind_an_unchanged_file_time_needs_a_sampled_block_or_deep(prepared):
    path = prepared / "faces_64.npy"
    offset = cache_content.data_offset(path)
    rec = json.loads((prepared / "report.json").read_text())["content"]["faces_64.npy"]
    sampled = {start + k for start, _ in rec["blocks"] for k in range(cache_content.BLOCK)}
    outside = next(p for p in range(0, path.stat().st_size - offset, 4099) if p not in sampled)
    _flip(path, offset + outside, keep_time=True)
    assert _doctor([prepared])[0] == 0          # the documented limit of the quick check
    rc, out = _doctor([prepared], "--deep")     # every pixel re-hashed
    assert rc == 1 and "pixels differ" in out
    _flip(path, offset + outside, keep_time=True)  # back as it was
    _flip(path, offset + int(rec["blocks"][5][0]) + 7, keep_time=True)
    rc, out = _doctor([prepared])
    assert rc == 1 and f"block at byte {offset + int(rec['blocks'][5][0])}" in out


def test_a_truncated_face_array_is_refused(prepared):
    path = prepared / "faces_64.npy"
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    why = cache_content.problem(path, json.loads((prepared / "report.json").read_text())["content"][path.name])
    assert why is not None and "truncated or replaced" in why


def test_train_refuses_a_grey_cache_for_a_colour_method(tmp_path, capsys):
    make_fold_files(tmp_path, subjects=6, frames=2, channels=1)
    config = write_config(tmp_path)
    rc = cli.main(["train", "--config", str(config), "--dataset", "fake", "--method", "supervised",
                   "--fold", "0", "--seed", "0", "--cache", str(tmp_path / "cache"),
                   "--folds", str(tmp_path / "folds.parquet"), "--out", str(tmp_path / "run"),
                   "--device", "cpu", "--no-progress"])
    line = _one_error_line(capsys)
    assert rc == 2 and "faces_32.npy: cache holds 1 channel(s), method 'supervised' takes 3" in line
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_doctor_reports_truncated_model_encoder_and_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"dataset": "fake", "inputs": {}}))
    pd.DataFrame({"sample_id": ["a"]}).to_parquet(run / "predictions.parquet")
    torch.save({"w": torch.ones(1000)}, run / "model.pt")
    (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:500])
    rc, out = _doctor([run])
    assert rc == 1 and "model.pt unreadable" in out and "incomplete" in out

    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "metrics.json").write_text(json.dumps({"stage": "pretrain", "inputs": {}}))
    (pre / "encoder.pt").write_bytes(b"PK\x03\x04 cut short")
    rc, out = _doctor([pre])
    assert rc == 1 and "encoder.pt unreadable" in out

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "checkpoint_last.pt").write_bytes(b"\x00" * 64)
    rc, out = _doctor([killed])
    assert rc == 1 and "checkpoint_last.pt: checkpoint unreadable" in out


# -- 4. faults leave nothing behind -------------------------------------------------------------
LEFTOVERS = (".train_log.csv.ab12cd34.tmp", ".model.pt.ab12cd34.pt")


def test_doctor_names_the_command_that_removes_a_leftover(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    cache.mkdir()
    for name in LEFTOVERS:
        (run / name).write_text("x")
    (cache / ".faces_64.npy.ab12cd34.npy").write_text("x")
    (tmp_path / ".summary.json.ab12cd34.tmp").write_text("x")
    (tmp_path / ".notes.txt.ab12cd34.tmp").write_text("x")
    rc, out = _doctor([tmp_path])
    lines = {line.split(": ", 1)[0].split()[-1]: line for line in out.splitlines() if " temp " in line}
    assert rc == 1 and len(lines) == 5
    assert "no command removes it here" in lines[str(tmp_path / ".notes.txt.ab12cd34.tmp")]
    assert "the next start of `ferbench train` or `ferbench pretrain`" in lines[str(run / LEFTOVERS[0])]
    assert "the next start of `ferbench prepare`" in lines[str(cache / ".faces_64.npy.ab12cd34.npy")]
    assert "`ferbench aggregate`" in lines[str(tmp_path / ".summary.json.ab12cd34.tmp")]


@pytest.mark.slow
def test_a_rerun_of_train_removes_what_a_killed_train_left(tmp_path):
    make_fold_files(tmp_path, subjects=6, frames=2)
    config = write_config(tmp_path, epochs=1)
    out = tmp_path / "run"
    out.mkdir()
    for name in LEFTOVERS:
        (out / name).write_text("half written")
    assert cli.main(["train", "--config", str(config), "--dataset", "fake", "--method", "supervised",
                     "--fold", "0", "--seed", "0", "--cache", str(tmp_path / "cache"),
                     "--folds", str(tmp_path / "folds.parquet"), "--out", str(out),
                     "--device", "cpu", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert (out / "metrics.json").exists()


def test_aggregate_removes_its_own_leftovers_only(tmp_path):
    from ferbench.report.aggregate import remove_leftovers

    tables, figures = tmp_path / "tables", tmp_path / "figures"
    tables.mkdir()
    figures.mkdir()
    (tables / ".ckplus.md.ab12cd34.tmp").write_text("x")
    (figures / ".tsne.png.ab12cd34.png").write_text("x")
    (tmp_path / ".summary.json.ab12cd34.tmp").write_text("x")
    (tmp_path / ".other.json.ab12cd34.tmp").write_text("x")  # not aggregate's
    remove_leftovers(Namespace(tables=str(tables), figures=str(figures), summary=str(tmp_path / "summary.json"),
                               plots=str(tmp_path / "plots.csv"), report=None))
    left = sorted(p.name for p in tmp_path.rglob(".*"))
    assert left == [".other.json.ab12cd34.tmp"]


def test_a_tensor_that_is_not_finite_is_never_saved(tmp_path):
    path = tmp_path / "model.pt"
    save_torch(path, {"w": torch.ones(3)})
    state = {"model": {"w": torch.tensor([1.0, float("nan")]), "b": torch.zeros(2)},
             "optimizers": [{"state": {0: {"exp_avg": torch.tensor([float("inf")])}}}], "step": 3}
    assert nonfinite_tensors(state) == ["model.w", "optimizers.0.state.0.exp_avg"]
    with pytest.raises(FerbenchError, match=r"model\.pt: model\.pt not written: 2 tensor\(s\) hold NaN or inf "
                                            r"\(first: model\.w\)"):
        save_torch(path, state)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))  # the last finite one kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_divergence_watch_warns_once_past_two_orders_of_magnitude():
    lines: list[str] = []
    watch = DivergenceWatch(lines.append)
    watch.first_step({"loss": torch.tensor([2.0, 2.0])})
    watch.first_step({"loss": torch.tensor(9.0)})  # only the first step counts
    assert not watch.end_of_first_epoch({"loss": 150.0}, 0.1)  # x75: not yet
    assert watch.end_of_first_epoch({"loss": 2.6e11}, 1e12)
    assert not watch.end_of_first_epoch({"loss": 5e11}, 1e12)  # once
    assert lines == ["warning: loss diverging: 2 at the first step, 2.6e+11 at the end of the first "
                     "epoch (x1.3e+11); lower lr (now 1e+12)"]


def _train(tmp_path: Path, config: Path, out: Path) -> int:
    return cli.main(["train", "--config", str(config), "--dataset", "fake", "--method", "supervised",
                     "--fold", "0", "--seed", "0", "--cache", str(tmp_path / "cache"),
                     "--folds", str(tmp_path / "folds.parquet"), "--out", str(out),
                     "--device", "cpu", "--no-progress"])


@pytest.mark.slow
def test_adam_at_an_absurd_lr_warns_that_the_loss_diverges(tmp_path, capsys):
    make_fold_files(tmp_path, subjects=12, frames=3, n_folds=3)
    config = write_config(tmp_path, epochs=2, batch_size=4, lr=1e12, checkpoint_every=1000)
    out = tmp_path / "run"
    _train(tmp_path, config, out)  # finishes at chance, or stops on a NaN: either way it warned
    warned = [line for line in (out / "run.log").read_text().splitlines() if "loss diverging" in line]
    assert len(warned) == 1 and "lower lr (now 1e+12)" in warned[0]


@pytest.mark.slow
def test_sgd_nan_stop_keeps_only_a_finite_checkpoint(tmp_path, capsys):
    make_fold_files(tmp_path, subjects=12, frames=3, n_folds=3)
    config = write_config(tmp_path, epochs=4, batch_size=4, lr=1e8, checkpoint_every=1)
    params = yaml.safe_load(config.read_text())
    params["budgets"]["tiny"]["optimizer"] = "sgd"
    config.write_text(yaml.safe_dump(params))
    out = tmp_path / "run"
    assert _train(tmp_path, config, out) == 2
    line = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(line) == 1 and ("NaN or inf" in line[0] or "training 'loss' is" in line[0])
    ckpt = out / CHECKPOINT
    if ckpt.exists():  # the last finite one: a rerun resumes from finite weights
        assert nonfinite_tensors(torch.load(ckpt, weights_only=True)) == []
    assert not (out / "metrics.json").exists()


# -- 5. one line for the operating system's refusals -------------------------------------------
def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    make_fold_files(tmp_path, subjects=6, frames=2)
    config = write_config(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    assert _train(tmp_path, config, tmp_path / "afile") == 2
    assert _one_error_line(capsys).endswith(f"{tmp_path / 'afile'}: exists and is not a folder (give a folder path)")


def test_a_symlink_loop_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError) as info:
        os.stat(tmp_path / "a")
    assert startup.one_line(info.value) == f"{tmp_path / 'a'}: too many levels of symbolic links (a symlink loop)"
    # through the command line: a reader walking into the loop
    def walk(args):
        os.stat(tmp_path / "a")
    monkeypatch.setattr(cli, "_lazy", lambda target: walk)
    assert cli.main(["inspect", "ckplus", str(tmp_path)]) == 2
    assert "symlink loop" in _one_error_line(capsys)


def test_memory_limit_below_what_torch_maps_is_one_line_naming_it(tmp_path):
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))

    proc = subprocess.run([sys.executable, "-m", "ferbench.cli", "validate-config", str(REPO / "params.yaml")],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "address-space limit (ulimit -v) is 1024 MiB" in proc.stderr


def test_a_library_that_fails_to_map_is_one_line(capsys, monkeypatch):
    def boom(args):
        raise OSError("/x/libtorch_cpu.so: failed to map segment from shared object")
    monkeypatch.setattr(cli, "_lazy", lambda target: boom)
    assert cli.main(["compare", "a", "b"]) == 2
    assert "not enough memory (/x/libtorch_cpu.so: failed to map segment" in _one_error_line(capsys)


def test_inspect_verify_counts_unsupported_modes_by_name(tmp_path):
    import collections

    from ferbench.data.inspection import verify_images

    face = np.zeros((8, 8), np.uint8)
    reader = _image_table(tmp_path, {"a.png": Image.fromarray(face), "b.tif": Image.fromarray(face.astype(np.float32)),
                                     "c.png": Image.fromarray(face)})
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    reasons: collections.Counter = collections.Counter()
    ok = verify_images(reader, tmp_path, reader.result.table, strict=False, progress=False, reasons=reasons)
    assert ok.tolist() == [True, False, False]
    assert reasons == {"unsupported image mode F": 1, "unreadable image": 1}


def test_the_workflow_refuses_a_duplicate_key_in_a_configfile(tmp_path):
    """Snakemake reads --configfile files itself and keeps a repeated key's last value; the
    Snakefile reads them again through read_yaml before building the DAG."""
    path = tmp_path / "dup.yaml"
    path.write_text("budget: demo\nbudget: cpu\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    dag = subprocess.run([sys.executable, "-m", "snakemake", "--nolock", "--dry-run", "--configfile", str(path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = dag.stdout + dag.stderr
    assert dag.returncode != 0 and "Building DAG" not in out, out
    assert f"{path}:2:1: not valid YAML: duplicate key 'budget' (first at line 1)" in out, out


def test_a_symlink_loop_in_a_dataset_root_is_one_line(tmp_path, capsys):
    assert cli.main(["synthesize", "--out", str(tmp_path / "syn"), "--layouts", "ckplus", "--subjects", "2",
                     "--frames", "3", "--size", "48"]) == 0
    capsys.readouterr()
    emotion = next(p for p in sorted((tmp_path / "syn" / "ckplus" / "Emotion").iterdir()) if p.is_dir())
    (emotion / "a").symlink_to(emotion / "b")
    (emotion / "b").symlink_to(emotion / "a")
    assert cli.main(["inspect", "ckplus", str(tmp_path / "syn" / "ckplus")]) == 2
    line = _one_error_line(capsys)
    assert line.endswith("too many levels of symbolic links (a symlink loop)") and str(emotion) in line
