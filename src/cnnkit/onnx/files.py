"""Opening ONNX files we did not necessarily write: refuse hostile external-data paths first.

An initializer stored outside the model names a file by a `location` that onnxruntime would open
relative to the model's folder; an absolute path, `..`, or a symlink pointing elsewhere would let a model
read any file on the machine, so such a model is refused before onnxruntime sees it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from cnnkit.errors import ExportError


def load_model_safely(path: str | os.PathLike) -> onnx.ModelProto:
    """The model (without external data loaded), after checking it is ONNX and its data stays home."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise ExportError(f"{path}: not an ONNX model ({type(error).__name__})") from None
    if not model.graph.node and not model.graph.input and not model.graph.output:
        raise ExportError(f"{path}: not an ONNX model (no graph inside)")
    for location in _external_locations(model):
        check_external_location(path, location)
    return model


def _external_locations(model: onnx.ModelProto) -> Iterator[str]:
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            yield entries.get("location", "")


def check_external_location(model_path: Path, location: str) -> None:
    """Raise unless `location` is a relative path that resolves inside the model's own folder."""
    where = f"{model_path}: external data location '{location}'"
    if not location:
        raise ExportError(f"{where} is empty")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and
                                                                        location[1] == ":"):
        raise ExportError(f"{where} is an absolute path; external data must sit beside the model")
    parts = Path(location.replace("\\", "/")).parts
    if ".." in parts:
        raise ExportError(f"{where} contains '..'; external data must sit beside the model")
    folder = model_path.resolve().parent
    target = (folder / location).resolve()
    if folder != target and folder not in target.parents:
        raise ExportError(f"{where} resolves to {target}, outside the model's folder {folder}")
