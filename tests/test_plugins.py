from __future__ import annotations

import inspect

import pytest

from cnnkit import hookimpl, hookspecs
from cnnkit.errors import PluginError
from cnnkit.plugins import DEFAULT_PLUGINS, HOOKS, collect, make_plugin_manager, registry
from cnnkit.registry import LayerType


def test_every_hook_is_documented():
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and "register(" in doc, name


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


def test_autoload_can_be_disabled(monkeypatch):
    loaded = []
    monkeypatch.setattr("pluggy.PluginManager.load_setuptools_entrypoints",
                        lambda self, group, name=None: loaded.append(group))
    monkeypatch.setenv("CNNKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    make_plugin_manager()
    assert loaded == []
    monkeypatch.setenv("CNNKIT_DISABLE_PLUGIN_AUTOLOAD", "0")
    make_plugin_manager()
    assert loaded == ["cnnkit"]
