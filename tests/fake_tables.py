"""Hand-built sample tables and a table-backed fake reader for the prepare/folds/inspect tests;
fake run folders (metrics.json as the engine writes it) for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ferbench.datasets.base import Reader, ReadResult, make_table, open_image

CKPLUS_FOLDS = [33, 39, 40, 35, 30, 37, 29, 29, 33, 22]
CKPLUS_CLASSES = {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25,
                  "happiness": 69, "sadness": 28, "surprise": 83}


def ckplus_like_rows(frames: int = 5) -> list[dict]:
    """123 subjects with non-contiguous IDs (S005, S010, ...), 118 of them labelled.

    Labelled-sequence counts per subject are arranged so that the sorted-ID rank-mod-10 rule
    yields CKPLUS_FOLDS, and emotions so that the class totals are CKPLUS_CLASSES with no fear
    in the last fold (as in the real CK+).
    """
    rng = np.random.default_rng(7)
    numbers = sorted(int(n) for n in rng.choice(np.arange(5, 1000), size=123, replace=False))
    ids = [f"S{n:03d}" for n in numbers]
    unlabelled = {ids[i] for i in (2, 31, 64, 90, 122)}
    labelled = [s for s in ids if s not in unlabelled]
    assert len(labelled) == 118
    per_fold = {f: labelled[f::10] for f in range(10)}
    seq_counts: dict[str, int] = {}
    for f, subjects in per_fold.items():
        q, r = divmod(CKPLUS_FOLDS[f], len(subjects))
        for i, s in enumerate(subjects):
            seq_counts[s] = q + (1 if i < r else 0)
    # emotions in fold order, fear first: the 25 fear sequences all land in fold 0
    emotions = [e for e in ("fear", "anger", "contempt", "disgust", "happiness", "sadness", "surprise")
                for _ in range(CKPLUS_CLASSES[e])]
    order = [s for f in range(10) for s in per_fold[f]]
    seq_emotion: dict[tuple[str, int], str] = {}
    k = 0
    for s in order:
        for q in range(seq_counts[s]):
            seq_emotion[(s, q + 1)] = emotions[k]
            k += 1
    assert k == 327
    rows = []
    for s in ids:
        n_lab = seq_counts.get(s, 0)
        for q in range(1, n_lab + 2):  # every subject also has one unlabelled sequence
            emotion = seq_emotion.get((s, q))
            seq = f"{s}_{q:03d}"
            apex_frame = frames if (q % 4) else frames - 1  # some apexes before the last frame
            for fr in range(1, frames + 1):
                rows.append({
                    "sample_id": f"{seq}_{fr:08d}", "subject": s, "sequence": seq, "frame": fr,
                    "path": f"cohn-kanade-images/{s}/{q:03d}/{seq}_{fr:08d}.png",
                    "emotion": emotion, "apex": emotion is not None and fr == apex_frame,
                })
    return rows


def ckplus_like_table(frames: int = 5):
    return make_table(ckplus_like_rows(frames), "ckplus")


class TableReader(Reader):
    """Returns a fixed ReadResult; decodes ``root/path`` with PIL (the base iter_images)."""

    kind = "sequence"
    task = "classification"

    def __init__(self, name: str, result: ReadResult) -> None:
        self.name = name
        self.result = result

    def read(self, root: Path, strict: bool = False) -> ReadResult:
        return self.result

    def load_image(self, root: Path, row) -> np.ndarray:
        return open_image(Path(root) / row["path"])


# ------------------------------------------------------------------------------ fake runs
CK_CLASSES = ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]
VA = ["valence_rmse", "valence_pcc", "valence_ccc", "valence_sagr",
      "arousal_rmse", "arousal_pcc", "arousal_ccc", "arousal_sagr"]


def write_run(root: Path, dataset: str, method: str, fold: int, seed: int = 0, *,
              task: str = "classification", metrics: dict, legacy: dict | None = None,
              classes: list[str] | None = None, confusion=None, backbone: str = "smallcnn",
              budget: str = "demo", data: str | None = "synthetic", drop: tuple = (),
              extra: dict | None = None, provenance: dict | None = None,
              settings: dict | None = None) -> Path:
    """A run folder as the engine writes it: metrics.json (``provenance`` as its key of that
    name), and settings.json when ``settings`` ({image_size, epochs, protocol: (kind, folds)})
    is given."""
    obj = {"dataset": dataset, "method": method, "fold": fold, "seed": seed, "task": task,
           "metrics": metrics, "n_train": 100, "n_test": 20, "steps": 50, "wall_s": 1.5,
           "budget": budget, "backbone": backbone,
           "extra": {**({"data": data} if data else {}), **(extra or {})}}
    if task == "classification":
        classes = classes or CK_CLASSES
        obj["classes"] = classes
        obj["confusion"] = confusion if confusion is not None else [
            [3 if i == j else 0 for j in range(len(classes))] for i in range(len(classes))]
    if legacy is not None:
        obj["legacy_metrics"] = legacy
    if provenance is not None:
        obj["provenance"] = provenance
    for key in drop:
        obj.pop(key)
    path = root / dataset / method / f"fold{fold}" / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        settings = dict(settings)
        protocol = settings.pop("protocol", None)
        train = {k: {"value": v, "from": "budget: budgets.demo." + k} for k, v in settings.items()}
        written = {"train": train}
        if protocol is not None:
            written["protocol"] = {"kind": {"value": protocol[0]}, "folds": {"value": protocol[1]}}
        (path.parent / "settings.json").write_text(json.dumps(written))
    path.write_text(json.dumps(obj))   # json writes NaN as NaN, as the engine's json.dumps does
    return path


def va(v: float, a: float) -> dict:
    return {k: (v if k.startswith("valence") else a) for k in VA}


def run_aggregate(tmp: Path, runs: Path, budget: str = "demo",
                  config: dict | None = None) -> tuple[int, dict]:
    """`ferbench aggregate` on ``runs`` with a params.yaml of ``budget`` (and ``config``)."""
    from ferbench import cli

    cfg = tmp / "params.yaml"
    cfg.write_text(json.dumps({"budget": budget, **(config or {})}))   # JSON is YAML
    out = {"tables": tmp / "out" / "tables", "figures": tmp / "out" / "figures",
           "summary": tmp / "out" / "summary.json", "plots": tmp / "out" / "plots.csv",
           "report": tmp / "out" / "report" / "index.html"}
    code = cli.main(["aggregate", "--runs", str(runs), "--config", str(cfg),
                     "--tables", str(out["tables"]), "--figures", str(out["figures"]),
                     "--summary", str(out["summary"]), "--plots", str(out["plots"]),
                     "--report", str(out["report"])])
    return code, out


#: ckplus accuracies of fake_multifold_runs: fold k -> supervised, gcnet_s1r1, cnn_baseline
MULTIFOLD = {k: (0.70 + 0.01 * (k % 3), 0.75 + 0.01 * (k % 3) + 0.002 * k,
                 0.70 + 0.01 * (k % 3) + (0.01 if k % 2 else -0.01)) for k in range(10)}


def fake_multifold_runs(root: Path, folds: int = 10) -> None:
    """CK+ 10-fold runs: gcnet_s1r1 beats supervised in every fold (by 0.05 + 0.002 k);
    cnn_baseline alternates +-0.01 around supervised (no significant difference).
    macro_f1 = accuracy - 0.1. n_train 100, n_test 20 (write_run's)."""
    for k in range(folds):
        for method, acc in zip(("supervised", "gcnet_s1r1", "cnn_baseline"), MULTIFOLD[k]):
            write_run(root, "ckplus", method, k, metrics={"accuracy": acc, "macro_f1": acc - 0.1})


def write_artefacts(run_json: Path, steps: int = 40, n: int = 30) -> None:
    """train_log.csv, predictions.parquet and embeddings.parquet (``n`` test samples) beside a
    fake run's metrics.json, as the engine writes them (deterministic values from the run's
    fold and seed). Embeddings: 16 dimensions around one centre per class (the same centres in
    every run), spread 0.3 for the baselines and 0.1 for other methods."""
    import pandas as pd

    obj = json.loads(Path(run_json).read_text())
    rng = np.random.default_rng(1000 * obj["fold"] + obj["seed"])
    step = np.arange(10, steps + 1, 10)
    log = pd.DataFrame({"step": step, "epoch": step // 20, "lr": 0.01 * 0.5 ** (step // 20),
                        "loss": 2.0 / np.sqrt(step), "loss_aux": 0.5 / step})
    log["val_" + ("accuracy" if obj["task"] == "classification" else "mean_ccc")] = np.where(
        step % 20 == 0, 0.5 + step / 200, np.nan)
    log.to_csv(Path(run_json).parent / "train_log.csv", index=False)
    if obj["task"] == "classification":
        k = len(obj["classes"])
        label = rng.integers(0, k, n)
        preds = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "label": label,
                              "pred": np.where(rng.random(n) < 0.7, label, rng.integers(0, k, n))})
    else:
        v, a = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
        preds = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "valence": v,
                              "arousal": a, "pred_valence": 0.6 * v + rng.normal(0, 0.2, n),
                              "pred_arousal": 0.4 * a + rng.normal(0, 0.2, n)})
    preds.to_parquet(Path(run_json).parent / "predictions.parquet", index=False)
    if obj["task"] == "classification":
        centres = np.random.default_rng(7).normal(0, 1, (len(obj["classes"]), 16))
        spread = 0.3 if obj["method"] in ("supervised", "cnn_baseline") else 0.1
        feats = (centres[preds["label"]] + rng.normal(0, spread, (n, 16))).astype(np.float32)
        emb = pd.DataFrame(feats, columns=[f"e{j}" for j in range(16)])
        emb.insert(0, "sample_id", preds["sample_id"])
        emb.to_parquet(Path(run_json).parent / "embeddings.parquet", index=False)


