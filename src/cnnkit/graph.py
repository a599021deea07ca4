"""Network: layers in topological order, shapes inferred from the spec alone, forward and backward.

Every array a layer writes (activations, gradients, workspaces) belongs to that layer's Op, which is made
once per (network, batch size) and reused, so a training loop allocates nothing per step.
"""

from __future__ import annotations

import sys
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cnnkit.errors import BackendError, CnnkitError, PluginError, ShapeError, SpecError
from cnnkit.registry import Kernel, LayerType, Op, OpSetup, Registry, Shape
from cnnkit.spec.model import INPUT, LayerSpec, Spec

REFERENCE_BACKEND = "numpy"
_CACHED_BATCH_SIZES = 4
_notices_given: set[str] = set()


def notice(message: str) -> None:
    """Tell the user something once per process (on stderr), e.g. a kernel fallback."""
    if message not in _notices_given:
        _notices_given.add(message)
        print(f"cnnkit: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Node:
    """One layer placed in the graph: resolved inputs and shapes (without the batch dimension)."""

    spec: LayerSpec
    layer: LayerType
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape

    @property
    def name(self) -> str:
        return self.spec.name


def plan(spec: Spec, registry: Registry) -> list[Node]:
    """Layers in topological order with inferred shapes; every problem is a SpecError with file:line.

    Every layer but the last (the output) must feed another, so the output is last in this order.
    """
    by_name = _index_layers(spec, registry)
    inputs = {layer.name: _resolve_inputs(spec, layer, i, by_name) for i, layer in enumerate(spec.layers)}
    order = _topological_order(spec, inputs)
    shapes: dict[str, Shape] = {INPUT: tuple(spec.input)}
    nodes = []
    for layer in order:
        layer_type = registry.layer(layer.type)
        _check_arity(spec, layer, layer_type, len(inputs[layer.name]))
        in_shapes = tuple(shapes[name] for name in inputs[layer.name])
        out_shape = _infer_shape(spec, layer, layer_type, in_shapes)
        if any(d <= 0 for d in out_shape):
            raise _spec_error(spec, layer, f"output shape {_fmt(out_shape)} from input "
                              f"{', '.join(_fmt(s) for s in in_shapes)} has a dimension <= 0; "
                              f"the input is too small for this layer's kernel/stride/padding")
        shapes[layer.name] = out_shape
        nodes.append(Node(layer, layer_type, inputs[layer.name], in_shapes, out_shape))
    _check_all_used(spec, nodes)
    return nodes


def _infer_shape(spec: Spec, layer: LayerSpec, layer_type: LayerType, in_shapes: tuple[Shape, ...]) -> Shape:
    """The layer type's output shape. A ShapeError is the spec's fault; anything else (an exception other
    than ShapeError, or a value that is not a tuple of ints) is the fault of the plugin that registered
    the layer type, and is reported as that plugin's error at this layer."""
    try:
        shape = layer_type.infer_shape(layer.attrs, in_shapes)
    except ShapeError as error:
        raise _spec_error(spec, layer, str(error)) from None
    except Exception as error:  # a bug in the plugin's infer_shape, not in the spec
        raise _plugin_error(spec, layer, layer_type, f"infer_shape raised {type(error).__name__}: "
                            f"{error}") from error
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape):
        raise _plugin_error(spec, layer, layer_type, f"infer_shape returned {shape!r}; expected the output "
                            f"shape without the batch dimension, a tuple of ints such as (16, 8, 8)")
    return tuple(int(d) for d in shape)


def _plugin_error(spec: Spec, layer: LayerSpec, layer_type: LayerType, problem: str) -> PluginError:
    where = _spec_error(spec, layer, f"layer type '{layer_type.name}' of plugin '{layer_type.plugin}' is "
                        f"broken: {problem}", "type")
    return PluginError(str(where))


