"""Broken plugins: each kind gives one message naming the plugin (and its distribution) and the problem,
and everything else keeps working: the built-ins, and a good plugin installed next to the broken one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnnkit import graph
from cnnkit.errors import ExportError, PluginError
from cnnkit.graph import Network
from cnnkit.onnx import export_onnx
from cnnkit.plugins import collect, make_plugin_manager
from cnnkit.spec import load_spec
from tests.plugins.fakes import GOOD_PLUGIN, fake_distribution

HEADER = """\
    from cnnkit import hookimpl
    from cnnkit.attrs import Attr
    from cnnkit.registry import Backend, Kernel, LayerType

    same = lambda attrs, shapes: shapes[0]
"""

BROKEN = {
    "import_error": ("import nonexistent_dependency_xyz",
                     "plugin 'broken' (cnnkit-broken 0.1) cannot be imported from '{module}': "
                     "ModuleNotFoundError: No module named 'nonexistent_dependency_xyz'"),
    "hook_raises": ("""
        @hookimpl
        def cnnkit_register_layers(register):
            raise RuntimeError("boom")
        """, "plugin 'broken' (cnnkit-broken 0.1) failed in cnnkit_register_layers: RuntimeError: boom"),
    "duplicate_layer": ("""
        @hookimpl
        def cnnkit_register_layers(register):
            register(LayerType(name="relu", attrs=(), infer_shape=same))
        """, "plugin 'broken' registers layer type 'relu', which plugin 'cnnkit.layers.activation' already "
             "registered; the first one is kept"),
    "duplicate_kernel": ("""
        @hookimpl
        def cnnkit_register_kernels(register):
            register(Kernel(layer="relu", backend="numpy", make=object))
        """, "plugin 'broken' registers a 'numpy' kernel for 'relu', which plugin "
             "'cnnkit.backends.numpy.activation' already registered; the first one is kept"),
    "kernel_for_unknown_layer": ("""
        @hookimpl
        def cnnkit_register_kernels(register):
            register(Kernel(layer="dubble", backend="numpy", make=object))
        """, "plugin 'broken' registers a 'numpy' kernel for layer type 'dubble', but no plugin registers "
             "the layer type 'dubble'; did you mean 'double'?"),
    "kernel_for_unknown_backend": ("""
        @hookimpl
        def cnnkit_register_kernels(register):
            register(Kernel(layer="relu", backend="cuda", make=object))
        """, "plugin 'broken' registers a 'cuda' kernel for layer type 'relu', but no plugin registers the "
             "backend 'cuda'; known: "),
    "not_a_record": ("""
        @hookimpl
        def cnnkit_register_layers(register):
            register({"name": "swish"})
        """, "plugin 'broken' (cnnkit-broken 0.1) passed a dict {'name': 'swish'} to register() in "
             "cnnkit_register_layers, which takes LayerType records"),
    "record_of_another_hook": ("""
        @hookimpl
        def cnnkit_register_layers(register):
            register(Backend(name="fast", description="in the wrong hook"))
        """, "plugin 'broken' (cnnkit-broken 0.1) passed a Backend to register() in cnnkit_register_layers, "
             "which takes LayerType records"),
    "fields_of_wrong_types": ("""
        @hookimpl
        def cnnkit_register_layers(register):
            register(LayerType(name="bad", attrs=["beta"], infer_shape=None, to_onnx="Mul"))
        """, "plugin 'broken' registered LayerType 'bad' with unusable fields: 'infer_shape' must be a "
             "function, got NoneType None; 'to_onnx' must be a function or None, got str 'Mul'; 'attrs' "
             "must be a tuple of cnnkit.attrs.Attr, got list ['beta']"),
    "bad_arity": ("""
        @hookimpl
        def cnnkit_register_layers(register):
            register(LayerType(name="bad", attrs=(), infer_shape=same, arity=(2, 1)))
        """, "'arity' must be (minimum, maximum) inputs with 0 <= minimum <= maximum or maximum None, got "
             "(2, 1)"),
    "hook_returns_records": ("""
        @hookimpl
        def cnnkit_register_layers(register):
            return [LayerType(name="bad", attrs=(), infer_shape=same)]
        """, "plugin 'broken' (cnnkit-broken 0.1): cnnkit_register_layers returned a list, which is "
             "ignored; a hook calls register(record) once per record and returns None"),
    "hook_with_wrong_arguments": ("""
        @hookimpl
        def cnnkit_register_layers(reg):
            pass
        """, "plugin 'broken' (cnnkit-broken 0.1) is not loaded: Plugin 'broken' for hook "
             "'cnnkit_register_layers' hookimpl definition: cnnkit_register_layers(reg) Argument(s) {'reg'} "
             "are declared in the hookimpl but can not be found in the hookspec"),
    "misspelt_hook": ("""
        @hookimpl
        def cnnkit_register_layer(register):
            pass
        """, "plugin 'broken' (cnnkit-broken 0.1) implements cnnkit_register_layer, which is not a cnnkit "
             "hook; did you mean 'cnnkit_register_layers'?; it is never called"),
}


def with_header(source: str) -> str:
    """A plugin module's source: the imports every case uses, then `source`."""
    return textwrap.dedent(HEADER) + textwrap.dedent(source)


