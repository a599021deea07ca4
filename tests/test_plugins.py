from __future__ import annotations

import re

import pytest

import cnnkit
from cnnkit import hookimpl
from cnnkit.errors import PluginError, RegistryError
from cnnkit.plugins import (
    DEFAULT_PLUGINS,
    collect,
    make_plugin_manager,
    plugin_manager,
    register_plugin,
    registry,
    unregister_plugin,
)
from cnnkit.registry import LayerType
from tests.plugins.fakes import fake_distribution


def test_builtins_register_through_the_same_hooks():
    reg = registry()
    assert reg.layer("linear").plugin in DEFAULT_PLUGINS
    assert reg.backend("numpy").plugin in DEFAULT_PLUGINS
    assert reg.kernel("linear", "numpy").plugin in DEFAULT_PLUGINS


class SwishPlugin:
    @hookimpl
    def cnnkit_register_layers(self, register):
        register(LayerType(name="swish_test", attrs=(), infer_shape=lambda attrs, shapes: shapes[0]))


class BrokenPlugin:
    @hookimpl
    def cnnkit_register_layers(self, register):
        raise RuntimeError("boom")


class DuplicatePlugin:
    @hookimpl
    def cnnkit_register_layers(self, register):
        register(LayerType(name="linear", attrs=(), infer_shape=lambda attrs, shapes: shapes[0]))


def manager_with(plugin, name):
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name=name)
    return pm


def test_in_process_plugin_registers_with_its_name():
    reg = collect(manager_with(SwishPlugin(), "swish-plugin"))
    assert reg.layer("swish_test").plugin == "swish-plugin"


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (BrokenPlugin(), "plugin 'bad' failed in cnnkit_register_layers: RuntimeError: boom"),
        (DuplicatePlugin(), "plugin 'bad' registers layer type 'linear', which plugin 'cnnkit.layers.linear' "
                            "already registered; the first one is kept"),
    ],
)
def test_broken_plugins_are_named_and_the_rest_keeps_working(plugin, message):
    pm = manager_with(plugin, "bad")
    with pytest.raises(PluginError, match=message):
        collect(pm)
    errors = []
    reg = collect(pm, on_error=errors.append)
    assert [str(e) for e in errors] == [message]
    assert reg.layer("linear").plugin == "cnnkit.layers.linear"


AUTOLOADED = """
from cnnkit import hookimpl
from cnnkit.registry import Backend

@hookimpl
def cnnkit_register_backends(register):
    register(Backend(name=__name__, description="from an entry point"))
"""


@pytest.fixture
def two_installed(tmp_path, monkeypatch):
    """Distributions with entry points 'first' and 'second', each registering a backend of its name."""
    for name in ("first", "second"):
        fake_distribution(tmp_path, f"cnnkit-{name}", {name: f"autoloaded_{name}"},
                          {f"autoloaded_{name}": AUTOLOADED})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CNNKIT_PLUGINS", raising=False)


BUILT_IN_BACKENDS = set(collect(make_plugin_manager(load_entrypoints=False)).backends)


def loaded_backends() -> list[str]:
    return sorted(set(collect(make_plugin_manager()).backends) - BUILT_IN_BACKENDS)


@pytest.mark.parametrize(("disable", "only", "loaded"), [
    ("0", None, ["autoloaded_first", "autoloaded_second"]),
    ("", None, ["autoloaded_first", "autoloaded_second"]),
    ("1", None, []),
    ("1", "second", ["autoloaded_second"]),
    ("0", " first ,", ["autoloaded_first"]),
])
def test_autoload_follows_the_environment(two_installed, monkeypatch, disable, only, loaded):
    monkeypatch.setenv("CNNKIT_DISABLE_PLUGIN_AUTOLOAD", disable)
    if only is not None:
        monkeypatch.setenv("CNNKIT_PLUGINS", only)
    assert loaded_backends() == loaded


def test_arguments_overrule_the_environment(two_installed, monkeypatch):
    monkeypatch.setenv("CNNKIT_PLUGINS", "first")
    assert set(collect(make_plugin_manager(load_entrypoints=False)).backends) == BUILT_IN_BACKENDS
    assert "autoloaded_second" in collect(make_plugin_manager(only=["second"])).backends


class LateDuplicate:
    @hookimpl(trylast=True)
    def cnnkit_register_layers(self, register):
        register(LayerType(name="linear", attrs=(), infer_shape=lambda attrs, shapes: shapes[0]))


def test_load_order_decides_clashes_whatever_the_hook_ordering_options():
    errors = []
    reg = collect(manager_with(LateDuplicate(), "late"), on_error=errors.append)
    assert reg.layer("linear").plugin == "cnnkit.layers.linear"
    assert [str(e) for e in errors] == ["plugin 'late' registers layer type 'linear', which plugin "
                                        "'cnnkit.layers.linear' already registered; the first one is kept"]


@pytest.fixture
def process_registry():
    """The process-wide manager and registry are made afresh for the test and afterwards."""
    plugin_manager.cache_clear()
    registry.cache_clear()
    yield
    plugin_manager.cache_clear()
    registry.cache_clear()


def test_register_plugin_adds_a_plugin_to_the_process_wide_registry(process_registry):
    before = registry()
    name = register_plugin(SwishPlugin())
    assert name == "SwishPlugin"
    assert registry() is not before and registry().layer("swish_test").plugin == "SwishPlugin"
    spec = cnnkit.load_spec({"name": "n", "input": [3], "layers": [{"name": "a", "type": "swish_test"}]})
    assert spec.layers[0].type == "swish_test"
    with pytest.raises(PluginError, match="plugin 'SwishPlugin' is not loaded: plugin 'SwishPlugin' has the "
                                          "same name"):
        register_plugin(SwishPlugin())
    unregister_plugin("SwishPlugin")
    with pytest.raises(RegistryError, match="unknown layer type 'swish_test'"):
        registry().layer("swish_test")
    with pytest.raises(PluginError, match="no plugin named 'SwishPlugin' is loaded"):
        unregister_plugin("SwishPlugin")


class WrongArguments:
    @hookimpl
    def cnnkit_register_layers(self, reg):
        pass


class MisspeltHook:
    @hookimpl
    def cnnkit_register_kernel(self, register):
        pass


@pytest.mark.parametrize(("plugin", "message"), [
    (WrongArguments(), "plugin 'WrongArguments' is not loaded: Plugin 'WrongArguments' for hook "
                       "'cnnkit_register_layers'"),
    (MisspeltHook(), "plugin 'MisspeltHook' implements cnnkit_register_kernel, which is not a cnnkit hook; "
                     "did you mean 'cnnkit_register_kernels'?"),
])
def test_register_plugin_refuses_unusable_plugins(process_registry, plugin, message):
    with pytest.raises(PluginError, match=re.escape(message)):
        register_plugin(plugin)
    assert not plugin_manager().has_plugin(type(plugin).__name__)
    assert registry().errors == []
