"""The plugin manager: built-in plugins first, then the `cnnkit` entry-point group, then run-time ones.

Built-in layers, kernels, losses, optimizers and datasets are plugins like any other: they are modules in
DEFAULT_PLUGINS that implement the hooks in cnnkit.hookspecs. Third-party plugins are the entry points of
the `cnnkit` group, loaded in order of their names; `register_plugin` adds one at run time (tests,
notebooks). A name registered twice keeps the first registration: built-ins, then entry points by name,
then run-time plugins in the order they were added.

Environment: CNNKIT_DISABLE_PLUGIN_AUTOLOAD=1 loads no entry point; CNNKIT_PLUGINS=a,b loads only the
entry points named a and b (whether or not autoload is disabled).

A broken plugin never stops cnnkit: each problem (an import error, a hook that raises or registers
something unusable, a name that is taken) becomes one PluginError naming the plugin, kept in
Registry.errors, printed once on stderr and listed by `cnnkit plugins`; everything else keeps working.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Collection
from typing import Any

import pluggy

from cnnkit import hookspecs
from cnnkit.errors import PluginError
from cnnkit.registry import (
    Backend,
    Dataset,
    Kernel,
    LayerType,
    Loss,
    Optimizer,
    Registry,
    Schedule,
    did_you_mean,
)

DEFAULT_PLUGINS = (
    "cnnkit.backends.numpy",
    "cnnkit.backends.c",
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
    "cnnkit.backends.c.conv",
    "cnnkit.backends.c.linear",
    "cnnkit.backends.c.pool",
    "cnnkit.backends.c.activation",
    "cnnkit.backends.c.norm",
    "cnnkit.backends.c.merge",
    "cnnkit.backends.c.reshape",
    "cnnkit.backends.c.dropout",
    "cnnkit.backends.c.losses",
    "cnnkit.backends.c.optimizers",
    "cnnkit.train.losses",
    "cnnkit.train.optimizers",
    "cnnkit.train.schedules",
    "cnnkit.data.builtin",
)

HOOK_RECORDS: dict[str, type] = {
    "cnnkit_register_layers": LayerType,
    "cnnkit_register_backends": Backend,
    "cnnkit_register_kernels": Kernel,
    "cnnkit_register_datasets": Dataset,
    "cnnkit_register_losses": Loss,
    "cnnkit_register_optimizers": Optimizer,
    "cnnkit_register_schedules": Schedule,
}
"""Every hook and the record type its `register` takes, in calling order: layer types and backends come
before the kernels that name them."""

HOOKS = tuple(HOOK_RECORDS)
ENTRY_POINT_GROUP = "cnnkit"
DISABLE_AUTOLOAD_ENV = "CNNKIT_DISABLE_PLUGIN_AUTOLOAD"
ONLY_ENV = "CNNKIT_PLUGINS"
BUILT_IN = "built-in"
AT_RUN_TIME = "registered at run time"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with cnnkit's hooks, where each plugin came from, and the plugins that failed to load.

    origins maps a plugin's name to "built-in", "<distribution> <version>" or "registered at run time".
    """

    def __init__(self) -> None:
        super().__init__("cnnkit")
        self.add_hookspecs(hookspecs)
        self.origins: dict[str, str] = {}
        self.load_errors: list[PluginError] = []

    def describe(self, name: str) -> str:
        """How errors name a plugin: "plugin 'swish' (cnnkit-swish 0.1.0)"."""
        return _label(name, self.origins.get(name, AT_RUN_TIME))


def _label(name: str, origin: str) -> str:
    """"plugin 'NAME'", followed by its distribution and version for an installed one."""
    return f"plugin '{name}'" + (f" ({origin})" if origin not in (BUILT_IN, AT_RUN_TIME) else "")


def make_plugin_manager(load_entrypoints: bool | None = None,
                        only: Collection[str] | None = None) -> PluginManager:
    """A manager with the built-ins registered and then the `cnnkit` entry points.

    load_entrypoints None follows the environment: no entry point with CNNKIT_DISABLE_PLUGIN_AUTOLOAD=1
    unless CNNKIT_PLUGINS names some. `only` (default: CNNKIT_PLUGINS, comma-separated) restricts loading
    to the entry points of those names.
    """
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        pm.origins[module_name] = BUILT_IN
    if only is None:
        only = _names_from_environment()
    if load_entrypoints is None:
        load_entrypoints = only is not None or os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0")
    if load_entrypoints:
        load_entry_points(pm, only)
    return pm


def _names_from_environment() -> tuple[str, ...] | None:
    names = tuple(name.strip() for name in os.environ.get(ONLY_ENV, "").split(",") if name.strip())
    return names or None


