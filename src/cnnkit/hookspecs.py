"""Every hook a cnnkit plugin can implement: the one page a plugin author reads.

Each hook receives a `register` callback and calls it once per record (see cnnkit.registry for the record
types). Hooks are called once, when the registry is first needed, in plugin load order: built-in plugins
first (cnnkit.plugins.DEFAULT_PLUGINS), then the `cnnkit` entry-point group. A name registered twice keeps
the first registration and reports the second as a plugin error.

    from cnnkit import hookimpl
    from cnnkit.registry import LayerType

    @hookimpl
    def cnnkit_register_layers(register):
        register(LayerType(name="swish", attrs=(), infer_shape=lambda attrs, shapes: shapes[0]))
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

    A layer type is backend-independent: its YAML name, typed attributes, output-shape inference,
    parameter initialisation and ONNX export rule. Kernels are registered separately, per backend.
    """


@hookspec
def cnnkit_register_backends(register: Register) -> None:
    """Register backends: call `register(Backend(name, description, unavailable))` for each.

    `unavailable()` returns a sentence saying why the backend cannot run on this machine, or None.
    """


@hookspec
def cnnkit_register_kernels(register: Register) -> None:
    """Register kernels: call `register(Kernel(layer, backend, make))` for each (layer type, backend).

    `make(OpSetup)` is called once per (network, batch size, layer) and returns an object with
    `forward(inputs, params, buffers, training)` and `backward(grad_out, params, grads)`; see
    cnnkit.registry.Op for the contract. A layer that a backend lacks runs on the NumPy reference.
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
