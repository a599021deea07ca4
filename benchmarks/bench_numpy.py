"""The NumPy backend next to PyTorch eager on the CPU: single layers and whole training steps.

Cases, at batch 64 (NCHW, float32): a 3x3 conv 32x32x32 -> 64 (pad 1) forward+backward; 2x2 max pooling
of 64x32x32x32 forward and forward+backward; a training step (forward, cross-entropy, backward, SGD with
momentum) and inference of specs/lenet5.yaml and specs/vgg_small.yaml. Each is run with 1 and 2 threads.
cnnkit's side runs single layers as bound kernels (computing their input gradient, as inside a network)
and whole networks through Network; PyTorch's side is the functional call or the nn modules a PyTorch
user would write, with the same weights and inputs (outputs are checked to agree before timing).

Threads: torch.set_num_threads for PyTorch; for NumPy, OpenBLAS's pool is limited with threadpoolctl.
Without threadpoolctl only the thread count fixed at start-up is measured: set OPENBLAS_NUM_THREADS=1
(or 2) in the environment before Python starts. Both sides run in one process and each figure is the
median of --repeats runs after a warm-up. Each case runs on one side, then at once on the other, rather
than alternating call by call: the worker threads of OpenBLAS and of PyTorch's OpenMP keep
spinning for a while after each call and would steal the second core from the other library. Compare
the ratios, not absolute times across machines (see /work/shared/PERF-NOTES.md).

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, when set, make OpenBLAS pick a slower kernel; the script restarts
itself without them (for this run only) and prints the kernel threadpoolctl reports. For a PyTorch
peer that does not page-fault its buffers back in on every call, run with
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824 .

    .venv/bin/python benchmarks/bench_numpy.py [--repeats 7] [--threads 1 2] [--cases conv pool lenet5 ...]
"""

from __future__ import annotations

import os
import sys

_SLOW_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if __name__ == "__main__" and any(k in os.environ for k in _SLOW_BLAS):
    print(f"bench: restarting without {', '.join(k for k in _SLOW_BLAS if k in os.environ)} "
          f"(they make OpenBLAS pick a slower kernel)", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {k: v for k, v in os.environ.items() if k not in _SLOW_BLAS})

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit.attrs import parse_attrs  # noqa: E402
from cnnkit.graph import Network  # noqa: E402
from cnnkit.layers.conv import resolve_padding  # noqa: E402
from cnnkit.plugins import registry  # noqa: E402
from cnnkit.registry import OpSetup  # noqa: E402
from cnnkit.train import from_section  # noqa: E402

SPECS = Path(__file__).resolve().parents[1] / "specs"
BATCH = 64


@dataclass
class Case:
    """One thing to time on both sides: `numpy()` and `torch()` each run it once."""

    name: str
    batch: int
    numpy: Callable[[], Any]
    torch: Callable[[], Any] | None


@dataclass
class Layer:
    """One layer's NumPy kernel bound to batch 64, as inside a network: it computes its input gradient."""

    op: Any
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    x: np.ndarray
    grad_out: np.ndarray

    def forward(self) -> np.ndarray:
        return self.op.forward([self.x], self.params, {}, True)

    def forward_backward(self) -> None:
        self.forward()
        self.op.backward(self.grad_out, self.params, self.grads)


def bind_layer(layer_type: str, input_shape: tuple[int, ...], rng: np.random.Generator,
               **attrs: Any) -> Layer:
    reg = registry()
    layer = reg.layer(layer_type)
    attrs = parse_attrs(layer.attrs, attrs)
    out_shape = tuple(layer.infer_shape(attrs, [input_shape]))
    dtype = np.dtype(np.float32)
    params = layer.init_params(attrs, [input_shape], rng, dtype) if layer.init_params else {}
    setup = OpSetup(name=layer_type, attrs=attrs, in_shapes=((BATCH, *input_shape),),
                    out_shape=(BATCH, *out_shape), dtype=dtype, rng=rng, needs_input_grad=True)
    op = reg.kernel(layer_type, "numpy").make(setup)
    return Layer(op, params, {k: np.zeros_like(v) for k, v in params.items()},
                 rng.standard_normal((BATCH, *input_shape), dtype=np.float32),
                 rng.standard_normal((BATCH, *out_shape), dtype=np.float32))


