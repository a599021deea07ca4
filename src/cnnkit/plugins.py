"""The plugin manager: built-in plugins first, then the `cnnkit` entry-point group.

Built-in layers, kernels, losses, optimizers and datasets are plugins like any other: they are modules in
DEFAULT_PLUGINS that implement the hooks in cnnkit.hookspecs. Set CNNKIT_DISABLE_PLUGIN_AUTOLOAD=1 to load
no third-party plugin.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections.abc import Callable
from typing import Any

import pluggy

from cnnkit import hookspecs
from cnnkit.errors import PluginError
from cnnkit.registry import Registry

DEFAULT_PLUGINS = (
    "cnnkit.backends.numpy",
    "cnnkit.layers.conv",
    "cnnkit.layers.pool",
    "cnnkit.layers.activation",
    "cnnkit.layers.linear",
    "cnnkit.layers.reshape",
    "cnnkit.layers.dropout",
    "cnnkit.layers.norm",
    "cnnkit.layers.merge",
    "cnnkit.backends.numpy.conv",
    "cnnkit.backends.numpy.pool",
    "cnnkit.backends.numpy.activation",
    "cnnkit.backends.numpy.linear",
    "cnnkit.backends.numpy.reshape",
    "cnnkit.backends.numpy.dropout",
    "cnnkit.backends.numpy.norm",
    "cnnkit.backends.numpy.merge",
    "cnnkit.train.losses",
    "cnnkit.train.optimizers",
    "cnnkit.train.schedules",
    "cnnkit.data.builtin",
)

HOOKS = tuple(name for name in dir(hookspecs) if name.startswith("cnnkit_register_"))


def make_plugin_manager(load_entrypoints: bool | None = None) -> pluggy.PluginManager:
    """A manager with the built-ins registered and, unless autoload is disabled, the entry points."""
    pm = pluggy.PluginManager("cnnkit")
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entrypoints is None:
        load_entrypoints = os.environ.get("CNNKIT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if load_entrypoints:
        pm.load_setuptools_entrypoints("cnnkit")
    return pm


def collect(pm: pluggy.PluginManager, on_error: Callable[[PluginError], None] | None = None) -> Registry:
    """Call every registration hook of every plugin, recording which plugin registered what.

    A plugin whose hook raises or registers something unusable is reported through `on_error` (default:
    raise); what the other plugins registered is kept.
    """
    registry = Registry()
    for hook_name in HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            _call_hook(registry, impl, hook_name, on_error)
    return registry


def _call_hook(registry: Registry, impl: Any, hook_name: str,
               on_error: Callable[[PluginError], None] | None) -> None:
    plugin = impl.plugin_name

    def register(record: Any) -> None:
        try:
            record = _with_plugin(record, plugin)
            registry.add(record)
        except PluginError as error:
            if on_error is None:
                raise
            on_error(error)

    try:
        impl.function(register=register)
    except PluginError:
        raise
    except Exception as error:  # a third-party hook may fail in any way; report it, keep the rest
        problem = PluginError(f"plugin '{plugin}' failed in {hook_name}: {type(error).__name__}: {error}")
        if on_error is None:
            raise problem from error
        on_error(problem)


def _with_plugin(record: Any, plugin: str) -> Any:
    if not hasattr(record, "plugin") or not hasattr(record, "__dataclass_fields__"):
        raise PluginError(f"plugin '{plugin}' registered {record!r}, which is not a cnnkit record")
    if record.plugin:
        return record
    return dataclasses.replace(record, plugin=plugin)


@functools.lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    return make_plugin_manager()


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry, built on first use."""
    return collect(plugin_manager())
