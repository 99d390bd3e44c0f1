"""One training job: dataset x method x fold x seed (x stage), from cached faces to artefacts.

``ferbench train`` / ``ferbench pretrain`` land here. The job

1. checks its inputs (config entries, method class, fold, cache size, checkpoint) and stops
   with one clear line *before* training when something is wrong;
2. trains: batches gathered from the memory-mapped cache by a background thread (one sorted
   fancy index each), copied to the device (pinned, non-blocking on CUDA), augmented there per
   sample; precision and memory format as the schedule's ``precision`` / ``memory_format``
   ask, ``auto`` detected for the device (ferbench.precision: bf16 autocast on CUDA and on CPUs
   with native bf16, channels_last on CUDA and oneDNN CPUs); no host sync in the loop except
   every ``LOG_EVERY`` steps;
3. checkpoints every ``checkpoint_every`` steps (model, optimisers, schedulers, the epoch's batch
   order, every RNG state, the log so far) to ``checkpoint_last.pt`` and resumes from it when
   rerun, reaching the same result as an uninterrupted run (bitwise on CPU);
4. writes its artefacts atomically under ``--out``.

Artefacts of ``train`` (metrics.json is written last: its presence means the job finished)
  metrics.json         {dataset, method (the run name), fold, seed, task, classes (classification),
                       metrics: {accuracy, macro_f1} | {valence_rmse, valence_pcc, valence_ccc,
                       valence_sagr, arousal_rmse, arousal_pcc, arousal_ccc, arousal_sagr},
                       legacy_metrics (only when config metrics.legacy; same keys),
                       confusion (classification; rows = true class), inputs (the cache's, folds
                       table's and encoder's fingerprints: ferbench.provenance), n_train, n_test, steps,
                       wall_s, budget, backbone, device, precision, memory_format (as resolved),
                       train_images_per_s (training images per second of training-loop time,
                       validation included; this attempt's), extra: {method-specific numbers},
                       probe (train --pretrained: kNN probes of the pretrained and of a random
                       encoder, ferbench.train.probe), provenance: {data: {dataset, root, origin
                       (synthetic | real | unknown), layout (the reader's variant), images,
                       cache_fingerprint, folds_fingerprint}, software: {ferbench, git_commit,
                       torch}, hardware: {device, threads, device_name}, wall_s, train_images_per_s}}
  settings.json        every setting the job used, each {value, from: the config layer that set
                       it}: config.resolved_settings, what `ferbench settings` prints
  predictions.parquet  classification: sample_id, label, pred, prob_<class> per class;
                       va: sample_id, valence, arousal, pred_valence, pred_arousal
  embeddings.parquet   sample_id, e0 .. e{D-1} (float32): the test samples' features the head
                       reads (Method.features; without test-time flipping), rows in the order
                       of predictions.parquet; the report's t-SNE figure draws them
  model.pt             the method's full state_dict (CPU tensors; torch.load(weights_only=True))
  train_log.csv        step, epoch, lr, each logged loss term (means since the previous row),
                       val_<metric> on epoch-end rows when the protocol has a validation split
  run.log              human log; tb/ TensorBoard events; checkpoint_last.pt (resume state;
                       deleted once the job has finished, so a rerun with a changed config
                       trains afresh instead of refusing the old checkpoint)
Artefacts of ``pretrain``
  encoder.pt           {method, class, backbone, in_channels, image_size, state: encoder state_dict,
                       provenance: {dataset, fold (None: all subjects), all_subjects, subjects:
                       [[dataset, subject], ...] seen}}; train --pretrained refuses one that saw
                       a test subject of its fold
  metrics.json         {dataset, method, fold, seed, stage: "pretrain", task, losses: {final
                       logged means}, inputs (as above, no encoder), n_train (frames sampled
                       from), steps, wall_s, budget, backbone, device, precision, memory_format,
                       train_images_per_s, extra, provenance}
  settings.json, train_log.csv, run.log, tb/, checkpoint_last.pt (while unfinished) as above.
run.log has one line per epoch (stage, epoch/total, mean loss terms, images/s, elapsed, ETA,
validation scores where the protocol has a validation split).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferbench import io
from ferbench.config import load_config, resolved_settings, stage_settings
from ferbench.data.cache_content import check_channels
from ferbench.data.folds import load_fold
from ferbench.errors import FerbenchError
from ferbench.io import load_torch_file
from ferbench.methods.base import TaskInfo
from ferbench.methods.registry import get_method, method_class_name
from ferbench.provenance import check_encoder, encoder_provenance, job_inputs, run_provenance
from ferbench.train import probe
from ferbench.train.checkpoint import CHECKPOINT, save_torch
from ferbench.train.evaluation import encoder_probe, evaluate
from ferbench.train.trainer import Trainer, resolve_device, seed_everything, set_threads


# -- the verbs --------------------------------------------------------------------------------
class RunLog:
    """run.log: a human log, also echoed to stderr; rewritten atomically with each checkpoint."""

    def __init__(self, path: Path, echo: bool = True) -> None:
        import sys

        self.stream = sys.stderr
        self.path = path
        self.lines: list[str] = []
        self.echo = echo
        if path.exists():  # a resumed job keeps the earlier attempt's lines
            self.lines = path.read_text().splitlines()

    def __call__(self, line: str) -> None:
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
        self.lines.append(stamped)
        if self.echo:
            from tqdm.auto import tqdm

            tqdm.write(stamped, file=self.stream)

    def save(self) -> None:
        io.write_text(self.path, "\n".join(self.lines) + "\n")


def build_job(args: argparse.Namespace, stage: str) -> tuple[Trainer, dict[str, Any], RunLog]:
    """Everything that can fail on bad input happens here, before any training."""
    config = load_config(args.config, validate=False)  # the workflow validated it already
    settings = stage_settings(config, args.dataset, args.method, stage, str(args.config))
    cls = get_method(method_class_name(settings))
    if stage == "pretrain" and not cls.pretrain:
        raise FerbenchError(f"method {args.method!r} (class {cls.name!r}) has no pretraining stage")
    if stage == "train" and args.pretrained and not cls.pretrain:
        raise FerbenchError(f"method {args.method!r} has no pretraining stage; --pretrained does not apply")
    if stage == "train" and cls.pretrain and not args.pretrained:
        raise FerbenchError(f"method {args.method!r} needs --pretrained (run `ferbench pretrain` first)")
    device = resolve_device(args.device)
    set_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    size = int(settings["train"]["image_size"])
    data = load_fold(args.cache, args.folds, args.fold, size, dataset=args.dataset,
                     need_labels=stage == "train")
    all_subjects = stage == "pretrain" and (
        getattr(args, "all_subjects", False) or not cls.pretrain_data_depends_on_fold(settings))
    if all_subjects:
        data.subject_mask = np.ones(len(data.folds), dtype=bool)  # one job serves every fold
    settings["all_subjects"] = all_subjects
    task = TaskInfo(data.task, tuple(data.classes), size)
    pretrained = None
    if args.pretrained:
        pretrained = load_encoder(Path(args.pretrained), settings)
        check_encoder(args.pretrained, pretrained, args.dataset, data.folds, data.indices["test"],
                      data.subject_mask, data.fold)  # no test subject seen in pretraining
    settings["inputs"] = job_inputs(args.cache, args.folds, data.folds, args.pretrained, pretrained)
    settings["provenance"] = run_provenance(config, args.dataset, settings["inputs"], args.cache)
    resolved = resolved_settings(config, args.dataset, args.method, stage, config_path=str(args.config))
    seed_everything(int(args.seed))
    method = cls(settings, task)
    check_channels(args.cache, size, int(data.images.shape[1]), method.in_channels, args.method)
    method.setup(data, stage)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    io.remove_temporaries(out)  # the run folder is this job's alone: a killed attempt's leftovers
    # the settings this job trains with, as `ferbench settings` prints them (one source)
    io.write_json(out / "settings.json", resolved)
    log = RunLog(out / "run.log")
    # bars only where someone watches: a workflow job's log gets the per-epoch lines alone
    progress = not args.no_progress and sys.stderr.isatty()
    trainer = Trainer(method, data, settings, device, int(args.seed), out, progress=progress, log=log)
    if pretrained is not None:
        # the same network before and after loading: the random encoder is this method as built
        # (seeded), so the probe pair compares pretraining with no pretraining, nothing else
        random_probe = encoder_probe(trainer)
        try:
            method.load_pretrained(pretrained["state"])
        except (RuntimeError, KeyError) as err:
            raise FerbenchError(f"{args.pretrained}: encoder does not fit method {args.method!r} "
                                f"({str(err).splitlines()[0]})") from None
        trainer.probes = {"random": random_probe, "pretrained": encoder_probe(trainer)}
        truth = (data.va if data.task == "va" else data.label)[data.indices["test"]]
        trainer.probe_p = probe.paired_probe_test(trainer.probes["pretrained"]["pred"], random_probe["pred"],
                                                  truth, data.task)
        log("encoder probe (kNN, k=%d, cosine; pretrained / random): %s" % (probe.K, ", ".join(
            f"{key} {trainer.probes['pretrained'][key]:.4f} / {value:.4f}"
            for key, value in probe.public(random_probe).items())))
    n = len(method.sampling_units())
    log(f"{stage} {args.dataset} {args.method} (class {cls.name}) fold {args.fold} seed {args.seed}: "
        f"{n} {'training samples' if stage == 'train' else 'frames'}, {trainer.total_steps} steps on {device}, "
        f"backbone {settings['train']['backbone']} {size}px, {args.threads} thread(s), "
        f"{trainer.compute.describe()}")
    return trainer, settings, log


def load_encoder(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    payload = load_torch_file(path, "pretrained encoder")
    if not isinstance(payload, dict) or "state" not in payload:
        raise FerbenchError(f"{path}: not a ferbench encoder (no 'state')")
    backbone = settings["train"]["backbone"]
    if payload.get("backbone") != backbone:
        raise FerbenchError(f"{path}: encoder has backbone {payload.get('backbone')!r}, "
                            f"this job uses {backbone!r}")
    return payload


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {"dataset": args.dataset, "method": args.method, "fold": int(args.fold), "seed": int(args.seed)}


def _clear_final(out: Path, names: tuple[str, ...]) -> None:
    """A rerun must not leave the previous run's results looking current if it dies."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()


