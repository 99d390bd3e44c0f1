"""Evaluation of a trained method on positions of its fold: predictions (with optional
test-time flipping), the features the head reads, the scores of ferbench.train.metrics, and the
encoder's kNN probe (ferbench.train.probe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ferbench.data.folds import Prefetcher
from ferbench.errors import FerbenchError
from ferbench.train import probe

if TYPE_CHECKING:  # the Trainer calls evaluate() for its validation scores
    from ferbench.train.trainer import Trainer

#: test-time augmentation options (schedule key ``tta``)
TTA = ("none", "flip")

# -- evaluation -------------------------------------------------------------------------------
@torch.inference_mode()
def predict(trainer: Trainer, positions: np.ndarray, features: bool = False
            ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Method outputs (float32 numpy) for ``positions``, in order, without augmentation; with
    the schedule's ``tta: flip`` the mean of the outputs for each image and its mirror image
    (logits for classification). ``features``: also the features the head reads [N, D]
    (Method.features, of the image itself, not its mirror image), as ``(outputs, features)``."""
    method = trainer.method
    was_training = method.training
    method.eval()
    bs = int(trainer.schedule.get("eval_batch_size") or trainer.schedule["batch_size"])
    chunks = [positions[i:i + bs, None] for i in range(0, len(positions), bs)]
    tta = trainer.schedule.get("tta", "none")
    if tta not in TTA:
        raise FerbenchError(f"tta: {tta!r} (choose from {', '.join(TTA)})")
    outs, feats = [], []
    try:
        with Prefetcher(trainer.data, chunks, pin=trainer.cuda) as feed:
            for host in feed:
                batch = trainer.prepare(host, train=False)
                with trainer.autocast():
                    if features:
                        out, z = method.predict_with_features(batch.x)
                        out = out.float()
                        feats.append(z.float())
                    else:
                        out = method.predict(batch.x).float()
                    if tta == "flip":  # faces are near-symmetric: average with the mirror image
                        out = (out + method.predict(batch.x.flip(-1)).float()) / 2
                outs.append(out)
    finally:
        method.train(was_training)
    outputs = torch.cat(outs).cpu().numpy()
    if not features:
        return outputs
    return outputs, torch.cat(feats).cpu().numpy()


@torch.inference_mode()
def encoder_features(trainer: Trainer, positions: np.ndarray) -> np.ndarray:
    """Method.features of the un-augmented images at ``positions`` [N, D] (float32 numpy)."""
    method = trainer.method
    was_training = method.training
    method.eval()
    bs = int(trainer.schedule.get("eval_batch_size") or trainer.schedule["batch_size"])
    chunks = [positions[i:i + bs, None] for i in range(0, len(positions), bs)]
    feats = []
    try:
        with Prefetcher(trainer.data, chunks, pin=trainer.cuda) as feed:
            for host in feed:
                batch = trainer.prepare(host, train=False)
                with trainer.autocast():
                    feats.append(method.features(batch.x).float())
    finally:
        method.train(was_training)
    return torch.cat(feats).cpu().numpy()


def encoder_probe(trainer: Trainer) -> dict[str, Any]:
    """kNN probe of the method's current encoder on its fold (:mod:`ferbench.train.probe`)."""
    data = trainer.data
    bank = probe.bank_positions(data.indices["train"], trainer.seed)
    test = data.indices["test"]
    targets = data.va if data.task == "va" else data.label
    return probe.knn_probe(encoder_features(trainer, bank), targets[bank],
                           encoder_features(trainer, test), targets[test], data.task)


def evaluate(trainer: Trainer, positions: np.ndarray, legacy: bool = False, features: bool = True
             ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame | None]:
    """Scores, the predictions table and (``features``) the embeddings table for ``positions``;
    the per-epoch validation asks for no embeddings."""
    from ferbench.train import metrics as M

    data = trainer.data
    ids = data.folds["sample_id"].to_numpy(object)[positions]
    if features:
        out, feats = predict(trainer, positions, features=True)
        embeddings = embeddings_table(ids, feats)
    else:
        out, embeddings = predict(trainer, positions), None
    if data.task == "va":
        true = data.va[positions].astype(np.float64)
        scores: dict[str, Any] = {"metrics": M.va_metrics(true, out)}
        if legacy:
            opts = dict(trainer.method.legacy_metric_options)
            opts.update({k: v for k, v in trainer.settings.get("metrics", {}).items()
                         if k in ("sagr_variant", "legacy_rmse")})
            scores["legacy_metrics"] = M.va_metrics(
                true, out, legacy=True, batch_size=int(trainer.schedule["eval_batch_size"]), **opts)
        table = pd.DataFrame({"sample_id": ids, "valence": true[:, 0], "arousal": true[:, 1],
                              "pred_valence": out[:, 0].astype(np.float64),
                              "pred_arousal": out[:, 1].astype(np.float64)})
        return scores, table, embeddings
    labels = data.label[positions]
    probs = torch.softmax(torch.from_numpy(out), dim=1).numpy()
    pred = out.argmax(axis=1).astype(np.int64)
    cm = M.classification_metrics(labels, pred, data.num_classes)
    scores = {"metrics": {"accuracy": cm["accuracy"], "macro_f1": cm["macro_f1"]}, "confusion": cm["confusion"]}
    if legacy:  # no legacy variant of the classification metrics: the same numbers
        scores["legacy_metrics"] = dict(scores["metrics"])
    table = pd.DataFrame({"sample_id": ids, "label": labels, "pred": pred})
    for j, name in enumerate(data.classes):
        table[f"prob_{name}"] = probs[:, j].astype(np.float64)
    return scores, table, embeddings


def embeddings_table(ids: np.ndarray, feats: np.ndarray) -> pd.DataFrame:
    """sample_id and one float32 column per feature (e0, e1, ...)."""
    feats = np.asarray(feats, dtype=np.float32).reshape(len(ids), -1)
    columns = pd.DataFrame(feats, columns=[f"e{j}" for j in range(feats.shape[1])])
    return pd.concat([pd.DataFrame({"sample_id": ids}), columns], axis=1)