#: the default run (params.yaml as shipped, demo budget, fold 0, seed 0): dataset -> task -> runs
DEFAULT_RUN = {
    "ckplus": {"classification": ("supervised", "cnn_baseline", "gcnet_s0r0", "gcnet_s1r0",
                                  "gcnet_s0r1", "gcnet_s1r1")},
    "fer2013": {"classification": ("supervised", "triplet_m1_fc_only", "triplet_m1_full_ft",
                                   "triplet_m12_fc_only", "triplet_m12_full_ft")},
    "afewva": {"va": ("supervised", "caf", "caf_fixed_margin", "avce", "avce_f1", "avce_f2",
                      "avce_no_dis", "avce_infonce", "avce_barlow")},
    "affectnet": {"classification": ("supervised", "simclr", "byol", "mocov2", "ssl_timeaug",
                                      "ssl_timeaug_hardneg", "ssl_timeaug_hardneg_cutmix",
                                      "ssl_timeaug_faceswap_maskfn",
                                      "ssl_timeaug_hardneg_faceswap",
                                      "ssl_timeaug_hardneg_maskfn", "ssl_all"),
                  "va": ("supervised_va", "caf", "caf_fixed_margin")},
}
AFFECTNET_CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger",
                     "contempt"]


def fake_default_runs(root: Path, provenance: dict | None = None) -> int:
    """The runs of the default `make run` (DEFAULT_RUN: 34 runs on synthetic faces), each with
    its train_log.csv, predictions and embeddings, so aggregate draws every figure it draws for
    the real thing. Scores differ per method (deterministic). Returns the number of runs."""
    n = 0
    for dataset, tasks in DEFAULT_RUN.items():
        for task, methods in tasks.items():
            for i, method in enumerate(methods):
                score = 0.3 + 0.03 * i
                if task == "classification":
                    classes = AFFECTNET_CLASSES if dataset == "affectnet" else CK_CLASSES
                    path = write_run(root, dataset, method, 0, metrics={
                        "accuracy": score, "macro_f1": score - 0.1}, classes=classes,
                        provenance=provenance)
                else:
                    path = write_run(root, dataset, method, 0, task="va",
                                     metrics=va(score - 0.2, score), backbone="resnet18",
                                     provenance=provenance)
                write_artefacts(path)
                n += 1
    return n
