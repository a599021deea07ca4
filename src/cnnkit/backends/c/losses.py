"""The C backend's softmax cross-entropy and mean squared error: loss and gradient in one fused pass
(csrc/loss.c).

Registered as the Kernels "loss/cross_entropy" and "loss/mse" of backend "c", which the trainer uses for
networks on that backend (cnnkit.registry.Registry.on_backend).
"""

from __future__ import annotations

import ctypes

import numpy as np

from cnnkit.backends.c.checks import FLOAT32
from cnnkit.backends.c.library import load
from cnnkit.errors import BackendError, ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel
from cnnkit.train.losses import _Buffers, _check


class _FusedLoss:
    """Loss and gradient from one C call per forward: checks, buffers and the call's common arguments."""

    def __init__(self) -> None:
        self.lib = load()
        self.buffers = _Buffers("grad")
        self.rows: dict[int, np.ndarray] = {}
        self.loss = ctypes.c_double()
        self.grad: np.ndarray | None = None

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        _check(logits, labels)
        n, k = logits.shape
        logits = np.ascontiguousarray(logits, FLOAT32)
        labels = np.ascontiguousarray(labels, np.int64)
        if n and (labels.min() < 0 or labels.max() >= k):
            raise BackendError(f"labels must be class indices from 0 to {k - 1}, got values from "
                               f"{labels.min()} to {labels.max()}")
        grad = self.buffers.get(logits.shape, FLOAT32)["grad"]
        if n not in self.rows:
            self.rows = {n: np.empty(n)}
        self.call(n, k, logits, labels, self.rows[n], grad)
        self.grad = grad
        return float(self.loss.value)

    def call(self, n: int, k: int, logits: np.ndarray, labels: np.ndarray, rows: np.ndarray,
             grad: np.ndarray) -> None:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        if self.grad is None:
            raise ShapeError("backward() needs a forward() first")
        return self.grad


class CrossEntropy(_FusedLoss):
    """As cnnkit.train.losses.CrossEntropy: mean over the batch, gradient (softmax - q) / N."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.smoothing = float(label_smoothing)

    def call(self, n, k, logits, labels, rows, grad) -> None:
        self.lib.cross_entropy_forward(n, k, logits.ctypes.data, labels.ctypes.data, self.smoothing,
                                       rows.ctypes.data, grad.ctypes.data, ctypes.byref(self.loss))


class MeanSquaredError(_FusedLoss):
    """As cnnkit.train.losses.MeanSquaredError: mean((z - onehot(y))^2), gradient 2 (z - onehot(y)) / NK."""

    def call(self, n, k, logits, labels, rows, grad) -> None:
        self.lib.mse_forward(n, k, logits.ctypes.data, labels.ctypes.data, rows.ctypes.data,
                             grad.ctypes.data, ctypes.byref(self.loss))


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="loss/cross_entropy", backend="c", make=CrossEntropy))
    register(Kernel(layer="loss/mse", backend="c", make=MeanSquaredError))
