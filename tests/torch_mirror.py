"""The same network in PyTorch, built from a cnnkit Network's nodes and weights: an independent oracle.

Each layer type maps to the torch.nn.functional call a PyTorch user would write; asymmetric padding is
applied with F.pad first, as torch's own layers only pad symmetrically.
"""

from __future__ import annotations

import numpy as np

from cnnkit.graph import Network
from cnnkit.spec.model import INPUT


def torch_parameters(net: Network, torch) -> dict:
    """Leaf tensors (requires_grad) copied from the network's parameters, and its buffers."""
    params = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in net.params.items()}
    buffers = {k: torch.tensor(v.copy()) for k, v in net.buffers.items()}
    return {**params, **buffers}


def _pads(node, attrs, kernel, stride, dilation=(1, 1)):
    from cnnkit.layers.conv import resolve_padding

    return resolve_padding(attrs["padding"], node.in_shapes[0][1:], kernel, stride, dilation)


def _layer(node, xs, p, torch, training):
    F = torch.nn.functional
    a = node.spec.attrs
    name = node.name
    t = node.layer.name
    x = xs[0]
    if t == "conv2d":
        top, left, bottom, right = _pads(node, a, a["kernel"], a["stride"], a["dilation"])
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, p[f"{name}.weight"], p.get(f"{name}.bias"), stride=a["stride"],
                        dilation=a["dilation"], groups=a["groups"])
    if t in ("max_pool2d", "avg_pool2d"):
        stride = node_stride(a)
        top, left, bottom, right = _pads(node, a, a["kernel"], stride)
        if t == "max_pool2d":
            x = F.pad(x, (left, right, top, bottom), value=-float("inf"))
            return F.max_pool2d(x, a["kernel"], stride, ceil_mode=a["ceil_mode"])
        if (top, left) == (bottom, right) and a["count_include_pad"]:
            return F.avg_pool2d(x, a["kernel"], stride, padding=(top, left), ceil_mode=a["ceil_mode"],
                                count_include_pad=True)
        if (top, left, bottom, right) == (0, 0, 0, 0):
            return F.avg_pool2d(x, a["kernel"], stride, ceil_mode=a["ceil_mode"])
        raise NotImplementedError("asymmetric or count-excluding padded avg pooling in the torch mirror")
    if t == "global_avg_pool2d":
        return x.mean(dim=(2, 3), keepdim=a.get("keepdims", False))
    if t == "relu":
        return F.relu(x)
    if t == "leaky_relu":
        return F.leaky_relu(x, a["alpha"])
    if t == "sigmoid":
        return torch.sigmoid(x)
    if t == "tanh":
        return torch.tanh(x)
    if t == "softmax":
        return F.softmax(x, dim=a["axis"])
    if t == "flatten":
        return torch.flatten(x, 1)
    if t == "linear":
        return F.linear(x, p[f"{name}.weight"], p.get(f"{name}.bias"))
    if t == "dropout":
        if training:
            raise NotImplementedError("dropout masks differ between frameworks; compare in eval mode")
        return x
    if t == "batch_norm2d":
        return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"],
                            p.get(f"{name}.weight"), p.get(f"{name}.bias"), training=training,
                            momentum=a["momentum"], eps=a["eps"])
    if t == "add":
        out = xs[0]
        for other in xs[1:]:
            out = out + other
        return out
    if t == "concat":
        return torch.cat(xs, dim=a["axis"])
    raise NotImplementedError(f"no torch mirror for layer type '{t}'")


def node_stride(attrs):
    """An omitted pooling stride equals the kernel."""
    stride = attrs.get("stride")
    return attrs["kernel"] if stride in (None, (0, 0)) else stride


def torch_forward(net: Network, x, params: dict, torch, training: bool = False):
    """The network's output computed by torch from `params` (see torch_parameters)."""
    values = {INPUT: x}
    for node in net.nodes:
        values[node.name] = _layer(node, [values[n] for n in node.inputs], params, torch, training)
    return values[net.nodes[-1].name]


def as_numpy(tensor) -> np.ndarray:
    return tensor.detach().numpy()
