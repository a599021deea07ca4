"""Folding eval-mode batch norm into the conv or linear layer before it, on copies of the weights.

y = gamma * (W x + b - mean) / sqrt(var + eps) + beta  =  (s W) x + (s (b - mean) + beta),
with s = gamma / sqrt(var + eps) per output channel.
"""

from __future__ import annotations

import numpy as np

from cnnkit.graph import Network

FOLDABLE = ("conv2d", "linear")


def fold_batch_norms(net: Network) -> dict[str, dict[str, np.ndarray] | None]:
    """{producer: its folded parameters, batch_norm: None} for every foldable (producer, batch norm) pair.

    A pair folds when the batch norm's only input is a conv2d/linear output that nothing else consumes.
    """
    folded: dict[str, dict[str, np.ndarray] | None] = {}
    by_name = {node.name: node for node in net.nodes}
    for node in net.nodes:
        if node.layer.name != "batch_norm2d" or node.inputs[0] not in by_name:
            continue
        producer = by_name[node.inputs[0]]
        if producer.layer.name not in FOLDABLE or len(net.consumers(producer.name)) != 1:
            continue
        folded[producer.name] = _folded(net.layer_params(producer.name), net.layer_params(node.name),
                                        net.layer_buffers(node.name), node.spec.attrs["eps"])
        folded[node.name] = None
    return folded


def _folded(params: dict[str, np.ndarray], bn_params: dict[str, np.ndarray],
            bn_buffers: dict[str, np.ndarray], eps: float) -> dict[str, np.ndarray]:
    weight = params["weight"].astype(np.float64)
    channels = weight.shape[0]
    mean = bn_buffers["running_mean"].astype(np.float64)
    scale = 1.0 / np.sqrt(bn_buffers["running_var"].astype(np.float64) + eps)
    gamma = bn_params["weight"].astype(np.float64) if "weight" in bn_params else np.ones(channels)
    beta = bn_params["bias"].astype(np.float64) if "bias" in bn_params else np.zeros(channels)
    bias = params["bias"].astype(np.float64) if "bias" in params else np.zeros(channels)
    s = gamma * scale
    dtype = params["weight"].dtype
    return {"weight": (weight * s.reshape(-1, *[1] * (weight.ndim - 1))).astype(dtype),
            "bias": ((bias - mean) * s + beta).astype(dtype)}
