"""Losses for classification: logits (N, K) and int64 labels (N,) -> a mean over the batch.

`forward` returns the loss as a float and keeps what `backward` needs; `backward` returns the gradient of
that mean with respect to the logits, in a buffer the loss owns (overwritten by the next call). Buffers are
made once per batch shape, so a training loop allocates nothing per step.
"""

from __future__ import annotations

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Loss


def _check(logits: np.ndarray, labels: np.ndarray) -> None:
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ShapeError(f"a classification loss takes logits (N, classes) and labels (N,), got logits "
                         f"{logits.shape} and labels {labels.shape}; the network's output must be flat")


class _Buffers:
    """Arrays of one shape and dtype by name, made on first use and kept for the few latest shapes."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.by_shape: dict[tuple, dict[str, np.ndarray]] = {}

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> dict[str, np.ndarray]:
        key = (shape, np.dtype(dtype))
        if key not in self.by_shape:
            if len(self.by_shape) >= 4:
                self.by_shape.pop(next(iter(self.by_shape)))
            self.by_shape[key] = {name: np.empty(shape, dtype) for name in self.names}
        return self.by_shape[key]


class CrossEntropy:
    """Softmax fused with cross-entropy against (1 - s) one-hot + s / K (PyTorch's label smoothing).

    loss_n = logsumexp(z_n) - sum_k q_nk z_nk, computed around max(z_n) so no exp overflows;
    d loss / d z = (softmax(z) - q) / N.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.smoothing = float(label_smoothing)
        self.buffers = _Buffers("shifted", "grad")
        self.rows = _Buffers("max", "lse")
        self.grad: np.ndarray | None = None

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        _check(logits, labels)
        n, k = logits.shape
        buf = self.buffers.get(logits.shape, logits.dtype)
        row = self.rows.get((n, 1), logits.dtype)
        shifted, probs = buf["shifted"], buf["grad"]
        np.max(logits, axis=1, keepdims=True, out=row["max"])
        np.subtract(logits, row["max"], out=shifted)
        np.exp(shifted, out=probs)
        np.sum(probs, axis=1, keepdims=True, out=row["lse"])
        probs /= row["lse"]
        np.log(row["lse"], out=row["lse"])
        picked = shifted[np.arange(n), labels]
        # -sum_k q_k log p_k with log p_k = shifted_k - lse and sum_k q_k = 1
        per_example = row["lse"][:, 0] - (1.0 - self.smoothing) * picked
        if self.smoothing:
            per_example -= self.smoothing / k * shifted.sum(axis=1)
        probs[np.arange(n), labels] -= 1.0 - self.smoothing
        if self.smoothing:
            probs -= self.smoothing / k
        probs /= n
        self.grad = probs
        return float(per_example.mean())

    def backward(self) -> np.ndarray:
        if self.grad is None:
            raise ShapeError("backward() needs a forward() first")
        return self.grad


class MeanSquaredError:
    """mean((z - onehot(y))^2) over all N * K elements; d loss / d z = 2 (z - onehot(y)) / (N K)."""

    def __init__(self) -> None:
        self.buffers = _Buffers("grad")
        self.grad: np.ndarray | None = None

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        _check(logits, labels)
        diff = self.buffers.get(logits.shape, logits.dtype)["grad"]
        np.copyto(diff, logits)
        diff[np.arange(logits.shape[0]), labels] -= 1.0
        loss = float(np.vdot(diff, diff)) / diff.size
        diff *= 2.0 / diff.size
        self.grad = diff
        return loss

    def backward(self) -> np.ndarray:
        if self.grad is None:
            raise ShapeError("backward() needs a forward() first")
        return self.grad


LOSSES = (
    Loss(name="cross_entropy",
         attrs=(Attr("label_smoothing", "float", 0.0, doc="weight moved from the label to a uniform "
                     "distribution over the classes", minimum=0, maximum=1, exclusive_max=True),),
         make=CrossEntropy,
         doc="Softmax + cross-entropy on the logits (the last layer has no softmax), mean over the batch."),
    Loss(name="mse", attrs=(), make=MeanSquaredError,
         doc="Mean squared error between the outputs and the one-hot labels, mean over all elements."),
)


@hookimpl
def cnnkit_register_losses(register) -> None:
    for loss in LOSSES:
        register(loss)
