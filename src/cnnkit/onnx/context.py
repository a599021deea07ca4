"""What a layer's ONNX export rule sees: its inputs, its weights, and a way to add nodes.

A rule is `to_onnx(ctx)` on the LayerType; it reads ctx.attrs / ctx.in_shapes / ctx.params and calls
ctx.node(...) to emit standard ONNX operators that compute ctx.output from ctx.inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper


@dataclass
class GraphBuilder:
    """The nodes and initializers of the graph being written, with unique value names."""

    dtype: np.dtype
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def unique(self, name: str) -> str:
        candidate, i = name, 1
        while candidate in self.names:
            candidate, i = f"{name}_{i}", i + 1
        self.names.add(candidate)
        return candidate

    def constant(self, name: str, array: np.ndarray) -> str:
        """An initializer holding `array` (float arrays in the model's dtype); returns its value name."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        unique = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), unique))
        return unique

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
             **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=self.unique(name),
                                           **{k: v for k, v in attrs.items() if v is not None}))


@dataclass
class ExportContext:
    """One layer being exported. Shapes exclude the batch dimension, as in cnnkit."""

    name: str
    attrs: Mapping[str, Any]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    inputs: tuple[str, ...]
    output: str
    params: Mapping[str, np.ndarray]
    buffers: Mapping[str, np.ndarray]
    opset: int
    graph: GraphBuilder

    def weight(self, key: str) -> str:
        """The value name of this layer's parameter or buffer `key`, as an initializer "layer.key"."""
        array = self.params[key] if key in self.params else self.buffers[key]
        return self.graph.constant(f"{self.name}.{key}", array)

    def constant(self, suffix: str, array: np.ndarray) -> str:
        return self.graph.constant(f"{self.name}.{suffix}", array)

    def temp(self, suffix: str) -> str:
        """A fresh name for an intermediate value of this layer."""
        return self.graph.unique(f"{self.name}/{suffix}")

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None,
             **attrs: Any) -> None:
        """Add one node; outputs default to this layer's output."""
        self.graph.node(op_type, inputs, outputs or [self.output], name=f"{self.name}/{op_type}", **attrs)


ELEMENT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
