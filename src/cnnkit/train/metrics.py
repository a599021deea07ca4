"""Evaluation of a classifier on a dataset: loss, accuracy, confusion matrix, per-class accuracy; and the
most probable classes of single predictions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnkit.data.dataset import ArrayDataset
from cnnkit.errors import DataError
from cnnkit.graph import Network
from cnnkit.train import from_section

DEFAULT_LOSS = {"type": "cross_entropy"}


def evaluate(net: Network, dataset: ArrayDataset, batch_size: int = 256,
             loss: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Eval-mode metrics of `net` on every example of `dataset`.

    loss: a recipe's loss section ({"type": name, **attrs}); default: the spec's training loss, else
    cross-entropy. Returns {"examples", "loss", "accuracy", "confusion" (rows: true class, columns:
    predicted, as nested lists), "per_class_accuracy" (None for a class with no examples), "class_names"}.
    """
    if len(dataset) == 0:
        raise DataError("cannot evaluate on an empty dataset")
    if loss is None:
        loss = net.spec.train.loss if net.spec.train is not None else DEFAULT_LOSS
    logits = net.predict(dataset.x, batch_size=batch_size)
    value = from_section(net.registry.loss, loss).forward(logits, dataset.y)
    predicted = logits.argmax(axis=1)
    classes = max(dataset.classes, logits.shape[1])
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (dataset.y, predicted), 1)
    totals = confusion.sum(axis=1)
    per_class = [int(confusion[c, c]) / int(totals[c]) if totals[c] else None for c in range(dataset.classes)]
    return {
        "examples": len(dataset),
        "loss": value,
        "accuracy": float(np.count_nonzero(predicted == dataset.y)) / len(dataset),
        "confusion": confusion.tolist(),
        "per_class_accuracy": per_class,
        "class_names": list(dataset.class_names),
    }


def probabilities(net: Network, outputs: np.ndarray) -> np.ndarray:
    """Class probabilities from the network's outputs: the softmax of the logits, or the outputs as they are
    when the network already ends in a softmax layer."""
    if net.nodes[-1].layer.name == "softmax":
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def top_classes(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, their probabilities), each (N, min(k, classes)), most probable first; ties go to
    the lower class index."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)
