"""Run an ONNX file in onnxruntime and the network in cnnkit on the same batches, and compare."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cnnkit.errors import ExportError
from cnnkit.graph import Network
from cnnkit.onnx.files import load_model_safely

RTOL = 1e-4
ATOL = 1e-5


@dataclass
class VerifyReport:
    """Per batch size, the largest absolute and relative differences; passed when all are in tolerance."""

    path: str
    rtol: float
    atol: float
    batches: list[dict] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max(b["max_abs"] for b in self.batches)

    @property
    def max_rel(self) -> float:
        return max(b["max_rel"] for b in self.batches)

    @property
    def passed(self) -> bool:
        return all(b["passed"] for b in self.batches)

    def __str__(self) -> str:
        lines = [f"{'batch':>6} {'max abs err':>12} {'max rel err':>12}  result"]
        for b in self.batches:
            lines.append(f"{b['batch']:>6} {b['max_abs']:>12.3e} {b['max_rel']:>12.3e}  "
                         f"{'ok' if b['passed'] else 'FAIL'}")
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"{verdict}: onnxruntime vs cnnkit on {self.path} "
                     f"(rtol {self.rtol:g}, atol {self.atol:g})")
        return "\n".join(lines)


def session(path: str | os.PathLike):
    """An onnxruntime session on one thread for repeatable numbers, after the file passes safety checks."""
    import onnxruntime

    load_model_safely(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unloadable models
        raise ExportError(f"{path}: onnxruntime cannot load it: {str(error).splitlines()[0]}") from None


def verify_onnx(net: Network, path: str | os.PathLike, inputs: np.ndarray | None = None,
                batch_sizes: Sequence[int] = (1, 7, 64), rtol: float = RTOL, atol: float = ATOL,
                seed: int = 0) -> VerifyReport:
    """Compare onnxruntime's outputs for the file with net.predict on the same inputs.

    `inputs` (N, *input_shape) are used when given (batches of each size drawn from them); otherwise
    standard-normal inputs are generated from `seed`.
    """
    sess = session(path)
    _check_signature(net, sess, path)
    output = sess.get_outputs()[0].name
    rng = np.random.default_rng(seed)
    report = VerifyReport(str(path), rtol, atol)
    for size in batch_sizes:
        x = _batch(net, inputs, size, rng)
        expected = net.predict(x)
        if output == "probabilities":
            expected = _softmax(expected)
        got = sess.run([output], {sess.get_inputs()[0].name: x})[0]
        report.batches.append(_compare(size, got, expected, rtol, atol))
    return report


def _batch(net: Network, inputs: np.ndarray | None, size: int, rng: np.random.Generator) -> np.ndarray:
    if inputs is None:
        return rng.standard_normal((size, *net.input_shape)).astype(net.dtype)
    index = rng.choice(len(inputs), size=size, replace=len(inputs) < size)
    return np.ascontiguousarray(inputs[index], dtype=net.dtype)


def _check_signature(net: Network, sess, path) -> None:
    (model_input,) = sess.get_inputs()
    shape = tuple(model_input.shape[1:])
    if shape != net.input_shape:
        raise ExportError(f"{path}: the model takes input of shape {tuple(model_input.shape)}, the network "
                          f"takes (N, {', '.join(map(str, net.input_shape))}); is this the right model?")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _compare(size: int, got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> dict:
    if got.shape != expected.shape:
        raise ExportError(f"onnxruntime gave shape {got.shape}, cnnkit {expected.shape}")
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    rel = diff / np.maximum(np.abs(expected.astype(np.float64)), 1e-12)
    return {"batch": size, "max_abs": float(diff.max()), "max_rel": float(rel.max()),
            "passed": bool(np.allclose(got, expected, rtol=rtol, atol=atol))}


@functools.lru_cache(maxsize=1)
def newest_runtime_opset() -> int:
    """The newest opset the installed onnxruntime loads, probed with a one-node model."""
    import onnxruntime
    from onnx import TensorProto, helper

    from cnnkit.onnx.export import MIN_OPSET, newest_opset

    for opset in range(newest_opset(), MIN_OPSET - 1, -1):
        value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [value], [out])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, _ir_version(opset))
        try:
            onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # onnxruntime reports an unsupported opset with its own exception type
            continue
    return MIN_OPSET


def _ir_version(opset: int) -> int:
    from cnnkit.onnx.export import _ir_version_for

    return _ir_version_for(opset)
