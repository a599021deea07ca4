"""What an ONNX file holds: inputs, outputs, opsets, metadata and node counts per operator type."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np
import onnx

from cnnkit.onnx.files import load_model_safely


def _shape(value: onnx.ValueInfoProto) -> list[Any]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def _element(value: onnx.ValueInfoProto) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name


def describe_model(path: str | os.PathLike) -> dict[str, Any]:
    """A plain summary of the file, safe for models cnnkit did not write."""
    model = load_model_safely(path)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    parameters = sum(int(np.prod(t.dims)) for t in graph.initializer)
    return {
        "path": str(path),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "inputs": [{"name": v.name, "shape": _shape(v), "dtype": _element(v)}
                   for v in graph.input if v.name not in initializers],
        "outputs": [{"name": v.name, "shape": _shape(v), "dtype": _element(v)} for v in graph.output],
        "metadata": {p.key: p.value for p in model.metadata_props},
        "nodes": dict(sorted(Counter(node.op_type for node in graph.node).items())),
        "parameters": parameters,
    }


def format_description(info: dict[str, Any]) -> str:
    """The summary as the text `cnnkit inspect` prints."""
    lines = [f"{info['path']}: ONNX IR {info['ir_version']}, producer {info['producer'] or '?'}, "
             f"opsets " + ", ".join(f"{d} {v}" for d, v in info["opsets"].items())]
    for kind in ("inputs", "outputs"):
        for value in info[kind]:
            shape = " x ".join(str(d) for d in value["shape"])
            lines.append(f"  {kind[:-1]:<6} {value['name']}: {value['dtype']} [{shape}]")
    lines.append(f"  {sum(info['nodes'].values())} nodes, {info['parameters']:,} parameters")
    for op_type, count in info["nodes"].items():
        lines.append(f"    {op_type:<24} {count}")
    for key, value in info["metadata"].items():
        lines.append(f"  metadata {key}: {value}")
    return "\n".join(lines)
