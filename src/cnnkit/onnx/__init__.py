"""ONNX export and verification: trained networks leave as files that onnxruntime runs identically."""

from cnnkit.onnx.export import DEFAULT_OPSET, MIN_OPSET, export_onnx, to_model
from cnnkit.onnx.verify import verify_onnx

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export_onnx", "to_model", "verify_onnx"]
