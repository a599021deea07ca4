from __future__ import annotations

import numpy as np
import pytest

from cnnkit import build
from cnnkit.data.dataset import ArrayDataset
from cnnkit.errors import DataError
from cnnkit.train.metrics import evaluate

SPEC = {"name": "one", "input": [3], "layers": [{"name": "fc", "type": "linear", "units": 3, "bias": False}]}


def identity_net():
    """Outputs its input, so the logits (and predictions) are chosen by the test."""
    net = build(SPEC, dtype=np.float64)
    net.params["fc.weight"][...] = np.eye(3)
    return net


def dataset(logits, labels):
    return ArrayDataset(np.array(logits, np.float32), np.array(labels, np.int64), ("cat", "dog", "fox"))


def test_confusion_matrix_and_per_class_accuracy():
    # predicted: 0 0 1 1 2 0; true: 0 1 1 1 2 2
    logits = [[5, 0, 0], [5, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0]]
    result = evaluate(identity_net(), dataset(logits, [0, 1, 1, 1, 2, 2]), batch_size=4)
    assert result["confusion"] == [[1, 0, 0], [1, 2, 0], [1, 0, 1]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["per_class_accuracy"] == [1.0, pytest.approx(2 / 3), 0.5]
    assert result["class_names"] == ["cat", "dog", "fox"] and result["examples"] == 6
    z = np.array(logits, np.float64)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert result["loss"] == pytest.approx(-log_p[np.arange(6), [0, 1, 1, 1, 2, 2]].mean())


def test_a_class_without_examples_has_no_accuracy():
    result = evaluate(identity_net(), dataset([[1, 0, 0], [0, 1, 0]], [0, 1]), loss={"type": "mse"})
    assert result["per_class_accuracy"] == [1.0, 1.0, None]
    assert result["loss"] == pytest.approx(0.0)


def test_empty_dataset():
    with pytest.raises(DataError, match="empty"):
        evaluate(identity_net(), dataset(np.zeros((0, 3)), []))