def _check_arity(spec: Spec, layer: LayerSpec, layer_type: LayerType, count: int) -> None:
    low, high = layer_type.arity
    if low <= count and (high is None or count <= high):
        return
    if high is None:
        wanted = f"{low} or more inputs"
    elif low == high:
        wanted = f"{low} input{'s' if low > 1 else ''}"
    else:
        wanted = f"{low} to {high} inputs"
    raise _spec_error(spec, layer, f"layer type '{layer_type.name}' takes {wanted}, got {count}; list them "
                      f"with 'inputs: [a, b]'" if low > 1 else f"layer type '{layer_type.name}' takes "
                      f"{wanted}, got {count}", "inputs")


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _spec_error(spec: Spec, layer: LayerSpec, message: str, key: str = "") -> SpecError:
    return SpecError(message, source=spec.source, mark=layer.marks.get(key) or layer.marks.get(""),
                     layer=layer.name)


def _index_layers(spec: Spec, registry: Registry) -> dict[str, int]:
    if not spec.layers:
        raise SpecError("the spec has no layers; list at least one under 'layers:'", source=spec.source,
                        mark=spec.mark("layers"))
    by_name: dict[str, int] = {}
    for i, layer in enumerate(spec.layers):
        if layer.name == INPUT:
            raise _spec_error(spec, layer, f"'{INPUT}' is reserved for the network input; rename the layer")
        if layer.name in by_name:
            raise _spec_error(spec, layer, f"duplicate layer name '{layer.name}' (first used by layer "
                              f"{by_name[layer.name] + 1}); layer names must be unique")
        by_name[layer.name] = i
        try:
            registry.layer(layer.type)
        except CnnkitError as error:
            raise _spec_error(spec, layer, str(error), "type") from None
    return by_name


def _resolve_inputs(spec: Spec, layer: LayerSpec, index: int, by_name: Mapping[str, int]) -> tuple[str, ...]:
    if layer.inputs is None:
        return (spec.layers[index - 1].name,) if index > 0 else (INPUT,)
    from cnnkit.registry import did_you_mean

    for i, name in enumerate(layer.inputs):
        where = _input_key(layer, i)
        if name != INPUT and name not in by_name:
            raise _spec_error(spec, layer, f"input '{name}' is not a layer of this spec; expected "
                              f"'{INPUT}' or a layer name{did_you_mean(name, [*by_name, INPUT])}", where)
        if name == layer.name:
            raise _spec_error(spec, layer, f"a layer cannot take its own output as input; expected "
                              f"'{INPUT}' or another layer's name", where)
    return tuple(layer.inputs)


def _input_key(layer: LayerSpec, index: int) -> str:
    """The marks key of the layer's index-th input (its 'inputs' list where items have no position)."""
    return f"inputs.{index}" if f"inputs.{index}" in layer.marks else "inputs"


def _topological_order(spec: Spec, inputs: Mapping[str, tuple[str, ...]]) -> list[LayerSpec]:
    """Kahn's algorithm, ties broken by file order; a cycle is reported with its members."""
    pending = {layer.name: {n for n in inputs[layer.name] if n != INPUT} for layer in spec.layers}
    order: list[LayerSpec] = []
    done: set[str] = set()
    while len(order) < len(spec.layers):
        ready = [layer for layer in spec.layers if layer.name not in done and pending[layer.name] <= done]
        if not ready:
            cycle = _find_cycle(spec, pending, done)
            names = " -> ".join(layer.name for layer in [*cycle, cycle[0]])
            where = _input_key(cycle[0], inputs[cycle[0].name].index(cycle[-1].name))
            raise _spec_error(spec, cycle[0], f"the layers form a cycle {names} through their 'inputs'; "
                              f"a layer can only take outputs of layers that do not depend on it", where)
        order.append(ready[0])
        done.add(ready[0].name)
    return order


