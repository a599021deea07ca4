"""What a network costs, from its spec alone: output shapes, parameters, MACs and activation memory.

For every conv2d layer the summary also shows how many weights a fully connected layer between the same
input and output volumes would need (prod(input) * prod(output)): parameter sharing and local
connectivity made visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.graph import Network, Node, plan
from cnnkit.registry import Registry, Shape
from cnnkit.spec import INPUT, Spec, load_spec

LOCALLY_CONNECTED = ("conv2d",)
"""Layer types whose summary row compares their weights with a dense layer's."""


@dataclass(frozen=True)
class LayerSummary:
    """One layer's row. macs is None where the layer type declares no cost (activations, reshapes)."""

    name: str
    type: str
    inputs: tuple[str, ...]
    out_shape: Shape
    params: int
    macs: int | None
    dense_weights: int | None


@dataclass(frozen=True)
class Summary:
    """Per-layer rows and totals; all counts are per example. str() renders the text table."""

    name: str
    input_shape: Shape
    layers: tuple[LayerSummary, ...]
    buffers: int
    itemsize: int

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs or 0 for layer in self.layers)

    @property
    def activations(self) -> int:
        """Values the forward pass holds for one example: the input and every layer's output."""
        return math.prod(self.input_shape) + sum(math.prod(layer.out_shape) for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return self.activations * self.itemsize

    def table(self) -> str:
        return render(self)

    def __str__(self) -> str:
        return render(self)


def summarize(source: Network | Spec | Any, registry: Registry | None = None) -> Summary:
    """The summary of a built Network (its own parameters) or of a spec (path, YAML text, dict or Spec).

    A spec is never built: shapes come from plan() and parameter counts from each layer type's
    init_params, so a summary needs no kernels and no backend.
    """
    if isinstance(source, Network):
        return _summary(source.spec, source.nodes, _network_counts(source), source.dtype.itemsize)
    if registry is None:
        from cnnkit.plugins import registry as default_registry

        registry = default_registry()
    spec = load_spec(source, registry)
    nodes = plan(spec, registry)
    return _summary(spec, nodes, [_spec_counts(node) for node in nodes], np.dtype(np.float32).itemsize)


def _network_counts(net: Network) -> list[tuple[int, int]]:
    def count(table: dict[str, np.ndarray], node: Node) -> int:
        return sum(a.size for k, a in table.items() if k.split(".", 1)[0] == node.name)

    return [(count(net.params, node), count(net.buffers, node)) for node in net.nodes]


def _spec_counts(node: Node) -> tuple[int, int]:
    """(parameters, buffer values) of one layer, from the arrays its layer type would initialise."""
    attrs, shapes, layer = node.spec.attrs, node.in_shapes, node.layer
    params = layer.init_params(attrs, shapes, np.random.default_rng(0), np.float32) if layer.init_params \
        else {}
    buffers = layer.init_buffers(attrs, shapes, np.float32) if layer.init_buffers else {}
    return sum(np.size(a) for a in params.values()), sum(np.size(a) for a in buffers.values())


def _summary(spec: Spec, nodes: list[Node], counts: list[tuple[int, int]], itemsize: int) -> Summary:
    rows = []
    for node, (params, _) in zip(nodes, counts):
        macs = node.layer.macs(node.spec.attrs, node.in_shapes, node.out_shape) if node.layer.macs else None
        dense = None
        if node.layer.name in LOCALLY_CONNECTED:
            dense = sum(math.prod(s) for s in node.in_shapes) * math.prod(node.out_shape)
        rows.append(LayerSummary(node.name, node.layer.name, node.inputs, node.out_shape, int(params),
                                 None if macs is None else int(macs), dense))
    return Summary(spec.name, tuple(spec.input), tuple(rows), int(sum(b for _, b in counts)), itemsize)


def shape_text(shape: Shape) -> str:
    """(6, 28, 28) -> '6x28x28'."""
    return "x".join(str(d) for d in shape)


def size_text(nbytes: float) -> str:
    """Bytes in B, KiB, MiB or GiB with one decimal."""
    for unit in ("B", "KiB", "MiB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def render(summary: Summary) -> str:
    """The text table `cnnkit summary` prints."""
    previous = (INPUT, *(layer.name for layer in summary.layers))
    show_inputs = any(layer.inputs != (prev,) for layer, prev in zip(summary.layers, previous))
    show_dense = any(layer.dense_weights is not None for layer in summary.layers)
    columns = [("layer", "layer", "<"), ("type", "type", "<"), ("inputs", "inputs", "<"),
               ("output", "output", "<"), ("params", "params", ">"), ("MACs", "macs", ">"),
               ("as dense layer", "dense", ">")]
    columns = [c for c in columns if (c[1] != "inputs" or show_inputs) and (c[1] != "dense" or show_dense)]

    def row(**cells: str) -> list[str]:
        return [cells.get(key, "") for _, key, _ in columns]

    rows = [row(layer=INPUT, output=shape_text(summary.input_shape))]
    for layer in summary.layers:
        rows.append(row(layer=layer.name, type=layer.type, inputs=", ".join(layer.inputs),
                        output=shape_text(layer.out_shape), params=f"{layer.params:,}",
                        macs="-" if layer.macs is None else f"{layer.macs:,}",
                        dense="" if layer.dense_weights is None else f"{layer.dense_weights:,}"))
    total = row(layer="total", params=f"{summary.params:,}", macs=f"{summary.macs:,}")
    header = [title for title, _, _ in columns]
    widths = [max(len(r[i]) for r in [header, *rows, total]) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:{align}{w}}" for c, (_, _, align), w in zip(cells, columns, widths)).rstrip()

    rule = "-" * len(line(header))
    dtype = f"float{summary.itemsize * 8}"
    notes = [
        f"parameters: {summary.params:,} ({size_text(summary.params * summary.itemsize)} as {dtype})"
        + (f", plus {summary.buffers:,} buffer values (running statistics)" if summary.buffers else ""),
        f"MACs per example: {summary.macs:,} (multiply-accumulates of one forward pass)",
        f"activations per example: {summary.activations:,} values "
        f"({size_text(summary.activation_bytes)} as {dtype}; the input and every layer's output)",
    ]
    if show_dense:
        notes.append("as dense layer: the weights a fully connected layer between the same input and output\n"
                     "  volumes would need; a conv layer needs only its kernel, shared across all positions")
    title = f"network '{summary.name}': input {shape_text(summary.input_shape)}, {len(summary.layers)} layers"
    return "\n".join([title, "", line(header), rule, *map(line, rows), rule, line(total), "", *notes])