def load_entry_points(pm: PluginManager, only: Collection[str] | None = None) -> None:
    """Register the `cnnkit` entry points (those named in `only`, if given) in order of their names.

    Each is imported and registered on its own: a failure is recorded in pm.load_errors and the others load.
    """
    found = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                   key=lambda ep: (ep.name, _distribution(ep)))
    if only is not None:
        installed = {ep.name for ep in found}
        for name in sorted(set(only) - installed):
            pm.load_errors.append(PluginError(
                f"{ONLY_ENV} names plugin '{name}', but no installed package has an entry point '{name}' in "
                f"group '{ENTRY_POINT_GROUP}'{did_you_mean(name, installed)}"))
        found = [ep for ep in found if ep.name in only]
    for ep in found:
        origin = _distribution(ep)
        label = _label(ep.name, origin)
        if pm.has_plugin(ep.name):
            pm.load_errors.append(PluginError(
                f"{label} is not loaded: {pm.describe(ep.name)} has the same name; a plugin's entry-point "
                f"name must be unique"))
            continue
        try:
            plugin = ep.load()
        except Exception as error:  # any import-time failure of a third party; report it, load the rest
            pm.load_errors.append(PluginError(f"{label} cannot be imported from '{ep.value}': "
                                              f"{_one_line(error)}"))
            continue
        try:
            pm.load_errors.extend(add_plugin(pm, plugin, ep.name, origin))
        except PluginError as error:
            pm.load_errors.append(error)


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def add_plugin(pm: PluginManager, plugin: object, name: str, origin: str) -> list[PluginError]:
    """Register one plugin object under `name`, or raise a PluginError (and leave pm unchanged).

    A hook implementation whose arguments do not match its hook refuses the plugin. Functions marked
    @hookimpl whose names are not cnnkit hooks (typos) are returned as an error, and the plugin is kept
    for its other hooks.
    """
    label = _label(name, origin)
    if pm.has_plugin(name):
        raise PluginError(f"{label} is not loaded: {pm.describe(name)} has the same name")
    if pm.is_registered(plugin):
        raise PluginError(f"{label} is not loaded: the same object is registered already as plugin "
                          f"'{pm.get_name(plugin)}'")
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as error:
        if pm.has_plugin(name):
            pm.unregister(name=name)
        raise PluginError(f"{label} is not loaded: {' '.join(str(error).split())}") from None
    pm.origins[name] = origin
    unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or () if not caller.has_spec())
    if not unknown:
        return []
    return [PluginError(f"{label} implements {', '.join(unknown)}, which is not a cnnkit hook"
                        f"{did_you_mean(unknown[0], HOOKS)}; it is never called")]


def collect(pm: pluggy.PluginManager, on_error: Callable[[PluginError], None] | None = None) -> Registry:
    """Call every registration hook of every plugin in load order, recording which plugin registered what.

    Every problem (a plugin that failed to load, a hook that raises, returns something or registers a
    record that is unusable or whose name is taken) is a PluginError naming the plugin; what the plugins
    registered otherwise is kept. The errors are in the registry's `errors`, and each is passed to
    `on_error`; without on_error the first one is raised.
    """
    registry = Registry()
    registry.errors.extend(getattr(pm, "load_errors", ()))
    describe = getattr(pm, "describe", lambda name: f"plugin '{name}'")
    order = {name: i for i, (name, _) in enumerate(pm.list_name_plugin())}
    for hook_name in HOOKS:
        impls = sorted(getattr(pm.hook, hook_name).get_hookimpls(), key=lambda impl: order[impl.plugin_name])
        for impl in impls:
            _call_hook(registry, impl, hook_name, describe(impl.plugin_name))
    if on_error is None and registry.errors:
        raise registry.errors[0]
    for error in registry.errors:
        on_error(error)
    return registry


def _call_hook(registry: Registry, impl: Any, hook_name: str, label: str) -> None:
    plugin = impl.plugin_name
    wanted = HOOK_RECORDS[hook_name]

    def register(record: Any) -> None:
        try:
            if not isinstance(record, wanted):
                raise PluginError(f"{label} passed {_what(record)} to register() in {hook_name}, which takes "
                                  f"{wanted.__name__} records")
            registry.add(dataclasses.replace(record, plugin=plugin))  # who registered it, whatever it says
        except PluginError as error:
            registry.errors.append(error)

    try:
        returned = impl.function(register=register)
    except Exception as error:  # a third-party hook may fail in any way; report it, keep the rest
        registry.errors.append(PluginError(f"{label} failed in {hook_name}: {_one_line(error)}"))
        return
    if returned is not None:
        registry.errors.append(PluginError(
            f"{label}: {hook_name} returned {_what(returned)}, which is ignored; a hook calls "
            f"register(record) once per record and returns None"))


def _what(value: Any) -> str:
    text = repr(value)
    return f"a {type(value).__name__}" + (f" {text}" if len(text) <= 60 else "")


@functools.lru_cache(maxsize=1)
def plugin_manager() -> PluginManager:
    """The process-wide plugin manager, made on first use (the environment is read then)."""
    return make_plugin_manager()


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry, built on first use; each plugin error is printed once on stderr."""
    from cnnkit.graph import notice

    return collect(plugin_manager(), on_error=lambda error: notice(f"plugin error: {error}"))


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Add a plugin (a module, or any object with @hookimpl functions) to the process-wide manager.

    For tests and notebooks: it loads after every installed plugin, so it cannot replace their names; the
    registry is rebuilt on next use (networks built before keep theirs). Returns the plugin's name
    (default: the module's __name__, or the object's class name); raises PluginError if the plugin is
    unusable or the name is taken.
    """
    pm = plugin_manager()
    name = name or default_name(plugin)
    problems = add_plugin(pm, plugin, name, AT_RUN_TIME)
    if problems:
        unregister_plugin(name)
        raise problems[0]
    registry.cache_clear()
    return name


def default_name(plugin: object) -> str:
    """A plugin's name when none is given: a module's __name__, else the object's class name."""
    name = getattr(plugin, "__name__", None)
    return name if isinstance(name, str) else type(plugin).__name__


def unregister_plugin(name: str) -> None:
    """Remove a plugin by name (e.g. one added by register_plugin); the registry is rebuilt on next use."""
    pm = plugin_manager()
    if not pm.has_plugin(name):
        names = [plugin_name for plugin_name, _ in pm.list_name_plugin()]
        raise PluginError(f"no plugin named '{name}' is loaded{did_you_mean(name, names)}")
    pm.unregister(name=name)
    pm.origins.pop(name, None)
    registry.cache_clear()
