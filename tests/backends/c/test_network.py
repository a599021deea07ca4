"""Whole networks on backend "c": the same results as NumPy, reproducible bits, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit.backends.c import library
from cnnkit.errors import BackendError
from cnnkit.plugins import registry
from cnnkit.registry import OpSetup
from cnnkit.train import from_section
from tests.backends.c.conftest import assert_networks_agree

SPEC = """
name: mixed
input: [3, 13, 12]
layers:
  - {name: conv1, type: conv2d, filters: 8, kernel: 3, padding: same}
  - {name: relu1, type: relu}
  - {name: conv2, type: conv2d, filters: 8, kernel: 3, stride: 2, groups: 4, bias: false}
  - {name: conv3, type: conv2d, filters: 6, kernel: 1}
  - {name: pool, type: max_pool2d, kernel: 2}
  - {name: flatten, type: flatten}
  - {name: fc1, type: linear, units: 20}
  - {name: relu2, type: relu}
  - {name: fc2, type: linear, units: 4}
"""


def batch(size: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, 3, 13, 12)).astype(np.float32), rng.integers(0, 4, size)


def train_losses(backend: str, steps: int) -> tuple[list[float], cnnkit.Network]:
    net = cnnkit.build(SPEC, backend=backend, seed=3)
    loss = from_section(registry().loss, {"type": "cross_entropy"})
    sgd = from_section(registry().optimizer, {"type": "sgd", "lr": 0.05, "momentum": 0.9}, net.params,
                       net.grads)
    losses = []
    for step in range(steps):
        x, y = batch(16, seed=step)
        losses.append(loss.forward(net.forward(x, training=True), y))
        net.backward(loss.backward())
        sgd.step(0.05)
    return losses, net


def test_a_network_matches_numpy_forward_and_backward(lib):
    nets = {backend: cnnkit.build(SPEC, backend=backend, seed=1) for backend in ("numpy", "c")}
    assert [k.backend for k in nets["c"].kernels if k.layer in ("conv2d", "linear")] == ["c"] * 5
    x, _ = batch()
    assert_networks_agree(nets, x)


def test_training_matches_numpy_for_20_steps(lib):
    expected, _ = train_losses("numpy", 20)
    got, _ = train_losses("c", 20)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert got[-1] < got[0]


def test_training_is_bitwise_reproducible_for_1_to_4_threads(lib):
    results = []
    for threads in (1, 2, 3, 4):
        library.set_num_threads(threads)
        losses, net = train_losses("c", 3)
        results.append((losses, {k: v.copy() for k, v in net.params.items()}))
    for losses, params in results[1:]:
        assert losses == results[0][0]
        for key, value in params.items():
            np.testing.assert_array_equal(value, results[0][1][key])


def test_a_float64_network_is_refused_with_what_to_do(lib):
    with pytest.raises(BackendError, match="layer 'conv1': backend 'c' computes in float32 only, not "
                                           "float64; build the network with dtype=float32"):
        cnnkit.build(SPEC, backend="c", dtype=np.float64)


def test_a_layer_can_ask_for_the_c_backend_in_its_spec(lib):
    net = cnnkit.build(SPEC.replace("units: 4}", "units: 4, backend: c}"))
    assert [k.backend for k in net.kernels][-1] == "c"
    assert net.forward(batch()[0]).shape == (9, 4)


def setup(layer: str, attrs: dict, in_shape: tuple, out_shape: tuple, dtype=np.float32) -> OpSetup:
    from cnnkit.attrs import parse_attrs

    parsed = parse_attrs(registry().layer(layer).attrs, attrs)
    return OpSetup(name="big", attrs=parsed, in_shapes=(in_shape,), out_shape=out_shape,
                   dtype=np.dtype(dtype), rng=np.random.default_rng(0))


def test_kernels_refuse_float64_and_sizes_over_2_31_when_made(lib):
    conv, linear = registry().kernel("conv2d", "c"), registry().kernel("linear", "c")
    with pytest.raises(BackendError, match="layer 'big': the C backend computes in float32 only"):
        linear.make(setup("linear", {"units": 3}, (2, 5), (2, 3), np.float64))
    with pytest.raises(BackendError, match="layer 'big': the input has shape \\(65536, 65536\\)"):
        linear.make(setup("linear", {"units": 3}, (2**16, 2**16), (2**16, 3)))
    with pytest.raises(BackendError, match="the im2col columns .*fewer than 2\\*\\*31"):
        conv.make(setup("conv2d", {"filters": 1, "kernel": 7, "padding": 3}, (2**12, 1, 2**9, 2**9),
                        (2**12, 1, 2**9, 2**9)))


CONV = {"filters": 4, "kernel": 3}


def bound(layer: str, attrs: dict, in_shape: tuple):
    from tests.layers.harness import make_run

    return make_run(layer, attrs, [in_shape], "c", np.float32)


BAD_OP_CALLS = {
    "input shape": (lambda r: r.op.forward([np.ones((2, 3, 8, 8), np.float32)], r.params, {}, True),
                    "layer 'layer': input must be an array of shape \\(2, 3, 7, 7\\), got \\(2, 3, 8, 8\\)"),
    "input not an array": (lambda r: r.op.forward([[1.0]], r.params, {}, True), "got list"),
    "complex input": (lambda r: r.op.forward([np.ones((2, 3, 7, 7), complex)], r.params, {}, True),
                      "must hold real numbers"),
    "weight shape": (lambda r: r.op.forward([np.ones((2, 3, 7, 7), np.float32)],
                                            {**r.params, "weight": np.ones((4, 3, 3, 2), np.float32)}, {},
                                            True),
                     "weight must be an array of shape \\(4, 3, 3, 3\\)"),
    "gradient shape": (lambda r: r.op.backward(np.ones((2, 4, 5, 4), np.float32), r.params, r.grads),
                       "output gradient must be an array of shape \\(2, 4, 5, 5\\)"),
    "weight gradient dtype": (lambda r: r.op.backward(np.ones((2, 4, 5, 5), np.float32), r.params,
                                                      {**r.grads, "weight": np.zeros((4, 3, 3, 3))}),
                              "weight gradient must be float32"),
    "bias gradient not contiguous": (lambda r: r.op.backward(np.ones((2, 4, 5, 5), np.float32), r.params,
                                                             {**r.grads,
                                                              "bias": np.zeros(8, np.float32)[::2]}),
                                     "bias gradient must be C-contiguous"),
}


@pytest.mark.parametrize("case", BAD_OP_CALLS, ids=list(BAD_OP_CALLS))
def test_bad_arguments_to_an_op_raise_backend_error(lib, case):
    run = bound("conv2d", CONV, (2, 3, 7, 7))
    run.forward([np.ones((2, 3, 7, 7), np.float32)])
    call, message = BAD_OP_CALLS[case]
    with pytest.raises(BackendError, match=message):
        call(run)


def test_inputs_that_alias_the_output_are_copied_first(lib):
    run = bound("conv2d", {"filters": 3, "kernel": 1}, (2, 3, 5, 5))
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    expected = run.forward([x])
    out = run.op.forward([x], run.params, {}, True)
    out[...] = x
    np.testing.assert_array_equal(run.op.forward([out], run.params, {}, True), expected)


def test_bad_arguments_to_a_linear_op_raise_backend_error(lib):
    run = bound("linear", {"units": 3}, (4, 5))
    with pytest.raises(BackendError, match="input must be an array of shape \\(4, 5\\), got \\(5, 4\\)"):
        run.forward([np.ones((5, 4), np.float32)])
    run.forward([np.ones((4, 5), np.float32)])
    with pytest.raises(BackendError, match="weight gradient must be float32, got float64"):
        run.op.backward(np.ones((4, 3), np.float32), run.params, {**run.grads, "weight": np.zeros((3, 5))})
    with pytest.raises(BackendError, match="bias gradient is read-only"):
        read_only = np.zeros(3, np.float32)
        read_only.setflags(write=False)
        run.op.backward(np.ones((4, 3), np.float32), run.params, {**run.grads, "bias": read_only})
