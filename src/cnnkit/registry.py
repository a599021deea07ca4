"""The records plugins register, and the look-ups that find them.

The layer type is the key: a `LayerType` says what a layer is (attributes, shapes, parameters, ONNX rule);
backends only add `Kernel`s for it. Every look-up of an unknown name raises `RegistryError` with a
did-you-mean suggestion.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.errors import PluginError, RegistryError

Shape = tuple[int, ...]
"""A value's shape without the batch dimension: (C, H, W) for images, (F,) for features."""


@dataclass(frozen=True)
class LayerType:
    """What a layer is, independent of any backend.

    infer_shape(attrs, input_shapes) -> output shape (no batch dim); raises ShapeError on a mismatch.
    init_params(attrs, input_shapes, rng, dtype) -> trainable arrays by name (e.g. "weight", "bias").
    init_buffers(attrs, input_shapes, dtype) -> non-trainable state saved with the weights (running stats).
    to_onnx(ctx) -> writes ONNX nodes for this layer (see cnnkit.onnx); None: not exportable.
    macs(attrs, input_shapes, output_shape) -> multiply-accumulates per example, for `cnnkit summary`.
    arity: (minimum, maximum) number of inputs; maximum None means any number.
    """

    name: str
    attrs: tuple[Attr, ...]
    infer_shape: Callable[[Mapping[str, Any], Sequence[Shape]], Shape]
    init_params: Callable[..., dict[str, np.ndarray]] | None = None
    init_buffers: Callable[..., dict[str, np.ndarray]] | None = None
    to_onnx: Callable[..., Any] | None = None
    macs: Callable[[Mapping[str, Any], Sequence[Shape], Shape], int] | None = None
    arity: tuple[int, int | None] = (1, 1)
    doc: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class OpSetup:
    """Everything a kernel needs to allocate its buffers once: shapes here include the batch dimension.

    needs_input_grad is False when every input is the network's input, whose gradient nobody uses: the
    kernel's backward may then skip that work and return None for it.
    """

    name: str
    attrs: Mapping[str, Any]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    dtype: np.dtype
    rng: np.random.Generator
    needs_input_grad: bool = True


class Op(Protocol):
    """A layer bound to one batch size on one backend; owns its output and gradient buffers.

    forward returns its own output buffer (valid until the next forward); backward writes parameter
    gradients into the preallocated arrays in `grads` (overwriting) and returns one gradient per input.
    """

    def forward(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray],
                buffers: MutableMapping[str, np.ndarray], training: bool) -> np.ndarray: ...

    def backward(self, grad_out: np.ndarray, params: Mapping[str, np.ndarray],
                 grads: MutableMapping[str, np.ndarray]) -> list[np.ndarray]: ...


TRAINING_KERNELS = ("loss/", "optimizer/")
"""Prefixes of the Kernel names through which a backend supplies a loss or an optimizer."""


@dataclass(frozen=True)
class Kernel:
    """Forward and backward of one layer type on one backend: `make(setup)` returns an `Op`.

    A backend may also supply its own loss or optimizer: a Kernel whose `layer` is "loss/<name>" or
    "optimizer/<name>" and whose `make` takes the Loss's or Optimizer's arguments and returns the same
    kind of object (an optimizer with the same state() keys and shapes, so checkpoints move between
    backends). The trainer prefers it when the network runs on that backend (Registry.on_backend).
    """

    layer: str
    backend: str
    make: Callable[[OpSetup], Op]
    plugin: str = ""


@dataclass(frozen=True)
class Backend:
    """A named set of kernels. `unavailable()` returns why it cannot run here, or None when it can.

    dtypes: the dtype names its kernels compute in (None: whatever the layers support); a network of
    another dtype is refused when it is built. details() returns what is known only at run time (the
    instruction set chosen, the thread count) for `cnnkit backends`, or None.
    """

    name: str
    description: str
    unavailable: Callable[[], str | None] = lambda: None
    plugin: str = ""
    dtypes: tuple[str, ...] | None = None
    details: Callable[[], str | None] = lambda: None