def _fit(args: argparse.Namespace, stage: str) -> tuple[Trainer, dict[str, Any], RunLog, Path]:
    """Build the job, forget a previous attempt's final metrics, train (resuming if it can)."""
    trainer, settings, log = build_job(args, stage)
    out = Path(args.out)
    _clear_final(out, ("metrics.json",))
    try:
        trainer.fit()
    except BaseException:
        log.save()
        raise
    return trainer, settings, log, out


def job_provenance(trainer: Trainer, settings: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """metrics.json ``provenance``: the data and software (provenance.run_provenance), the
    hardware, the wall time and the training throughput of this attempt."""
    threads = torch.get_num_threads()
    return {
        **settings["provenance"],
        "hardware": {"device": str(trainer.device), "threads": threads,
                     "device_name": (torch.cuda.get_device_name(trainer.device)
                                     if trainer.cuda else None)},
        "wall_s": wall_s,
        "train_images_per_s": round(trainer.images_seen / max(trainer.train_seconds, 1e-9), 2),
    }


def main_train(args: argparse.Namespace) -> int:
    trainer, settings, log, out = _fit(args, "train")
    data, method = trainer.data, trainer.method
    legacy = settings.get("metrics", {}).get("legacy", False)
    if not isinstance(legacy, bool):  # never bool() a setting: bool("false") is True
        raise FerbenchError(f"{args.config}: metrics.legacy: {legacy!r} is not true or false")
    scores, table, embeddings = evaluate(trainer, data.indices["test"], legacy=legacy)
    result: dict[str, Any] = {**_common(args), "task": data.task}
    if data.task == "classification":
        result["classes"] = data.classes
    result["metrics"] = scores["metrics"]
    if legacy:
        result["legacy_metrics"] = scores["legacy_metrics"]
    if "confusion" in scores:
        result["confusion"] = scores["confusion"]
    result.update({
        "n_train": int(len(data.indices["train"])), "n_test": int(len(data.indices["test"])),
        "steps": trainer.step, "wall_s": round(trainer.wall_s, 3), "budget": settings.get("budget"),
        "backbone": settings["train"]["backbone"], "device": str(trainer.device),
        **trainer.speed_record(),
        "extra": method.extra_metrics(),
    })
    if trainer.probes:
        result["probe"] = {"k": probe.K, "metric": "cosine", "p_pretrained_better": trainer.probe_p,
                           **{name: probe.public(scores) for name, scores in trainer.probes.items()}}
    io.write_parquet(out / "predictions.parquet", table)
    io.write_parquet(out / "embeddings.parquet", embeddings)
    save_torch(out / "model.pt", {k: v.detach().cpu() for k, v in method.state_dict().items()})
    trainer.write_log_csv()
    log("test: " + ", ".join(f"{k} {v:.4f}" for k, v in scores["metrics"].items())
        + f" ({trainer.images_seen / max(trainer.train_seconds, 1e-9):.0f} training images/s this attempt, "
        f"validation included)")
    log.save()
    result["inputs"] = settings["inputs"]  # what doctor checks the result against
    result["provenance"] = job_provenance(trainer, settings, result["wall_s"])
    io.write_json(out / "metrics.json", result)  # last: its presence means the job finished
    _clear_final(out, (CHECKPOINT,))  # finished: a rerun (changed config) starts afresh
    return 0


def main_pretrain(args: argparse.Namespace) -> int:
    trainer, settings, log, out = _fit(args, "pretrain")
    method = trainer.method
    save_torch(out / "encoder.pt", {
        "method": args.method, "class": method.name, "backbone": settings["train"]["backbone"],
        "in_channels": method.in_channels, "image_size": int(settings["train"]["image_size"]),
        "state": {k: v.detach().cpu() for k, v in method.encoder_state_dict().items()},
        "provenance": encoder_provenance(args.dataset, args.fold, settings["all_subjects"],
                                         trainer.data.folds, trainer.data.subject_mask),
    })
    wall_s = round(trainer.wall_s, 3)
    result = {
        **_common(args), "stage": "pretrain", "task": trainer.data.task,
        "losses": trainer.last_losses, "n_train": int(len(method.sampling_units())),
        "steps": trainer.step, "wall_s": wall_s, "budget": settings.get("budget"),
        "backbone": settings["train"]["backbone"], "device": str(trainer.device),
        **trainer.speed_record(),
        "extra": method.extra_metrics(), "inputs": settings["inputs"],
        "provenance": job_provenance(trainer, settings, wall_s),
    }
    trainer.write_log_csv()
    log("pretrain done: " + ", ".join(f"{k} {v:.4f}" for k, v in trainer.last_losses.items()))
    log.save()
    io.write_json(out / "metrics.json", result)
    _clear_final(out, (CHECKPOINT,))  # finished: a rerun (changed config) starts afresh
    return 0
