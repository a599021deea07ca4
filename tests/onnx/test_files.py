"""Models cnnkit did not write: hostile external data, non-ONNX files, the wrong model for a network."""

from __future__ import annotations

import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

import cnnkit
from cnnkit.errors import ExportError
from cnnkit.onnx import export_onnx, to_model, verify_onnx
from cnnkit.onnx.describe import describe_model, format_description
from cnnkit.onnx.files import load_model_safely

SPEC = {"name": "tiny", "input": [5], "layers": [{"name": "fc", "type": "linear", "units": 3}]}


@pytest.fixture
def net():
    return cnnkit.build(SPEC)


def with_external_location(net, path, location):
    """Write the model with its weight marked as stored at `location` outside the file."""
    model = to_model(net)
    tensor = next(t for t in model.graph.initializer if t.name == "fc.weight")
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def runtime_must_not_open(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("onnxruntime was handed a hostile model")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("/etc/passwd", "is an absolute path"),
        ("../secret.bin", "contains '..'"),
        ("data/../../secret.bin", "contains '..'"),
        ("C:\\weights.bin", "is an absolute path"),
        ("", "is empty"),
    ],
)
def test_hostile_locations_are_refused_before_onnxruntime(net, tmp_path, runtime_must_not_open, location,
                                                          message):
    path = with_external_location(net, tmp_path / "m.onnx", location)
    with pytest.raises(ExportError, match=message):
        verify_onnx(net, path)
    with pytest.raises(ExportError, match=message):
        describe_model(path)


def test_symlink_out_of_the_folder_is_refused(net, tmp_path, runtime_must_not_open):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"\0" * 60)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "w.bin").symlink_to(outside / "w.bin")
    path = with_external_location(net, model_dir / "m.onnx", "w.bin")
    with pytest.raises(ExportError, match="outside the model's folder"):
        load_model_safely(path)


def test_external_data_inside_the_folder_is_accepted(net, tmp_path):
    model = to_model(net)
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.weights", size_threshold=0)
    assert verify_onnx(net, tmp_path / "m.onnx").passed


def test_not_an_onnx_file(net, tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x89PNG not a model at all" * 10)
    with pytest.raises(ExportError, match="not an ONNX model"):
        verify_onnx(net, path)
    with pytest.raises(ExportError, match="no such ONNX file"):
        describe_model(tmp_path / "absent.onnx")


def test_a_model_for_another_input_shape(tmp_path):
    other = cnnkit.build({**SPEC, "input": [6]})
    path = export_onnx(other, tmp_path / "other.onnx")
    with pytest.raises(ExportError, match=r"takes input of shape \('batch', 6\), the network takes \(N, 5\)"):
        verify_onnx(cnnkit.build(SPEC), path)


def test_describe_lists_inputs_outputs_ops_and_metadata(net, tmp_path):
    path = export_onnx(net, tmp_path / "m.onnx", class_names=["x", "y", "z"])
    info = describe_model(path)
    assert info["inputs"] == [{"name": "input", "shape": ["batch", 5], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "logits", "shape": ["batch", 3], "dtype": "float32"}]
    assert info["nodes"] == {"Gemm": 1} and info["opsets"] == {"ai.onnx": 17}
    assert info["parameters"] == 18 and info["metadata"]["class_names"] == '["x", "y", "z"]'
    text = format_description(info)
    assert "Gemm" in text and "input: float32 [batch x 5]" in text


def test_weights_survive_export_bitwise(net, tmp_path):
    path = export_onnx(net, tmp_path / "m.onnx")
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    assert (stored["fc.weight"] == net.params["fc.weight"]).all()