@dataclass(frozen=True)
class Loss:
    """`make(**attrs)` returns an object with forward(logits, labels) -> float and backward() -> grad."""

    name: str
    attrs: tuple[Attr, ...]
    make: Callable[..., Any]
    doc: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Optimizer:
    """`make(params, grads, **attrs)` returns an object with step(lr), state() and load_state(state)."""

    name: str
    attrs: tuple[Attr, ...]
    make: Callable[..., Any]
    doc: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Schedule:
    """`make(base_lr, total_steps, steps_per_epoch, **attrs)` returns step -> learning rate."""

    name: str
    attrs: tuple[Attr, ...]
    make: Callable[..., Callable[[int], float]]
    doc: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Dataset:
    """`load(attrs, input_shape, seed)` returns a cnnkit.data.ArrayDataset (x float32 NCHW, y int64).

    from_pixels(pixels, attrs): how pictures read from files (float32 (N, C, H, W) in [0, 1], e.g. for
    `cnnkit predict`) become inputs like the ones `load` gives; None: they are used as they are.
    """

    name: str
    attrs: tuple[Attr, ...]
    load: Callable[..., Any]
    doc: str = ""
    plugin: str = ""
    from_pixels: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray] | None = None


KINDS = {LayerType: "layer type", Backend: "backend", Loss: "loss", Optimizer: "optimizer",
         Schedule: "schedule", Dataset: "dataset"}


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a close match, else a list of what exists."""
    candidates = sorted(candidates)
    close = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    if not candidates:
        return "; none is registered"
    if len(candidates) <= 24:
        return "; known: " + ", ".join(candidates)
    return ""


_TEXT_FIELDS = ("name", "layer", "backend", "description", "doc", "plugin")
_FUNCTION_FIELDS = ("infer_shape", "make", "load", "unavailable", "details")
_OPTIONAL_FUNCTION_FIELDS = ("init_params", "init_buffers", "to_onnx", "macs", "from_pixels")


def check_record(record: Any) -> Any:
    """The record with `attrs` as a tuple, or a PluginError saying which field of it is unusable.

    Registration checks types only; what a function returns is checked where it is used (a layer type's
    infer_shape when a spec is planned, a kernel's op when a network first runs it).
    """
    values = {name: getattr(record, name) for name in record.__dataclass_fields__}
    problems = [f"'{name}' must be a string, got {_kind(values[name])}" for name in _TEXT_FIELDS
                if name in values and not isinstance(values[name], str)]
    problems += [f"'{name}' must be a non-empty string" for name in ("name", "layer", "backend")
                 if values.get(name) == ""]
    problems += [f"'{name}' must be a function, got {_kind(values[name])}" for name in _FUNCTION_FIELDS
                 if name in values and not callable(values[name])]
    problems += [f"'{name}' must be a function or None, got {_kind(values[name])}"
                 for name in _OPTIONAL_FUNCTION_FIELDS
                 if values.get(name) is not None and not callable(values[name])]
    if "attrs" in values:
        attrs = values["attrs"]
        if not isinstance(attrs, (tuple, list)) or not all(isinstance(a, Attr) for a in attrs):
            problems.append(f"'attrs' must be a tuple of cnnkit.attrs.Attr, got {_kind(attrs)}")
        else:
            record = replace(record, attrs=tuple(attrs))
    if "arity" in values and not _is_arity(values["arity"]):
        problems.append(f"'arity' must be (minimum, maximum) inputs with 0 <= minimum <= maximum or maximum "
                        f"None, got {record.arity!r}")
    if problems:
        name = getattr(record, "name", None) or getattr(record, "layer", "?")
        raise PluginError(f"plugin '{record.plugin}' registered {type(record).__name__} '{name}' with "
                          f"unusable fields: {'; '.join(problems)}")
    return record


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if len(repr(value)) <= 40 else type(value).__name__


def _is_arity(arity: Any) -> bool:
    if not isinstance(arity, tuple) or len(arity) != 2:
        return False
    low, high = arity
    ints = isinstance(low, int) and not isinstance(low, bool) and (
        high is None or isinstance(high, int) and not isinstance(high, bool))
    return ints and low >= 0 and (high is None or high >= low)


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name, and the plugin errors met on the way."""

    layers: dict[str, LayerType] = field(default_factory=dict)
    kernels: dict[tuple[str, str], Kernel] = field(default_factory=dict)
    backends: dict[str, Backend] = field(default_factory=dict)
    losses: dict[str, Loss] = field(default_factory=dict)
    optimizers: dict[str, Optimizer] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)

    def table(self, record: Any) -> dict[str, Any]:
        return {LayerType: self.layers, Backend: self.backends, Loss: self.losses,
                Optimizer: self.optimizers, Schedule: self.schedules, Dataset: self.datasets}[type(record)]

    def add(self, record: Any) -> None:
        """Register one record; a name that is already taken is a PluginError naming both plugins.

        The first registration of a name wins, so plugins loaded earlier (the built-ins first) keep theirs.
        A kernel must be for a layer type and a backend that are registered already.
        """
        if type(record) not in (*KINDS, Kernel):
            raise PluginError(f"plugin '{getattr(record, 'plugin', '?')}' registered {record!r}, which is "
                              f"not a cnnkit record (LayerType, Kernel, Backend, Loss, Optimizer, Schedule, "
                              f"Dataset)")
        record = check_record(record)
        if isinstance(record, Kernel):
            self._add_kernel(record)
            return
        table = self.table(record)
        if record.name in table:
            kind = KINDS[type(record)]
            raise PluginError(f"plugin '{record.plugin}' registers {kind} '{record.name}', which plugin "
                              f"'{table[record.name].plugin}' already registered; the first one is kept")
        table[record.name] = record

    def _add_kernel(self, kernel: Kernel) -> None:
        # Losses and optimizers register after kernels: a "loss/..." kernel is matched when it is used.
        checks = [("backend", self.backends, kernel.backend)]
        if not kernel.layer.startswith(TRAINING_KERNELS):
            checks.insert(0, ("layer type", self.layers, kernel.layer))
        for kind, table, name in checks:
            if name not in table:
                raise PluginError(f"plugin '{kernel.plugin}' registers a '{kernel.backend}' kernel for layer "
                                  f"type '{kernel.layer}', but no plugin registers the {kind} '{name}'"
                                  f"{did_you_mean(name, table)}")
        key = (kernel.layer, kernel.backend)
        if key in self.kernels:
            raise PluginError(f"plugin '{kernel.plugin}' registers a '{kernel.backend}' kernel for "
                              f"'{kernel.layer}', which plugin '{self.kernels[key].plugin}' already "
                              f"registered; the first one is kept")
        self.kernels[key] = kernel

    def layer(self, name: str) -> LayerType:
        return self._find(self.layers, name, "layer type")

    def backend(self, name: str) -> Backend:
        return self._find(self.backends, name, "backend")

    def loss(self, name: str) -> Loss:
        return self._find(self.losses, name, "loss")

    def optimizer(self, name: str) -> Optimizer:
        return self._find(self.optimizers, name, "optimizer")

    def schedule(self, name: str) -> Schedule:
        return self._find(self.schedules, name, "schedule")

    def dataset(self, name: str) -> Dataset:
        return self._find(self.datasets, name, "dataset")

    def kernel(self, layer: str, backend: str) -> Kernel | None:
        return self.kernels.get((layer, backend))

    def on_backend(self, record: Loss | Optimizer, backend: str) -> Loss | Optimizer:
        """The record, made by `backend`'s own implementation when it registers one (see Kernel)."""
        kind = "loss" if isinstance(record, Loss) else "optimizer"
        kernel = self.kernel(f"{kind}/{record.name}", backend)
        return record if kernel is None else replace(record, make=kernel.make)

    @staticmethod
    def _find(table: Mapping[str, Any], name: str, kind: str) -> Any:
        try:
            return table[name]
        except (KeyError, TypeError):
            raise RegistryError(f"unknown {kind} '{name}'{did_you_mean(name, table)}") from None
