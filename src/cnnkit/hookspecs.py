"""Every hook a cnnkit plugin can implement: the one page a plugin author reads.

A plugin is a module (or any object) with functions marked `@hookimpl` whose names are these hooks. Each
hook receives a `register` callback and calls it once per record (see cnnkit.registry for the record
types), returning None. A package makes its module a plugin through an entry point in the `cnnkit` group;
`cnnkit.plugins.register_plugin(module)` adds one at run time (tests, notebooks). The guide is
docs/plugins.md.

    from cnnkit import hookimpl
    from cnnkit.registry import LayerType

    @hookimpl
    def cnnkit_register_layers(register):
        register(LayerType(name="swish", attrs=(), infer_shape=lambda attrs, shapes: shapes[0]))

When: every hook of every plugin is called once, when the registry is first needed (the first spec
loaded or network built), hook by hook in the order of cnnkit.plugins.HOOKS (layer types and backends
before kernels), and within a hook plugin by plugin in load order: the built-in plugins first
(cnnkit.plugins.DEFAULT_PLUGINS), then the entry points sorted by name, then run-time registrations.

Name clashes: the first registration of a name (or of a kernel's (layer type, backend)) wins; a later one
is refused with a PluginError naming both plugins. So a plugin cannot replace a built-in layer: it adds a
kernel for it on its own backend instead.

Errors: a record of the wrong type or with unusable fields, a kernel for a layer type or backend nobody
registered, a hook that raises or returns something: each is one PluginError naming the plugin, printed
once (`cnnkit: plugin error: ...`) and listed by `cnnkit plugins`; the plugin's other records and every
other plugin keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("cnnkit")
hookimpl = pluggy.HookimplMarker("cnnkit")

Register = Callable[[Any], None]


@hookspec
def cnnkit_register_layers(register: Register) -> None:
    """Register layer types: call `register(LayerType(...))` for each.

    A layer type is backend-independent: its YAML name (`type:` in a spec), typed attributes
    (cnnkit.attrs.Attr: validated with did-you-mean and put in the JSON Schema), output-shape inference
    (infer_shape(attrs, input_shapes) -> shape without the batch dimension; raise cnnkit.errors.ShapeError
    for inputs it cannot take), parameter and buffer initialisation, MACs for `cnnkit summary`, arity,
    and the ONNX export rule to_onnx(ctx) (see cnnkit.onnx.context.ExportContext). Kernels are registered
    separately, per backend (cnnkit_register_kernels).
    """


@hookspec
def cnnkit_register_backends(register: Register) -> None:
    """Register backends: call `register(Backend(name, description, unavailable))` for each.

    A backend is a name for a set of kernels: a network picks one (cnnkit.build(spec, backend=...),
    `cnnkit train --backend`) or a layer does (`backend:` in the spec), and layer types the backend has no
    kernel for run on the numpy reference, named once in a notice. `unavailable()` returns a sentence
    saying why the backend cannot run on this machine, or None.
    """


@hookspec
def cnnkit_register_kernels(register: Register) -> None:
    """Register kernels: call `register(Kernel(layer, backend, make))` for each (layer type, backend).

    The layer type and the backend must be registered (by this plugin or another; they are registered
    before any kernel). `make(OpSetup)` is called once per (network, batch size, layer) and returns an
    object with `forward(inputs, params, buffers, training)` and `backward(grad_out, params, grads)`; see
    cnnkit.registry.Op for the contract: forward returns an array of setup.out_shape and setup.dtype that
    it owns, backward overwrites the arrays in `grads` and returns one input gradient per input.

    A backend may also supply a loss or an optimizer of its own: `Kernel("loss/<name>", backend, make)` or
    `Kernel("optimizer/<name>", ...)`, whose `make` takes what the Loss's or Optimizer's make takes and
    returns the same kind of object (an optimizer with the same state() keys and shapes). The trainer uses
    it for networks on that backend and the registered record's otherwise.
    """


@hookspec
def cnnkit_register_datasets(register: Register) -> None:
    """Register datasets: call `register(Dataset(name, attrs, load))` for each.

    `load(attrs, input_shape, seed)` returns a cnnkit.data.ArrayDataset; it must be deterministic per seed.
    """


@hookspec
def cnnkit_register_losses(register: Register) -> None:
    """Register losses: call `register(Loss(name, attrs, make))` for each.

    `make(**attrs)` returns an object with `forward(logits, targets) -> float` (mean over the batch) and
    `backward() -> gradient of that mean with respect to the logits`.
    """


@hookspec
def cnnkit_register_optimizers(register: Register) -> None:
    """Register optimizers: call `register(Optimizer(name, attrs, make))` for each.

    `make(params, grads, **attrs)` returns an object with `step(lr)` (updates params in place from grads),
    `state() -> dict[str, np.ndarray]` and `load_state(state)`, so checkpoints resume exactly.
    """


@hookspec
def cnnkit_register_schedules(register: Register) -> None:
    """Register learning-rate schedules: call `register(Schedule(name, attrs, make))` for each.

    `make(base_lr=, total_steps=, steps_per_epoch=, **attrs)` returns a function step -> learning rate.
    """
