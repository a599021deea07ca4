"""Every network in specs/ builds, has the shapes and sizes its comments claim, and can learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import cnnkit
from cnnkit.plugins import registry
from cnnkit.spec import dump_spec
from cnnkit.summary import summarize
from cnnkit.train import from_section

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
SPECS = sorted(SPECS_DIR.glob("*.yaml"))

# Hand-computed: conv params = filters * (channels * k * k) + filters, conv MACs = out volume * channels * k
# * k, linear params = in * out + out, "dense" = prod(conv input) * prod(conv output).
EXPECTED = {
    "seed_convnet": {
        "shapes": {"conv1": (6, 28, 28), "relu1": (6, 28, 28), "pool1": (6, 14, 14), "conv2": (16, 10, 10),
                   "relu2": (16, 10, 10), "pool2": (16, 5, 5), "flatten": (400,), "fc": (4,)},
        "params": {"conv1": 456, "conv2": 2_416, "fc": 1_604},
        "macs": {"conv1": 352_800, "conv2": 240_000, "fc": 1_600},
        "dense": {"conv1": 3_072 * 4_704, "conv2": 1_176 * 1_600},
        "total_params": 4_476,
        "activations": 3_072 + 2 * 4_704 + 1_176 + 2 * 1_600 + 400 + 400 + 4,
    },
    "lenet5": {
        "shapes": {"conv1": (6, 28, 28), "pool1": (6, 14, 14), "conv2": (16, 10, 10), "pool2": (16, 5, 5),
                   "flatten": (400,), "fc1": (120,), "fc2": (84,), "fc3": (4,)},
        "params": {"conv1": 456, "conv2": 2_416, "fc1": 48_120, "fc2": 10_164, "fc3": 340},
        "macs": {"conv1": 352_800, "conv2": 240_000, "fc1": 48_000, "fc2": 10_080, "fc3": 336},
        "total_params": 61_496,
    },
    "digits_cnn": {
        "shapes": {"conv1": (16, 8, 8), "pool1": (16, 4, 4), "conv2": (32, 4, 4), "pool2": (32, 2, 2),
                   "flatten": (128,), "fc": (10,)},
        "params": {"conv1": 160, "conv2": 4_640, "fc": 1_290},
        "macs": {"conv1": 9_216, "conv2": 73_728, "fc": 1_280},
        "total_params": 6_090,
    },
    "vgg_small": {
        "shapes": {"conv1a": (32, 32, 32), "conv1b": (32, 32, 32), "pool1": (32, 16, 16),
                   "conv2a": (64, 16, 16), "conv2b": (64, 16, 16), "pool2": (64, 8, 8),
                   "conv3": (128, 8, 8), "pool3": (128, 4, 4), "flatten": (2_048,), "fc": (8,)},
        "params": {"conv1a": 896, "conv1b": 9_248, "conv2a": 18_496, "conv2b": 36_928, "conv3": 73_856,
                   "fc": 16_392},
        "total_params": 155_816,
    },
    "resnet_small": {
        "shapes": {"stem": (16, 32, 32), "b1_add": (16, 32, 32), "b2_conv1": (32, 16, 16),
                   "b2_proj": (32, 16, 16), "b2_add": (32, 16, 16), "b3_add": (64, 8, 8), "gap": (64,),
                   "fc": (4,)},
        "params": {"stem": 432, "stem_bn": 32, "b2_conv2": 9_216, "b2_proj": 512, "b3_proj_bn": 128,
                   "fc": 260},
        # convs 76,720 (no biases) + batch norms 2 x (16 x 3 + 32 x 3 + 64 x 3) + fc 260
        "total_params": 77_652,
    },
}


def spec_id(path: Path) -> str:
    return path.stem


def test_every_spec_is_checked_by_hand():
    assert sorted(p.stem for p in SPECS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_spec_builds_and_round_trips(path):
    spec = cnnkit.load_spec(path)
    assert spec.name == path.stem
    assert spec.train is not None, "every spec in specs/ says how to train it"
    net = cnnkit.build(spec)
    assert net.output_shape == EXPECTED[spec.name]["shapes"][spec.layers[-1].name]
    assert cnnkit.load_spec(dump_spec(spec)) == spec


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_summary_numbers(path):
    summary = summarize(path)
    expected = EXPECTED[path.stem]
    rows = {row.name: row for row in summary.layers}
    assert {name: rows[name].out_shape for name in expected["shapes"]} == expected["shapes"]
    assert {name: rows[name].params for name in expected["params"]} == expected["params"]
    for name in expected.get("macs", {}):
        assert rows[name].macs == expected["macs"][name], name
    for name in expected.get("dense", {}):
        assert rows[name].dense_weights == expected["dense"][name], name
    assert summary.params == expected["total_params"]
    assert summary.params == cnnkit.build(path).parameter_count()
    if "activations" in expected:
        assert summary.activations == expected["activations"]


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_one_sgd_step_lowers_the_loss(path):
    """Forward, cross-entropy, backward and a small plain SGD step on one fixed batch of random data.

    Random inputs give large initial losses and gradients, so the step is sized from the gradient norm
    rather than the recipe's learning rate."""
    net = cnnkit.build(path, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *net.input_shape)).astype(np.float32)
    y = rng.integers(0, net.output_shape[0], size=8)
    loss = from_section(registry().loss, {"type": "cross_entropy"})
    sgd = from_section(registry().optimizer, {"type": "sgd", "lr": 0.01}, net.params, net.grads)

    before = loss.forward(net.forward(x, training=True), y)
    net.backward(loss.backward())
    squared_norm = sum(float(np.vdot(g, g)) for g in net.grads.values())
    sgd.step(0.05 * before / squared_norm)  # to first order, the loss falls by 5 %
    after = loss.forward(net.forward(x, training=True), y)
    assert np.isfinite(before) and squared_norm > 0
    assert after < 0.99 * before


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_spec_satisfies_the_json_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    from cnnkit.spec.schema import json_schema

    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema(registry()))