def numpy_train_step(net: Network, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    loss = from_section(registry().loss, {"type": "cross_entropy"})
    sgd = from_section(registry().optimizer, {"type": "sgd", "lr": 0.01, "momentum": 0.9}, net.params,
                       net.grads)

    def run() -> None:
        loss.forward(net.forward(x, training=True), y)
        net.backward(loss.backward())
        sgd.step(0.01)

    return run


def torch_module(net: Network, torch: Any) -> Any:
    """nn.Sequential with the network's weights, for chain-shaped specs of the common layer types."""
    nn = torch.nn
    modules = []
    for node in net.nodes:
        a, kind = node.spec.attrs, node.layer.name
        if kind == "conv2d":
            top, left, bottom, right = resolve_padding(a["padding"], node.in_shapes[0][1:], a["kernel"],
                                                       a["stride"], a["dilation"])
            if (top, left) != (bottom, right):
                raise NotImplementedError(f"{node.name}: asymmetric padding")
            module = nn.Conv2d(node.in_shapes[0][0], a["filters"], a["kernel"], a["stride"], (top, left),
                               a["dilation"], a["groups"], a["bias"])
        elif kind == "max_pool2d":
            module = nn.MaxPool2d(a["kernel"], a["stride"] or a["kernel"], ceil_mode=a["ceil_mode"])
        elif kind == "relu":
            module = nn.ReLU()
        elif kind == "flatten":
            module = nn.Flatten()
        elif kind == "linear":
            module = nn.Linear(node.in_shapes[0][0], a["units"], a["bias"])
        elif kind == "batch_norm2d":
            module = nn.BatchNorm2d(node.in_shapes[0][0], a["eps"], a["momentum"], a["affine"])
        else:
            raise NotImplementedError(f"{node.name}: layer type {kind} in the PyTorch peer")
        with torch.no_grad():
            for key, value in module.state_dict().items():
                source = net.state_dict().get(f"{node.name}.{key}")
                if source is not None:
                    value.copy_(torch.from_numpy(source))
        modules.append(module)
    return nn.Sequential(*modules)


def torch_cases(torch: Any, layers: dict[str, Layer], nets: dict[str, Network], xs: dict[str, np.ndarray],
                y: np.ndarray) -> dict[str, Callable[[], Any]]:
    """The PyTorch side of every case, checked to compute what cnnkit computes."""
    F = torch.nn.functional
    out: dict[str, Callable[[], Any]] = {}
    conv = layers["conv"]
    conv_x = torch.from_numpy(conv.x).requires_grad_()
    conv_w, conv_b = (torch.from_numpy(conv.params[k]).requires_grad_() for k in ("weight", "bias"))
    conv_g = torch.from_numpy(conv.grad_out)
    np.testing.assert_allclose(F.conv2d(conv_x, conv_w, conv_b, padding=1).detach().numpy(), conv.forward(),
                               rtol=1e-3, atol=1e-3)
    out["conv 3x3 32->64 fwd+bwd"] = lambda: F.conv2d(conv_x, conv_w, conv_b, padding=1).backward(conv_g)
    pool = layers["pool"]
    pool_x = torch.from_numpy(pool.x).requires_grad_()
    pool_g = torch.from_numpy(pool.grad_out)
    out["max_pool 2x2 fwd"] = lambda: F.max_pool2d(pool_x.detach(), 2)
    out["max_pool 2x2 fwd+bwd"] = lambda: F.max_pool2d(pool_x, 2).backward(pool_g)
    target = torch.from_numpy(y)
    for name, net in nets.items():
        module = torch_module(net, torch)
        x = torch.from_numpy(xs[name])
        with torch.no_grad():
            module.eval()
            np.testing.assert_allclose(module(x).numpy(), net.forward(xs[name]), rtol=1e-3, atol=1e-3)
        out[f"{name} train step"] = torch_train_step(torch, module, x, target)
        out[f"{name} inference"] = torch_inference(torch, module, x)
    return out


def torch_train_step(torch: Any, module: Any, x: Any, y: Any) -> Callable[[], None]:
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)

    def run() -> None:
        module.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()

    return run


