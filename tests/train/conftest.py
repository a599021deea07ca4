"""A tiny dataset and a random layer registered for these tests only, and small specs that train in ms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cnnkit import build
from cnnkit.attrs import Attr
from cnnkit.data.dataset import ArrayDataset
from cnnkit.plugins import registry
from cnnkit.registry import Dataset, Kernel, LayerType

BLOBS = "test_blobs"
NOISE = "test_noise"


def load_blobs(attrs: dict[str, Any], input_shape: tuple[int, ...], seed: int) -> ArrayDataset:
    """Gaussian blobs, one per class, around fixed centres; deterministic per seed. Ignores the network's
    input shape, like a dataset of fixed-size images."""
    rng = np.random.default_rng([seed, 7])
    classes, n, features = attrs["classes"], attrs["examples"], attrs["features"]
    centres = np.random.default_rng(99).standard_normal((classes, features)) * 2
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.standard_normal((n, features))
    return ArrayDataset(x.astype(np.float32), y.astype(np.int64),
                        tuple(f"blob{i}" for i in range(classes)))


class Noise:
    """Inverted dropout with p = 0.5, drawing from the network's generator: makes resumes RNG-dependent."""

    def __init__(self, setup) -> None:
        self.rng = setup.rng
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.mask = np.empty(setup.out_shape, setup.dtype)

    def forward(self, inputs, params, buffers, training):
        if not training:
            np.copyto(self.out, inputs[0])
            return self.out
        self.mask[...] = (self.rng.random(self.mask.shape) < 0.5) * 2.0
        np.multiply(inputs[0], self.mask, out=self.out)
        return self.out

    def backward(self, grad_out, params, grads):
        return [grad_out * self.mask]


RECORDS = (
    Dataset(name=BLOBS, load=load_blobs, attrs=(
        Attr("examples", "int", 60, minimum=1), Attr("classes", "int", 3, minimum=1),
        Attr("features", "int", 4, minimum=1),
        Attr("val_fraction", "float", 0.25, minimum=0, maximum=1, exclusive_max=True))),
    LayerType(name=NOISE, attrs=(), infer_shape=lambda attrs, shapes: shapes[0]),
    Kernel(layer=NOISE, backend="numpy", make=Noise),
)


@pytest.fixture(autouse=True, scope="module")
def test_records():
    """Register the test records for one test module and remove them afterwards."""
    reg = registry()
    for record in RECORDS:
        reg.add(record)
    yield
    reg.datasets.pop(BLOBS)
    reg.layers.pop(NOISE)
    reg.kernels.pop((NOISE, "numpy"))


def tiny_spec(noise: bool = False, **train: Any) -> dict[str, Any]:
    """4 features -> 8 -> 3 classes; `train` overrides parts of the recipe."""
    layers = [{"name": "fc1", "type": "linear", "units": 8}]
    if noise:
        layers.append({"name": "noise", "type": NOISE})
    layers.append({"name": "fc2", "type": "linear", "units": 3})
    recipe = {"data": {"dataset": BLOBS}, "batch_size": 8, "epochs": 2,
              "optimizer": {"type": "sgd", "lr": 0.05}, "seed": 3, **train}
    return {"name": "tiny", "input": [4], "layers": layers, "train": recipe}


def tiny_net(noise: bool = False, seed: int = 0, **train: Any):
    return build(tiny_spec(noise, **train), seed=seed)
