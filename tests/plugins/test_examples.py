"""The example plugins, pip-installed: listed by `cnnkit plugins`, first-class in specs, the schema, the
summary, training and ONNX export; the winograd backend chosen per network or per layer, matching the
NumPy reference; and a disabled autoload that never imports them."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import onnx
import pytest
import yaml

import cnnkit
from cnnkit import graph
from cnnkit.errors import SpecError
from cnnkit.plugins import registry
from cnnkit.spec.schema import json_schema
from cnnkit.summary import summarize

SWISH_NET = """\
name: swish_net
input: [1, 8, 8]
layers:
  - {name: conv, type: conv2d, filters: 4, kernel: 3, padding: same}
  - {name: act, type: swish, beta: 1.5}
  - {name: pool, type: max_pool2d, kernel: 2}
  - {name: flatten, type: flatten}
  - {name: fc, type: linear, units: 3}
train:
  data: {dataset: shapes, classes: 3, samples: 48, val_fraction: 0.25}
  batch_size: 12
  epochs: 2
  optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
"""


def test_cnnkit_plugins_lists_them_with_distribution_version_and_records(installed):
    result = installed.run("plugins")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    swish = lines.index("swish (cnnkit-swish 0.1.0)")
    assert lines[swish + 1:swish + 3] == ["    layer types: swish", "    kernels on numpy: swish"]
    winograd = lines.index("winograd (cnnkit-winograd 0.1.0)")
    assert lines[winograd + 1:winograd + 3] == ["    backends: winograd", "    kernels on winograd: conv2d"]
    assert "cnnkit.layers.conv (built-in)" in lines
    assert "error" not in result.stdout + result.stderr


def test_disabled_autoload_never_imports_them_and_cnnkit_plugins_picks_some(installed):
    probe = ("import json, sys; from cnnkit.plugins import registry; reg = registry(); "
             "print(json.dumps([sorted(m for m in sys.modules if m.startswith('cnnkit_') and '.' not in m), "
             "sorted(name for name, b in reg.backends.items() if b.plugin in ('swish', 'winograd'))]))")

    def imported_and_registered(**env: str) -> list:
        result = installed.run("-c", probe, **env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert imported_and_registered() == [["cnnkit_swish", "cnnkit_winograd"], ["winograd"]]
    assert imported_and_registered(CNNKIT_DISABLE_PLUGIN_AUTOLOAD="1") == [[], []]
    assert imported_and_registered(CNNKIT_DISABLE_PLUGIN_AUTOLOAD="1", CNNKIT_PLUGINS="winograd") == [
        ["cnnkit_winograd"], ["winograd"]]


def test_the_command_line_summarises_trains_on_winograd_and_exports(installed, tmp_path):
    spec = tmp_path / "swish_net.yaml"
    spec.write_text(SWISH_NET)
    summary = installed.run("summary", str(spec))
    assert summary.returncode == 0, summary.stderr
    assert any(line.split()[:3] == ["act", "swish", "4x8x8"] for line in summary.stdout.splitlines())
    run = str(tmp_path / "run")
    trained = installed.run("train", str(spec), "-o", run, "--backend", "winograd", "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert "epoch 2 of 2 done" in trained.stdout
    assert ("cnnkit: backend 'winograd' has no kernel for layer types flatten, linear, max_pool2d, swish; "
            "they run on the 'numpy' reference") in trained.stderr.splitlines()
    exported = installed.run("export", run, "-o", str(tmp_path / "swish_net.onnx"))
    assert exported.returncode == 0, exported.stdout + exported.stderr


def test_a_plugin_layer_is_validated_with_did_you_mean_like_a_built_in(with_installed):
    bad_type = SWISH_NET.replace("type: swish, beta: 1.5", "type: swsh")
    with pytest.raises(SpecError, match=r"<string>:5:\d+: layer 'act': unknown layer type 'swsh'; did you "
                                        r"mean 'swish'\?"):
        cnnkit.load_spec(bad_type)
    with pytest.raises(SpecError, match="did you mean 'beta'"):
        cnnkit.load_spec(SWISH_NET.replace("beta: 1.5", "bta: 1.5"))
    with pytest.raises(SpecError, match="attribute 'beta'"):
        cnnkit.load_spec(SWISH_NET.replace("beta: 1.5", "beta: -1"))


def test_a_plugin_layer_is_in_the_json_schema(with_installed):
    schema = json_schema(registry())
    assert schema["$defs"]["layer.swish"]["properties"]["beta"]["minimum"] == 0
    spec = yaml.safe_load(SWISH_NET)
    jsonschema.validate(spec, schema)
    spec["layers"][1]["beta"] = "steep"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, schema)


def test_a_plugin_layer_is_shape_inferred_trained_and_exported(with_installed, tmp_path):
    summary = summarize(SWISH_NET)
    assert [(row.type, row.out_shape) for row in summary.layers][:2] == [("conv2d", (4, 8, 8)),
                                                                        ("swish", (4, 8, 8))]
    net = cnnkit.build(SWISH_NET, seed=3)
    assert net.nodes[1].layer.plugin == "swish"
    history = cnnkit.train(net, progress=False)
    assert len(history) == 2 and all(np.isfinite(epoch["train_loss"]) for epoch in history)
    path = cnnkit.export_onnx(net, tmp_path / "swish_net.onnx")
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert ["Mul", "Sigmoid", "Mul"] == ops[1:4]  # x * sigmoid(1.5 x), after the Conv
    report = cnnkit.verify_onnx(net, path)
    assert report.passed, report


def test_the_winograd_network_matches_the_numpy_reference_forward_and_backward(with_installed):
    spec = SWISH_NET.replace("kernel: 3, padding: same}", "kernel: 3, padding: same}\n"
                             "  - {name: conv2, type: conv2d, filters: 4, kernel: 3, padding: 1}")
    x = np.random.default_rng(0).standard_normal((6, 1, 8, 8)).astype(np.float32)
    grad = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)
    results = {}
    for backend in ("numpy", "winograd"):
        net = cnnkit.build(spec, backend=backend, seed=2)
        out = net.forward(x, training=True).copy()
        results[backend] = out, {k: v.copy() for k, v in net.backward(grad).items()}
    assert type(cnnkit.build(spec, backend="winograd").ops(6)[0]).__name__ == "WinogradConv2d"
    (out_ref, grads_ref), (out_win, grads_win) = results["numpy"], results["winograd"]
    np.testing.assert_allclose(out_win, out_ref, rtol=1e-4, atol=1e-6)
    for key, expected in grads_ref.items():
        np.testing.assert_allclose(grads_win[key], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_layer_picks_its_backend_and_fallbacks_are_named_once(with_installed, capsys):
    per_layer = SWISH_NET.replace("padding: same}", "padding: same, backend: winograd}")
    net = cnnkit.build(per_layer)
    assert [type(op).__name__ for op in net.ops(2)][:2] == ["WinogradConv2d", "Swish"]
    assert capsys.readouterr().err == ""  # every other layer asked for numpy, which has them all
    for _ in range(2):
        cnnkit.build(SWISH_NET, backend="winograd")
    assert capsys.readouterr().err.splitlines() == [
        "cnnkit: backend 'winograd' has no kernel for layer types flatten, linear, max_pool2d, swish; they "
        "run on the 'numpy' reference"]
    with pytest.raises(SpecError, match="unknown backend 'winogard'; did you mean 'winograd'"):
        cnnkit.load_spec(SWISH_NET.replace("padding: same}", "padding: same, backend: winogard}"))


def test_their_records_name_their_plugin_and_distribution(with_installed):
    reg = registry()
    assert reg.errors == []
    assert (reg.layer("swish").plugin, reg.kernel("swish", "numpy").plugin) == ("swish", "swish")
    assert (reg.backend("winograd").plugin, reg.kernel("conv2d", "winograd").plugin) == ("winograd",) * 2
    from cnnkit.plugins import plugin_manager

    assert plugin_manager().origins["swish"] == "cnnkit-swish 0.1.0"
    assert {graph.REFERENCE_BACKEND, "winograd"} <= set(reg.backends)
