"""Network -> ONNX model, in eval-mode semantics, written atomically.

Each layer's rule (LayerType.to_onnx) emits standard operators; this module wires the rules together,
names the graph's input "input" and output "logits" (or "probabilities" with softmax=True), makes the
batch dimension dynamic, optionally folds batch norm into the preceding conv/linear, and records class
names, the cnnkit version and a hash of the spec in the model's metadata. Exporting never changes the
network: rules only read its arrays, and folding works on copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx import helper

from cnnkit.errors import CnnkitError, ExportError
from cnnkit.graph import Network, Node
from cnnkit.onnx.context import ELEMENT_TYPES, ExportContext, GraphBuilder
from cnnkit.onnx.fold import fold_batch_norms
from cnnkit.spec.loader import dump_spec

MIN_OPSET = 13
DEFAULT_OPSET = 17
INPUT_NAME = "input"
BATCH_DIM = "batch"


def output_name(softmax: bool) -> str:
    return "probabilities" if softmax else "logits"


def newest_opset() -> int:
    """The newest default-domain opset the installed onnx package can write."""
    return onnx.defs.onnx_opset_version()


def to_model(net: Network, opset: int = DEFAULT_OPSET, fold_batchnorm: bool = False, softmax: bool = False,
             class_names: Sequence[str] | None = None) -> onnx.ModelProto:
    """The ONNX model for `net` in eval mode; raises ExportError for a layer without an export rule."""
    _check_exportable(net, opset)
    graph = GraphBuilder(dtype=net.dtype, names={INPUT_NAME, output_name(softmax)})
    weights = fold_batch_norms(net) if fold_batchnorm else {}
    values = {"input": INPUT_NAME}
    last = net.nodes[-1].name
    for node in net.nodes:
        if node.name in weights and weights[node.name] is None:
            values[node.name] = values[node.inputs[0]]
            continue
        params = weights.get(node.name, net.layer_params(node.name))
        output = output_name(False) if node.name == last and not softmax else graph.unique(node.name)
        ctx = ExportContext(name=node.name, attrs=node.spec.attrs, in_shapes=node.in_shapes,
                            out_shape=node.out_shape, inputs=tuple(values[n] for n in node.inputs),
                            output=output, params=params, buffers=net.layer_buffers(node.name),
                            opset=opset, graph=graph)
        values[node.name] = _run_rule(node, ctx) or output
    final = values[last]
    if softmax:
        graph.node("Softmax", [final], [output_name(True)], name="softmax", axis=1)
    elif final != output_name(False):
        graph.node("Identity", [final], [output_name(False)], name="output")
    return _assemble(net, graph, opset, softmax, class_names)


def _run_rule(node: Node, ctx: ExportContext) -> str | None:
    """The layer type's export rule; an exception other than a CnnkitError is a bug in its plugin."""
    try:
        return node.layer.to_onnx(ctx)
    except CnnkitError:
        raise
    except Exception as error:  # a plugin's rule may fail in any way; name it
        raise ExportError(f"layer '{node.name}': the ONNX export rule of layer type '{node.layer.name}' "
                          f"(plugin '{node.layer.plugin}') failed: {type(error).__name__}: "
                          f"{error}") from error


def _check_exportable(net: Network, opset: int) -> None:
    if not MIN_OPSET <= opset <= newest_opset():
        raise ExportError(f"opset {opset} is not supported; choose one from {MIN_OPSET} to {newest_opset()}")
    if net.dtype not in ELEMENT_TYPES:
        raise ExportError(f"cannot export a {net.dtype} network; build it with float32 or float64")
    for node in net.nodes:
        if node.layer.to_onnx is None:
            raise ExportError(f"layer '{node.name}' of type '{node.layer.name}' (registered by plugin "
                              f"'{node.layer.plugin}') has no ONNX export rule; the plugin must give its "
                              f"LayerType a to_onnx function")


def spec_hash(net: Network) -> str:
    return hashlib.sha256(dump_spec(net.spec).encode()).hexdigest()


def _assemble(net: Network, graph: GraphBuilder, opset: int, softmax: bool,
              class_names: Sequence[str] | None) -> onnx.ModelProto:
    from cnnkit import __version__

    element = ELEMENT_TYPES[net.dtype]
    inputs = [helper.make_tensor_value_info(INPUT_NAME, element, [BATCH_DIM, *net.input_shape])]
    outputs = [helper.make_tensor_value_info(output_name(softmax), element, [BATCH_DIM, *net.output_shape])]
    onnx_graph = helper.make_graph(graph.nodes, net.spec.name, inputs, outputs, graph.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="cnnkit", producer_version=__version__)
    model.ir_version = min(model.ir_version, _ir_version_for(opset))
    metadata = {"cnnkit_version": __version__, "spec_name": net.spec.name, "spec_sha256": spec_hash(net),
                "input_name": INPUT_NAME, "output_name": output_name(softmax)}
    if class_names is not None:
        metadata["class_names"] = json.dumps(list(class_names))
    helper.set_model_props(model, metadata)
    return model


def _ir_version_for(opset: int) -> int:
    """The IR version that first came with `opset`, so older runtimes can load the file."""
    for _release, ir_version, ai_onnx, *_ in helper.VERSION_TABLE:
        if ai_onnx == opset:
            return ir_version
    return onnx.IR_VERSION


def export_onnx(net: Network, path: str | os.PathLike, opset: int = DEFAULT_OPSET,
                fold_batchnorm: bool = False, softmax: bool = False,
                class_names: Sequence[str] | None = None) -> Path:
    """Write `net` as an ONNX file that onnx.checker accepts; nothing is left behind on an error."""
    model = to_model(net, opset=opset, fold_batchnorm=fold_batchnorm, softmax=softmax,
                     class_names=class_names)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the exported model fails onnx.checker: {str(error).splitlines()[0]}") from None
    path = Path(path)
    write_atomically(path, model.SerializeToString())
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file beside `path`, fsync, rename: a crash leaves the old file or the new one, never half."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {error.strerror}") from None