def torch_inference(torch: Any, module: Any, x: Any) -> Callable[[], Any]:
    def run() -> Any:
        module.eval()
        with torch.inference_mode():
            return module(x)

    return run


def make_cases(torch: Any | None) -> list[Case]:
    rng = np.random.default_rng(0)
    layers = {"conv": bind_layer("conv2d", (32, 32, 32), rng, filters=64, kernel=3, padding=1),
              "pool": bind_layer("max_pool2d", (32, 32, 32), rng, kernel=2)}
    nets = {name: cnnkit.build(SPECS / f"{name}.yaml") for name in ("lenet5", "vgg_small")}
    xs = {name: rng.standard_normal((BATCH, *net.input_shape), dtype=np.float32)
          for name, net in nets.items()}
    y = rng.integers(0, 4, size=BATCH)
    numpy_side = {
        "conv 3x3 32->64 fwd+bwd": layers["conv"].forward_backward,
        "max_pool 2x2 fwd": layers["pool"].forward,
        "max_pool 2x2 fwd+bwd": layers["pool"].forward_backward,
    }
    for name, net in nets.items():
        numpy_side[f"{name} train step"] = numpy_train_step(net, xs[name], y)
        numpy_side[f"{name} inference"] = lambda net=net, x=xs[name]: net.forward(x)
    torch_side = torch_cases(torch, layers, nets, xs, y) if torch is not None else {}
    return [Case(name, BATCH, run, torch_side.get(name)) for name, run in numpy_side.items()]


@contextlib.contextmanager
def threads(count: int, torch: Any | None) -> Iterator[None]:
    if torch is not None:
        torch.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=count, user_api="blas"):
        yield


def median_time(run: Callable[[], Any], repeats: int) -> float:
    """Median seconds of `repeats` runs after one warm-up run (which also outlasts the other library's
    worker threads still spinning from its last call)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(case: Case, repeats: int) -> tuple[float, float | None]:
    """Median seconds of each side, one right after the other on the same thread setting."""
    mine = median_time(case.numpy, repeats)
    return mine, (median_time(case.torch, repeats) if case.torch is not None else None)


def blas_text() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed: NumPy threads fixed by the environment"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')}" for i in infos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", help="substrings of case names to run (default: all)")
    parser.add_argument("--no-torch", action="store_true", help="time the NumPy backend alone")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("bench: PyTorch not importable, timing NumPy alone (pip install torch==2.13.0)")
    cases = [c for c in make_cases(torch) if not args.cases or any(s in c.name for s in args.cases)]
    print(f"NumPy {np.__version__} ({blas_text()}); PyTorch "
          f"{torch.__version__ if torch else 'not used'}; batch {BATCH}; median of {args.repeats}; "
          f"GLIBC_TUNABLES {'set' if os.environ.get('GLIBC_TUNABLES') else 'unset'}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work skews the times)")
    header = ("case", "threads", "numpy ms", "torch ms", "numpy/torch", "numpy img/s", "torch img/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for case in cases:
        for count in args.threads:
            with threads(count, torch):
                mine, peer = measure(case, args.repeats)
            cells = [case.name, str(count), f"{mine * 1e3:.2f}",
                     "-" if peer is None else f"{peer * 1e3:.2f}",
                     "-" if peer is None else f"{mine / peer:.2f}",
                     f"{case.batch / mine:,.0f}", "-" if peer is None else f"{case.batch / peer:,.0f}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
