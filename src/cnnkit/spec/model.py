"""The validated spec: plain dataclasses that compare equal when two specs mean the same network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnkit.errors import Mark

INPUT = "input"
"""The name of the network's input value; a layer may list it in `inputs`."""


@dataclass
class LayerSpec:
    """One layer: attrs are normalised by its layer type (defaults filled in, pairs as tuples).

    inputs None means the previous layer's output (the network input for the first layer).
    marks map "" to the layer's own position, each key ("filters", "inputs", ...) to its value's, and
    "inputs.0", "inputs.1", ... to each listed input's.
    """

    name: str
    type: str
    attrs: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] | None = None
    backend: str | None = None
    marks: dict[str, Mark] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class TrainSpec:
    """The training recipe; each section is {"type" or "dataset": name, **its attributes, normalised}."""

    data: dict[str, Any]
    batch_size: int = 64
    epochs: int = 10
    optimizer: dict[str, Any] = field(default_factory=lambda: {"type": "sgd", "lr": 0.01})
    schedule: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    loss: dict[str, Any] = field(default_factory=lambda: {"type": "cross_entropy"})
    seed: int = 0


@dataclass
class Spec:
    """A network: its input shape (C, H, W) or (F,), its layers in file order, its training recipe and an
    optional free-text description."""

    name: str
    input: tuple[int, ...]
    layers: list[LayerSpec]
    train: TrainSpec | None = None
    description: str = ""
    source: str = field(default="<spec>", compare=False)
    marks: dict[tuple[Any, ...], Mark] = field(default_factory=dict, compare=False, repr=False)

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def mark(self, *path: Any) -> Mark | None:
        """The position of the value at `path` (e.g. ("train", "epochs")), or of its nearest parent."""
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get(())