def _find_cycle(spec: Spec, pending: Mapping[str, set[str]], done: set[str]) -> list[LayerSpec]:
    """The layers of one cycle in data-flow order, starting with the first in file order.

    Every layer not yet placed waits for another unplaced one, so following those waits comes back round.
    """
    by_name = {layer.name: layer for layer in spec.layers}
    path = [next(layer.name for layer in spec.layers if layer.name not in done)]
    while True:
        waits = [layer.name for layer in spec.layers if layer.name in pending[path[-1]] - done]
        if waits[0] in path:
            cycle = path[path.index(waits[0]):][::-1]
            first = min(cycle, key=[layer.name for layer in spec.layers].index)
            start = cycle.index(first)
            return [by_name[name] for name in cycle[start:] + cycle[:start]]
        path.append(waits[0])


def _check_all_used(spec: Spec, nodes: Sequence[Node]) -> None:
    output = spec.layers[-1].name
    used = {name for node in nodes for name in node.inputs}
    for node in nodes:
        if node.name != output and node.name not in used:
            raise _spec_error(spec, node.spec, f"the output of layer '{node.name}' is never used; the "
                              f"network's output is the last layer ('{output}'), so connect this layer "
                              f"to it or remove it")


def _checked_op(op: object, kernel: Kernel, node: Node) -> Op:
    """The op a kernel's make() returned, if it has forward and backward; else the plugin's error."""
    if callable(getattr(op, "forward", None)) and callable(getattr(op, "backward", None)):
        return op  # type: ignore[return-value]
    raise PluginError(f"layer '{node.name}': the '{kernel.backend}' kernel for '{kernel.layer}' of plugin "
                      f"'{kernel.plugin}' is broken: make() returned {type(op).__name__}, which has no "
                      f"forward and backward methods (see cnnkit.registry.Op)")