def install_with_good(tmp_path, monkeypatch, module: str, source: str) -> None:
    """The broken plugin (distribution cnnkit-broken, entry point 'broken') and a good one ('good')."""
    fake_distribution(tmp_path, "cnnkit-broken", {"broken": module}, {module: with_header(source)})
    fake_distribution(tmp_path, "cnnkit-good", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    monkeypatch.syspath_prepend(str(tmp_path))


def loaded(only=("broken", "good")):
    """A registry from the installed entry points named in `only`, and the errors it met."""
    errors: list[PluginError] = []
    reg = collect(make_plugin_manager(load_entrypoints=True, only=only), on_error=errors.append)
    assert reg.errors == errors
    return reg, [str(e) for e in errors]


def assert_everything_else_works(reg) -> None:
    """The built-ins and the good plugin still register, and a network using both runs."""
    assert reg.layer("relu").plugin == "cnnkit.layers.activation"
    assert reg.layer("double").plugin == "good"
    spec = load_spec({"name": "n", "input": [4], "layers": [
        {"name": "fc", "type": "linear", "units": 3}, {"name": "d", "type": "double"},
        {"name": "r", "type": "relu"}]}, reg)
    net = Network(spec, reg)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(net.forward(x), 2 * np.maximum(net.forward(x) / 2, 0))


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_plugin_is_one_clear_message_and_the_rest_works(kind, tmp_path, monkeypatch):
    module = f"broken_{kind}"
    source, message = BROKEN[kind]
    install_with_good(tmp_path, monkeypatch, module, source)
    reg, errors = loaded()
    assert len(errors) == 1, errors
    assert message.replace("{module}", module) in errors[0]
    assert_everything_else_works(reg)
    with pytest.raises(PluginError, match="broken"):  # without on_error, collect raises the first error
        collect(make_plugin_manager(only=("broken", "good")))


def test_name_clashes_keep_the_entry_point_whose_name_sorts_first(tmp_path, monkeypatch):
    gelu = with_header("""
        @hookimpl
        def cnnkit_register_layers(register):
            register(LayerType(name="gelu", attrs=(), infer_shape=same, doc=__name__))
        """)
    # Written (and so found on disk) in the opposite order to their names: the names decide.
    fake_distribution(tmp_path / "b", "cnnkit-zeta", {"zeta": "zeta_gelu"}, {"zeta_gelu": gelu})
    fake_distribution(tmp_path / "a", "cnnkit-alpha", {"alpha": "alpha_gelu"}, {"alpha_gelu": gelu})
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    reg, errors = loaded(only=None)
    assert reg.layer("gelu").doc == "alpha_gelu"
    assert errors == ["plugin 'zeta' registers layer type 'gelu', which plugin 'alpha' already registered; "
                      "the first one is kept"]


def test_two_distributions_with_one_entry_point_name_load_the_first_by_distribution(tmp_path,
                                                                                    monkeypatch):
    fake_distribution(tmp_path, "cnnkit-good", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    fake_distribution(tmp_path, "cnnkit-also-good", {"good": "also_good"}, {"also_good": with_header("")})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg, errors = loaded(only=("good",))
    assert errors == ["plugin 'good' (cnnkit-good 0.1) is not loaded: plugin 'good' (cnnkit-also-good 0.1) "
                      "has the same name; a plugin's entry-point name must be unique"]
    assert "double" not in reg.layers  # cnnkit-also-good sorts first and registers nothing


def test_cnnkit_plugins_naming_a_plugin_that_is_not_installed(tmp_path, monkeypatch):
    install_with_good(tmp_path, monkeypatch, "broken_unused", "")
    reg, errors = loaded(only=("good", "godo"))
    assert errors == ["CNNKIT_PLUGINS names plugin 'godo', but no installed package has an entry point "
                      "'godo' in group 'cnnkit'; did you mean 'good'?"]
    assert_everything_else_works(reg)


USE_TIME = with_header("""
    import numpy as np

    class Op:
        def __init__(self, setup):
            self.setup = setup
        def forward(self, inputs, params, buffers, training):
            return inputs[0][:, :1]  # one feature, whatever infer_shape said
        def backward(self, grad_out, params, grads):
            return [grad_out]

    def failing_rule(ctx):
        raise ValueError("no such operator")

    @hookimpl
    def cnnkit_register_layers(register):
        register(LayerType(name="garbage_shape", attrs=(), infer_shape=lambda attrs, shapes: "4x4"))
        register(LayerType(name="raising_shape", attrs=(), infer_shape=lambda attrs, shapes: shapes[1]))
        register(LayerType(name="no_op", attrs=(), infer_shape=same))
        register(LayerType(name="wrong_output", attrs=(), infer_shape=same, to_onnx=failing_rule))

    @hookimpl
    def cnnkit_register_kernels(register):
        register(Kernel(layer="no_op", backend="numpy", make=lambda setup: None))
        register(Kernel(layer="wrong_output", backend="numpy", make=Op))
        register(Kernel(layer="garbage_shape", backend="numpy", make=Op))
        register(Kernel(layer="raising_shape", backend="numpy", make=Op))
""")


@pytest.fixture
def use_time_registry(tmp_path, monkeypatch):
    """A plugin whose records register fine but whose functions misbehave when used."""
    fake_distribution(tmp_path, "cnnkit-sloppy", {"sloppy": "sloppy_plugin"}, {"sloppy_plugin": USE_TIME})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg, errors = loaded(only=("sloppy",))
    assert errors == []
    return reg


def spec_text(layer_type: str) -> str:
    return f"name: n\ninput: [4]\nlayers:\n  - {{name: fc, type: linear, units: 3}}\n" \
           f"  - {{name: odd, type: {layer_type}}}\n"


@pytest.mark.parametrize(("layer_type", "problem"), [
    ("garbage_shape", "infer_shape returned '4x4'; expected the output shape without the batch dimension, "
                      "a tuple of ints such as (16, 8, 8)"),
    ("raising_shape", "infer_shape raised IndexError: tuple index out of range"),
])
def test_an_infer_shape_that_returns_garbage_is_the_plugins_error_at_the_layer(use_time_registry,
                                                                               layer_type, problem):
    with pytest.raises(PluginError) as error:  # loading a spec plans it, which infers the shapes
        load_spec(spec_text(layer_type), use_time_registry)
    assert str(error.value) == (f"<string>:5:23: layer 'odd': layer type '{layer_type}' of plugin 'sloppy' "
                                f"is broken: {problem}")


def test_a_kernel_whose_op_is_unusable_is_the_plugins_error(use_time_registry):
    net = Network(load_spec(spec_text("no_op"), use_time_registry), use_time_registry)
    with pytest.raises(PluginError, match="layer 'odd': the 'numpy' kernel for 'no_op' of plugin 'sloppy' is "
                                          "broken: make\\(\\) returned NoneType, which has no forward and "
                                          "backward methods"):
        net.forward(np.ones((2, 4)))


def test_a_kernel_whose_output_has_the_wrong_shape_is_the_plugins_error(use_time_registry):
    net = Network(load_spec(spec_text("wrong_output"), use_time_registry), use_time_registry)
    with pytest.raises(PluginError, match=r"layer 'odd': the 'numpy' kernel for 'wrong_output' of plugin "
                                          r"'sloppy' is broken: forward returned a float32 array of shape "
                                          r"\(2, 1\), expected a float32 array of shape \(2, 3\)"):
        net.forward(np.ones((2, 4)))


def test_an_export_rule_that_raises_is_the_plugins_error(use_time_registry, tmp_path):
    net = Network(load_spec(spec_text("wrong_output"), use_time_registry), use_time_registry)
    with pytest.raises(ExportError, match="layer 'odd': the ONNX export rule of layer type 'wrong_output' "
                                          "\\(plugin 'sloppy'\\) failed: ValueError: no such operator"):
        export_onnx(net, tmp_path / "n.onnx")


def test_the_command_line_reports_each_error_once_and_keeps_working(tmp_path):
    fake_distribution(tmp_path, "cnnkit-broken", {"broken": "cli_broken"},
                      {"cli_broken": with_header(BROKEN["hook_raises"][0])})
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    spec = tmp_path / "n.yaml"
    spec.write_text(spec_text("relu"))

    def cnnkit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cnnkit", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    message = "plugin 'broken' (cnnkit-broken 0.1) failed in cnnkit_register_layers: RuntimeError: boom"
    summary = cnnkit("summary", str(spec))
    assert summary.returncode == 0
    assert summary.stderr.splitlines() == [f"cnnkit: plugin error: {message}"]
    plugins = cnnkit("plugins")
    assert plugins.returncode == 1
    assert plugins.stdout.endswith(f"\n1 plugin error:\n    {message}\n")
    assert "broken (cnnkit-broken 0.1)\n    registers nothing\n" in plugins.stdout


def test_notices_are_given_once(monkeypatch, capsys):
    monkeypatch.setattr(graph, "_notices_given", set())
    for _ in range(3):
        graph.notice("plugin error: x")
    assert capsys.readouterr().err == "cnnkit: plugin error: x\n"
