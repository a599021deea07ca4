"""Test helpers for layers and kernels, built-in or from a plugin: run one kernel alone, check its backward.

`make_run` binds one layer type's kernel on one backend to fixed input shapes (the way a Network would),
and `check_gradients` compares its backward with float64 central differences. cnnkit's own layer tests
use them for every layer on every backend, and a plugin's tests use them the same way, with a registry
that holds the plugin whether or not it is installed:

    import my_swish
    from cnnkit.testing import check_gradients, plugin_registry

    reg = plugin_registry(my_swish)
    check_gradients("swish", {"beta": 1.5}, [x], registry=reg)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.attrs import parse_attrs
from cnnkit.registry import Op, OpSetup, Registry


def plugin_registry(*plugins: object) -> Registry:
    """A fresh registry of the built-in plugins and `plugins` (modules or objects with @hookimpl functions,
    named by their __name__), without any installed entry point; the first plugin error is raised."""
    from cnnkit.plugins import AT_RUN_TIME, add_plugin, collect, default_name, make_plugin_manager

    pm = make_plugin_manager(load_entrypoints=False)
    for plugin in plugins:
        pm.load_errors.extend(add_plugin(pm, plugin, default_name(plugin), AT_RUN_TIME))
    return collect(pm)


@dataclass
class LayerRun:
    """A single layer's kernel bound to fixed input shapes, with its parameters, buffers and gradients."""

    op: Op
    attrs: dict[str, Any]
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    out_shape: tuple[int, ...]
    rng: np.random.Generator
    rng_state: dict = field(default_factory=dict)

    def forward(self, inputs: Sequence[np.ndarray], training: bool = True) -> np.ndarray:
        """A copy of the output; the rng is rewound so random layers (dropout) repeat their draw."""
        self.rng.bit_generator.state = self.rng_state
        return self.op.forward(list(inputs), self.params, self.buffers, training).copy()

    def backward(self, grad_out: np.ndarray) -> list[np.ndarray]:
        grads = self.op.backward(grad_out, self.params, self.grads)
        return [None if g is None else g.copy() for g in grads]


def make_run(layer_type: str, attrs: Mapping[str, Any], in_shapes: Sequence[tuple[int, ...]],
             backend: str = "numpy", dtype: Any = np.float64, seed: int = 0,
             params: Mapping[str, np.ndarray] | None = None, needs_input_grad: bool = True,
             registry: Registry | None = None) -> LayerRun:
    """Bind one layer's kernel; in_shapes include the batch dimension. `params` overrides the init.

    registry: where the layer type and kernel are looked up (default: cnnkit.plugins.registry()).
    """
    from cnnkit.plugins import registry as default_registry

    reg = registry if registry is not None else default_registry()
    lt = reg.layer(layer_type)
    parsed = parse_attrs(lt.attrs, attrs)
    shapes = [tuple(s[1:]) for s in in_shapes]
    out_shape = (in_shapes[0][0], *lt.infer_shape(parsed, shapes))
    dtype = np.dtype(dtype)
    init_rng = np.random.default_rng(seed)
    own = lt.init_params(parsed, shapes, init_rng, dtype) if lt.init_params else {}
    own = {k: np.ascontiguousarray(v, dtype) for k, v in own.items()}
    for key, value in (params or {}).items():
        assert own[key].shape == np.shape(value), (key, own[key].shape, np.shape(value))
        own[key] = np.ascontiguousarray(value, dtype)
    buffers = lt.init_buffers(parsed, shapes, dtype) if lt.init_buffers else {}
    buffers = {k: np.ascontiguousarray(v, dtype) for k, v in buffers.items()}
    rng = np.random.default_rng(seed + 1)
    kernel = reg.kernel(layer_type, backend)
    assert kernel is not None, f"no {backend} kernel for {layer_type}"
    op = kernel.make(OpSetup(name="layer", attrs=parsed, in_shapes=tuple(map(tuple, in_shapes)),
                             out_shape=out_shape, dtype=dtype, rng=rng,
                             needs_input_grad=needs_input_grad))
    grads = {k: np.zeros_like(v) for k, v in own.items()}
    return LayerRun(op, parsed, own, buffers, grads, out_shape, rng, rng.bit_generator.state)


def numeric_gradients(run: LayerRun, inputs: list[np.ndarray], weights: np.ndarray, samples: int,
                      eps: float, training: bool) -> tuple[list[tuple], list[float]]:
    """Central differences of sum(forward * weights) at `samples` random positions of every array."""
    pick = np.random.default_rng(1)
    arrays = [("input", i, x) for i, x in enumerate(inputs)]
    arrays += [("param", k, v) for k, v in run.params.items()]
    where, values = [], []
    for kind, key, array in arrays:
        flat = array.reshape(-1)
        positions = pick.choice(flat.size, size=min(samples, flat.size), replace=False)
        for pos in positions:
            keep = flat[pos]
            flat[pos] = keep + eps
            up = float(np.sum(run.forward(inputs, training) * weights))
            flat[pos] = keep - eps
            down = float(np.sum(run.forward(inputs, training) * weights))
            flat[pos] = keep
            where.append((kind, key, int(pos)))
            values.append((up - down) / (2 * eps))
    return where, values


def check_gradients(layer_type: str, attrs: Mapping[str, Any], inputs: Sequence[np.ndarray],
                    backend: str = "numpy", training: bool = True, samples: int = 30, eps: float = 1e-6,
                    tolerance: float = 1e-6, params: Mapping[str, np.ndarray] | None = None,
                    registry: Registry | None = None) -> float:
    """Backward against float64 central differences; returns the relative error (asserted < tolerance).

    Inputs should be kept away from kinks (ReLU at 0, max-pool ties): finite differences are wrong there.
    """
    inputs = [np.array(x, dtype=np.float64) for x in inputs]
    run = make_run(layer_type, attrs, [x.shape for x in inputs], backend, np.float64, params=params,
                   registry=registry)
    out = run.forward(inputs, training)
    weights = np.random.default_rng(2).standard_normal(out.shape)
    grad_inputs = run.backward(weights)
    analytic_arrays = {("input", i): g for i, g in enumerate(grad_inputs)}
    analytic_arrays.update({("param", k): g for k, g in run.grads.items()})
    where, numeric = numeric_gradients(run, inputs, weights, samples, eps, training)
    analytic = np.array([analytic_arrays[(kind, key)].reshape(-1)[pos] for kind, key, pos in where])
    numeric = np.array(numeric)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric), 1e-12)
    error = float(np.linalg.norm(analytic - numeric) / scale)
    assert error < tolerance, f"{layer_type} {dict(attrs)}: gradient relative error {error:.2e}"
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-7)
    return error


def away_from_zero(shape: tuple[int, ...], rng: np.random.Generator, margin: float = 0.05) -> np.ndarray:
    """Random values with |x| >= margin, for ReLU-like kinks at 0."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin + x, x)


def distinct_values(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random permutation of well-separated values: no ties, for max pooling."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n * 4.0 - 2.0).astype(np.float64)
