"""Exported models run in onnxruntime (and onnx's reference evaluator) with cnnkit's outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import cnnkit
from cnnkit.errors import ExportError
from cnnkit.onnx import DEFAULT_OPSET, MIN_OPSET, export_onnx, to_model, verify_onnx
from cnnkit.onnx.verify import newest_runtime_opset
from cnnkit.spec.model import INPUT
from tests.onnx.cases import CASES, trained

SPECS = sorted((Path(__file__).parents[2] / "specs").glob("*.yaml"))
NETWORKS = {**CASES, **{f"spec_{p.stem}": p for p in SPECS}}
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def networks():
    return {}


def trained_net(networks, name):
    if name not in networks:
        networks[name] = trained(cnnkit.build(NETWORKS[name], seed=1))
    return networks[name]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_onnxruntime_matches_cnnkit(networks, name, tmp_path):
    net = trained_net(networks, name)
    path = export_onnx(net, tmp_path / "model.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    report = verify_onnx(net, path, batch_sizes=(1, 7, 64), rtol=RTOL, atol=ATOL)
    assert report.passed, str(report)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_reference_evaluator_matches_cnnkit(networks, name):
    net = trained_net(networks, name)
    evaluator = ReferenceEvaluator(to_model(net))
    x = np.random.default_rng(5).standard_normal((7, *net.input_shape)).astype(np.float32)
    (got,) = evaluator.run(None, {"input": x})
    np.testing.assert_allclose(got, net.predict(x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_shape_inference_agrees_with_cnnkit(networks, name):
    net = trained_net(networks, name)
    model = to_model(net)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output]}
    producers = {out: node.name.split("/")[0] for node in model.graph.node for out in node.output}
    checked = 0
    for value, layer in producers.items():
        if value in shapes and not value.startswith(f"{layer}/"):
            node = next(n for n in net.nodes if n.name == layer)
            assert shapes[value] == ["batch", *node.out_shape], (layer, shapes[value])
            checked += 1
    assert checked >= len([n for n in net.nodes if n.layer.name != "dropout"]) - 1


@pytest.mark.parametrize("opset", range(MIN_OPSET, newest_runtime_opset() + 1))
def test_every_supported_opset(networks, opset, tmp_path):
    net = trained_net(networks, "residual_concat")
    path = export_onnx(net, tmp_path / "model.onnx", opset=opset)
    assert onnx.load(path).opset_import[0].version == opset
    assert verify_onnx(net, path, batch_sizes=(7,)).passed


@pytest.mark.parametrize("name", ["batch_norm_dropout", "residual_concat"])
def test_folded_batch_norm_still_verifies(networks, name, tmp_path):
    net = trained_net(networks, name)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    path = export_onnx(net, tmp_path / "folded.onnx", fold_batchnorm=True)
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert "BatchNormalization" not in ops or name == "residual_concat"
    assert verify_onnx(net, path).passed
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=f"export changed {key}")


def test_softmax_output_and_metadata(networks, tmp_path):
    net = trained_net(networks, "conv_valid")
    path = export_onnx(net, tmp_path / "p.onnx", softmax=True, class_names=["a", "b", "c"])
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["class_names"] == '["a", "b", "c"]' and meta["output_name"] == "probabilities"
    assert meta["cnnkit_version"] == cnnkit.__version__ and len(meta["spec_sha256"]) == 64
    assert model.producer_name == "cnnkit"
    assert [i.name for i in model.graph.input] == [INPUT] and model.graph.output[0].name == "probabilities"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert verify_onnx(net, path).passed


def test_default_opset_is_17(networks):
    assert DEFAULT_OPSET == 17
    assert to_model(trained_net(networks, "conv_valid")).opset_import[0].version == 17


def test_unsupported_opset_is_refused(networks):
    with pytest.raises(ExportError, match="opset 12 is not supported; choose one from 13"):
        to_model(trained_net(networks, "conv_valid"), opset=12)


def test_unwritable_path_leaves_nothing(networks, tmp_path):
    net = trained_net(networks, "conv_valid")
    with pytest.raises(ExportError, match="cannot write .*missing"):
        export_onnx(net, tmp_path / "missing" / "m.onnx")
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ExportError, match="cannot write"):
            export_onnx(net, locked / "m.onnx")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_layer_without_rule_is_named_with_its_plugin(monkeypatch, networks):
    import dataclasses

    net = trained_net(networks, "conv_valid")
    node = net.nodes[1]
    without_rule = dataclasses.replace(node, layer=dataclasses.replace(node.layer, to_onnx=None))
    monkeypatch.setattr(net, "nodes", [net.nodes[0], without_rule, *net.nodes[2:]])
    with pytest.raises(ExportError, match=f"layer '{node.name}' of type 'relu' \\(registered by plugin "
                                          f"'cnnkit.layers.activation'\\) has no ONNX export rule"):
        to_model(net)
