from __future__ import annotations

import pytest

from cnnkit.errors import PluginError, RegistryError
from cnnkit.registry import Backend, Kernel, LayerType, Registry, did_you_mean


def identity(attrs, shapes):
    return shapes[0]


def test_unknown_names_suggest_the_closest():
    reg = Registry()
    reg.add(LayerType(name="conv2d", attrs=(), infer_shape=identity, plugin="a"))
    with pytest.raises(RegistryError, match="unknown layer type 'conv2' ; did you mean 'conv2d'?"
                       .replace(" ;", ";").replace("?", r"\?")):
        reg.layer("conv2")


def test_did_you_mean_lists_known_names_when_nothing_is_close():
    assert did_you_mean("zzz", ["relu", "tanh"]) == "; known: relu, tanh"


def test_duplicate_layer_names_name_both_plugins():
    reg = Registry()
    reg.add(LayerType(name="swish", attrs=(), infer_shape=identity, plugin="first"))
    with pytest.raises(PluginError, match="plugin 'second' registers layer type 'swish', which plugin "
                                          "'first' already registered"):
        reg.add(LayerType(name="swish", attrs=(), infer_shape=identity, plugin="second"))
    assert reg.layer("swish").plugin == "first"


def test_duplicate_kernels_are_refused():
    reg = Registry()
    reg.add(LayerType(name="relu", attrs=(), infer_shape=identity, plugin="a"))
    reg.add(Backend(name="numpy", description="ref", plugin="a"))
    reg.add(Kernel(layer="relu", backend="numpy", make=object, plugin="a"))
    with pytest.raises(PluginError, match="'numpy' kernel for 'relu'"):
        reg.add(Kernel(layer="relu", backend="numpy", make=object, plugin="b"))


def test_records_of_unknown_kinds_are_refused():
    with pytest.raises(PluginError, match="not a cnnkit record"):
        Registry().add("relu")


def test_backend_lookup():
    reg = Registry()
    reg.add(Backend(name="numpy", description="ref"))
    assert reg.backend("numpy").unavailable() is None
    with pytest.raises(RegistryError, match="did you mean 'numpy'"):
        reg.backend("nympy")


def test_did_you_mean_says_when_nothing_is_registered():
    assert did_you_mean("swish", []) == "; none is registered"