def layer_seed(seed: int, name: str) -> np.random.Generator:
    """Each layer's initialiser draws from its own stream, so adding a layer leaves the others' weights."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


class Network:
    """A built network: parameters, buffers and gradients by "layer.name" keys, and the bound kernels."""

    def __init__(self, spec: Spec, registry: Registry, backend: str = REFERENCE_BACKEND, seed: int = 0,
                 dtype: type | np.dtype = np.float32) -> None:
        self.spec = spec
        self.registry = registry
        self.backend = backend
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.nodes = plan(spec, registry)
        self._index = {node.name: i for i, node in enumerate(self.nodes)}
        self.kernels = [self._choose_kernel(node) for node in self.nodes]
        self._notice_fallbacks()
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self._node_params: list[dict[str, np.ndarray]] = []
        self._node_buffers: list[dict[str, np.ndarray]] = []
        self._init_state()
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self._node_grads = [{k: self.grads[f"{n.name}.{k}"] for k in p} for n, p in
                            zip(self.nodes, self._node_params)]
        self.rng = np.random.default_rng([seed, 0x5EED])
        self._ops: OrderedDict[int, list[Op]] = OrderedDict()
        self._consumers = self._count_consumers()
        self._grad_sums: dict[int, dict[str, np.ndarray]] = {}
        self._last_batch: int | None = None
        self._unchecked: set[int] = set()

    @property
    def input_shape(self) -> Shape:
        return tuple(self.spec.input)

    @property
    def output_shape(self) -> Shape:
        return self.nodes[-1].out_shape

    def _choose_kernel(self, node: Node) -> Kernel:
        wanted = node.spec.backend or self.backend
        backend = self.registry.backend(wanted)
        reason = backend.unavailable()
        if reason:
            raise BackendError(f"backend '{wanted}' is not available: {reason}")
        if backend.dtypes is not None and self.dtype.name not in backend.dtypes:
            raise BackendError(f"layer '{node.name}': backend '{wanted}' computes in "
                               f"{', '.join(backend.dtypes)} only, not {self.dtype.name}; build the network "
                               f"with dtype={backend.dtypes[0]}, or use backend '{REFERENCE_BACKEND}'")
        kernel = self.registry.kernel(node.layer.name, wanted)
        if kernel is None:
            kernel = self.registry.kernel(node.layer.name, REFERENCE_BACKEND)
            if kernel is None:
                raise BackendError(f"layer '{node.name}': no kernel for layer type '{node.layer.name}' on "
                                   f"backend '{wanted}' nor on the '{REFERENCE_BACKEND}' reference")
        return kernel

    def _notice_fallbacks(self) -> None:
        """One notice per backend naming the layer types that run on the reference instead of on it."""
        missing: dict[str, set[str]] = {}
        for node, kernel in zip(self.nodes, self.kernels):
            wanted = node.spec.backend or self.backend
            if kernel.backend != wanted:
                missing.setdefault(wanted, set()).add(node.layer.name)
        for backend, layer_types in missing.items():
            notice(f"backend '{backend}' has no kernel for layer type{'s' * (len(layer_types) > 1)} "
                   f"{', '.join(sorted(layer_types))}; {'they run' if len(layer_types) > 1 else 'it runs'} "
                   f"on the '{REFERENCE_BACKEND}' reference")

    def _init_state(self) -> None:
        for node in self.nodes:
            attrs, shapes = node.spec.attrs, node.in_shapes
            params = {}
            if node.layer.init_params is not None:
                rng = layer_seed(self.seed, node.name)
                params = node.layer.init_params(attrs, shapes, rng, self.dtype)
            buffers = node.layer.init_buffers(attrs, shapes, self.dtype) if node.layer.init_buffers else {}
            params = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in params.items()}
            buffers = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in buffers.items()}
            self._node_params.append(params)
            self._node_buffers.append(buffers)
            self.params.update({f"{node.name}.{k}": v for k, v in params.items()})
            self.buffers.update({f"{node.name}.{k}": v for k, v in buffers.items()})

    def _count_consumers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            for name in node.inputs:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def ops(self, batch: int) -> list[Op]:
        """The kernels bound to this batch size, made on first use and kept for the few latest sizes."""
        if batch in self._ops:
            self._ops.move_to_end(batch)
            return self._ops[batch]
        ops = []
        for node, kernel in zip(self.nodes, self.kernels):
            setup = OpSetup(name=node.name, attrs=node.spec.attrs,
                            in_shapes=tuple((batch, *s) for s in node.in_shapes),
                            out_shape=(batch, *node.out_shape), dtype=self.dtype, rng=self.rng,
                            needs_input_grad=any(name != INPUT for name in node.inputs))
            ops.append(_checked_op(kernel.make(setup), kernel, node))
        self._ops[batch] = ops
        self._unchecked.add(batch)
        if len(self._ops) > _CACHED_BATCH_SIZES:
            evicted, _ = self._ops.popitem(last=False)
            self._grad_sums.pop(evicted, None)
        return ops

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """x as a C-contiguous array of this network's dtype, or a ShapeError saying what was expected."""
        x = np.asarray(x)
        expected = "(N, " + ", ".join(str(d) for d in self.input_shape) + ")"
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"network '{self.spec.name}' takes input of shape {expected}, "
                             f"got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ShapeError("the input batch is empty")
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise ShapeError(f"the input must hold real numbers, got dtype {x.dtype}")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """The output for a batch; the array belongs to the network and is overwritten by the next call."""
        return self._forward_values(x, training)[self.nodes[-1].name]

    def activations(self, x: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        """Eval-mode outputs of the named layers for a batch, as copies: e.g. feature maps to look at."""
        from cnnkit.registry import did_you_mean

        for name in layers:
            if name not in self._index:
                raise CnnkitError(f"network '{self.spec.name}' has no layer '{name}'"
                                  f"{did_you_mean(name, self._index)}")
        values = self._forward_values(x, training=False)
        return {name: values[name].copy() for name in layers}

    def _forward_values(self, x: np.ndarray, training: bool) -> dict[str, np.ndarray]:
        """Every layer's output for a batch, by layer name (and the input as INPUT)."""
        x = self.check_input(x)
        ops = self.ops(x.shape[0])
        values: dict[str, np.ndarray] = {INPUT: x}
        first_run = x.shape[0] in self._unchecked
        for i, (node, op, params, buffers) in enumerate(zip(self.nodes, ops, self._node_params,
                                                            self._node_buffers)):
            values[node.name] = op.forward([values[n] for n in node.inputs], params, buffers, training)
            if first_run:
                self._check_output(i, values[node.name], x.shape[0])
        self._unchecked.discard(x.shape[0])
        self._last_batch = x.shape[0]
        return values

    def _check_output(self, index: int, out: np.ndarray, batch: int) -> None:
        """On a kernel's first run for a batch size: its output must be an array of the inferred shape."""
        node, kernel = self.nodes[index], self.kernels[index]
        expected = (batch, *node.out_shape)
        if not isinstance(out, np.ndarray) or out.shape != expected or out.dtype != self.dtype:
            got = f"{out.dtype} array of shape {out.shape}" if isinstance(out, np.ndarray) else repr(out)
            raise PluginError(f"layer '{node.name}': the '{kernel.backend}' kernel for '{kernel.layer}' of "
                              f"plugin '{kernel.plugin}' is broken: forward returned a {got}, expected a "
                              f"{self.dtype} array of shape {expected}")

    def backward(self, grad_out: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of all parameters (in self.grads) for the gradient of the last forward's output."""
        if self._last_batch is None:
            raise CnnkitError("backward() needs a forward() first")
        batch = self._last_batch
        ops = self.ops(batch)
        sums = self._grad_sums.setdefault(batch, {})
        pending: dict[str, np.ndarray] = {self.nodes[-1].name: grad_out}
        seen: dict[str, int] = {}
        for node, op, params, grads in reversed(list(zip(self.nodes, ops, self._node_params,
                                                          self._node_grads))):
            grad_inputs = op.backward(pending.pop(node.name), params, grads)
            for name, grad in zip(node.inputs, grad_inputs):
                if name == INPUT:
                    continue
                seen[name] = seen.get(name, 0) + 1
                if seen[name] == 1:
                    pending[name] = grad
                    continue
                if seen[name] == 2:
                    total = sums.get(name)
                    if total is None:
                        total = sums[name] = np.empty_like(grad)
                    np.add(pending[name], grad, out=total)
                    pending[name] = total
                else:
                    pending[name] += grad
        return self.grads

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Eval-mode outputs for any number of inputs, computed in chunks of `batch_size`."""
        x = self.check_input(x)
        out = np.empty((x.shape[0], *self.output_shape), dtype=self.dtype)
        for start in range(0, x.shape[0], batch_size):
            out[start:start + batch_size] = self.forward(x[start:start + batch_size], training=False)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by "layer.name" (the arrays themselves, not copies)."""
        return {**self.params, **self.buffers}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy arrays into this network's own, checking names and shapes first (nothing changes on error)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ShapeError(f"weights do not fit network '{self.spec.name}': missing {missing or 'none'}, "
                             f"unexpected {unexpected or 'none'}")
        for key, value in state.items():
            if tuple(np.shape(value)) != own[key].shape:
                raise ShapeError(f"weight '{key}' has shape {tuple(np.shape(value))}, the network expects "
                                 f"{own[key].shape}")
        for key, value in state.items():
            np.copyto(own[key], value, casting="same_kind")

    def layer_params(self, name: str) -> dict[str, np.ndarray]:
        """One layer's parameters by their short names ("weight", "bias"); the arrays themselves."""
        return self._node_params[self._index[name]]

    def layer_buffers(self, name: str) -> dict[str, np.ndarray]:
        return self._node_buffers[self._index[name]]

    def consumers(self, name: str) -> list[Node]:
        """The nodes that take the output of layer `name` as an input."""
        return [node for node in self.nodes if name in node.inputs]

    def parameter_count(self) -> int:
        return int(sum(p.size for p in self.params.values()))


def build(spec: Spec, registry: Registry, backend: str = REFERENCE_BACKEND, seed: int = 0,
          dtype: type | np.dtype = np.float32) -> Network:
    return Network(spec, registry, backend=backend, seed=seed, dtype=dtype)
